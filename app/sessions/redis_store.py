"""Redis session store (``redis.asyncio``): shared by all replicas, survives restarts of the app.

Layout, per tenant and session (``T`` = first 32 hex digits of sha256(tenant), so raw API keys never appear in key
names and no tenant string can forge another tenant's prefix; ``{id}`` is a Redis Cluster hash tag keeping one
session's keys in one slot)::

    {prefix}:T:session:{id}          hash: version, turns, created, updated, persona, prompt_tokens,
                                     completion_tokens, commit_id
    {prefix}:T:session:{id}:turns    list: one JSON array of messages per turn, oldest first
    {prefix}:T:session:{id}:lock     string: the lock holder's random token, with a PX TTL

Why a hash plus a list of per-turn JSON strings rather than one JSON blob: a commit writes only the new turn
(RPUSH), trimming by whole turns is one LTRIM, export is one LRANGE, and Lua never parses JSON (a blob would make
every commit decode and re-encode the whole history inside Redis, with cjson's float-precision and empty-array
quirks). Both keys get the same sliding TTL in the same script, so they expire together.

Round trips per turn (uncontended; each Lua script is one EVALSHA): ``lock`` 1, ``get`` 1, ``commit_turn`` 1,
unlock 1, so 4 in all. ``delete`` and ``ping`` are 1 each. A contended lock adds one round trip per poll; the first
use of a script after a Redis restart adds 2 (NOSCRIPT, SCRIPT LOAD).

Failure behaviour: connect and read timeouts (default 0.5 s) make an unreachable or hung Redis fail fast with
``SessionStoreUnavailable``; a connection error is retried once on a fresh connection (so pooled connections made
stale by a Redis restart heal without failing a request), a timeout is not retried. The pool reconnects by itself
once Redis is back, so one store object outlives outages. The commit and lock scripts are idempotent under that
retry (a commit whose reply was lost is recognised by its commit id; a lock re-request by its token).
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

from app.sessions.base import (
    OpObserver,
    SessionConflict,
    SessionRecord,
    SessionStoreUnavailable,
    StoredMessage,
    TurnCommit,
    acquire_with_backoff,
    validate_lock_args,
    validate_session_id,
    validate_store_limits,
    validate_tenant,
)

log = structlog.get_logger(__name__)

_PREFIX_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,64}")

# Returns the record as an array: version, turns, created, updated, persona, prompt_tokens, completion_tokens, and
# the stored turns' JSON arrays joined with commas (one bulk string: one JSON parse on the client, not one per turn);
# an empty array when the session does not exist.
_READ_RECORD = """
local m = redis.call('HMGET', KEYS[1], 'version', 'turns', 'created', 'updated', 'persona',
                     'prompt_tokens', 'completion_tokens')
if not m[1] then return {} end
local out = {}
for i = 1, 7 do out[i] = m[i] or '' end
out[8] = table.concat(redis.call('LRANGE', KEYS[2], 0, -1), ',')
return out
"""

_GET_LUA = _READ_RECORD

# KEYS: meta hash, turns list. ARGV: expected_version, commit_id, now, ttl_ms, max_turns, set_persona (0/1),
# persona, prompt_tokens, completion_tokens, new_turn_count, then one JSON string per turn to append.
# Returns {0, actual_version} on a version conflict, else {1, <record as _READ_RECORD>...}.
_COMMIT_LUA = (
    """
local function read_record()
"""
    + _READ_RECORD
    + """
