"""The Conversations API (``/v1/conversations``): thin routers over :class:`app.chat.conversations.ConversationService`.

A conversation is a session: see ``app/chat/conversations.py``. Lists use OpenAI's shape (``object: "list"``,
``data``, ``first_id``, ``last_id``, ``has_more``) with ``after``/``limit``/``order`` paging.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from app.api.deps import ConversationsDep, TenantDep
from app.api.pagination import After, Limit, Order, page
from app.api.protocol import ErrorResponse
from app.api.responses_protocol import (
    ConversationCreateRequest,
    ConversationDeleted,
    ConversationItemsRequest,
    ConversationObject,
    ConversationUpdateRequest,
    ItemList,
    MessageItem,
    conversation_id,
)
from app.chat.errors import NotFound
from app.core.messages import SESSION_ID_RE
from app.sessions.base import SessionRecord

router = APIRouter()
ConversationId = Annotated[str, Path(pattern=SESSION_ID_RE, description="The conversation id.")]
ItemId = Annotated[str, Path(max_length=128, description="The item id.")]
_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorResponse} for code in (400, 401, 404, 409, 503)}


def _object(record: SessionRecord) -> ConversationObject:
    return ConversationObject(id=record.session_id, created_at=int(record.created), metadata=record.metadata)


@router.post("/v1/conversations", response_model=ConversationObject, responses=_ERRORS)
async def create_conversation(
    body: ConversationCreateRequest, conversations: ConversationsDep, tenant: TenantDep
) -> ConversationObject:
    items = [item.to_message() for item in body.items or []]
    record = await conversations.create(tenant, conversation_id(), items, body.metadata or {})
    return _object(record)


@router.get("/v1/conversations/{conversation_id}", response_model=ConversationObject, responses=_ERRORS)
async def retrieve_conversation(
    conversation_id: ConversationId, conversations: ConversationsDep, tenant: TenantDep
) -> ConversationObject:
    return _object(await conversations.get(tenant, conversation_id))


@router.post("/v1/conversations/{conversation_id}", response_model=ConversationObject, responses=_ERRORS)
async def update_conversation(
    conversation_id: ConversationId, body: ConversationUpdateRequest, conversations: ConversationsDep, tenant: TenantDep
) -> ConversationObject:
    return _object(await conversations.update(tenant, conversation_id, metadata=body.metadata))


@router.delete("/v1/conversations/{conversation_id}", response_model=ConversationDeleted, responses=_ERRORS)
async def delete_conversation(
    conversation_id: ConversationId, conversations: ConversationsDep, tenant: TenantDep
) -> ConversationDeleted:
    await conversations.delete(tenant, conversation_id)
    return ConversationDeleted(id=conversation_id)


@router.get("/v1/conversations/{conversation_id}/items", response_model=ItemList, responses=_ERRORS)
async def list_items(
    conversation_id: ConversationId,
    conversations: ConversationsDep,
    tenant: TenantDep,
    after: After = None,
    limit: Limit = 20,
    order: Order = "desc",
) -> ItemList:
    record = await conversations.get(tenant, conversation_id)
    return page(record.messages, after=after, limit=limit, order=order)


@router.post("/v1/conversations/{conversation_id}/items", response_model=ItemList, responses=_ERRORS)
async def create_items(
    conversation_id: ConversationId, body: ConversationItemsRequest, conversations: ConversationsDep, tenant: TenantDep
) -> ItemList:
    items = [item.to_message() for item in body.items]
    record: SessionRecord = await conversations.update(tenant, conversation_id, items=items)
    added = record.messages[-len(items) :]
    return page(added, after=None, limit=len(added), order="asc")


@router.get("/v1/conversations/{conversation_id}/items/{item_id}", response_model=MessageItem, responses=_ERRORS)
async def retrieve_item(
    conversation_id: ConversationId, item_id: ItemId, conversations: ConversationsDep, tenant: TenantDep
) -> MessageItem:
    record: SessionRecord = await conversations.get(tenant, conversation_id)
    for message in record.messages:
        if message.id == item_id:
            return MessageItem.of(message)
    raise NotFound(f"Item with id '{item_id}' not found.", param="item_id")


@router.delete(
    "/v1/conversations/{conversation_id}/items/{item_id}", response_model=ConversationObject, responses=_ERRORS
)
async def delete_item(
    conversation_id: ConversationId, item_id: ItemId, conversations: ConversationsDep, tenant: TenantDep
) -> ConversationObject:
    return _object(await conversations.delete_item(tenant, conversation_id, item_id))
