"""Prompts for the three role-play roles, and careful reading of what the models answer.

Every role gets plain chat messages, so any OpenAI-compatible endpoint works. The Strategy Counselor answers through
structured output: ``counselor_format`` is an OpenAI ``response_format`` whose JSON schema allows exactly the
catalogue's names (an enum) plus a short rationale, enforced by the server (vLLM structured outputs, this server or
``vllm serve``). ``parse_choice`` reads that JSON and accepts nothing else: no free-text search for a name, no default.
``PROMPTS_VERSION`` is stored in each generated dialogue: bump it whenever a prompt changes.

The seeker and supporter readers are forgiving because small models are sloppy: role labels are stripped and a reply
that runs on into the other speaker's lines is cut.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from app.core.strategies import StrategyCatalogue
from training.schema import Scenario

PROMPTS_VERSION = "roleplay-v2"
RATIONALE_CHARS = 160
END_MARKER = "[END]"

Message = dict[str, str]


@dataclass(frozen=True)
class DraftTurn:
    """A turn under construction (same shape as ``schema.Turn``, without validation)."""

    role: str
    content: str
    strategy: str | None = None
    rationale: str | None = None


def _transcript(turns: Sequence[DraftTurn], with_strategies: bool = False) -> str:
    if not turns:
        return "(nothing yet)"
    lines = []
    for turn in turns:
        label = "Seeker" if turn.role == "seeker" else "Supporter"
        if with_strategies and turn.strategy:
            label += f" [{turn.strategy}]"
        lines.append(f"{label}: {turn.content}")
    return "\n".join(lines)


OPENING_CUE = "Hello, what's on your mind today?"


def _as_chat(turns: Sequence[DraftTurn], speaker: str) -> list[Message]:
    """The history as alternating chat messages, ``speaker``'s own turns as the assistant's."""
    return [{"role": "assistant" if turn.role == speaker else "user", "content": turn.content} for turn in turns]


def seeker_messages(scenario: Scenario, turns: Sequence[DraftTurn], min_turns: int) -> list[Message]:
    """Messages for the Seeker: plays the profile, reveals the problem gradually, ends with [END].

    The history is the chat seen from the seeker's side: its own turns are the assistant's, the supporter's are
    the user's; a neutral greeting cues the first message. No role names appear, so a small model has none to echo.
    """
    profile = scenario.seeker
    if profile is None:
        about = "You are an ordinary person."
    else:
        who = ", ".join(
            part for part in (profile.gender, f"from {profile.culture}" if profile.culture else None) if part
        )
        about = (
            f"You are aged {profile.age_group}{', ' + who if who else ''}. Occupation: {profile.occupation}. "
            f"Personality: {profile.personality}. What you want from this chat: {profile.wants}."
        )
        if profile.communication_style:
            about += f" How you write: {profile.communication_style}."
    intensity = f" (intensity {scenario.intensity} of 5)" if scenario.intensity else ""
    ending = (
        "Do not end the chat yet."
        if len(turns) + 1 < min_turns
        else f"When you feel better or want to stop, say goodbye and add {END_MARKER}."
    )
    system = (
        "Role-play: you are a real person chatting online with a kind listener about something on your mind. "
        "Stay in character as that person. You are not the listener, not a counselor and not an assistant: "
        "do not give advice and do not offer help.\n"
        f"{about}\n"
        f"Your situation: {scenario.situation}\n"
        f"How you feel: {scenario.emotion}{intensity}.\n"
        "Write only your next message, in your own style: 1 to 3 short sentences in the first person. "
        f"Reveal your problem gradually and answer what the listener asks. {ending}"
    )
    history = _as_chat(turns, "seeker")
    if not turns or turns[0].role == "seeker":
        history.insert(0, {"role": "user", "content": OPENING_CUE})
    return [{"role": "system", "content": system}, *history]


def counselor_schema(catalogue: StrategyCatalogue) -> dict[str, Any]:
    """JSON schema of the counselor's answer: a short rationale, then exactly one catalogue name."""
    return {
        "type": "object",
        "properties": {
            "rationale": {"type": "string", "minLength": 1, "maxLength": RATIONALE_CHARS},
            "strategy": {"type": "string", "enum": catalogue.names},
        },
        "required": ["rationale", "strategy"],
        "additionalProperties": False,
    }


def counselor_format(catalogue: StrategyCatalogue) -> dict[str, Any]:
    """The ``response_format`` of a counselor request (strict JSON-schema structured output)."""
    schema = counselor_schema(catalogue)
    return {"type": "json_schema", "json_schema": {"name": "strategy_choice", "schema": schema, "strict": True}}


