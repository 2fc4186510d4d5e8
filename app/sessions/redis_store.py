"""Redis session store (``redis.asyncio``): shared by all replicas, survives restarts of the app.

Layout, per tenant and session (``T`` = first 32 hex digits of sha256(tenant), so raw API keys never appear in key
names and no tenant string can forge another tenant's prefix; ``{id}`` is a Redis Cluster hash tag keeping one
session's keys in one slot)::

    {prefix}:T:session:{id}          hash: version, turns, created, updated, persona, prompt_tokens,
                                     completion_tokens, risk_hold, commit_id
    {prefix}:T:session:{id}:turns    list: one JSON array of messages per exchange, oldest first
    {prefix}:T:session:{id}:lock     string: the lock holder's random token, with a PX TTL

Why a hash plus a list of per-exchange JSON strings rather than one JSON blob: a commit writes only the new exchange
(RPUSH), trimming by whole exchanges is one LTRIM, export is one LRANGE, and Lua never parses JSON. Both keys get the
same sliding TTL in the same script, so they expire together.

Round trips per turn (uncontended; each Lua script is one EVALSHA): ``open`` (lock + read) 1, ``commit`` (version
check + append + unlock) 1: 2 in all. ``release`` after a failed turn, ``get``, ``delete`` and ``ping`` are 1 each. A
contended lock adds one round trip per poll; the first use of a script after a Redis restart adds 2 (NOSCRIPT,
SCRIPT LOAD).

Failure behaviour: connect and read timeouts (default 0.5 s) bound every call. A connection error is retried once on
a fresh connection (pooled connections made stale by a Redis restart heal without failing a request); a Redis that
refuses connections fails fast with ``SessionStoreUnavailable`` (503). A *timeout* is not proof that Redis is down
(on a CPU-saturated event loop the reply may simply be read late): ``open`` treats a timed-out poll as one more poll
within its wait, and ``commit`` retries a timed-out call once (the scripts are idempotent under retry: a commit whose
reply was lost is recognised by its commit id, a lock re-request by its token). Whatever goes wrong after a lock may
have been granted, the token is released, so a session is never left answering 409 for the lock's TTL.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import structlog
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.core.messages import Message
from app.sessions.base import (
    OpObserver,
    SessionBusy,
    SessionConflict,
    SessionLease,
    SessionRecord,
    SessionStoreUnavailable,
    TurnCommit,
    poll,
    validate_lock_args,
    validate_session_id,
    validate_store_limits,
    validate_tenant,
)

log = structlog.get_logger(__name__)

_PREFIX_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,64}")

# The record as an array: the meta fields above, then the stored exchanges' JSON arrays joined with commas (one bulk
# string: one JSON parse on the client, not one per exchange); an empty array when the session does not exist.
_READ_RECORD = """
local function read_record()
  local m = redis.call('HMGET', KEYS[1], 'version', 'turns', 'created', 'updated', 'persona',
                       'prompt_tokens', 'completion_tokens', 'risk_hold')
  if not m[1] then return {} end
  local out = {}
  for i = 1, 8 do out[i] = m[i] or '' end
  out[9] = table.concat(redis.call('LRANGE', KEYS[2], 0, -1), ',')
  return out
end
"""

_GET_LUA = _READ_RECORD + "return read_record()"

# KEYS: meta, turns, lock. ARGV: token, ttl_ms. {0} when another token holds the lock; else {1, record...}. Taking
# the lock again with the same token (a retry whose reply was lost) extends it.
_OPEN_LUA = (
    _READ_RECORD
    + """
if not redis.call('SET', KEYS[3], ARGV[1], 'NX', 'PX', ARGV[2]) then
  if redis.call('GET', KEYS[3]) ~= ARGV[1] then return {0} end
  redis.call('PEXPIRE', KEYS[3], ARGV[2])
