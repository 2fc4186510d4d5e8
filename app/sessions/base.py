"""Session memory: domain types, errors and the ``SessionStore`` protocol.

A session is one conversation owned by one tenant (an API key or other caller identity). The server stores its
persona (the system message) and its user/assistant messages, grouped into *turns*: a turn is one commit, i.e. the
new user message(s) of a request plus the assistant reply that answered them. Stores keep at most ``max_turns`` turns
and drop the oldest whole turns beyond that.

One chat turn against a store (``store`` is any ``SessionStore``)::

    async with store.lock(tenant, session_id, wait_s=2.0, ttl_s=120.0):   # SessionBusy if another turn holds it
        record = await store.get(tenant, session_id)                       # None for a new session
        new = history.reconcile(record.messages if record else [], incoming, trimmed=bool(record and record.trimmed))
        ... build the prompt, stream the reply; on abort or failure, commit nothing ...
        await store.commit_turn(tenant, session_id, TurnCommit(
            messages=new, reply=text, strategy=strategy, prompt_tokens=p, completion_tokens=c,
            expected_version=record.version if record else 0,
        ))

The lock keeps two turns of one session from interleaving; the version check in ``commit_turn`` keeps a turn whose
lock expired (a slow generation, a paused process) from overwriting a newer history. Either way the loser gets a
``SessionBusy`` or ``SessionConflict`` (HTTP 409), never a corrupted history.

Error hierarchy (map to HTTP in one place)::

    SessionError
    ├── InvalidSessionId        (also ValueError)  -> 400
    ├── InvalidHistory          (also ValueError)  -> 400
    ├── SessionNotFound                            -> 404
    ├── SessionBusy                                -> 409 (retry later)
    ├── SessionConflict                            -> 409
    └── SessionStoreUnavailable (.retry_after)     -> 503 with Retry-After
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeAlias, runtime_checkable

Role: TypeAlias = Literal["system", "user", "assistant"]
"""Chat roles. Stored messages are ``user`` or ``assistant``; ``system`` is the persona, kept apart."""

OpObserver: TypeAlias = Callable[[str, float, bool], None]
"""``on_op(op, seconds, ok)``: called once per store operation (``get``, ``lock``, ``unlock``, ``commit``,
``delete``, ``ping``) with its wall time. ``ok`` is False only when the backend failed (unreachable, timed out, or an
unexpected backend error); a busy lock, a version conflict or a bad session id are answers, so ``ok`` is True."""

SESSION_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")
"""Valid session ids: 1 to 128 characters of letters, digits, ``.``, ``_``, ``:`` and ``-``."""

_ROLES: frozenset[str] = frozenset({"system", "user", "assistant"})


# ---------------------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------------------


class SessionError(Exception):
    """Base class of every session-memory error."""


class InvalidSessionId(SessionError, ValueError):
    """The session id is not 1-128 characters of ``[A-Za-z0-9._:-]``."""


class InvalidHistory(SessionError, ValueError):
    """The messages sent for a session turn are malformed (empty, a role out of place, no final user message)."""


class SessionNotFound(SessionError):
    """The session does not exist for this tenant (never created, expired, or deleted).

    Stores answer a missing session with ``get() -> None`` and ``delete() -> False``; callers raise this where a
    session must exist (e.g. ``GET /v1/sessions/{id}`` -> 404).
    """


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
        raise ValueError("tenant must be a non-empty string; with auth off, pass a fixed name such as 'default'")
    return tenant


def validate_store_limits(*, ttl_s: float, max_turns: int) -> None:
    """Raise ``ValueError`` naming the argument when a store's TTL or turn limit is out of range."""
    if not ttl_s > 0:
        raise ValueError(f"ttl_s must be > 0 seconds, got {ttl_s!r}")
    if not 1 <= max_turns <= 100_000:
        raise ValueError(f"max_turns must be between 1 and 100000, got {max_turns!r}")