def counselor_messages(scenario: Scenario, turns: Sequence[DraftTurn], catalogue: StrategyCatalogue) -> list[Message]:
    """Messages for the Strategy Counselor: pick the supporter's next strategy with a one-line rationale."""
    system = (
        "You are a strategy counselor guiding an emotional-support conversation. Read it and choose the ONE "
        "support strategy the supporter should use next. Vary strategies; explore before suggesting.\n"
        f"Strategies:\n{catalogue.describe(with_examples=False)}\n\n"
        'Answer in JSON: {"rationale": "<one short sentence>", "strategy": "<one strategy name from the list>"}'
    )
    user = (
        f"Topic: {scenario.problem_type}.\n"
        f"Conversation so far:\n{_transcript(turns, with_strategies=True)}\n\n"
        "Which strategy should the supporter use next?"
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def parse_choice(content: str, catalogue: StrategyCatalogue) -> tuple[str, str] | None:
    """(strategy, rationale) from the counselor's JSON answer, or None unless it names a catalogue strategy exactly.

    Whatever the server enforced, the answer is checked again here: the strategy must be one of the catalogue's
    names, spelled exactly, and the rationale a non-empty string (whitespace collapsed, cut at 300 characters).
    """
    try:
        data = json.loads(content)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    strategy, rationale = data.get("strategy"), data.get("rationale")
    if not isinstance(strategy, str) or strategy not in catalogue or not isinstance(rationale, str):
        return None
    rationale = " ".join(rationale.split())[:300]
    return (strategy, rationale) if rationale else None


def supporter_messages(turns: Sequence[DraftTurn], strategy: str, catalogue: StrategyCatalogue) -> list[Message]:
    """Messages for the Supporter: the chat so far (seeker = user) and a short reply using the chosen strategy."""
    found = catalogue.get(strategy)
    definition = f": {found.definition}" if found else "."
    system = (
        "You are a warm, down-to-earth emotional supporter chatting with someone online, like a caring friend "
        "with good listening skills. Reply in 1 to 3 short sentences, under 40 words, about the details they "
        "actually gave. No lists, no headings, no names or labels, at most one question. Avoid stock phrases such "
        'as "I\'m sorry to hear that" or "It\'s completely understandable".\n'
        f'For this reply, use the strategy "{strategy}"{definition}'
    )
    return [{"role": "system", "content": system}, *_as_chat(turns, "supporter")]


_OTHER_LABEL = re.compile(
    r"(?:^|\s)\**(?:seeker|supporter|counsel+or|assistant|user|help seeker)\**\s*(?:\[[^\]]*\])?\s*:",
    re.IGNORECASE,
)
_OWN_LABEL = {
    "seeker": re.compile(r"^\W*(?:seeker|help seeker|me|you)\W*\s*:\s*", re.IGNORECASE),
    "supporter": re.compile(r"^\W*(?:supporter|you|me)\W*\s*(?:\[[^\]]*\])?\s*:\s*", re.IGNORECASE),
}
_END = re.compile(r"[\[<]\s*end(?:\s+of\s+(?:the\s+)?(?:conversation|chat))?\s*[\]>]", re.IGNORECASE)
_QUOTES = "\"'“”"


def clean_reply(text: str, role: str, truncated: bool = False) -> str:
    """A model's message as plain turn text: own label stripped, cut where it starts writing another speaker.

    A reply that *starts* with the other speaker's label is left alone so the role-confusion filter sees it.
    With ``truncated`` (the model hit max_tokens) a trailing unfinished sentence is dropped when possible.
    """
    text = " ".join(text.split())
    text = _OWN_LABEL[role].sub("", text, count=1).strip()
    if len(text) > 1 and text[0] in _QUOTES and text[-1] in _QUOTES:
        text = text[1:-1].strip()
    for match in _OTHER_LABEL.finditer(text):
        if match.start() > 0:
            text = text[: match.start()].strip()
            break
    if truncated:
        last = max(text.rfind(mark) for mark in ".!?")
        if last >= 20:
            text = text[: last + 1]
    return text.strip()


def split_end_marker(text: str) -> tuple[str, bool]:
    """(text without the end marker and anything after it, whether the marker was there)."""
    match = _END.search(text)
    if match is None:
        return text, False
    return text[: match.start()].strip(), True


def strip_strategy_tag(text: str, catalogue: StrategyCatalogue) -> str:
    """Remove a leading "[Strategy]" tag that a supporter model may echo."""
    match = re.match(r"^\s*\[([^\]]{1,40})\]\s*", text)
    if match and catalogue.canonical(match.group(1)) is not None:
        return text[match.end() :].strip()
    return text
