"""The Responses API: ``/v1/responses`` over the same chat pipeline as ``/v1/chat/completions``.

``POST /v1/responses`` starts a turn (``app/chat/turn.py``: safety, strategies, sentence budget, admission, metrics
and logs are the same) whose history is the request's ``input``, a stored response chain (``previous_response_id``)
or a conversation (``conversation``), and encodes it as a response object or as OpenAI's typed stream events (with
``sequence_number``; no ``[DONE]``). A stored response (``store``, the default) is committed with the turn; a
``store: false`` response can be neither retrieved nor continued. Status: ``completed``, or ``incomplete`` (reason
``max_output_tokens``) when ``max_output_tokens`` or the model's sentence budget ended the reply.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse
from starlette.background import BackgroundTask

from app.api.deps import CallerDep, PipelineDep, StoreDep, TenantDep
from app.api.errors import rate_limit_headers, to_api_error
from app.api.pagination import After, Limit, Order, page
from app.api.protocol import ErrorResponse, SafetyInfo
from app.api.responses_protocol import (
    ConversationRef,
    IncompleteDetails,
    ItemList,
    ItemStatus,
    MessageItem,
    OutputText,
    ResponseDeleted,
    ResponseError,
    ResponseObject,
    ResponsesRequest,
    ResponseUsage,
    StreamEvent,
    response_id,
)
from app.chat.errors import ChatError, NotFound
from app.chat.turn import Turn
from app.core.messages import SESSION_ID_RE
from app.observability import annotate
from app.sessions.base import SessionError, StoredResponse

router = APIRouter()
ResponseIdPath = Annotated[str, Path(pattern=SESSION_ID_RE, description="The response id.")]
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 404, 409, 413, 429, 500, 503)
}


@router.post(
    "/v1/responses",
    response_model=ResponseObject,
    response_model_exclude_none=True,
    responses={**_ERRORS, 200: {"content": {"text/event-stream": {}}}},
)
async def create_response(
    body: ResponsesRequest, pipeline: PipelineDep, caller: CallerDep
) -> JSONResponse | EventSourceResponse:
    turn = await pipeline.start(body.to_turn_request(), caller)
    encoder = ResponseEncoder(turn, body)
    headers = rate_limit_headers(turn.rate_limits)  # the tenant's rpm/tpm budgets, as on /v1/chat/completions
    if body.stream:
        return EventSourceResponse(
            encoder.events(), ping=15, sep="\n", headers=headers, background=BackgroundTask(turn.close)
        )
    return JSONResponse((await encoder.complete()).model_dump(exclude_none=True), headers=headers)


@router.get("/v1/responses/{response_id}", response_model=ResponseObject, responses=_ERRORS)
async def retrieve_response(response_id: ResponseIdPath, store: StoreDep, tenant: TenantDep) -> JSONResponse:
    stored = await _stored(store, tenant, response_id)
    return JSONResponse(rebuild(stored).model_dump(exclude_none=True))


@router.delete("/v1/responses/{response_id}", response_model=ResponseDeleted, responses=_ERRORS)
async def delete_response(response_id: ResponseIdPath, store: StoreDep, tenant: TenantDep) -> ResponseDeleted:
    if not await store.delete_response(tenant, response_id):
        raise _missing(response_id)
    return ResponseDeleted(id=response_id)


@router.get("/v1/responses/{response_id}/input_items", response_model=ItemList, responses=_ERRORS)
async def list_input_items(
    response_id: ResponseIdPath,
    store: StoreDep,
    tenant: TenantDep,
    after: After = None,
    limit: Limit = 20,
    order: Order = "desc",
) -> ItemList:
    stored = await _stored(store, tenant, response_id)
    return page(stored.input, after=after, limit=limit, order=order)


async def _stored(store: Any, tenant: str, rid: str) -> StoredResponse:
    stored: StoredResponse | None = await store.get_response(tenant, rid)
    if stored is None:
        raise _missing(rid)
    return stored


def _missing(rid: str) -> NotFound:
    return NotFound(f"Response with id '{rid}' not found.", param="response_id")


def rebuild(stored: StoredResponse) -> ResponseObject:
    """A stored response as the wire object: the saved fields, with its output items."""
    body = {k: v for k, v in stored.body.items() if k != "output"}
    status = body.get("status", "completed")
    output = [MessageItem.of(m, "incomplete" if status == "incomplete" else "completed") for m in stored.output]
    return ResponseObject.model_validate({**body, "output": output})


class ResponseEncoder:
    """One turn as a response object or as the typed event stream."""

    def __init__(self, turn: Turn, request: ResponsesRequest) -> None:
        self.turn = turn
        self.request = request
        self.id = response_id()
        self.created_at = int(time.time())
        self._sequence = 0

    def snapshot(self, status: str, error: ResponseError | None = None) -> ResponseObject:
        """The response object as it stands (``output`` holds the reply so far)."""
        turn, request = self.turn, self.request
        done = status in ("completed", "incomplete", "failed")
        usage = None
        if done:
            prompt, completion = turn.prompt_tokens, turn.completion_tokens
            usage = ResponseUsage(input_tokens=prompt, output_tokens=completion, total_tokens=prompt + completion)
        item_status: ItemStatus = "completed" if status == "completed" else "incomplete" if done else "in_progress"
        output = [MessageItem.of(turn.reply_message(), item_status)] if done or turn.choices[0].text else []
        safety = turn.extensions().get("safety")
        return ResponseObject(
            id=self.id,
            created_at=self.created_at,
            status=status,
            model=turn.model,
            output=output,
            usage=usage,
            previous_response_id=request.previous_response_id,
            conversation=ConversationRef(id=request.conversation_id) if request.conversation_id else None,
            store=request.store,
            metadata=request.metadata or {},
            instructions=request.instructions,
            incomplete_details=IncompleteDetails(reason="max_output_tokens") if status == "incomplete" else None,
            error=error,
            temperature=request.temperature,
            top_p=request.top_p,
            max_output_tokens=request.max_output_tokens,
            truncation=request.truncation,
            safety=SafetyInfo.model_validate(safety) if safety else None,
        )

    def final_status(self) -> str:
        choice = self.turn.choices[0]
        return "incomplete" if choice.finish_reason == "length" or choice.limited else "completed"

    def stored(self, response: ResponseObject) -> StoredResponse | None:
        """What the store keeps (None for ``store: false``)."""
        if not self.request.store:
            return None
        return StoredResponse(
            id=self.id,
            created_at=float(self.created_at),
            input=[m for m in self.turn.stored_input()],
            output=[self.turn.reply_message()],
            previous_response_id=self.request.previous_response_id,
            conversation_id=self.request.conversation_id,
            body=response.model_dump(exclude_none=True, exclude={"output"}),
        )

    async def complete(self) -> ResponseObject:
        """Generate to the end, commit (conversation items and the stored response together), return the object."""
        try:
            async for _ in self.turn.replies():
                pass
            response = self.snapshot(self.final_status())
            await self.turn.commit(self.stored(response))
            return response
        finally:
            await self.turn.close()

    def event(self, kind: str, **fields: Any) -> dict[str, str]:
        body = StreamEvent(type=kind, sequence_number=self._sequence, **fields)
        self._sequence += 1
        return {"event": kind, "data": body.model_dump_json(exclude_none=True)}

    async def events(self) -> AsyncIterator[dict[str, str]]:
        """``response.created`` ... ``response.completed`` | ``response.incomplete`` | ``response.failed``."""
        turn, item_id = self.turn, self.turn.reply_id
        where = {"output_index": 0, "item_id": item_id}
        try:
            yield self.event("response.created", response=self.snapshot("in_progress"))
            yield self.event("response.in_progress", response=self.snapshot("in_progress"))
            added = MessageItem(id=item_id, role="assistant", status="in_progress", content=[])
            yield self.event("response.output_item.added", output_index=0, item=added)
            yield self.event("response.content_part.added", **where, content_index=0, part=OutputText(text=""))
            try:
                async for reply in turn.replies():
                    if reply.index == 0 and reply.text:
                        yield self.event(
                            "response.output_text.delta", **where, content_index=0, delta=reply.text, logprobs=[]
                        )
            except ChatError as exc:
                error = to_api_error(exc)
                yield self.event("error", code=error.code or "server_error", message=error.message, param=error.param)
                failed = ResponseError(code=error.code or "server_error", message=error.message)
                yield self.event("response.failed", response=self.snapshot("failed", failed))
                return
            text = turn.choices[0].text
            yield self.event("response.output_text.done", **where, content_index=0, text=text, logprobs=[])
            yield self.event("response.content_part.done", **where, content_index=0, part=OutputText(text=text))
            status = self.final_status()
            final = self.snapshot(status)
            yield self.event("response.output_item.done", output_index=0, item=final.output[0])
            try:
                await turn.commit(self.stored(final))
            except SessionError as exc:
                annotate(outcome="commit_failed")
                message = "The reply was not saved; send this input again."
                yield self.event("error", code="session_commit_failed", message=message)
                failed = ResponseError(code="session_commit_failed", message=f"{message} ({type(exc).__name__})")
                yield self.event("response.failed", response=self.snapshot("failed", failed))
                return
            yield self.event(f"response.{status}", response=final)
        finally:
            await turn.close()
