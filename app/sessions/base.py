"""Session memory: domain types, errors and the ``SessionStore`` protocol.

A session is one conversation owned by one tenant (an API key's tenant). The server stores its persona (the system
message) and its user/assistant messages, grouped into *exchanges*: the new user message(s) of one turn plus the reply
that answered them. Stores keep at most ``max_turns`` exchanges and drop the oldest whole ones beyond that.

One chat turn against a store costs two round trips (each one Lua script on Redis), three on a new session's first
turn (the live-session quota claims it: ``SessionQuotaExceeded``)::

    lease = await store.open(tenant, session_id, wait_s=2.0, ttl_s=300.0)   # lock + read; SessionBusy after wait_s
    try:
        ... reconcile the sent messages with lease.record, build the prompt, stream the reply ...
        await store.commit(lease, TurnCommit(...))                            # version check + append + unlock
    finally:
        await store.release(lease)                                            # no-op after a commit; never raises

The lock keeps two turns of one session from interleaving; the version check in ``commit`` keeps a turn whose lock
expired (a slow generation, a paused process) from overwriting a newer history. Either way the loser gets
``SessionBusy`` or ``SessionConflict`` (HTTP 409), never a corrupted history. An aborted or failed turn commits
nothing.

Errors (mapped to HTTP in ``app/api/errors.py``)::

    SessionError
    ├── InvalidSessionId        (also ValueError)  -> 400
    ├── InvalidHistory          (also ValueError)  -> 400
    ├── SessionBusy                                -> 409 (retry later)
    ├── SessionConflict                            -> 409
    ├── SessionQuotaExceeded                       -> 429 insufficient_quota (not worth retrying soon)
    └── SessionStoreUnavailable (.retry_after)     -> 503 with Retry-After
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias, TypeVar, runtime_checkable

from app.core.messages import SESSION_ID_PATTERN, Message, group_exchanges

OpObserver: TypeAlias = Callable[[str, float, bool], None]
"""``on_op(op, seconds, ok)``: called once per store operation (``open``, ``commit``, ``release``, ``get``,
``delete``, ``ping``) with its wall time. ``ok`` is False only when the backend failed (unreachable, timed out, or an
unexpected backend error); a busy lock, a version conflict or a bad session id are answers, so ``ok`` is True."""

T = TypeVar("T")


# ---------------------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------------------


class SessionError(Exception):
    """Base class of every session-memory error."""


class InvalidSessionId(SessionError, ValueError):
    """The session id is not 1-128 characters of ``[A-Za-z0-9._:-]``."""


class InvalidHistory(SessionError, ValueError):
    """The messages sent for a session turn are malformed (a system message inside the conversation, no final user
    message)."""


class SessionBusy(SessionError):
    """Another turn holds the session's lock and did not release it within the wait."""

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SessionConflict(SessionError):
    """The session changed under the caller, or the history the client sent contradicts the stored one.

    ``index`` is the first message index (0-based, in the incoming list) where a sent history diverges from the
    stored one; ``expected_version``/``actual_version`` are set for version conflicts.
    """

    def __init__(
        self,
        message: str,
        *,
        index: int | None = None,
        expected_version: int | None = None,
        actual_version: int | None = None,
    ) -> None:
        super().__init__(message)
        self.index = index
        self.expected_version = expected_version
        self.actual_version = actual_version


class SessionStoreUnavailable(SessionError):
    """The session backend is unreachable or timed out. Retry after ``retry_after`` seconds (HTTP 503)."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SessionQuotaExceeded(SessionError):
    """The tenant already has ``limit`` live sessions, its quota: a new one cannot start (existing ones go on)."""

    def __init__(self, *, live: int, limit: int) -> None:
        super().__init__(
            f"This tenant has {live} live sessions and may have at most {limit} (max_sessions). Delete one "
            "(DELETE /v1/sessions/{id}) or let one expire, or send the request without a session."
        )
        self.live = live
        self.limit = limit


SessionQuota: TypeAlias = Callable[[str], int | None]
"""``quota(tenant)``: the tenant's live-session cap, None for none. Stores call it for each new session."""


