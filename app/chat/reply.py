"""Shape the reply: the engine's raw text of one choice -> the text the client sees (and a session stores).

In order: the strategy tag is stripped (``model`` mode; :class:`app.core.format.TagStripper`; after a prefilled tag,
the space before the first word), the sentence budget ends the reply after its N-th sentence
(:mod:`app.chat.reply_budget`), and the safety decision frames it (a leading message before the model's first token,
a trailing one after its last). Streaming and non-streaming replies both go through :class:`ReplyShaper`, so they
cannot disagree about what is shown or stored.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.chat.reply_budget import SentenceBudget
from app.core.format import TagStripper
from app.core.strategies import StrategyCatalogue


@dataclass(frozen=True)
class ReplyDelta:
    """What one engine step changed in one choice, as the client sees it."""

    index: int
    text: str = ""
    strategy: str | None = None
    """Set once per choice, when the model's own tag named the strategy."""
    finish_reason: str | None = None


class ReplyShaper:
    """Visible text of one choice: ``leading`` + tag-stripped, sentence-limited model text + ``trailing``."""

    def __init__(
        self,
        index: int,
        *,
        catalogue: StrategyCatalogue | None,
        max_sentences: int | None,
        leading: str = "",
        trailing: str = "",
        prefilled: bool = False,
    ) -> None:
        """``prefilled``: the prompt ends with a forced tag (:func:`app.core.format.tag_prefix`), so the model's text
        starts with the space the tokenizer merges into the first word; it is dropped."""
        self.index = index
        self.stripper = TagStripper(catalogue) if catalogue is not None else None
        self.budget = SentenceBudget(max_sentences) if max_sentences else None
        self.leading = leading
        self.trailing = trailing
        self.text = ""
        self.finish_reason: str | None = None
        self._announced = self.stripper is None
        self._began = not prefilled
        """Visible model text has started; until then (after a prefilled tag) leading whitespace is dropped."""

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    @property
    def limited(self) -> bool:
        """The sentence budget ended this reply (not the model or ``max_tokens``)."""
        return self.budget is not None and self.budget.reached

    @property
    def strategy(self) -> str | None:
        """The strategy the model's tag named (None without tag parsing or without a valid tag)."""
        return self.stripper.strategy if self.stripper else None

    def start(self) -> ReplyDelta | None:
        """The leading safety message, sent before the model's first token (None when there is none)."""
        return self._emit(self.leading, None, None) if self.leading else None

    def replace(self) -> ReplyDelta:
        """The whole reply when the model's text must not be shown: only ``leading`` (the vetted message)."""
        return self._emit(self.leading, None, "stop")

    def feed(self, text: str, finish_reason: str | None) -> ReplyDelta | None:
        """The visible change for new engine text (None when there is nothing to send yet)."""
        if self.finished:
            return None
        if self.stripper is not None:
            text = self.stripper.feed(text)
            if finish_reason:
                text += self.stripper.finish()
        if not self._began:
            text = text.lstrip()
            self._began = bool(text)
        if self.budget is not None:
            text = self.budget.feed(text)
            if self.budget.reached:
                finish_reason = "stop"  # the reply ended with its last allowed sentence
        strategy = None
        if not self._announced and (text or finish_reason or self.strategy):
            self._announced = True
            strategy = self.strategy
        if finish_reason:
            text += self.trailing
        if not (text or strategy or finish_reason):
            return None
        return self._emit(text, strategy, finish_reason)

    def _emit(self, text: str, strategy: str | None, finish_reason: str | None) -> ReplyDelta:
        self.text += text
        self.finish_reason = finish_reason
        return ReplyDelta(self.index, text, strategy, finish_reason)