end
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
               'persona', '')
  end
  for i = 11, #ARGV do redis.call('RPUSH', KEYS[2], ARGV[i]) end
  redis.call('LTRIM', KEYS[2], -tonumber(ARGV[5]), -1)
  redis.call('HSET', KEYS[1], 'version', version + 1, 'updated', ARGV[3], 'commit_id', ARGV[2])
  redis.call('HINCRBY', KEYS[1], 'turns', ARGV[10])
  redis.call('HINCRBY', KEYS[1], 'prompt_tokens', ARGV[8])
  redis.call('HINCRBY', KEYS[1], 'completion_tokens', ARGV[9])
  if ARGV[6] == '1' then redis.call('HSET', KEYS[1], 'persona', ARGV[7]) end
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
local record = read_record()
table.insert(record, 1, 1)
return record
"""
)

# KEYS: lock. ARGV: token, ttl_ms. 1 if this token now holds the lock (also when it already did).
_LOCK_LUA = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

# KEYS: lock. ARGV: token. Deletes the lock only if this token still holds it.
_UNLOCK_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)


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
        max_turns: turns kept per session; older whole turns are dropped.
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
        self._commit_script = client.register_script(_COMMIT_LUA)
        self._lock_script = client.register_script(_LOCK_LUA)
        self._unlock_script = client.register_script(_UNLOCK_LUA)

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

    async def get(self, tenant: str, session_id: str) -> SessionRecord | None:
        """See ``SessionStore.get``. One round trip."""
        keys = self._keys(tenant, session_id)
        async with self._op("get"):
            reply = await self._get_script(keys=[keys.meta, keys.turns])
        return _parse_record(tenant, session_id, reply) if reply else None

    @asynccontextmanager
    async def lock(self, tenant: str, session_id: str, *, wait_s: float, ttl_s: float) -> AsyncIterator[None]:
        """See ``SessionStore.lock``. One round trip to take it uncontended (one per poll when contended), one to
        release it."""
        validate_lock_args(wait_s=wait_s, ttl_s=ttl_s)
        keys = self._keys(tenant, session_id)
        token = secrets.token_hex(16)
        ttl_ms = _ms(ttl_s)

        async def try_acquire() -> bool:
            return bool(await self._lock_script(keys=[keys.lock], args=[token, ttl_ms]))

        try:
            async with self._op("lock"):
                await acquire_with_backoff(try_acquire, wait_s=wait_s)
        except asyncio.CancelledError:
            # Cancelled mid-request: Redis may have granted the lock; give it back rather than wait out its TTL.
            await asyncio.shield(self._release(keys.lock, token))
            raise
        try:
            yield
        finally:
            await asyncio.shield(self._release(keys.lock, token))

    async def commit_turn(self, tenant: str, session_id: str, commit: TurnCommit) -> SessionRecord:
        """See ``SessionStore.commit_turn``. One round trip (one Lua script), which also returns the new record."""
        keys = self._keys(tenant, session_id)
        now = time.time()
        turns = commit.to_turns(now)
        kept = turns[-self._max_turns :]  # what LTRIM would keep anyway; bounds the script's argument count
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
            len(turns),
        ]
        args.extend(_encode_turn(turn) for turn in kept)
        async with self._op("commit"):
            reply = await self._commit_script(keys=[keys.meta, keys.turns], args=args)
        if int(reply[0]) == 0:
            actual = int(reply[1])
            raise SessionConflict(
                f"session changed since it was read: expected version {commit.expected_version}, "
                f"found {actual}; reload the session and retry",
                expected_version=commit.expected_version,
                actual_version=actual,
            )
        return _parse_record(tenant, session_id, reply[1:])

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
        except _UNREACHABLE as exc:
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

    async def _release(self, lock_key: str, token: str) -> None:
        """Release the lock if ``token`` still holds it; never raises (the lock's TTL is the fallback)."""
        try:
            async with self._op("unlock"):
                await self._unlock_script(keys=[lock_key], args=[token])
        except SessionStoreUnavailable as exc:
            log.warning("session_lock_release_failed", reason=str(exc))


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


def _encode_turn(turn: Sequence[StoredMessage]) -> str:
    return json.dumps([message.to_dict() for message in turn], ensure_ascii=False, separators=(",", ":"))


def _parse_record(tenant: str, session_id: str, fields: Sequence[Any]) -> SessionRecord:
    version, turns, created, updated, persona, prompt_tokens, completion_tokens, joined = fields[:8]
    messages = [StoredMessage.from_dict(item) for turn in json.loads(f"[{joined}]") for item in turn]
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
    )
