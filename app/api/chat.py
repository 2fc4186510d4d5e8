"""``POST /v1/chat/completions``: thin router over :class:`app.chat.service.ChatService`."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse
from starlette.background import BackgroundTask

from app.api.deps import CallerDep, ChatServiceDep
from app.api.protocol import ChatCompletionRequest, ChatCompletionResponse, ErrorResponse

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
    body: ChatCompletionRequest, service: ChatServiceDep, caller: CallerDep
) -> JSONResponse | EventSourceResponse:
    chat = await service.prepare(body, caller)
    if body.stream:
        # The background task frees the slot and session lock even if the stream never started (client gone).
        return EventSourceResponse(service.stream(chat), ping=15, sep="\n", background=BackgroundTask(chat.close))
    response = await service.complete(chat)
    return JSONResponse(response.model_dump(exclude_none=True))
