"""A whole session turn against a store, as the chat pipeline runs it (shared by the store test suites)."""

from __future__ import annotations

from typing import Any

from app.core.messages import Message
from app.sessions.base import SessionRecord, SessionStore, TurnCommit


def turn(text: str, version: int, **extra: Any) -> TurnCommit:
    """A one-question turn: user ``q:text``, assistant ``a:text``."""
    return TurnCommit(
        messages=[Message("user", f"q:{text}")],
        reply=Message("assistant", f"a:{text}"),
        expected_version=version,
        **extra,
    )


async def commit_turn(store: SessionStore, tenant: str, session_id: str, commit: TurnCommit) -> SessionRecord:
    """Open (lock + read), commit (+ unlock), and release if the commit did not happen."""
    lease = await store.open(tenant, session_id, wait_s=5, ttl_s=10)
    try:
        return await store.commit(lease, commit)
    finally:
        await store.release(lease)
