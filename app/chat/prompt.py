"""Prompt building: messages -> chat-template token ids, with the model's SweetieChat system prompt.

Token ids come straight from ``apply_chat_template(..., tokenize=True)``: rendering to text and tokenising again
would add a second BOS on some tokenizers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol


class ChatTokenizer(Protocol):
    """The part of an HF tokenizer the prompt builder uses."""

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class Turn:
    role: str
    content: str


class PromptBuilder:
    """Renders a conversation for one model, adding its system prompt when the client sent none."""

    def __init__(self, tokenizer: ChatTokenizer, system_prompt: str | None) -> None:
        self.tokenizer = tokenizer
        self.system_prompt = system_prompt

    def conversation(self, messages: Sequence[Turn]) -> list[dict[str, str]]:
        """Normalise roles (``developer`` is a system message) and add the default system prompt."""
        conv = [{"role": "system" if m.role == "developer" else m.role, "content": m.content} for m in messages]
        if self.system_prompt and not any(m["role"] == "system" for m in conv):
            conv.insert(0, {"role": "system", "content": self.system_prompt})
        return conv

    def token_ids(self, messages: Sequence[Turn]) -> list[int]:
        encoded = self.tokenizer.apply_chat_template(
            self.conversation(messages), add_generation_prompt=True, tokenize=True
        )
        ids = encoded["input_ids"] if not isinstance(encoded, list) else encoded
        return [int(t) for t in ids]


def load_tokenizer(model_path: str) -> ChatTokenizer:
    from transformers import AutoTokenizer

    tokenizer: ChatTokenizer = AutoTokenizer.from_pretrained(model_path)
    return tokenizer
