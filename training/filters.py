"""Quality filters for generated turns: the reasons a role-play turn is asked again or a dialogue is cut.

Role-play checks each turn as it is produced (:func:`turn_problem`), asks again on failure, and cuts the dialogue
at its last good turn when the re-asks fail too; :func:`dialogue_problem` applies the same checks to a finished
dialogue. The reasons (the names reports count):

- ``empty_turn``: a turn with no text.
- ``role_confusion``: a turn that starts with a speaker label naming a role ("Supporter: ...", "**Listener:**")
  or names the prompts' roles ("Hello Seeker!", "as the supporter", "help seeker"), a seeker who talks like a
  counselor ("how does that make you feel?"), or anyone who says they are an AI. Ordinary text is not caught: an
  opening "Good news: ..." or "Quick thought: ..." is not a label, "so many job seekers" not a role name.
- ``overlong_turn``: a seeker or supporter turn over its word limit (SweetieChat replies are short).
- ``duplicate_turn``: a turn repeating an earlier turn of the same dialogue (ignoring case and punctuation).
- ``too_short``: fewer turns than the minimum (dialogues only).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from training.schema import word_count

REASONS = ("empty_turn", "role_confusion", "overlong_turn", "duplicate_turn", "too_short")

# A turn that opens with a role label ("Supporter:", "**Listener:**", "Help seeker [Question]:") is transcript, not a
# message. Only role words count: "Good news: I passed!" and "Quick thought: ..." open with ordinary phrases.
ROLE_LABEL = re.compile(
    r"^\W*(?:help[- ]?seeker|seeker|supporter|listener|helper|counsel+or|therapist|assistant|user|human|ai|bot|"
    r"client|me|you)\W*(?:\[[^\]]*\])?\s*:",
    re.IGNORECASE,
)
# The prompts' role names never belong in a message: capitalised as a name ("Hello Seeker!"), or in phrases that can
# only mean the role ("as the supporter", "help seeker"). Plain words stay allowed ("so many job seekers").
ROLE_NAMES = re.compile(r"\b(?:Help[- ]?Seeker|Seeker|Supporter|Strategy Counsel+or)\b")
ROLE_PHRASES = re.compile(
    r"\bhelp[- ]seekers?\b|\bstrategy counsel+ors?\b"
    r"|\b(?:as|the|dear|hello|hi|hey) (?:the |your )?(?:seeker|supporter)\b",
    re.IGNORECASE,
)

# Things a help seeker does not say; a seeker turn containing one has slipped into the supporter's role.
COUNSELOR_PHRASES = (
    "how can i help",
    "how may i help",
    "how can i support you",
    "how can i assist",
    "what brings you here",
    "why you need help",
    "i'm here to help",
    "i am here to help",
    "i'm here for you",
    "i am here for you",
    "i'm here to listen",
    "i am here to listen",
    "how does that make you feel",
    "it sounds like you",
    "as your supporter",
    "as a counselor",
    "as a counsellor",
    "as a therapist",
)
AI_PHRASES = ("as an ai", "as a language model", "i am an ai", "i'm an ai")


class TurnLike(Protocol):
    """Anything with a role and a content, e.g. ``schema.Turn`` or a draft turn during generation."""

    @property
    def role(self) -> str: ...

    @property
    def content(self) -> str: ...


@dataclass(frozen=True)
class FilterLimits:
    """Thresholds for the quality filters."""

    min_turns: int = 6
    max_seeker_words: int = 80
    max_supporter_words: int = 60


def _key(text: str) -> str:
    return re.sub(r"[\W_]+", " ", text.lower()).strip()


def _normalize_quotes(text: str) -> str:
    return text.lower().replace("’", "'").replace("‘", "'")


def turn_problem(role: str, content: str, limits: FilterLimits, earlier: Sequence[str] = ()) -> str | None:
    """The reason a single turn is unacceptable (``earlier``: the dialogue's previous turns' text), or None."""
    if not content.strip():
        return "empty_turn"
    lowered = _normalize_quotes(content)
    if ROLE_LABEL.match(content) or ROLE_NAMES.search(content) or ROLE_PHRASES.search(content):
        return "role_confusion"
    if any(phrase in lowered for phrase in AI_PHRASES):
        return "role_confusion"
    if role == "seeker" and any(phrase in lowered for phrase in COUNSELOR_PHRASES):
        return "role_confusion"
    limit = limits.max_seeker_words if role == "seeker" else limits.max_supporter_words
    if word_count(content) > limit:
        return "overlong_turn"
    key = _key(content)
    if any(_key(text) == key for text in earlier):
        return "duplicate_turn"
    return None


def dialogue_problem(turns: Sequence[TurnLike], limits: FilterLimits) -> str | None:
    """The reason a finished dialogue should be dropped (one of ``REASONS``), or None when it passes."""
    for index, turn in enumerate(turns):
        problem = turn_problem(turn.role, turn.content, limits, [t.content for t in turns[:index]])
        if problem is not None:
            return problem
    if len(turns) < limits.min_turns:
        return "too_short"
    return None
