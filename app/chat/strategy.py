"""Support strategies at inference time: tag parsing, steering, and the Strategy Counselor prompt.

Modes (per model manifest, ``strategy_mode``):

- ``model``: a fine-tuned model writes ``[Strategy] reply``. :class:`TagStripper` removes the leading tag from the
  visible text, in streams too, holding back at most the tag itself (bounded by ``MAX_TAG_CHARS``), and reports
  the strategy. A requested strategy is forced by prefilling ``[Strategy] `` after the generation prompt.
- ``counselor``: for base models. A short generation constrained to the catalogue names (vLLM structured outputs,
  guided choice) picks the strategy from the conversation, then the reply is generated with that strategy in its
  instructions (the paper's Strategy Counselor, at inference time).
- ``off``: no strategy handling, unless the client asks for one: then it goes into the instructions.
"""

from __future__ import annotations

from dataclasses import dataclass

from training.strategies import StrategyCatalogue

MAX_TAG_CHARS = 48
"""A leading ``[...]`` longer than this is not a strategy tag; the text is released as it is."""


class TagStripper:
    """Incrementally removes a leading ``[Strategy]`` tag from streamed text.

    ``feed`` returns the text that may be shown now; text is held back only while it could still be the tag.
    """

    def __init__(self, catalogue: StrategyCatalogue) -> None:
        self.catalogue = catalogue
        self.strategy: str | None = None
        self._buffer = ""
        self._decided = False
        self._strip_space = False

    def feed(self, text: str) -> str:
        if self._decided:
            return self._after_tag(text)
        self._buffer += text
        head = self._buffer.lstrip()
        if not head:
            return ""
        if not head.startswith("["):
            return self._release()
        end = head.find("]")
        if end < 0:
            return "" if len(head) <= MAX_TAG_CHARS else self._release()
        name = self.catalogue.canonical(head[1:end])
        if name is None:
            return self._release()
        self.strategy, self._decided, self._strip_space = name, True, True
        rest, self._buffer = head[end + 1 :], ""
        return self._after_tag(rest)

    def finish(self) -> str:
        """Flush whatever is still held back (an unterminated ``[`` at the end of the reply)."""
        return "" if self._decided else self._release()

    def _release(self) -> str:
        self._decided = True
        out, self._buffer = self._buffer, ""
        return out

    def _after_tag(self, text: str) -> str:
        if self._strip_space:
            text = text.lstrip()
            if text:
                self._strip_space = False
        return text


@dataclass(frozen=True)
class CounselorPrompt:
    """Messages for the Strategy Counselor's constrained pick."""

    system: str
    user: str


def counselor_prompt(
    catalogue: StrategyCatalogue, transcript: list[tuple[str, str]], turns: int = 6
) -> CounselorPrompt:
    """Ask for the next supporter strategy, given the last ``turns`` messages of the conversation."""
    lines = [f"{'Seeker' if role == 'user' else 'Supporter'}: {content}" for role, content in transcript[-turns:]]
    system = (
        "You are a Strategy Counselor for an emotional-support conversation. Read the conversation and choose the "
        "one support strategy the Supporter should use next.\nStrategies:\n" + catalogue.describe(with_examples=False)
    )
    user = "Conversation:\n" + "\n".join(lines) + "\n\nThe best strategy for the Supporter's next reply is:"
    return CounselorPrompt(system=system, user=user)


def strategy_instruction(catalogue: StrategyCatalogue, name: str) -> str:
    """The line added to the supporter's system prompt to steer the reply."""
    strategy = catalogue.get(name)
    definition = f" ({strategy.definition})" if strategy else ""
    return f"In your next reply, use the support strategy '{name}'{definition}. Keep it short and specific."
