"""Small real classes standing in for the engine and tokenizer in API-layer unit tests (never for "works" claims)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator
from typing import Any

from app.engine.base import ChoiceDelta, EngineError, GenerationParams, InvalidParamsError


class FakeTokenizer:
    """One token per whitespace-separated word of every message, plus two per message for the template."""

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [3] * len(text.split())

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> dict[str, list[int]]:
        ids: list[int] = []
        for message in conversation:
            ids += [1, 2] + [3] * len(message["content"].split())
        return {"input_ids": ids}


class FakeEngine:
    """Streams the given pieces for each choice; optionally fails after ``fail_after`` steps."""

    def __init__(
        self,
        pieces: list[str],
        *,
        max_model_len: int = 256,
        fail_after: int | None = None,
        hold: bool = False,
        replies: list[str] | None = None,
    ) -> None:
        """``hold``: every generation waits after its first piece until :meth:`release` (thread-safe).
        ``replies``: each generation streams the next of these whole (instead of ``pieces``)."""
        self.pieces = pieces
        self.replies = list(replies or [])
        self.prompts: list[list[int]] = []
        """The prompt token ids of every generation, in order."""
        self._gate = threading.Event()
        if not hold:
            self._gate.set()
        self._max_model_len = max_model_len
        self.fail_after = fail_after
        self.ready = True
        self.calls: list[GenerationParams] = []
        self.closed_early = 0
        """Generations the server closed before their last piece (an abort, in the real engine)."""

    @property
    def max_model_len(self) -> int:
        return self._max_model_len

    @property
    def is_ready(self) -> bool:
        return self.ready

    @property
    def is_alive(self) -> bool:
        return True

    def num_unfinished_requests(self) -> int:
        return 0

    def check(self, params: GenerationParams) -> None:
        if params.n > 1 and params.temperature == 0:
            raise InvalidParamsError("n must be 1 when using greedy sampling")

    async def generate(
        self, prompt_token_ids: list[int], params: GenerationParams, request_id: str
    ) -> AsyncGenerator[list[ChoiceDelta], None]:
        self.calls.append(params)
        self.prompts.append(list(prompt_token_ids))
        pieces = [self.replies.pop(0)] if self.replies else self.pieces
        finished = False
        try:
            for step, piece in enumerate(pieces):
                if self.fail_after is not None and step >= self.fail_after:
                    raise EngineError("boom")
                finished = step == len(pieces) - 1
                yield [ChoiceDelta(i, piece, 1, "stop" if finished else None) for i in range(params.n)]
                while not self._gate.is_set():
                    await asyncio.sleep(0.01)
        finally:
            if not finished:
                self.closed_early += 1

    def release(self) -> None:
        self._gate.set()

    async def close(self) -> None:
        return None
