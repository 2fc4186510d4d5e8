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

    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...


@dataclass(frozen=True)
class Turn:
    role: str
    content: str
    strategy: str | None = None
    """Strategy of an assistant message; rendered as a leading ``[Strategy]`` tag for ``model``-mode models."""


class PromptBuilder:
    """Renders a conversation for one model, adding its system prompt when the client sent none."""

    def __init__(self, tokenizer: ChatTokenizer, system_prompt: str | None) -> None:
        self.tokenizer = tokenizer
        self.system_prompt = system_prompt

    def conversation(
        self, messages: Sequence[Turn], *, instruction: str | None = None, tag_strategies: bool = False
    ) -> list[dict[str, str]]:
        """Normalise roles (``developer`` is a system message), add the default system prompt and ``instruction``.

        ``tag_strategies`` renders assistant messages as ``[Strategy] reply``, the format a ``model``-mode
        (fine-tuned) model was trained on.
        """
        conv = []
        for m in messages:
            content = (
                f"[{m.strategy}] {m.content}" if tag_strategies and m.role == "assistant" and m.strategy else m.content
            )
            conv.append({"role": "system" if m.role == "developer" else m.role, "content": content})
        if self.system_prompt and not any(m["role"] == "system" for m in conv):
            conv.insert(0, {"role": "system", "content": self.system_prompt})
        if instruction:
            if conv and conv[0]["role"] == "system":
                conv[0] = {"role": "system", "content": f"{conv[0]['content']}\n{instruction}"}
            else:
                conv.insert(0, {"role": "system", "content": instruction})
        return conv

    def token_ids(
        self,
        messages: Sequence[Turn],
        *,
        instruction: str | None = None,
        tag_strategies: bool = False,
        prefill: str = "",
    ) -> list[int]:
        """Prompt token ids ending with the assistant header, plus ``prefill`` (the reply's forced start)."""
        out = self.raw_ids(self.conversation(messages, instruction=instruction, tag_strategies=tag_strategies))
        if prefill:
            out += self.tokenizer.encode(prefill, add_special_tokens=False)
        return out

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def raw_ids(self, conversation: list[dict[str, str]]) -> list[int]:
        """Token ids of an explicit conversation (no default system prompt), ending with the assistant header."""
        encoded = self.tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=True)
        ids = encoded["input_ids"] if not isinstance(encoded, list) else encoded
        return [int(t) for t in ids]


def load_tokenizer(model_path: str) -> ChatTokenizer:
    from transformers import AutoTokenizer

    tokenizer: ChatTokenizer = AutoTokenizer.from_pretrained(model_path)
    return tokenizer
