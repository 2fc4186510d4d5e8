"""Render the prompt: a conversation -> chat-template token ids for one model, trimmed to fit its context.

The conversation format itself (visible text only, system prompt first, the strategy tag) is
:mod:`app.core.format`; this module adds the tokenizer, the model's system prompt and the token budget.

Budget: a session's history is trimmed by whole oldest exchanges, in blocks (``app/sessions/history.py``), so that
consecutive prompts share a byte-identical prefix and vLLM's prefix cache hits. What is kept must leave room for the
reply: ``max_tokens`` of it, but never more than :data:`REPLY_ROOM_MAX_SHARE` of the context, so that a client asking
for a long reply does not lose its whole history. Per-message template overhead is measured from the tokenizer once;
a stored message carries its token count (``Message.tokens``), so trimming a long history tokenizes only what is new.

Tokenization and template rendering are CPU work: :meth:`PromptRenderer.run` runs them on one worker thread of the
renderer's own (one, because a fast tokenizer must not be used from two threads at once), never on the event loop,
so a long prompt being rendered does not delay the tokens other streams are sending.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from typing import TypeVar

from app.core.format import chat_messages, tag_prefix
from app.core.messages import Message, group_exchanges
from app.core.template import ChatTokenizer, template_ids, text_ids
from app.sessions.history import trim_to_budget

T = TypeVar("T")

REPLY_ROOM_MAX_SHARE = 0.5
"""At most this share of the context is held back for the reply when trimming a session's history."""


@dataclass(frozen=True)
class Prompt:
    """Token ids for the engine, and how the history was trimmed."""

    token_ids: list[int]
    dropped_exchanges: int = 0


class PromptRenderer:
    """Renders conversations for one model (its tokenizer and its SweetieChat system prompt)."""

    def __init__(self, tokenizer: ChatTokenizer, system_prompt: str | None) -> None:
        self.tokenizer = tokenizer
        self.system_prompt = system_prompt
        self.message_overhead = _message_overhead(tokenizer)
        """Most tokens the chat template adds around one message (role header, end-of-turn), measured once."""
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenizer")

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """Run tokenizer work off the event loop, on the renderer's one worker thread."""
        return await asyncio.get_running_loop().run_in_executor(self._worker, partial(fn, *args))

    def count_tokens(self, text: str) -> int:
        return len(text_ids(self.tokenizer, text))

    def counted(self, message: Message) -> Message:
        """``message`` with its token count (counted once; a stored message already has it)."""
        return message if message.tokens is not None else replace(message, tokens=self.count_tokens(message.content))

    def render(
        self, conversation: Sequence[Message], *, instruction: str | None = None, prefill: str | None = None
    ) -> list[int]:
        """Token ids ending with the assistant header, plus ``prefill`` (a forced start of the reply: a tag)."""
        ids = template_ids(
            self.tokenizer, chat_messages(conversation, system_prompt=self.system_prompt, instruction=instruction)
        )
        return ids + self.prefill_ids(prefill) if prefill else ids

    def prefill_ids(self, strategy: str) -> list[int]:
        """Token ids of a forced reply start: the strategy's tag (:func:`app.core.format.tag_prefix`)."""
        return text_ids(self.tokenizer, tag_prefix(strategy))

    def render_trimmed(
        self,
        persona: Sequence[Message],
        history: Sequence[Message],
        *,
        context_len: int,
        reply_tokens: int,
        block: int,
        already_dropped: int,
        instruction: str | None = None,
        prefill: str | None = None,
    ) -> Prompt:
        """A session's prompt: persona + history (ending with the new user message(s)), oldest whole exchanges
        dropped in blocks of ``block`` until it fits ``context_len`` minus the room held for the reply."""
        room = min(reply_tokens, int(context_len * REPLY_ROOM_MAX_SHARE))
        fixed = persona or [Message("system", self.system_prompt or "")]
        reserved = sum(self._cost(m) for m in fixed) + self.count_tokens(instruction or "") + self.message_overhead

        def cost(exchange: list[Message]) -> int:
            return sum(self._cost(m) for m in exchange)

        kept, dropped = trim_to_budget(
            group_exchanges(list(history)),
            cost,
            max(1, context_len - room),
            block,
            reserved_tokens=reserved,
            already_dropped=already_dropped,
        )
        conversation = [*persona, *(m for exchange in kept for m in exchange)]
        return Prompt(self.render(conversation, instruction=instruction, prefill=prefill), dropped)

    def _cost(self, message: Message) -> int:
        tokens = message.tokens if message.tokens is not None else self.count_tokens(message.content)
        return tokens + self.message_overhead


def _message_overhead(tokenizer: ChatTokenizer) -> int:
    """Tokens a chat template spends on one message besides its content (ChatML: ``<|im_start|>user\\n`` ...
    ``<|im_end|>\\n``): how much a rendered conversation grows by one message, minus that message's text, for each
    role; the largest, so that trimming never underestimates a prompt."""
    growth = []
    base = [{"role": "user", "content": "a"}]
    for role in ("assistant", "user"):
        longer = [*base, {"role": "assistant", "content": "b"}] if role == "user" else base
        before = len(template_ids(tokenizer, longer, generation_prompt=False))
        after = len(template_ids(tokenizer, [*longer, {"role": role, "content": "b"}], generation_prompt=False))
        growth.append(after - before - len(text_ids(tokenizer, "b")))
    return max(1, *growth)


def load_tokenizer(model_path: str) -> ChatTokenizer:
    from transformers import AutoTokenizer

    tokenizer: ChatTokenizer = AutoTokenizer.from_pretrained(model_path)
    return tokenizer
