"""``POST /v1/chat/completions``: a thin router over the chat pipeline, and the chat-completions wire format.

The router starts a turn (``app/chat/turn.py``) and encodes its replies: SSE chunks, or one response. Chunks and
responses are the protocol models (``app/api/protocol.py``) dumped with ``exclude_none`` (stream chunks keep
``finish_reason`` and ``logprobs`` as null, as OpenAI sends them). Once a stream has started, errors go in-band as a
``data: {"error": ...}`` event and the stream still ends with ``data: [DONE]``; the turn is committed before
``[DONE]``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse
from starlette.background import BackgroundTask

from app.api.deps import CallerDep, PipelineDep
from app.api.errors import rate_limit_headers, to_api_error
from app.api.protocol import (
    ChatCompletionChoice,
    ChatCompletionMessage,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatCompletionStreamChoice,
    ChatCompletionStreamResponse,
    DeltaMessage,
    ErrorInfo,
    ErrorResponse,
    UsageInfo,
    completion_id,
)
from app.chat.errors import ChatError
from app.chat.turn import Turn
from app.observability import annotate
from app.sessions.base import SessionError

router = APIRouter()

_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 404, 409, 413, 429, 500, 503)
}


@router.post(
    "/v1/chat/completions",
    response_model=ChatCompletionResponse,
    response_model_exclude_none=True,
    responses={**_ERRORS, 200: {"content": {"text/event-stream": {}}}},
)
async def create_chat_completion(
    body: ChatCompletionRequest, pipeline: PipelineDep, caller: CallerDep
) -> JSONResponse | EventSourceResponse:
    turn = await pipeline.start(body.to_turn_request(), caller)
    headers = rate_limit_headers(turn.rate_limits)  # the tenant's rpm/tpm budgets, as OpenAI sends them
    if body.stream:
        # The background task frees the slot and session lock even if the stream never started (client gone).
        events = stream(turn, body.include_usage)
        return EventSourceResponse(events, ping=15, sep="\n", headers=headers, background=BackgroundTask(turn.close))
    response = await complete(turn)
    return JSONResponse(response.model_dump(exclude_none=True), headers=headers)


DONE = "[DONE]"


def usage_of(turn: Turn) -> UsageInfo:
    return UsageInfo(
        prompt_tokens=turn.prompt_tokens,
        completion_tokens=turn.completion_tokens,
        total_tokens=turn.prompt_tokens + turn.completion_tokens,
    )


async def complete(turn: Turn) -> ChatCompletionResponse:
    """Generate every choice to the end, commit, and build the response (closes the turn)."""
    try:
        await turn.complete()
        choices = [
            ChatCompletionChoice(
                index=c.index,
                message=ChatCompletionMessage(content=c.text, strategy=turn.strategy_of(c.index)),
                finish_reason=c.finish_reason or "stop",
            )
            for c in turn.choices
        ]
        return ChatCompletionResponse.model_validate(
            {"model": turn.model, "choices": choices, "usage": usage_of(turn), **turn.extensions()}
        )
    finally:
        await turn.close()


async def stream(turn: Turn, include_usage: bool) -> AsyncIterator[str]:
    """SSE ``data`` payloads: chunks, in-band errors, then ``[DONE]`` (closes the turn)."""
    cid, created = completion_id(), int(time.time())
    extensions = turn.extensions()

    def chunk(choices: list[ChatCompletionStreamChoice], usage: UsageInfo | None = None) -> str:
        body = ChatCompletionStreamResponse.model_validate(
            {"id": cid, "created": created, "model": turn.model, "choices": choices, "usage": usage, **extensions}
        )
        return body.model_dump_json(exclude_none=True)

    try:
        first = DeltaMessage(role="assistant", content="", strategy=turn.planned_strategy)
        yield chunk([ChatCompletionStreamChoice(index=c.index, delta=first) for c in turn.choices])
        try:
            async for reply in turn.replies():
                delta = DeltaMessage(content=reply.text or None, strategy=reply.strategy)
                yield chunk(
                    [ChatCompletionStreamChoice(index=reply.index, delta=delta, finish_reason=reply.finish_reason)]
                )
            try:
                await turn.commit()
            except SessionError:
                annotate(outcome="commit_failed")
                yield _in_band("The reply was not saved to the session; resend this turn.", "session_commit_failed")
            if include_usage:
                yield chunk([], usage_of(turn))
        except ChatError as exc:
            error = to_api_error(exc)
            yield ErrorResponse(error=error.info()).model_dump_json()
        yield DONE
    finally:
        await turn.close()


def _in_band(message: str, code: str) -> str:
    return ErrorResponse(error=ErrorInfo(message=message, type="server_error", code=code)).model_dump_json()
