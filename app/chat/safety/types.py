"""Types shared by the safety layer: risk levels, categories, the screen result and the screen protocol."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable


class RiskLevel(StrEnum):
    """How much risk a message shows; ordered ``none`` < ``elevated`` < ``high``."""

    NONE = "none"
    ELEVATED = "elevated"
    HIGH = "high"

    @property
    def rank(self) -> int:
        """0, 1 or 2, for comparisons."""
        return _LEVEL_RANK[self]


_LEVEL_RANK = {RiskLevel.NONE: 0, RiskLevel.ELEVATED: 1, RiskLevel.HIGH: 2}


def min_level(a: RiskLevel, b: RiskLevel) -> RiskLevel:
    return a if a.rank <= b.rank else b


class Category(StrEnum):
    """What kind of risk a message shows."""

    SUICIDE = "suicide"
    SELF_HARM = "self_harm"
    HARM_TO_OTHERS = "harm_to_others"
    ABUSE = "abuse"


CATEGORIES: tuple[str, ...] = tuple(c.value for c in Category)
"""All categories, in the order results list them."""


@dataclass(frozen=True)
class SafetyResult:
    """The outcome of screening one message. Holds no message text."""

    level: RiskLevel = RiskLevel.NONE
    categories: tuple[str, ...] = ()
    language: str | None = None
    """Language the screen detected from the script ("en" or "zh"); None when the screen does not say."""

    @property
    def flagged(self) -> bool:
        """True when the level is above ``none``."""
        return self.level is not RiskLevel.NONE

    def to_dict(self) -> dict[str, object]:
        """The API extension object: ``{"level": ..., "categories": [...]}``."""
        return {"level": self.level.value, "categories": list(self.categories)}


@runtime_checkable
class SafetyScreen(Protocol):
    """Anything that can screen a user message. Implementations must not log or keep the text."""

    def screen(self, text: str, context: Sequence[str] = ()) -> SafetyResult:
        """Screen one user message; ``context`` holds the conversation's earlier user messages, oldest first."""
        ...
