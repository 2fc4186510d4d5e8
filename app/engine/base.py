"""The engine contract the chat service depends on, independent of vLLM.

The production implementation is :class:`app.engine.vllm_engine.VllmEngine`; unit tests of the API layer may use a
small fake that follows this protocol.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


class EngineError(Exception):
    """The engine failed while serving a request (not the client's fault)."""


class InvalidParamsError(ValueError):
    """The engine refuses these sampling parameters (the client's fault: a 400 before anything is generated)."""


@dataclass(frozen=True)
class GenerationParams:
    """Engine-neutral sampling parameters for one request."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    n: int = 1
    seed: int | None = None
    stop: tuple[str, ...] = ()
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    ignore_eos: bool = False
    choices: tuple[str, ...] = field(default=())
    """When set, constrain the output to exactly one of these strings (structured outputs)."""
    json_schema: Mapping[str, Any] | None = None
    """When set, constrain the output to JSON matching this schema (structured outputs)."""
    json_object: bool = False
    """Constrain the output to some JSON object."""


@dataclass(frozen=True)
class ChoiceDelta:
    """New text for one choice, produced by one engine step."""

    index: int
    text: str
    num_tokens: int
    finish_reason: str | None = None


class Engine(Protocol):
    """An inference engine that streams completions for tokenised prompts."""

    @property
    def max_model_len(self) -> int: ...

    @property
    def is_ready(self) -> bool:
        """Loaded and accepting requests."""
        ...

    @property
    def is_alive(self) -> bool:
        """The engine process is running (not dead or errored)."""
        ...

    def num_unfinished_requests(self) -> int:
        """Requests the engine is still working on (running or waiting); aborted ones leave at once."""
        ...

    def check(self, params: GenerationParams) -> None:
        """Raise :class:`InvalidParamsError` if the engine would refuse ``params``."""
        ...

    def generate(
        self, prompt_token_ids: list[int], params: GenerationParams, request_id: str
    ) -> AsyncGenerator[list[ChoiceDelta], None]:
        """Stream deltas; closing/cancelling the iterator aborts the request and frees its KV cache."""
        ...

    async def close(self) -> None: ...