@dataclass(frozen=True, slots=True)
class TenantUsage:
    """A tenant's use of the store, for export: live sessions (against ``max_sessions``) and the turn cap."""

    live_sessions: int
    max_sessions: int | None
    max_turns: int
    """Exchanges kept per session; older whole exchanges are dropped."""

    def to_dict(self) -> dict[str, int | None]:
        return {"live_sessions": self.live_sessions, "max_sessions": self.max_sessions, "max_turns": self.max_turns}


# ---------------------------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------------------------


def validate_session_id(session_id: str) -> str:
    """Return ``session_id`` unchanged if valid, else raise ``InvalidSessionId`` saying what is allowed."""
    if not isinstance(session_id, str) or SESSION_ID_PATTERN.fullmatch(session_id) is None:
        shown = repr(session_id) if isinstance(session_id, str) and len(session_id) <= 140 else "given value"
        raise InvalidSessionId(
            f"invalid session id {shown}: use 1-128 characters of letters, digits, '.', '_', ':' or '-'"
        )
    return session_id


def validate_tenant(tenant: str) -> str:
    """Return ``tenant`` unchanged if it is a non-empty string, else raise ``ValueError`` (a caller bug)."""
    if not isinstance(tenant, str) or not tenant:
        raise ValueError("tenant must be a non-empty string; with auth off, pass a fixed name such as 'public'")
    return tenant


def validate_store_limits(*, ttl_s: float, max_turns: int) -> None:
    """Raise ``ValueError`` naming the argument when a store's TTL or turn limit is out of range."""
    if not ttl_s > 0:
        raise ValueError(f"ttl_s must be > 0 seconds, got {ttl_s!r}")
    if not 1 <= max_turns <= 100_000:
        raise ValueError(f"max_turns must be between 1 and 100000, got {max_turns!r}")


def validate_lock_args(*, wait_s: float, ttl_s: float) -> None:
    """Raise ``ValueError`` naming the argument when a lock's wait or TTL is out of range."""
    if not wait_s >= 0:
        raise ValueError(f"wait_s must be >= 0 seconds, got {wait_s!r}")
    if not ttl_s > 0:
        raise ValueError(f"ttl_s must be > 0 seconds (above the longest turn), got {ttl_s!r}")


