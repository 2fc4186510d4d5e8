"""The visible text of one reply choice: the engine's raw text, with the strategy tag stripped and the length budget
applied. The streaming and the non-streaming paths both read replies through :class:`ReplyText`, so they cannot
disagree about what the client sees (or what a session stores).
"""

from __future__ import annotations

from dataclasses import dataclass

from app.chat.reply_budget import SentenceBudget
from app.chat.strategy import TagStripper
from training.strategies import StrategyCatalogue


@dataclass(frozen=True)
class ReplyDelta:
    """What one engine step changed in one choice, as the client sees it."""

    index: int
    text: str = ""
    strategy: str | None = None
    """Set once per choice, on its first delta, when the model's own tag named the strategy."""
    finish_reason: str | None = None


class ReplyText:
    """Turns one choice's engine text into visible text: tag stripping (``model`` mode), then the sentence budget."""

    def __init__(self, index: int, catalogue: StrategyCatalogue | None, max_sentences: int | None) -> None:
        self.index = index
        self.stripper = TagStripper(catalogue) if catalogue is not None else None
        self.budget = SentenceBudget(max_sentences) if max_sentences else None
        self.finished = False
        self._announced = self.stripper is None

    @property
    def limited(self) -> bool:
        """The sentence limit ended this reply (not the model or ``max_tokens``)."""
        return self.budget is not None and self.budget.reached

    @property
    def strategy(self) -> str | None:
        """The strategy the model's tag named (None without tag parsing or without a valid tag)."""
        return self.stripper.strategy if self.stripper else None

    def feed(self, text: str, finish_reason: str | None) -> ReplyDelta | None:
        """The visible change for new engine text (None when there is nothing to send yet)."""
        if self.finished:
            return None
        if self.stripper is not None:
            text = self.stripper.feed(text)
            if finish_reason:
                text += self.stripper.finish()
        if self.budget is not None:
            text = self.budget.feed(text)
            if self.budget.reached:
                finish_reason = "stop"  # the reply ended with its last allowed sentence
        strategy = None
        if not self._announced and (text or finish_reason or (self.stripper and self.stripper.strategy)):
            self._announced = True
            strategy = self.strategy
        self.finished = finish_reason is not None
        if not (text or strategy or finish_reason):
            return None
        return ReplyDelta(self.index, text, strategy, finish_reason)
