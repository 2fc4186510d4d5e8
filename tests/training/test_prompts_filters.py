"""Reading model output (sloppy chat text, the counselor's structured answer), and the per-turn quality checks."""

from __future__ import annotations

import pytest

from app.core.strategies import load_catalogue
from training.filters import FilterLimits, dialogue_problem, turn_problem
from training.prompts import (
    DraftTurn,
    clean_reply,
    counselor_format,
    counselor_messages,
    parse_choice,
    seeker_messages,
    split_end_marker,
    strip_strategy_tag,
    supporter_messages,
)
from training.scenarios import load_scenarios

CATALOGUE = load_catalogue()


@pytest.mark.parametrize(
    ("answer", "choice"),
    [
        ('{"rationale": "Learn more first.", "strategy": "Question"}', ("Question", "Learn more first.")),
        ('{"rationale": "  name   it ", "strategy": "Reflection of feelings"}', ("Reflection of feelings", "name it")),
        # The example: free text that a regex once read as "Providing Suggestions". Not JSON: no choice.
        ("I would not use Providing Suggestions yet; use Question.", None),
        ("Strategy: Question\nRationale: Learn more first.", None),
        ('{"rationale": "x", "strategy": "question"}', None),  # names are exact: no loose matching, no aliases
        ('{"rationale": "x", "strategy": "Telepathy"}', None),
        ('{"rationale": "", "strategy": "Question"}', None),
        ('{"strategy": "Question"}', None),
        ('["Question"]', None),
        ("", None),
    ],
)
def test_parse_choice_accepts_only_an_exact_structured_answer(answer: str, choice: tuple[str, str] | None) -> None:
    assert parse_choice(answer, CATALOGUE) == choice


def test_counselor_format_is_a_strict_json_schema_over_the_catalogue() -> None:
    form = counselor_format(CATALOGUE)
    assert form["type"] == "json_schema" and form["json_schema"]["strict"] is True
    schema = form["json_schema"]["schema"]
    assert schema["properties"]["strategy"] == {"type": "string", "enum": CATALOGUE.names}
    assert schema["additionalProperties"] is False and schema["required"] == ["rationale", "strategy"]


@pytest.mark.parametrize(
    ("text", "role", "expected"),
    [
        ("Supporter: That sounds hard.", "supporter", "That sounds hard."),
        ('"That sounds hard."', "supporter", "That sounds hard."),
        ("That sounds hard.\nSeeker: yes it is\nSupporter: more", "supporter", "That sounds hard."),
        ("Seeker: I lost my job.  Supporter [Question]: why?", "seeker", "I lost my job."),
        ("Seeker: I feel bad.", "supporter", "Seeker: I feel bad."),  # kept whole for the role filter
        ("I feel\n\n   so tired", "seeker", "I feel so tired"),
    ],
)
def test_clean_reply(text: str, role: str, expected: str) -> None:
    assert clean_reply(text, role) == expected


def test_clean_reply_drops_an_unfinished_sentence_when_cut_by_max_tokens() -> None:
    text = "That sounds exhausting. What would help most right now, do you think? Maybe we could"
    assert clean_reply(text, "supporter", truncated=True).endswith("do you think?")
    assert clean_reply("Too short to cut", "supporter", truncated=True) == "Too short to cut"


def test_end_marker_and_strategy_tag() -> None:
    assert split_end_marker("Thanks, bye! [END] ignored") == ("Thanks, bye!", True)
    assert split_end_marker("<end of conversation>") == ("", True)
    assert split_end_marker("Not yet.") == ("Not yet.", False)
    assert strip_strategy_tag("[Question] What happened?", CATALOGUE) == "What happened?"
    assert strip_strategy_tag("[sigh] long day", CATALOGUE) == "[sigh] long day"