# ---------------------------------------------------------------------------------------------------------------
# Domain types
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A session as stored: persona, retained messages and metadata.

    ``messages`` holds user/assistant messages only, oldest first, whole exchanges only. ``turns`` counts every turn
    committed over the session's life (trimming does not lower it), ``version`` counts writes and is what
    ``TurnCommit.expected_version`` must match. ``created``/``updated`` are Unix times of the first and last commit.
    ``prompt_tokens``/``completion_tokens`` are lifetime usage totals. ``risk_hold`` is how many more turns the
    session stays at least at elevated risk after a high-risk turn (see the safety screen). ``tenant`` is the
    caller identity given to the store; it is not part of ``to_dict()``.
    """

    session_id: str
    tenant: str
    persona: str | None
    messages: list[Message]
    turns: int
    created: float
    updated: float
    version: int
    prompt_tokens: int = 0
    completion_tokens: int = 0
    risk_hold: int = 0
    metadata: dict[str, str] = field(default_factory=dict)
    """Up to 16 string pairs a client attached (the Conversations API's ``metadata``)."""

    @property
    def stored_turns(self) -> int:
        """Number of exchanges still stored (each ends with an assistant message)."""
        return sum(1 for message in self.messages if message.role == "assistant")

    @property
    def trimmed(self) -> bool:
        """True when older exchanges were dropped by the store's ``max_turns`` limit."""
        return self.turns > self.stored_turns

    def to_dict(self) -> dict[str, object]:
        """JSON-ready export (``GET /v1/sessions/{id}``), without the tenant."""
        return {
            "id": self.session_id,
            "persona": self.persona,
            "messages": [message.to_dict() for message in self.messages],
            "turns": self.turns,
            "created": self.created,
            "updated": self.updated,
            "version": self.version,
            "usage": {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens},
            "metadata": self.metadata,
        }


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """A response of the Responses API as stored: what it added and what it answered, never rewritten.

    ``input`` holds the messages the request added (with item ids), ``output`` the assistant message(s).
    ``previous_response_id`` links a chain (two responses may share one: chains branch); ``conversation_id`` names
    the conversation whose items it appended, if any (deleting the conversation erases the response too).
    ``body`` keeps the rest of the wire object (model, status, usage, metadata, instructions, extensions) as JSON.
    """

    id: str
    created_at: float
    input: list[Message]
    output: list[Message]
    previous_response_id: str | None = None
    conversation_id: str | None = None
    body: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {
                "id": self.id,
                "created_at": self.created_at,
                "input": [m.to_dict() for m in self.input],
                "output": [m.to_dict() for m in self.output],
                "previous_response_id": self.previous_response_id,
                "conversation_id": self.conversation_id,
                "body": self.body,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, raw: str | Mapping[str, Any]) -> StoredResponse:
        data = json.loads(raw) if isinstance(raw, str) else raw
        return cls(
            id=data["id"],
            created_at=data["created_at"],
            input=[Message.from_dict(m) for m in data["input"]],
            output=[Message.from_dict(m) for m in data["output"]],
            previous_response_id=data.get("previous_response_id"),
            conversation_id=data.get("conversation_id"),
            body=data.get("body", {}),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnCommit:
    """What one finished turn (or one change of a conversation's items) adds to a session.

    ``messages``: the new user/assistant messages. With a ``reply`` (a chat turn) they end with a user message
    (usually just the new one; a client seeding a new session sends whole earlier exchanges too); without one (the
    Conversations API adding items, or creating a conversation) they may be any user/assistant messages, or none.
    ``expected_version``: the ``version`` of the record the turn was built on, 0 for a new session. ``persona``:
    None keeps the stored persona; a string replaces it. ``risk_hold``: the session's new sticky-risk counter (None
    keeps it). ``metadata``: None keeps it; a dict replaces it. ``response``: a stored Responses-API response saved
    in the same atomic step (its id is also recorded with the session, so erasing the session erases it).
    """

    messages: Sequence[Message]
    reply: Message | None
    expected_version: int
    prompt_tokens: int = 0
    completion_tokens: int = 0
    persona: str | None = None
    risk_hold: int | None = None
    metadata: Mapping[str, str] | None = None
    response: StoredResponse | None = None

    def __post_init__(self) -> None:
        for index, message in enumerate(self.messages):
            if message.role not in ("user", "assistant"):
                raise InvalidHistory(f"message {index}: role {message.role!r} cannot be stored; use user or assistant")
        if self.reply is not None:
            if not self.messages:
                raise InvalidHistory("a turn needs at least one new user message")
            if self.messages[-1].role != "user":
                raise InvalidHistory("the new messages of a turn must end with a user message")
            if self.reply.role != "assistant":
                raise ValueError("the reply of a turn must be an assistant message")
        if self.expected_version < 0:
            raise ValueError(f"expected_version must be >= 0, got {self.expected_version}")
        if self.prompt_tokens < 0 or self.completion_tokens < 0:
            raise ValueError("prompt_tokens and completion_tokens must be >= 0")

    def exchanges(self, now: float) -> list[list[Message]]:
        """The stored messages this commit adds, grouped into whole exchanges (a reply closes the last one)."""
        added = [*self.messages, self.reply] if self.reply is not None else list(self.messages)
        return group_exchanges([m.stored(now) for m in added])


@dataclass(slots=True)
class SessionLease:
    """An open session turn: the lock token and the record read under it (None for a new session)."""

    tenant: str
    session_id: str
    token: str
    record: SessionRecord | None
    released: bool = False
    """Set once ``commit`` or ``release`` gave the lock back."""

    @property
    def version(self) -> int:
        return self.record.version if self.record else 0


# ---------------------------------------------------------------------------------------------------------------
# The protocol
# ---------------------------------------------------------------------------------------------------------------


@runtime_checkable
class SessionStore(Protocol):
    """Per-tenant session memory. Implementations: ``RedisSessionStore``, ``MemorySessionStore``.

    Every method takes the tenant (directly or through the lease); sessions of one tenant are invisible to every
    other tenant. Every method raises ``InvalidSessionId`` for a malformed id and ``SessionStoreUnavailable`` when the
    backend is down.
    """

    async def open(self, tenant: str, session_id: str, *, wait_s: float, ttl_s: float) -> SessionLease:
        """Take the session's turn lock and read the session, in one step.

        Waits up to ``wait_s`` seconds for a busy lock (polling with jittered backoff; a backend timeout inside the
        wait counts as one more poll), then raises ``SessionBusy``. The lock expires ``ttl_s`` seconds after it was
        taken, so a crashed holder cannot wedge the session; pick ``ttl_s`` above the longest turn. A session that
        does not exist yet is claimed against the tenant's live-session quota (the store's ``session_quota``); over
        it, the lock is given back and ``SessionQuotaExceeded`` raised.
        """
        ...

    async def commit(self, lease: SessionLease, commit: TurnCommit) -> SessionRecord:
        """Atomically append one turn, give the lock back, and return the updated record.

        In one step: check ``commit.expected_version`` (``SessionConflict`` if the session changed or vanished),
        append the new messages and the reply, bump ``turns``/``version``/``updated``, set ``created`` on the first
        turn, apply a persona change, drop the oldest whole exchanges beyond ``max_turns``, restart the sliding TTL
        and release the lock if this lease still holds it. A failed call changes nothing.
        """
        ...

    async def release(self, lease: SessionLease) -> None:
        """Give the lock back without committing (idempotent; never raises: the lock's TTL is the fallback)."""
        ...

    async def rewrite(self, lease: SessionLease, messages: Sequence[Message]) -> SessionRecord:
        """Replace the stored messages (deleting a conversation item), version-checked against the lease's record,
        and give the lock back. ``SessionConflict`` if the session changed or vanished."""
        ...

    async def get(self, tenant: str, session_id: str) -> SessionRecord | None:
        """The session, or None if it does not exist (never created, expired, or deleted)."""
        ...

    async def delete(self, tenant: str, session_id: str) -> bool:
        """Erase the session and every stored response recorded with it; True if the session existed."""
        ...

    async def save_response(self, tenant: str, response: StoredResponse) -> None:
        """Store a response that belongs to no session (a ``previous_response_id`` chain), with the response TTL."""
        ...

    async def get_response(self, tenant: str, response_id: str) -> StoredResponse | None:
        """The stored response, or None (never stored, expired, deleted, or another tenant's)."""
        ...

    async def response_chain(self, tenant: str, response_id: str) -> list[StoredResponse] | None:
        """The response and all its predecessors, oldest first (one round trip); None if it or any predecessor is
        missing, or the chain is longer than the store follows (``MAX_CHAIN``)."""
        ...

    async def delete_response(self, tenant: str, response_id: str) -> bool:
        """Erase one stored response; True if it existed."""
        ...

    async def usage(self, tenant: str) -> TenantUsage:
        """The tenant's live sessions and limits (export). Live: stored, or a first turn in progress."""
        ...

    async def ping(self) -> None:
        """Return if the backend answers, else raise ``SessionStoreUnavailable`` (readiness checks)."""
        ...

    async def close(self) -> None:
        """Release connections. The store must not be used afterwards."""
        ...


# ---------------------------------------------------------------------------------------------------------------
# Shared lock polling
# ---------------------------------------------------------------------------------------------------------------

MAX_CHAIN = 1000
"""The longest ``previous_response_id`` chain a store follows."""

FIRST_BACKOFF_S = 0.005
MAX_BACKOFF_S = 0.1


async def poll(try_once: Callable[[], Awaitable[T | None]], *, wait_s: float) -> T:
    """Call ``try_once`` until it returns a value, sleeping 5 ms doubling to 100 ms (half to full jitter) between.

    Tries at least once; raises ``SessionBusy`` when ``wait_s`` seconds have passed without a value.
    """
    deadline = time.monotonic() + max(0.0, wait_s)
    backoff = FIRST_BACKOFF_S
    while True:
        result = await try_once()
        if result is not None:
            return result
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise SessionBusy(
                f"session is busy: another turn holds it (waited {wait_s:.2f}s); retry when it finishes",
                retry_after=1.0,
            )
        await asyncio.sleep(min(remaining, random.uniform(backoff / 2, backoff)))
        backoff = min(backoff * 2, MAX_BACKOFF_S)
