"""Shaping a streamed reply: where SentenceBudget cuts it, however the text is split into chunks, and the space a
prefilled tag leaves."""

from __future__ import annotations

import random

import pytest

from app.chat.reply import ReplyShaper
from app.chat.reply_budget import SentenceBudget


def shown(text: str, max_sentences: int, chunks: list[str] | None = None) -> tuple[str, bool]:
    budget = SentenceBudget(max_sentences)
    out = "".join(budget.feed(c) for c in (chunks if chunks is not None else [text]))
    return out, budget.reached


@pytest.mark.parametrize(
    ("text", "limit", "expected", "reached"),
    [
        ("I hear you. That sounds hard. What happened next? Tell me.", 2, "I hear you. That sounds hard.", True),
        (
            "I hear you. That sounds hard. What happened next? Tell me.",
            3,
            "I hear you. That sounds hard. What happened next?",
            True,
        ),
        ("Oh no!! That is awful. Really.", 1, "Oh no!!", True),
        ('She said "go away." Then she left. Ok.', 1, 'She said "go away."', True),
        ("That sounds hard (really hard.) I'm here.", 1, "That sounds hard (really hard.)", True),
        (
            "Mr. Lee and Dr. Chan, e.g. your tutors, can help. Ask them.",
            1,
            "Mr. Lee and Dr. Chan, e.g. your tutors, can help.",
            True,
        ),
        (
            "Try this:\n1. Breathe slowly.\n2. Drink water.\n3. Rest.",
            2,
            "Try this:\n1. Breathe slowly.\n2. Drink water.",
            True,
        ),
        ("It went up 3.5 points on example.com today. Good.", 1, "It went up 3.5 points on example.com today.", True),
        ("I know... it is a lot… but you are here. Yes.", 1, "I know... it is a lot… but you are here.", True),
        ("我听到了。这真的很难！你想聊聊吗？好的。", 2, "我听到了。这真的很难！", True),
        ("“我很累。”她说。", 1, "“我很累。”", True),
        ("... Hmm. Okay then. Fine.", 1, "... Hmm.", True),
        ("One sentence only.", 1, "One sentence only.", False),
        ("No ending at all", 1, "No ending at all", False),
    ],
)
def test_cut_after_the_last_allowed_sentence(text: str, limit: int, expected: str, reached: bool) -> None:
    assert shown(text, limit) == (expected, reached)


def test_chunking_never_changes_the_cut() -> None:
    text = 'Mr. Lee said "fine." That is 3.5 times more… really?! 我懂。Okay. Bye now. More text here.'
    whole, _ = shown(text, 4)
    rng = random.Random(7)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(text)), rng.randint(1, 20)))
        chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        assert shown(text, 4, chunks)[0] == whole
    assert shown(text, 4, list(text))[0] == whole
    assert whole == 'Mr. Lee said "fine." That is 3.5 times more… really?! 我懂。Okay.'


def test_text_is_released_at_once_not_held_back() -> None:
    budget = SentenceBudget(1)
    assert budget.feed("Hello there") == "Hello there"
    assert budget.feed(".") == "."  # the terminator is shown; the next character decides whether it ends the sentence
    assert not budget.reached
    assert budget.feed(" And more") == ""
    assert budget.reached
    assert budget.feed(" ignored.") == ""


def test_budget_must_allow_a_sentence() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        SentenceBudget(0)


def test_after_a_prefilled_tag_the_merged_space_is_dropped_and_otherwise_text_is_kept_as_written() -> None:
    # the model continues "[Question]" with " How" (the tokenizer's merged space), in whatever chunks it streams
    prefilled = ReplyShaper(0, catalogue=None, max_sentences=None, prefilled=True)
    shown = [prefilled.feed(piece, None) for piece in (" ", " How", " are you?")]
    assert [d.text if d else None for d in shown] == [None, "How", " are you?"]
    plain = ReplyShaper(0, catalogue=None, max_sentences=None)  # a base model's leading space is its own
    delta = plain.feed(" Hi", "stop")
    assert delta is not None and delta.text == " Hi"
