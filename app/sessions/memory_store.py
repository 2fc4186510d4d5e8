"""In-process session store: the embedded default when no Redis URL is configured.

Same semantics as ``RedisSessionStore`` (per-session lock with a TTL and owner token, version-checked atomic commit,
``max_turns`` trimming by whole turns, sliding TTL, tenant isolation), but the data lives in this process: it is lost
on restart and not shared between replicas or workers. Use it for one process only.

Atomicity comes from the event loop: ``commit_turn`` runs without awaiting, so no other coroutine sees a half-applied
turn. TTLs follow an injectable monotonic clock. Expired sessions are dropped lazily on access and swept in O(1)
amortised time on every commit: all sessions share one TTL, so an insertion-ordered dict moved-to-end on each commit
is also ordered by expiry.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import structlog

from app.core.messages import Message, group_exchanges
from app.sessions.base import (
    MAX_CHAIN,
    OpObserver,
    SessionConflict,
    SessionLease,
    SessionQuota,
    SessionQuotaExceeded,
    SessionRecord,
    StoredResponse,
    TenantUsage,
    TurnCommit,
    poll,
    validate_lock_args,
    validate_session_id,
    validate_store_limits,
    validate_tenant,
)

log = structlog.get_logger(__name__)

_Key = tuple[str, str]


@dataclass(slots=True)
class _Session:
    created: float
    updated: float = 0.0
    version: int = 0
    turns: int = 0
    persona: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    risk_hold: int = 0
    metadata: dict[str, str] = field(default_factory=dict)
    expires_at: float = 0.0
    history: deque[list[Message]] = field(default_factory=deque)
    responses: set[str] = field(default_factory=set)


@dataclass(slots=True)
class _Response:
    body: str
    expires_at: float


@dataclass(slots=True)
class _Lock:
    token: str
    expires_at: float


class MemorySessionStore:
    """``SessionStore`` kept in a dict of this process.

    Args:
        ttl_s: sliding session TTL; each commit restarts it.
        response_ttl_s: how long a stored response lives (not sliding).
        max_turns: turns kept per session; older whole turns are dropped.
        on_op: optional ``(op, seconds, ok)`` observer for latency/error metrics.
        clock: monotonic clock used for session and lock TTLs (tests inject a fake one).
        session_quota: ``quota(tenant)``, the tenant's live-session cap (None: none); new sessions are claimed
            against it in ``open``.
    """

    def __init__(
        self,
        *,
        ttl_s: float = 86_400.0,
        response_ttl_s: float = 30 * 86_400.0,
        max_turns: int = 200,
        on_op: OpObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
        session_quota: SessionQuota | None = None,
    ) -> None:
        validate_store_limits(ttl_s=ttl_s, max_turns=max_turns)
        validate_store_limits(ttl_s=response_ttl_s, max_turns=max_turns)
        self._ttl_s = ttl_s
        self._response_ttl_s = response_ttl_s
        self._responses: dict[_Key, _Response] = {}
        self._max_turns = max_turns
        self._on_op = on_op
        self._clock = clock
        self._sessions: OrderedDict[_Key, _Session] = OrderedDict()
        self._locks: dict[_Key, _Lock] = {}
        self._session_quota = session_quota
        self._claimed: dict[str, set[str]] = {}  # tenant -> ids of sessions started (live or gone; swept lazily)
        self._next_sweep: dict[str, int] = {}

    async def open(self, tenant: str, session_id: str, *, wait_s: float, ttl_s: float) -> SessionLease:
        """See ``SessionStore.open``."""
        validate_lock_args(wait_s=wait_s, ttl_s=ttl_s)
        key = _key(tenant, session_id)
        lease = SessionLease(tenant, session_id, secrets.token_hex(16), None)

        async def try_once() -> bool | None:
            now = self._clock()
            held = self._locks.get(key)
            if held is not None and held.expires_at > now:
                return None
            self._locks[key] = _Lock(token=lease.token, expires_at=now + ttl_s)
            return True

        start = time.perf_counter()
        try:
            await poll(try_once, wait_s=wait_s)
        finally:
            self._observe("open", start)
        session = self._live(key)
        lease.record = None if session is None else _record(key, session)
        if lease.record is None and self._session_quota is not None:
            self._claim(lease)
        return lease

    def _claim(self, lease: SessionLease) -> None:
        """Count a new session against its tenant's live-session quota; over it, give the lock back and raise."""
        assert self._session_quota is not None
        quota = self._session_quota(lease.tenant)
        claimed = self._claimed.setdefault(lease.tenant, set())
        if lease.session_id in claimed:
            return
        if len(claimed) >= self._next_sweep.get(lease.tenant, 64) or (quota and len(claimed) >= quota):
            self._sweep_claims(lease.tenant)
        if quota and len(claimed) >= quota:
            self._unlock(_key(lease.tenant, lease.session_id), lease)
            raise SessionQuotaExceeded(live=len(claimed), limit=quota)
        claimed.add(lease.session_id)

    def _sweep_claims(self, tenant: str) -> None:
        """Forget the tenant's sessions that are gone (expired or deleted, and no first turn in progress)."""
        claimed = self._claimed.get(tenant, set())
        now = self._clock()
        for session_id in list(claimed):
            key = (tenant, session_id)
            lock = self._locks.get(key)
            if self._live(key) is None and (lock is None or lock.expires_at <= now):
                claimed.discard(session_id)
        self._next_sweep[tenant] = max(64, 2 * len(claimed))

    async def usage(self, tenant: str) -> TenantUsage:
        """See ``SessionStore.usage``."""
        self._sweep_claims(tenant)
        quota = self._session_quota(tenant) if self._session_quota else None
        live = len(self._claimed.get(tenant, ()))
        return TenantUsage(live_sessions=live, max_sessions=quota, max_turns=self._max_turns)

    async def commit(self, lease: SessionLease, commit: TurnCommit) -> SessionRecord:
        """See ``SessionStore.commit``."""
        start = time.perf_counter()
        key = _key(lease.tenant, lease.session_id)
        self._unlock(key, lease)
        session = self._live(key)
        version = 0 if session is None else session.version
        if version != commit.expected_version:
            self._observe("commit", start)
            raise SessionConflict(
                f"session changed since it was read: expected version {commit.expected_version}, "
                f"found {version}; reload the session and retry",
                expected_version=commit.expected_version,
                actual_version=version,
            )
        now = time.time()
        if session is None:
            session = _Session(created=now)
            self._sessions[key] = session
        new_exchanges = commit.exchanges(now)
        session.history.extend(new_exchanges)
        while len(session.history) > self._max_turns:
            session.history.popleft()
        session.version += 1
        session.turns += len(new_exchanges)
        session.updated = now
        session.prompt_tokens += commit.prompt_tokens
        session.completion_tokens += commit.completion_tokens
        if commit.persona is not None:
            session.persona = commit.persona
        if commit.risk_hold is not None:
            session.risk_hold = commit.risk_hold
        if commit.metadata is not None:
            session.metadata = dict(commit.metadata)
        if commit.response is not None:
            self._put_response(key[0], commit.response)
            session.responses.add(commit.response.id)
        session.expires_at = self._clock() + self._ttl_s
        self._sessions.move_to_end(key)
        self._sweep()
        record = _record(key, session)
        self._observe("commit", start)
        return record

    async def release(self, lease: SessionLease) -> None:
        """See ``SessionStore.release``."""
        if lease.released:
            return
        start = time.perf_counter()
        self._unlock(_key(lease.tenant, lease.session_id), lease)
        self._observe("release", start)

    async def rewrite(self, lease: SessionLease, messages: Sequence[Message]) -> SessionRecord:
        """See ``SessionStore.rewrite``."""
        start = time.perf_counter()
        key = _key(lease.tenant, lease.session_id)
        self._unlock(key, lease)
        session = self._live(key)
        version = 0 if session is None else session.version
        if session is None or version != lease.version:
            self._observe("rewrite", start)
            raise SessionConflict(
                f"session changed since it was read: expected version {lease.version}, found {version}",
                expected_version=lease.version,
                actual_version=version,
            )
        session.history = deque(group_exchanges(list(messages)))
        session.version += 1
        session.updated = time.time()
        record = _record(key, session)
        self._observe("rewrite", start)
        return record

    async def save_response(self, tenant: str, response: StoredResponse) -> None:
        """See ``SessionStore.save_response``."""
        start = time.perf_counter()
        self._put_response(validate_tenant(tenant), response)
        self._observe("save_response", start)

    async def get_response(self, tenant: str, response_id: str) -> StoredResponse | None:
        """See ``SessionStore.get_response``."""
        start = time.perf_counter()
        found = self._live_response((validate_tenant(tenant), validate_session_id(response_id)))
        self._observe("get_response", start)
        return None if found is None else StoredResponse.from_json(found.body)

    async def response_chain(self, tenant: str, response_id: str) -> list[StoredResponse] | None:
        """See ``SessionStore.response_chain``."""
        start = time.perf_counter()
        chain: list[StoredResponse] = []
        next_id: str | None = validate_session_id(response_id)
        while next_id is not None:
            found = self._live_response((validate_tenant(tenant), next_id))
            if found is None or len(chain) >= MAX_CHAIN:
                self._observe("response_chain", start)
                return None
            chain.append(StoredResponse.from_json(found.body))
            next_id = chain[-1].previous_response_id
        self._observe("response_chain", start)
        return chain[::-1]

    async def delete_response(self, tenant: str, response_id: str) -> bool:
        """See ``SessionStore.delete_response``."""
        start = time.perf_counter()
        key = (validate_tenant(tenant), validate_session_id(response_id))
        existed = self._live_response(key) is not None
        self._responses.pop(key, None)
        self._observe("delete_response", start)
        return existed

    def _put_response(self, tenant: str, response: StoredResponse) -> None:
        key = (tenant, validate_session_id(response.id))
        self._responses[key] = _Response(response.to_json(), self._clock() + self._response_ttl_s)
        if len(self._responses) > 10_000:  # drop expired ones so memory does not grow without bound
            now = self._clock()
            for stale in [k for k, r in self._responses.items() if r.expires_at <= now]:
                del self._responses[stale]

    def _live_response(self, key: _Key) -> _Response | None:
        found = self._responses.get(key)
        if found is not None and found.expires_at <= self._clock():
            del self._responses[key]
            return None
        return found

    async def get(self, tenant: str, session_id: str) -> SessionRecord | None:
        """See ``SessionStore.get``. Returns a copy: mutating it does not touch the store."""
        start = time.perf_counter()
        key = _key(tenant, session_id)
        session = self._live(key)
        record = None if session is None else _record(key, session)
        self._observe("get", start)
        return record

    def _unlock(self, key: _Key, lease: SessionLease) -> None:
        """Release the lock if ``lease`` still holds it (a holder whose lock expired and was taken over frees
        nothing)."""
        if lease.released:
            return
        lease.released = True
        held = self._locks.get(key)
        if held is not None and held.token == lease.token:
            del self._locks[key]

    async def delete(self, tenant: str, session_id: str) -> bool:
        """See ``SessionStore.delete``."""
        start = time.perf_counter()
        key = _key(tenant, session_id)
        session = self._live(key)
        self._sessions.pop(key, None)
        for response_id in session.responses if session is not None else ():
            self._responses.pop((key[0], response_id), None)
        self._observe("delete", start)
        return session is not None

    async def ping(self) -> None:
        """Always answers: the store is this process."""
        self._observe("ping", time.perf_counter())

    async def close(self) -> None:
        """Drop all sessions and locks (they live only in this process)."""
        self._sessions.clear()
        self._locks.clear()

    def _live(self, key: _Key) -> _Session | None:
        session = self._sessions.get(key)
        if session is not None and session.expires_at <= self._clock():
            del self._sessions[key]
            return None
        return session

    def _sweep(self) -> None:
        now = self._clock()
        while self._sessions:
            key, session = next(iter(self._sessions.items()))
            if session.expires_at > now:
                break
            del self._sessions[key]
        # Locks are few (one per in-flight turn); drop expired ones so abandoned keys do not accumulate.
        if len(self._locks) > 1024:
            for key in [k for k, held in self._locks.items() if held.expires_at <= now]:
                del self._locks[key]

    def _observe(self, op: str, start: float) -> None:
        if self._on_op is None:
            return
        try:
            self._on_op(op, time.perf_counter() - start, True)
        except Exception:
            log.warning("session_store_observer_failed", op=op, exc_info=True)


def _key(tenant: str, session_id: str) -> _Key:
    return validate_tenant(tenant), validate_session_id(session_id)


def _record(key: _Key, session: _Session) -> SessionRecord:
    return SessionRecord(
        session_id=key[1],
        tenant=key[0],
        persona=session.persona or None,
        messages=[message for turn in session.history for message in turn],
        turns=session.turns,
        created=session.created,
        updated=session.updated,
        version=session.version,
        prompt_tokens=session.prompt_tokens,
        completion_tokens=session.completion_tokens,
        risk_hold=session.risk_hold,
        metadata=dict(session.metadata),
    )