end
local record = read_record()
table.insert(record, 1, 1)
return record
"""
)

# KEYS: meta, turns, lock. ARGV: expected_version, commit_id, now, ttl_ms, max_turns, set_persona (0/1), persona,
# prompt_tokens, completion_tokens, new_exchange_count, token, risk_hold ('' keeps it), then one JSON string per
# exchange to append. Releases the lock if ARGV[11] holds it, whatever the outcome.
# Returns {0, actual_version} on a version conflict, else {1, record...}.
_COMMIT_LUA = (
    _READ_RECORD
    + """
if redis.call('GET', KEYS[3]) == ARGV[11] then redis.call('DEL', KEYS[3]) end
local version = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
local expected = tonumber(ARGV[1])
if version ~= expected then
  if not (version == expected + 1 and redis.call('HGET', KEYS[1], 'commit_id') == ARGV[2]) then
    return {0, version}
  end
else
  if version == 0 then
    redis.call('DEL', KEYS[2])
    redis.call('HSET', KEYS[1], 'created', ARGV[3], 'turns', 0, 'prompt_tokens', 0, 'completion_tokens', 0,
               'persona', '', 'risk_hold', 0)
  end
  for i = 13, #ARGV do redis.call('RPUSH', KEYS[2], ARGV[i]) end
  redis.call('LTRIM', KEYS[2], -tonumber(ARGV[5]), -1)
  redis.call('HSET', KEYS[1], 'version', version + 1, 'updated', ARGV[3], 'commit_id', ARGV[2])
  redis.call('HINCRBY', KEYS[1], 'turns', ARGV[10])
  redis.call('HINCRBY', KEYS[1], 'prompt_tokens', ARGV[8])
  redis.call('HINCRBY', KEYS[1], 'completion_tokens', ARGV[9])
  if ARGV[6] == '1' then redis.call('HSET', KEYS[1], 'persona', ARGV[7]) end
  if ARGV[12] ~= '' then redis.call('HSET', KEYS[1], 'risk_hold', ARGV[12]) end
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
local record = read_record()
table.insert(record, 1, 1)
return record
"""
)

# KEYS: lock. ARGV: token. Deletes the lock only if this token still holds it.
_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_UNREACHABLE = (RedisConnectionError, OSError)


@dataclass(frozen=True, slots=True)
class _Keys:
    meta: str
    turns: str
    lock: str


class RedisSessionStore:
    """``SessionStore`` on Redis. Build it with ``RedisSessionStore.from_url(...)``.

    Args:
        client: a ``redis.asyncio.Redis`` with ``decode_responses=True``; the store owns it (``close()`` closes it).
        key_prefix: first part of every key (``sweetie``); 1-64 characters of ``[A-Za-z0-9._:-]``.
        ttl_s: sliding session TTL; each commit restarts it.
        max_turns: exchanges kept per session; older whole exchanges are dropped.
        retry_after_s: the ``retry_after`` carried by ``SessionStoreUnavailable``.
        on_op: optional ``(op, seconds, ok)`` observer for latency/error metrics.
    """

    def __init__(
        self,
        client: Redis,
        *,
        key_prefix: str = "sweetie",
        ttl_s: float = 86_400.0,
        max_turns: int = 200,
        retry_after_s: float = 1.0,
        on_op: OpObserver | None = None,
    ) -> None:
        validate_store_limits(ttl_s=ttl_s, max_turns=max_turns)
        if _PREFIX_PATTERN.fullmatch(key_prefix) is None:
            raise ValueError(f"key_prefix must be 1-64 characters of [A-Za-z0-9._:-], got {key_prefix!r}")
        self._client = client
        self._prefix = key_prefix
        self._ttl_ms = _ms(ttl_s)
        self._max_turns = max_turns
        self._retry_after_s = retry_after_s
        self._on_op = on_op
        self._get_script = client.register_script(_GET_LUA)
        self._open_script = client.register_script(_OPEN_LUA)
        self._commit_script = client.register_script(_COMMIT_LUA)
        self._release_script = client.register_script(_RELEASE_LUA)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        connect_timeout_s: float = 0.5,
        op_timeout_s: float = 0.5,
        max_connections: int = 64,
        key_prefix: str = "sweetie",
        ttl_s: float = 86_400.0,
        max_turns: int = 200,
        retry_after_s: float = 1.0,
        on_op: OpObserver | None = None,
    ) -> RedisSessionStore:
        """Store over a fresh connection pool for ``url`` (``redis://host:port/db``, ``rediss://`` for TLS).

        ``connect_timeout_s`` bounds TCP connects, ``op_timeout_s`` each read/write and the wait for a free pooled
        connection (at most ``max_connections`` are opened). No I/O happens here; call ``ping()`` to check.
        """
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=op_timeout_s,
            socket_connect_timeout=connect_timeout_s,
            socket_timeout=op_timeout_s,
            retry=Retry(NoBackoff(), retries=1, supported_errors=(RedisConnectionError,)),
            decode_responses=True,
        )
        return cls(
            Redis.from_pool(pool),
            key_prefix=key_prefix,
            ttl_s=ttl_s,
            max_turns=max_turns,
            retry_after_s=retry_after_s,
            on_op=on_op,
        )

    async def open(self, tenant: str, session_id: str, *, wait_s: float, ttl_s: float) -> SessionLease:
        """See ``SessionStore.open``. One round trip uncontended (one per poll when the lock is busy)."""
        validate_lock_args(wait_s=wait_s, ttl_s=ttl_s)
        keys = self._keys(tenant, session_id)
        lease = SessionLease(tenant, session_id, secrets.token_hex(16), None)
        answered = False
        uncertain = False  # a call whose answer we never read may have granted the lock

        async def try_once() -> list[Any] | None:
            nonlocal answered, uncertain
            uncertain = True
            try:
                reply = await self._open_script(keys=[keys.meta, keys.turns, keys.lock], args=[lease.token, _ms(ttl_s)])
            except RedisTimeoutError:
                return None  # maybe a reply read late on a busy loop, not a dead Redis: poll again within the wait
            except _UNREACHABLE:
                uncertain = False  # refused: nothing reached Redis (a dropped reply was already retried once)
                raise
            answered, uncertain = True, False
            return None if int(reply[0]) == 0 else list(reply[1:])

        try:
            async with self._op("open"):
                try:
                    fields = await poll(try_once, wait_s=wait_s)
                except SessionBusy:
                    if not answered:  # no poll got any answer within the whole wait: Redis is not serving
                        raise RedisTimeoutError("every lock poll timed out") from None
                    raise
        except BaseException:
            if uncertain:
                await asyncio.shield(self.release(lease))  # give back a lock we may hold without knowing
            raise
        lease.record = _parse_record(tenant, session_id, fields) if fields else None
        return lease

    async def commit(self, lease: SessionLease, commit: TurnCommit) -> SessionRecord:
        """See ``SessionStore.commit``. One round trip (one Lua script), which also releases the lock and returns
        the new record; a timed-out call is retried once (the script is idempotent)."""
        keys = self._keys(lease.tenant, lease.session_id)
        now = time.time()
        exchanges = commit.exchanges(now)
        kept = exchanges[-self._max_turns :]  # what LTRIM would keep anyway; bounds the script's argument count
        args: list[str | int] = [
            commit.expected_version,
            secrets.token_hex(8),
            repr(now),
            self._ttl_ms,
            self._max_turns,
            0 if commit.persona is None else 1,
            commit.persona or "",
            commit.prompt_tokens,
            commit.completion_tokens,
            len(exchanges),
            lease.token,
            "" if commit.risk_hold is None else commit.risk_hold,
        ]
        args.extend(_encode_exchange(exchange) for exchange in kept)
        try:
            async with self._op("commit"):
                try:
                    reply = await self._commit_script(keys=[keys.meta, keys.turns, keys.lock], args=args)
                except RedisTimeoutError:
                    reply = await self._commit_script(keys=[keys.meta, keys.turns, keys.lock], args=args)
        except BaseException:
            await asyncio.shield(self.release(lease))
            raise
        lease.released = True
        if int(reply[0]) == 0:
            actual = int(reply[1])
            raise SessionConflict(
                f"session changed since it was read: expected version {commit.expected_version}, "
                f"found {actual}; reload the session and retry",
                expected_version=commit.expected_version,
                actual_version=actual,
            )
        return _parse_record(lease.tenant, lease.session_id, reply[1:])

    async def release(self, lease: SessionLease) -> None:
        """See ``SessionStore.release``. One round trip, none after a commit; never raises."""
        if lease.released:
            return
        lease.released = True
        keys = self._keys(lease.tenant, lease.session_id)
        try:
            async with self._op("release"):
                await self._release_script(keys=[keys.lock], args=[lease.token])
        except SessionStoreUnavailable as exc:
            log.warning("session_lock_release_failed", reason=str(exc))

    async def get(self, tenant: str, session_id: str) -> SessionRecord | None:
        """See ``SessionStore.get``. One round trip."""
        keys = self._keys(tenant, session_id)
        async with self._op("get"):
            reply = await self._get_script(keys=[keys.meta, keys.turns])
        return _parse_record(tenant, session_id, reply) if reply else None

    async def delete(self, tenant: str, session_id: str) -> bool:
        """See ``SessionStore.delete``. One round trip. A lock held on the session is left to expire."""
        keys = self._keys(tenant, session_id)
        async with self._op("delete"):
            removed = await self._client.delete(keys.meta, keys.turns)
        return int(removed) > 0

    async def ping(self) -> None:
        """See ``SessionStore.ping``. One round trip."""
        async with self._op("ping"):
            await self._client.ping()

    async def close(self) -> None:
        """Close the client and its connection pool."""
        await self._client.aclose()

    def _keys(self, tenant: str, session_id: str) -> _Keys:
        tenant_tag = hashlib.sha256(validate_tenant(tenant).encode()).hexdigest()[:32]
        base = f"{self._prefix}:{tenant_tag}:session:{{{validate_session_id(session_id)}}}"
        return _Keys(meta=base, turns=f"{base}:turns", lock=f"{base}:lock")

    @asynccontextmanager
    async def _op(self, op: str) -> AsyncIterator[None]:
        """Time one operation for ``on_op`` and turn backend failures into ``SessionStoreUnavailable``."""
        start = time.perf_counter()
        ok = True
        try:
            yield
        except (*_UNREACHABLE, RedisTimeoutError) as exc:
            ok = False
            raise SessionStoreUnavailable(
                f"session store unavailable during {op} ({type(exc).__name__}); retry later",
                retry_after=self._retry_after_s,
            ) from exc
        except RedisError as exc:
            # Unexpected answers (OOM, READONLY after a failover, a script error): the store cannot serve now.
            ok = False
            log.error("session_store_error", op=op, error_type=type(exc).__name__, error=str(exc))
            raise SessionStoreUnavailable(
                f"session store failed during {op} ({type(exc).__name__}); retry later",
                retry_after=self._retry_after_s,
            ) from exc
        finally:
            if self._on_op is not None:
                try:
                    self._on_op(op, time.perf_counter() - start, ok)
                except Exception:
                    log.warning("session_store_observer_failed", op=op, exc_info=True)


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


def _encode_exchange(exchange: Sequence[Message]) -> str:
    return json.dumps([message.to_dict() for message in exchange], ensure_ascii=False, separators=(",", ":"))


def _parse_record(tenant: str, session_id: str, fields: Sequence[Any]) -> SessionRecord:
    version, turns, created, updated, persona, prompt_tokens, completion_tokens, risk_hold, joined = fields[:9]
    messages = [Message.from_dict(item) for exchange in json.loads(f"[{joined}]") for item in exchange]
    return SessionRecord(
        session_id=session_id,
        tenant=tenant,
        persona=persona or None,
        messages=messages,
        turns=int(turns or 0),
        created=float(created or 0.0),
        updated=float(updated or 0.0),
        version=int(version),
        prompt_tokens=int(prompt_tokens or 0),
        completion_tokens=int(completion_tokens or 0),
        risk_hold=int(risk_hold or 0),
    )