# ---------------------------------------------------------------------------------------------------------------
# Domain types
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """One stored chat message.

    ``created`` is the Unix time of the commit that stored it; ``strategy`` is the support strategy of an assistant
    reply (None for user messages); ``tokens`` is the reply's completion token count (None when unknown);
    ``safety`` is the crisis screen's verdict on a user message (``{"level", "categories", "action"}``), if any.
    """

    role: Role
    content: str
    strategy: str | None = None
    created: float = 0.0
    tokens: int | None = None
    safety: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, also the stored form in Redis."""
        return {
            "role": self.role,
            "content": self.content,
            "strategy": self.strategy,
            "created": self.created,
            "tokens": self.tokens,
            **({"safety": dict(self.safety)} if self.safety else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StoredMessage:
        """Inverse of ``to_dict`` (trusts the JSON types it wrote; checks the role)."""
        role = data["role"]
        if role not in _ROLES:
            raise ValueError(f"stored message has unknown role {role!r}")
        return cls(
            role,
            data["content"],
            data.get("strategy"),
            data.get("created", 0.0),
            data.get("tokens"),
            data.get("safety"),
        )


def group_turns(messages: Sequence[StoredMessage]) -> list[list[StoredMessage]]:
    """Split a flat message list into turns: each turn ends with an assistant message.

    Trailing messages without an assistant reply (never the case for stored histories) form a last, open turn.
    """
    turns: list[list[StoredMessage]] = []
    current: list[StoredMessage] = []
    for message in messages:
        current.append(message)
        if message.role == "assistant":
            turns.append(current)
            current = []
    if current:
        turns.append(current)
    return turns


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A session as stored: persona, retained messages and metadata.

    ``messages`` holds user/assistant messages only, oldest first, whole turns only. ``turns`` counts every turn
    committed over the session's life (trimming does not lower it), ``version`` counts writes and is what
    ``TurnCommit.expected_version`` must match. ``created``/``updated`` are Unix times of the first and last commit.
    ``prompt_tokens``/``completion_tokens`` are lifetime usage totals. ``tenant`` is the caller identity as given to
    the store; it is not part of ``to_dict()`` (it may be an API key).
    """

    session_id: str
    tenant: str
    persona: str | None
    messages: list[StoredMessage]
    turns: int
    created: float
    updated: float
    version: int
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def stored_turns(self) -> int:
        """Number of turns still stored (each ends with an assistant message)."""
        return sum(1 for message in self.messages if message.role == "assistant")

    @property
    def trimmed(self) -> bool:
        """True when older turns were dropped by the store's ``max_turns`` limit."""
        return self.turns > self.stored_turns

    def to_dict(self) -> dict[str, Any]:
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
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnCommit:
    """What one finished chat turn adds to a session.

    ``messages``: the new incoming messages (``history.reconcile`` output): one or more ``(role, content)`` pairs,
    user/assistant only, ending with a user message. Usually just the new user message; when a client seeds a new
    session with an earlier conversation it may hold whole earlier turns too.
    ``reply``/``strategy``: the assistant's answer and its support strategy.
    ``prompt_tokens``/``completion_tokens``: this turn's usage (``completion_tokens`` is stored on the reply).
    ``expected_version``: the ``version`` of the record the turn was built on, 0 for a new session.
    ``persona``: None keeps the stored persona; a string replaces it; ``""`` clears it.
    """

    messages: Sequence[tuple[Role, str]]
    reply: str
    strategy: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    expected_version: int
    persona: str | None = None
    safety: Mapping[str, Any] | None = None
    """The crisis screen's verdict on the turn's newest user message; stored on that message."""

    def __post_init__(self) -> None:
        if not self.messages:
            raise InvalidHistory("a turn needs at least one new user message")
        for index, (role, _content) in enumerate(self.messages):
            if role not in ("user", "assistant"):
                raise InvalidHistory(f"message {index}: role {role!r} cannot be stored; use 'user' or 'assistant'")
        if self.messages[-1][0] != "user":
            raise InvalidHistory("the new messages of a turn must end with a user message")
        if self.expected_version < 0:
            raise ValueError(f"expected_version must be >= 0, got {self.expected_version}")
        if self.prompt_tokens < 0 or self.completion_tokens < 0:
            raise ValueError("prompt_tokens and completion_tokens must be >= 0")

    def to_turns(self, now: float) -> list[list[StoredMessage]]:
        """The stored messages this commit adds, grouped into whole turns (the reply closes the last one)."""
        stored = [StoredMessage(role=role, content=content, created=now) for role, content in self.messages]
        if self.safety:
            stored[-1] = StoredMessage(role="user", content=stored[-1].content, created=now, safety=self.safety)
        stored.append(
            StoredMessage(
                role="assistant",
                content=self.reply,
                strategy=self.strategy,
                created=now,
                tokens=self.completion_tokens,
            )
        )
        return group_turns(stored)


