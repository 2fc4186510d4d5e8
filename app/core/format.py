"""The SweetieChat conversation format: one definition for training, serving, evaluation and role-play.

A supporter reply carries one support strategy as a leading tag: ``[Strategy] reply``. The format, everywhere:

- the reply being generated (served) or learned (trained) is ``[Strategy] reply``; a fine-tuned (``model``-mode)
  model writes the tag, and the server strips it from the visible text (:class:`TagStripper`, also across stream
  chunks) and returns the strategy as an extension field;
- earlier assistant messages are rendered WITHOUT tags, as their visible text. A stateless client can only send
  back what it saw, so this is the only format that holds for stateless requests, sessions and training alike
  (:func:`chat_messages`);
- the model's system prompt comes first, unless the conversation brings its own system message; a per-turn
  instruction (a requested strategy) is appended to that system message.
"""

from __future__ import annotations

from collections.abc import Sequence

from app.core.messages import Message
from app.core.strategies import StrategyCatalogue

MAX_TAG_CHARS = 48
"""A leading ``[...]`` longer than this is not a strategy tag; the text is released as it is."""


def tag_prefix(strategy: str) -> str:
    """The tag as a forced start of the reply (a requested or greedily chosen strategy): ``"[Question]"``, without
    the space. Tokenizers merge that space into the reply's first word (``" How"``), so this is the exact token
    prefix of what the model learned to write; prefilling the space would put a token there it never saw."""
    return f"[{strategy}]"


def tag(strategy: str) -> str:
    """The reply's leading tag, with the space that follows it: ``"[Question] "``."""
    return tag_prefix(strategy) + " "


def tagged_reply(strategy: str, reply: str) -> str:
    """What the model learns to write: ``[Strategy] reply``."""
    return tag(strategy) + reply


def parse_reply(text: str, catalogue: StrategyCatalogue) -> tuple[str | None, str]:
    """Split a whole ``"[Strategy] reply"`` into (catalogue name or None, visible reply).

    A leading tag that names no catalogue strategy is left in the text, as :class:`TagStripper` does in streams.
    """
    stripper = TagStripper(catalogue)
    visible = stripper.feed(text) + stripper.finish()
    return stripper.strategy, visible.strip()


def chat_messages(
    conversation: Sequence[Message], *, system_prompt: str | None, instruction: str | None = None
) -> list[dict[str, str]]:
    """Render a conversation as chat-template messages: visible text only, system prompt first.

    ``system_prompt`` is used when the conversation has no system message of its own; ``instruction`` (e.g. the
    strategy the reply must use) is appended to the system message.
    """
    rendered = [{"role": m.role, "content": m.content} for m in conversation]
    if system_prompt and not any(m["role"] == "system" for m in rendered):
        rendered.insert(0, {"role": "system", "content": system_prompt})
    if instruction:
        if rendered and rendered[0]["role"] == "system":
            rendered[0] = {"role": "system", "content": f"{rendered[0]['content']}\n{instruction}"}
        else:
            rendered.insert(0, {"role": "system", "content": instruction})
    return rendered


class TagStripper:
    """Incrementally removes a leading ``[Strategy]`` tag from streamed text.

    ``feed`` returns the text that may be shown now; text is held back only while it could still be the tag
    (at most :data:`MAX_TAG_CHARS` characters). ``strategy`` is set once a valid tag was read.
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
