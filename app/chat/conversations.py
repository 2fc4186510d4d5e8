"""Conversations (OpenAI's Conversations API) on the session store: a conversation IS a session.

A conversation id (``conv_...``) is a session id: its items are the session's messages (each with an item id), its
metadata lives with the session, and ``responses.create(conversation=...)`` is a session turn. So the same
conversation can also be continued through ``/v1/chat/completions`` with ``X-Session-Id: conv_...``, and anything
that holds for sessions holds here: tenant isolation, the turn lock (409 while another turn runs), atomic commits,
the sliding TTL, erasure. Unlike a session, a conversation must be created before a turn may use it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from app.chat.errors import InvalidChatRequest, NotFound
from app.core.messages import Message
from app.sessions.base import SessionRecord, SessionStore, TurnCommit


class ConversationService:
    """Create, read, change and erase conversations for one tenant at a time."""

    def __init__(self, store: SessionStore, *, lock_wait_s: float, lock_ttl_s: float) -> None:
        self.store = store
        self.lock_wait_s = lock_wait_s
        self.lock_ttl_s = lock_ttl_s

    async def create(
        self, tenant: str, conversation_id: str, items: Sequence[Message], metadata: Mapping[str, str]
    ) -> SessionRecord:
        """A new conversation with its first items (user/assistant messages) and metadata."""
        lease = await self.store.open(tenant, conversation_id, wait_s=self.lock_wait_s, ttl_s=self.lock_ttl_s)
        try:
            if lease.record is not None:
                raise InvalidChatRequest(f"Conversation '{conversation_id}' already exists.", param="id")
            return await self.store.commit(
                lease, TurnCommit(messages=_storable(items), reply=None, expected_version=0, metadata=metadata)
            )
        finally:
            await self.store.release(lease)

    async def get(self, tenant: str, conversation_id: str) -> SessionRecord:
        record = await self.store.get(tenant, conversation_id)
        if record is None:
            raise _missing(conversation_id)
        return record

    async def update(
        self,
        tenant: str,
        conversation_id: str,
        *,
        items: Sequence[Message] = (),
        metadata: Mapping[str, str] | None = None,
    ) -> SessionRecord:
        """Append items and/or replace the metadata, under the conversation's turn lock."""
        lease = await self.store.open(tenant, conversation_id, wait_s=self.lock_wait_s, ttl_s=self.lock_ttl_s)
        try:
            if lease.record is None:
                raise _missing(conversation_id)
            change = TurnCommit(
                messages=_storable(items), reply=None, expected_version=lease.version, metadata=metadata
            )
            return await self.store.commit(lease, change)
        finally:
            await self.store.release(lease)

    async def delete_item(self, tenant: str, conversation_id: str, item_id: str) -> SessionRecord:
        lease = await self.store.open(tenant, conversation_id, wait_s=self.lock_wait_s, ttl_s=self.lock_ttl_s)
        try:
            if lease.record is None:
                raise _missing(conversation_id)
            kept = [m for m in lease.record.messages if m.id != item_id]
            if len(kept) == len(lease.record.messages):
                raise NotFound(f"Item with id '{item_id}' not found.", param="item_id")
            return await self.store.rewrite(lease, kept)
        finally:
            await self.store.release(lease)

    async def delete(self, tenant: str, conversation_id: str) -> None:
        """Erase the conversation, its items and the stored responses made in it."""
        if not await self.store.delete(tenant, conversation_id):
            raise _missing(conversation_id)


def _storable(items: Sequence[Message]) -> list[Message]:
    for index, item in enumerate(items):
        if item.role == "system":
            raise InvalidChatRequest(
                "Conversation items must be user or assistant messages; send instructions with each response.",
                param=f"items[{index}].role",
            )
    return list(items)


def _missing(conversation_id: str) -> NotFound:
    return NotFound(f"Conversation with id '{conversation_id}' not found.", param="conversation_id")
