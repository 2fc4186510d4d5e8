"""Chat-template helpers shared by the server and training.

Token ids come straight from ``apply_chat_template(..., tokenize=True)``: rendering the template to text and
tokenising it again adds a second BOS on some tokenizers. transformers 5 returns a ``BatchEncoding`` there (not a
list), so take ``["input_ids"]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class ChatTokenizer(Protocol):
    """The part of an HF tokenizer that serving and training use."""

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any: ...

    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...


def template_ids(
    tokenizer: ChatTokenizer, messages: Sequence[dict[str, str]], *, generation_prompt: bool = True
) -> list[int]:
    """Token ids of ``messages`` through the tokenizer's chat template (ending with the assistant header when
    ``generation_prompt``)."""
    encoded = tokenizer.apply_chat_template(list(messages), add_generation_prompt=generation_prompt, tokenize=True)
    ids = encoded if isinstance(encoded, list) else encoded["input_ids"]
    return [int(token) for token in ids]


def text_ids(tokenizer: ChatTokenizer, text: str) -> list[int]:
    """Token ids of plain text, without special tokens (a prefilled reply start, a message's length)."""
    return [int(token) for token in tokenizer.encode(text, add_special_tokens=False)]
