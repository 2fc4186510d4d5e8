"""One chat completion: request -> prompt -> engine stream -> OpenAI response or SSE chunks.

The service owns validation that needs the model (name, context length), timing and token accounting. Routers only
call :meth:`ChatService.prepare` and then :meth:`ChatService.complete` or :meth:`ChatService.stream`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from app.api.errors import (
    EngineFailureError,
    InvalidRequestError,
    ModelNotFoundError,
    ServiceUnavailableError,
)
from app.api.protocol import (
    ChatCompletionChoice,
    ChatCompletionMessage,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ErrorInfo,
    ErrorResponse,
    UsageInfo,
    completion_id,
)
from app.chat.prompt import PromptBuilder, Turn
from app.engine.base import ChoiceDelta, Engine, EngineError, GenerationParams
from app.manifest import Manifest
from app.observability import (
    ABORTED,
    COMPLETION_TOKENS,
    ENGINE_ERRORS,
    INFLIGHT,
    ITL,
    PROMPT_TOKENS,
    TTFT,
    annotate,
)

DONE = "[DONE]"


@dataclass(frozen=True)
class Limits:
    max_messages: int = 512
    max_n: int = 8


@dataclass
class PreparedChat:
    """A validated request, ready for the engine."""

    request: ChatCompletionRequest
    request_id: str
    prompt_ids: list[int]
    params: GenerationParams


@dataclass
class _Progress:
    """Per-request accounting shared by the streaming and non-streaming paths."""

    started: float = field(default_factory=time.perf_counter)
    first_token_at: float | None = None
    last_token_at: float | None = None
    completion_tokens: int = 0


class ChatService:
    """Serves chat completions for one model."""

    def __init__(self, engine: Engine, prompts: PromptBuilder, manifest: Manifest, limits: Limits) -> None:
        self.engine = engine
        self.prompts = prompts
        self.manifest = manifest
        self.limits = limits

    @property
    def model_name(self) -> str:
        return self.manifest.name

    def prepare(self, request: ChatCompletionRequest, request_id: str) -> PreparedChat:
        """Validate what needs the model and build the prompt; raises an ``APIError`` on bad input."""
        if request.model != self.model_name:
            raise ModelNotFoundError(request.model)
        if not self.engine.is_ready:
            raise ServiceUnavailableError("The model is not ready to serve requests; retry shortly.", retry_after=5)
        if len(request.messages) > self.limits.max_messages:
            raise InvalidRequestError(
                f"Too many messages: {len(request.messages)} (the limit is {self.limits.max_messages}).",
                param="messages",
                code="array_above_max_length",
            )
        if request.n > self.limits.max_n:
            raise InvalidRequestError(
                f"Invalid value for 'n': {request.n}; at most {self.limits.max_n} choices per request.",
                param="n",
                code="integer_above_max_value",
            )
        if request.messages[-1].role == "assistant":
            raise InvalidRequestError(
                "The last message must be from the user (or system), not the assistant.",
                param="messages",
                code="invalid_value",
            )
        prompt_ids = self.prompts.token_ids([Turn(m.role, m.text) for m in request.messages])
        max_len = self.engine.max_model_len
        prompt_len = len(prompt_ids)
        requested = request.requested_max_tokens
        if prompt_len >= max_len or (requested is not None and prompt_len + requested > max_len):
            asked = f"{prompt_len + (requested or 0)} tokens ({prompt_len} in the messages"
            asked += f", {requested} in the completion)" if requested else ")"
            raise InvalidRequestError(
                f"This model's maximum context length is {max_len} tokens. However, you requested {asked}. "
                "Please reduce the length of the messages or completion.",
                param="messages",
                code="context_length_exceeded",
            )
        max_tokens = requested or min(self.manifest.sampling.max_tokens, max_len - prompt_len)
        annotate(model=request.model, stream=request.stream, n=request.n, prompt_tokens=prompt_len)
        params = request.to_generation_params(self.manifest.sampling, max_tokens)
        return PreparedChat(request=request, request_id=request_id, prompt_ids=prompt_ids, params=params)

    async def _deltas(self, chat: PreparedChat, progress: _Progress) -> AsyncIterator[list[ChoiceDelta]]:
        """The engine stream with timing, token accounting, in-flight gauge and abort bookkeeping."""
        INFLIGHT.inc()
        PROMPT_TOKENS.observe(len(chat.prompt_ids))
        try:
            async for deltas in self.engine.generate(chat.prompt_ids, chat.params, chat.request_id):
                now = time.perf_counter()
                tokens = sum(d.num_tokens for d in deltas)
                if tokens:
                    if progress.first_token_at is None:
                        progress.first_token_at = now
                        TTFT.observe(now - progress.started)
                    elif progress.last_token_at is not None:
                        ITL.observe(now - progress.last_token_at)
                    progress.last_token_at = now
                    progress.completion_tokens += tokens
                yield deltas
        except asyncio.CancelledError:
            ABORTED.inc()
            annotate(outcome="aborted")
            raise
        except EngineError:
            ENGINE_ERRORS.inc()
            annotate(outcome="engine_error")
            raise
        finally:
            INFLIGHT.dec()
            COMPLETION_TOKENS.observe(progress.completion_tokens)
            ttft = None if progress.first_token_at is None else progress.first_token_at - progress.started
            annotate(
                completion_tokens=progress.completion_tokens,
                ttft_ms=None if ttft is None else round(ttft * 1000, 1),
            )

    def _usage(self, chat: PreparedChat, progress: _Progress) -> UsageInfo:
        prompt = len(chat.prompt_ids)
        return UsageInfo(
            prompt_tokens=prompt,
            completion_tokens=progress.completion_tokens,
            total_tokens=prompt + progress.completion_tokens,
        )

    async def complete(self, chat: PreparedChat) -> ChatCompletionResponse:
        """Run to completion and return one response."""
        n = chat.params.n
        texts = [""] * n
        finish: list[str | None] = [None] * n
        progress = _Progress()
        try:
            async for deltas in self._deltas(chat, progress):
                for d in deltas:
                    texts[d.index] += d.text
                    finish[d.index] = d.finish_reason or finish[d.index]
        except EngineError as exc:
            raise EngineFailureError("The model failed while generating a reply; please retry.") from exc
        annotate(finish_reason=finish[0])
        return ChatCompletionResponse(
            id=completion_id(),
            model=self.model_name,
            choices=[
                ChatCompletionChoice(
                    index=i,
                    message=ChatCompletionMessage(content=texts[i]),
                    finish_reason=finish[i] or "stop",
                )
                for i in range(n)
            ],
            usage=self._usage(chat, progress),
        )

    async def stream(self, chat: PreparedChat) -> AsyncIterator[str]:
        """Yield SSE ``data`` payloads: chunks, an in-band error if the engine fails, then ``[DONE]``."""
        cid, created = completion_id(), int(time.time())
        include_usage = chat.request.include_usage

        def chunk(choices: list[dict[str, object]], usage: UsageInfo | None = None) -> str:
            body: dict[str, object] = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": self.model_name,
                "choices": choices,
            }
            if include_usage:
                body["usage"] = usage.model_dump() if usage else None
            return json.dumps(body, ensure_ascii=False, separators=(",", ":"))

        def choice(index: int, delta: dict[str, str], finish_reason: str | None = None) -> dict[str, object]:
            return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}

        progress = _Progress()
        yield chunk([choice(i, {"role": "assistant", "content": ""}) for i in range(chat.params.n)])
        try:
            async for deltas in self._deltas(chat, progress):
                for d in deltas:
                    if d.text:
                        yield chunk([choice(d.index, {"content": d.text})])
                    if d.finish_reason:
                        yield chunk([choice(d.index, {}, d.finish_reason)])
            if include_usage:
                yield chunk([], self._usage(chat, progress))
        except EngineError:
            error = ErrorInfo(
                message="The model failed while generating a reply; please retry.",
                type="server_error",
                code="engine_error",
            )
            yield ErrorResponse(error=error).model_dump_json()
        yield DONE
