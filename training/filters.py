"""Quality filters for generated dialogues: the reasons a role-play dialogue is dropped.

Turns are checked in order and the first problem found names the reason (the names are what reports count):

- ``empty_turn``: a turn with no text.
- ``role_confusion``: a turn that starts with a speaker label ("Supporter: ...", "Sam: ...") or uses the prompts'
  role names ("Hello Seeker!"), a seeker who talks like a counselor ("how does that make you feel?"), or anyone
  who says they are an AI.
- ``overlong_turn``: a seeker or supporter turn over its word limit (SweetieChat replies are short).
- ``duplicate_turn``: a turn repeating an earlier turn of the same dialogue (ignoring case and punctuation).
- ``too_short``: fewer turns than the minimum.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from training.schema import word_count

REASONS = ("empty_turn", "role_confusion", "overlong_turn", "duplicate_turn", "too_short")

# A turn that opens with a speaker label ("Supporter:", "Sam:", "Help seeker:") is transcript, not a message.
ROLE_LABEL = re.compile(r"^\W*[A-Za-z][\w'-]*(?: [A-Za-z][\w'-]*)?\W*:")
# The role names of the generation prompts never belong in a message; a model that uses them is out of role.
ROLE_WORDS = re.compile(r"\b(?:help[- ]?)?seekers?\b|\bsupporters?\b|\bstrategy counsel+or\b", re.IGNORECASE)

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


def turn_problem(role: str, content: str, limits: FilterLimits) -> str | None:
    """The reason a single turn is unacceptable, or None."""
    if not content.strip():
        return "empty_turn"
    lowered = _normalize_quotes(content)
    if ROLE_LABEL.match(content) or ROLE_WORDS.search(content) or any(phrase in lowered for phrase in AI_PHRASES):
        return "role_confusion"
    if role == "seeker" and any(phrase in lowered for phrase in COUNSELOR_PHRASES):
        return "role_confusion"
    limit = limits.max_seeker_words if role == "seeker" else limits.max_supporter_words
    if word_count(content) > limit:
        return "overlong_turn"
    return None


def dialogue_problem(turns: Sequence[TurnLike], limits: FilterLimits) -> str | None:
    """The reason a dialogue should be dropped (one of ``REASONS``), or None when it passes."""
    seen: set[str] = set()
    for turn in turns:
        problem = turn_problem(turn.role, turn.content, limits)
        if problem is not None:
            return problem
        key = _key(turn.content)
        if key in seen:
            return "duplicate_turn"
        seen.add(key)
    if len(turns) < limits.min_turns:
        return "too_short"
    return None