def test_prompts_carry_profile_strategy_and_history_without_leaking_the_situation_to_the_supporter() -> None:
    scenario = load_scenarios()[0]
    assert scenario.seeker is not None
    turns = [DraftTurn("seeker", "Hi."), DraftTurn("supporter", "Hello, what's up?", "Others")]
    seeker = seeker_messages(scenario, turns, min_turns=6)
    # The seeker sees the chat from its side: its turns are the assistant's, after a neutral opening cue.
    assert [(m["role"], m["content"]) for m in seeker[1:]] == [
        ("user", "Hello, what's on your mind today?"),
        ("assistant", "Hi."),
        ("user", "Hello, what's up?"),
    ]
    system = seeker[0]["content"]
    assert seeker[0]["role"] == "system" and scenario.situation in system and scenario.seeker.occupation in system
    persona = scenario.model_copy(
        update={
            "seeker": scenario.seeker.model_copy(
                update={"gender": "non-binary", "culture": "Osaka, Japan", "communication_style": "terse (short)"}
            )
        }
    )
    rich = seeker_messages(persona, turns, min_turns=6)[0]["content"]
    assert "non-binary, from Osaka, Japan" in rich and "How you write: terse (short)." in rich
    assert "Do not end the chat yet." in system and "[END]" not in system
    assert "[END]" in seeker_messages(scenario, turns, min_turns=3)[0]["content"]
    assert [m["role"] for m in seeker_messages(scenario, [], min_turns=3)] == ["system", "user"]
    counselor = counselor_messages(scenario, turns, CATALOGUE)
    assert [m["role"] for m in counselor] == ["system", "user"]
    assert all(name in counselor[0]["content"] for name in CATALOGUE.names)
    assert "Supporter [Others]: Hello" in counselor[1]["content"]
    supporter = supporter_messages(turns, "Question", CATALOGUE)
    assert [(m["role"], m["content"]) for m in supporter[1:]] == [("user", "Hi."), ("assistant", "Hello, what's up?")]
    assert 'use the strategy "Question": Ask one open' in supporter[0]["content"]
    assert all(scenario.situation not in m["content"] for m in supporter)


LIMITS = FilterLimits(min_turns=4, max_seeker_words=10, max_supporter_words=8)


def dialogue(*texts: str) -> list[DraftTurn]:
    return [DraftTurn("seeker" if i % 2 == 0 else "supporter", t) for i, t in enumerate(texts)]


@pytest.mark.parametrize(
    ("turns", "reason"),
    [
        (dialogue("I lost my job.", "What happened?", "They cut my team.", "That is a shock."), None),
        (dialogue("I lost my job.", "", "They cut my team.", "That is a shock."), "empty_turn"),
        (dialogue("I lost my job.", "Seeker: what?", "They cut my team.", "Oh."), "role_confusion"),
        (dialogue("Supporter: Hi there.", "What happened?", "They cut it.", "Oh."), "role_confusion"),
        (dialogue("I lost my job.", "**Listener:** hm", "They cut it.", "Oh."), "role_confusion"),
        (dialogue("I lost my job.", "Hello Seeker! Tell me.", "They cut it.", "Oh."), "role_confusion"),
        (dialogue("I lost my job.", "What happened?", "What brings you here?", "Oh."), "role_confusion"),
        (dialogue("I lost my job at 3:30 today.", "Oh no, what happened?", "Cuts.", "Ouch."), None),
        (dialogue("I lost my job.", "As an AI, I can't feel.", "Ok.", "Right."), "role_confusion"),
        (dialogue("I lost my job.", "What happened?", "How does that make you feel?", "Me?"), "role_confusion"),
        (dialogue("I lost my job.", "What happened?", "I’m here for you, friend.", "Thanks."), "role_confusion"),
        (dialogue("I lost my job.", "one two three four five six seven eight nine", "Ok.", "So."), "overlong_turn"),
        (dialogue("I lost my job.", "What happened?", "What happened?!", "Hm."), "duplicate_turn"),
        (dialogue("I lost my job.", "What happened?", "They cut my team."), "too_short"),
        # Not role confusion: ordinary openings with a colon, and role words used as ordinary words.
        (dialogue("Good news: I passed!", "Wow, how?", "Quick thought: luck.", "Ha, sure."), None),
        (dialogue("So many job seekers.", "That's tough.", "Update: no reply.", "Hm."), None),
        (dialogue("I lost my job.", "As your supporter, hm.", "Ok.", "Right."), "role_confusion"),
        (dialogue("I lost my job.", "Dear seeker, hm.", "Ok.", "Right."), "role_confusion"),
        (dialogue("I lost my job.", "Help seeker [Question]: why?", "Ok.", "Right."), "role_confusion"),
    ],
)
def test_dialogue_filters(turns: list[DraftTurn], reason: str | None) -> None:
    assert dialogue_problem(turns, LIMITS) == reason


def test_turn_checks_see_earlier_turns_for_repeats() -> None:
    assert turn_problem("supporter", "What happened?!", LIMITS, ["I lost my job.", "what happened"]) == "duplicate_turn"
    assert turn_problem("supporter", "What happened next?", LIMITS, ["I lost my job.", "what happened"]) is None
    assert turn_problem("seeker", "Good news: I passed!", LIMITS) is None