# ---------------------------------------------------------------------------------------------------------------
# The protocol
# ---------------------------------------------------------------------------------------------------------------


@runtime_checkable
class SessionStore(Protocol):
    """Per-tenant session memory. Implementations: ``RedisSessionStore``, ``MemorySessionStore``.

    Every method takes the tenant first; sessions of one tenant are invisible to every other tenant (a different
    tenant's ``get`` sees None, ``delete`` returns False, ``commit_turn`` works on its own, separate session).
    Every method raises ``InvalidSessionId`` for a malformed id and ``SessionStoreUnavailable`` when the backend
    is down.
    """

    async def get(self, tenant: str, session_id: str) -> SessionRecord | None:
        """The session, or None if it does not exist (never created, expired, or deleted)."""
        ...

    def lock(self, tenant: str, session_id: str, *, wait_s: float, ttl_s: float) -> AbstractAsyncContextManager[None]:
        """Hold the session's turn lock for the ``async with`` body.

        Waits up to ``wait_s`` seconds (polling with jittered exponential backoff), then raises ``SessionBusy``.
        The lock expires ``ttl_s`` seconds after it was taken, so a crashed holder cannot wedge the session; pick
        ``ttl_s`` above the longest turn. Leaving the body releases the lock only if this holder still owns it (a
        holder whose lock expired and was taken over releases nothing). A failed release is logged, reported to
        ``on_op`` and otherwise ignored: the turn already happened and the TTL frees the lock.
        """
        ...

    async def commit_turn(self, tenant: str, session_id: str, commit: TurnCommit) -> SessionRecord:
        """Atomically append one turn and return the updated record.

        In one step: check ``commit.expected_version`` (``SessionConflict`` if the session changed or vanished),
        append the new messages and the reply, bump ``turns``/``version``/``updated``, set ``created`` on the first
        turn, apply a persona change, drop the oldest whole turns beyond ``max_turns``, and restart the session's
        sliding TTL. A failed call changes nothing.
        """
        ...

    async def delete(self, tenant: str, session_id: str) -> bool:
        """Erase the session; True if it existed."""
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

_FIRST_BACKOFF_S = 0.005
_MAX_BACKOFF_S = 0.1


def validate_lock_args(*, wait_s: float, ttl_s: float) -> None:
    """Raise ``ValueError`` naming the argument when a lock's wait or TTL is out of range."""
    if not wait_s >= 0:
        raise ValueError(f"wait_s must be >= 0 seconds, got {wait_s!r}")
    if not ttl_s > 0:
        raise ValueError(f"ttl_s must be > 0 seconds (above the longest turn), got {ttl_s!r}")


async def acquire_with_backoff(try_acquire: Callable[[], Awaitable[bool]], *, wait_s: float) -> None:
    """Call ``try_acquire`` until it returns True, sleeping 5 ms doubling to 100 ms (half to full jitter) between.

    Tries at least once; raises ``SessionBusy`` when ``wait_s`` seconds have passed without success.
    """
    deadline = time.monotonic() + max(0.0, wait_s)
    backoff = _FIRST_BACKOFF_S
    while True:
        if await try_acquire():
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise SessionBusy(
                f"session is busy: another turn holds it (waited {wait_s:.2f}s); retry when it finishes",
                retry_after=1.0,
            )
        await asyncio.sleep(min(remaining, random.uniform(backoff / 2, backoff)))
        backoff = min(backoff * 2, _MAX_BACKOFF_S)
