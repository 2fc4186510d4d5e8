"""The conversation behind one request: stateless (as sent) or a session turn (stored history + new messages).

A session turn holds the session's lock from :func:`open_session` until :meth:`SessionTurn.release`, so two turns
of one session never interleave. Nothing is written until :meth:`SessionTurn.commit`, which the chat service calls
only after the reply finished: an aborted or failed turn leaves the session as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from app.chat.prompt import Turn
from app.sessions.base import Role, SessionRecord, SessionStore, StoredMessage, TurnCommit, group_turns
from app.sessions.history import reconcile, split_persona, trim_to_budget


@dataclass
class SessionTurn:
    """An open turn on a locked session."""

    store: SessionStore
    tenant: str
    session_id: str
    record: SessionRecord | None
    persona: str | None
    """The request's system message, if it sent one (it becomes the session's persona)."""
    new_messages: list[tuple[Role, str]]
    _stack: AsyncExitStack

    @property
    def turn(self) -> int:
        """The number this turn will have once committed (1 for a new session)."""
        return (self.record.turns if self.record else 0) + 1

    @property
    def effective_persona(self) -> str | None:
        return self.persona if self.persona is not None else (self.record.persona if self.record else None)

    def history(self) -> list[StoredMessage]:
        return list(self.record.messages) if self.record else []

    async def commit(
        self,
        reply: str,
        strategy: str | None,
        prompt_tokens: int,
        completion_tokens: int,
        safety: Mapping[str, Any] | None = None,
    ) -> SessionRecord:
        persona_changed = self.persona is not None and (self.record is None or self.record.persona != self.persona)
        return await self.store.commit_turn(
            self.tenant,
            self.session_id,
            TurnCommit(
                messages=self.new_messages,
                reply=reply,
                strategy=strategy,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                expected_version=self.record.version if self.record else 0,
                persona=self.persona if persona_changed else None,
                safety=safety,
            ),
        )

    async def release(self) -> None:
        await self._stack.aclose()


async def open_session(
    store: SessionStore,
    tenant: str,
    session_id: str,
    messages: Sequence[tuple[str, str]],
    *,
    wait_s: float,
    ttl_s: float,
) -> SessionTurn:
    """Lock the session, load it and work out which of ``messages`` are new (see ``history.reconcile``)."""
    stack = AsyncExitStack()
    try:
        await stack.enter_async_context(store.lock(tenant, session_id, wait_s=wait_s, ttl_s=ttl_s))
        record = await store.get(tenant, session_id)
        persona, rest = split_persona(messages)
        stored = record.messages if record else []
        new = reconcile(stored, rest, trimmed=bool(record and record.trimmed))
        return SessionTurn(store, tenant, session_id, record, persona, new, stack)
    except BaseException:
        await stack.aclose()
        raise


def session_prompt_turns(
    session: SessionTurn,
    count_tokens: Callable[[str], int],
    budget_tokens: int,
    reserved_tokens: int,
    block_turns: int,
) -> list[Turn]:
    """Stored history + the new messages, with whole oldest turns dropped in blocks to fit ``budget_tokens``.

    Dropping in blocks keeps the prompt's prefix byte-stable between consecutive turns, so vLLM's prefix cache hits.
    The store keeps the full history; only the prompt is trimmed.
    """
    stored_turns = group_turns(session.history())
    new_turn = [StoredMessage(role, content) for role, content in session.new_messages]
    turns = [*stored_turns, new_turn]
    already = (session.record.turns - session.record.stored_turns) if session.record else 0

    def cost(turn: list[StoredMessage]) -> int:
        return sum(count_tokens(m.content) + 6 for m in turn)  # + role header and end-of-turn tokens

    kept, _ = trim_to_budget(
        turns, cost, budget_tokens, block_turns, reserved_tokens=reserved_tokens, already_dropped=already
    )
    return [Turn(m.role, m.content, m.strategy) for turn in kept for m in turn]
