"""Redis session store (``redis.asyncio``): shared by all replicas, survives restarts of the app.

Layout, per tenant and session (``T`` = first 32 hex digits of sha256(tenant), so raw API keys never appear in key
names and no tenant string can forge another tenant's prefix; ``{id}`` is a Redis Cluster hash tag keeping one
session's keys in one slot)::

    {prefix}:T:session:{id}            hash: version, turns, created, updated, persona, prompt_tokens,
                                       completion_tokens, risk_hold, metadata (JSON), commit_id
    {prefix}:T:session:{id}:turns      list: one JSON array of messages per exchange, oldest first
    {prefix}:T:session:{id}:lock       string: the lock holder's random token, with a PX TTL
    {prefix}:T:session:{id}:responses  set: ids of the stored responses that belong to the session (a conversation)
    {prefix}:T:response:{rid}          hash: body (the stored response, JSON), prev (previous response id), with the
                                       response TTL (not sliding)
    {prefix}:T:sessions                sorted set: the tenant's live sessions (id -> ms until known live), for the
                                       live-session quota; written when a new session starts, swept lazily

A ``previous_response_id`` chain is read by one script that follows ``prev`` links inside Redis (one round trip;
the keys it visits are derived in the script, so this part wants a single Redis, not Redis Cluster). Deleting a
session deletes its responses in the same script.

Why a hash plus a list of per-exchange JSON strings rather than one JSON blob: a commit writes only the new exchange
(RPUSH), trimming by whole exchanges is one LTRIM, export is one LRANGE, and Lua never parses JSON. Both keys get the
same sliding TTL in the same script, so they expire together.

Round trips per turn (uncontended; each Lua script is one EVALSHA): ``open`` (lock + read) 1, ``commit`` (version
check + append + unlock) 1: 2 in all; a new session's first turn adds 1 (``claim``: the live-session quota, when the
store has one). ``release`` after a failed turn, ``get``, ``delete``, ``usage`` and ``ping`` are 1 each. A
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

from app.core.messages import Message, group_exchanges
from app.sessions.base import (
    MAX_CHAIN,
    OpObserver,
    SessionBusy,
    SessionConflict,
    SessionLease,
    SessionQuota,
    SessionQuotaExceeded,
    SessionRecord,
    SessionStoreUnavailable,
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

_PREFIX_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,64}")

# The record as an array: the meta fields above, then the stored exchanges' JSON arrays joined with commas (one bulk
# string: one JSON parse on the client, not one per exchange); an empty array when the session does not exist.
_READ_RECORD = """
local function read_record()
  local m = redis.call('HMGET', KEYS[1], 'version', 'turns', 'created', 'updated', 'persona',
                       'prompt_tokens', 'completion_tokens', 'risk_hold', 'metadata')
  if not m[1] then return {} end
  local out = {}
  for i = 1, 9 do out[i] = m[i] or '' end
  out[10] = table.concat(redis.call('LRANGE', KEYS[2], 0, -1), ',')
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

# KEYS: meta, turns, lock, responses set, response key (or a placeholder when none). ARGV: expected_version,
# commit_id, now, ttl_ms, max_turns, set_persona (0/1), persona, prompt_tokens, completion_tokens,
# new_exchange_count, token, risk_hold ('' keeps it), metadata JSON ('' keeps it), response body ('' when none),
# previous response id, response TTL ms, then one JSON string per exchange to append. Releases the lock if ARGV[11]
# holds it, whatever the outcome. Returns {0, actual_version} on a version conflict, else {1, record...}.
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
  for i = 17, #ARGV do redis.call('RPUSH', KEYS[2], ARGV[i]) end
  redis.call('LTRIM', KEYS[2], -tonumber(ARGV[5]), -1)
  redis.call('HSET', KEYS[1], 'version', version + 1, 'updated', ARGV[3], 'commit_id', ARGV[2])
  redis.call('HINCRBY', KEYS[1], 'turns', ARGV[10])
  redis.call('HINCRBY', KEYS[1], 'prompt_tokens', ARGV[8])
  redis.call('HINCRBY', KEYS[1], 'completion_tokens', ARGV[9])
  if ARGV[6] == '1' then redis.call('HSET', KEYS[1], 'persona', ARGV[7]) end
  if ARGV[12] ~= '' then redis.call('HSET', KEYS[1], 'risk_hold', ARGV[12]) end
  if ARGV[13] ~= '' then redis.call('HSET', KEYS[1], 'metadata', ARGV[13]) end
  if ARGV[14] ~= '' then
    redis.call('HSET', KEYS[5], 'body', ARGV[14], 'prev', ARGV[15])
    redis.call('PEXPIRE', KEYS[5], ARGV[16])
    redis.call('SADD', KEYS[4], string.match(KEYS[5], '{([^}]*)}$'))
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
if redis.call('EXISTS', KEYS[4]) == 1 then
  redis.call('PEXPIRE', KEYS[4], math.max(tonumber(ARGV[4]), tonumber(ARGV[16])))
end
local record = read_record()
table.insert(record, 1, 1)
return record
"""
)

# KEYS: meta, turns, lock. ARGV: expected_version, now, ttl_ms, token, then one JSON string per exchange: the
# whole new message list. Releases the lock if ARGV[4] holds it. {0, actual_version} on a conflict, else {1, record}.
_REWRITE_LUA = (
    _READ_RECORD
    + """
if redis.call('GET', KEYS[3]) == ARGV[4] then redis.call('DEL', KEYS[3]) end
local version = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if version == 0 or version ~= tonumber(ARGV[1]) then return {0, version} end
redis.call('DEL', KEYS[2])
for i = 5, #ARGV do redis.call('RPUSH', KEYS[2], ARGV[i]) end
redis.call('HSET', KEYS[1], 'version', version + 1, 'updated', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
local record = read_record()
table.insert(record, 1, 1)
return record
"""
)

# KEYS: meta, turns, responses set. ARGV: the response key prefix. Deletes the session and its responses; returns
# the number of session keys deleted.
_DELETE_LUA = """
for _, rid in ipairs(redis.call('SMEMBERS', KEYS[3])) do redis.call('DEL', ARGV[1] .. '{' .. rid .. '}') end
redis.call('DEL', KEYS[3])
return redis.call('DEL', KEYS[1], KEYS[2])
"""

# KEYS: response. ARGV: body, previous id, ttl_ms.
_SAVE_RESPONSE_LUA = """
redis.call('HSET', KEYS[1], 'body', ARGV[1], 'prev', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

# KEYS: the newest response. ARGV: the response key prefix, max chain length. Follows 'prev' links: {1, bodies
# newest first joined with commas} when the whole chain exists, {0} when a link is missing or the chain too long.
_CHAIN_LUA = """
local bodies = {}
local key = KEYS[1]
for _ = 1, tonumber(ARGV[2]) do
  local h = redis.call('HMGET', key, 'body', 'prev')
  if not h[1] then return {0} end
  bodies[#bodies + 1] = h[1]
  if not h[2] or h[2] == '' then return {1, table.concat(bodies, ',')} end
  key = ARGV[1] .. '{' .. h[2] .. '}'
end
return {0}
"""

# KEYS: lock. ARGV: token. Deletes the lock only if this token still holds it.
_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: the tenant's session index (sorted set: session id -> ms until which it is known to be live). ARGV: the
# tenant's session key prefix, the session id to claim ('' only counts), the quota (0: none), how long a claim holds
# before it is checked again (the lock TTL, ms). Entries whose time has come are checked (at most 100 per call): a
# live session (or the lock of a first turn in progress) gets its new expiry, a gone one is dropped. Before refusing
# (and when only counting), every entry is checked, so deleted sessions never count against the quota (up to 10,000
# entries; beyond that the count may include deleted sessions until their expiry). {1, live} claimed or counted;
# {0, live} over the quota. Reads keys it derives (single Redis, not Cluster, like the response chains).
_CLAIM_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function check(id)
  local meta = ARGV[1] .. '{' .. id .. '}'
  local ttl = redis.call('PTTL', meta)
  if ttl == -2 then ttl = redis.call('PTTL', meta .. ':lock') end
  if ttl == -2 then redis.call('ZREM', KEYS[1], id) return end
  if ttl < 0 then ttl = 86400000 end
  redis.call('ZADD', KEYS[1], now + ttl, id)
end
local function check_all()
  if redis.call('ZCARD', KEYS[1]) <= 10000 then
    for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do check(id) end
  end
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 100)) do check(id) end
local id, quota = ARGV[2], tonumber(ARGV[3])
if id == '' then
  check_all()
  return {1, redis.call('ZCARD', KEYS[1])}
end
if quota > 0 and not redis.call('ZSCORE', KEYS[1], id) and redis.call('ZCARD', KEYS[1]) >= quota then
  check_all()
  local live = redis.call('ZCARD', KEYS[1])
  if live >= quota then return {0, live} end
end
local hold = now + tonumber(ARGV[4])
if tonumber(redis.call('ZSCORE', KEYS[1], id) or '0') < hold then redis.call('ZADD', KEYS[1], hold, id) end
return {1, redis.call('ZCARD', KEYS[1])}
"""

_UNREACHABLE = (RedisConnectionError, OSError)


@dataclass(frozen=True, slots=True)
class _Keys:
    meta: str
    turns: str
    lock: str
    responses: str


def _tenant_tag(tenant: str) -> str:
    """The tenant's namespace in key names: a hash, so raw API keys never appear and no name forges another."""
    return hashlib.sha256(validate_tenant(tenant).encode()).hexdigest()[:32]


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
        response_ttl_s: float = 30 * 86_400.0,
        max_turns: int = 200,
        retry_after_s: float = 1.0,
        on_op: OpObserver | None = None,
        session_quota: SessionQuota | None = None,
    ) -> None:
        validate_store_limits(ttl_s=ttl_s, max_turns=max_turns)
        validate_store_limits(ttl_s=response_ttl_s, max_turns=max_turns)
        self._response_ttl_ms = _ms(response_ttl_s)
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
        self._rewrite_script = client.register_script(_REWRITE_LUA)
        self._delete_script = client.register_script(_DELETE_LUA)
        self._save_response_script = client.register_script(_SAVE_RESPONSE_LUA)
        self._chain_script = client.register_script(_CHAIN_LUA)
        self._claim_script = client.register_script(_CLAIM_LUA)
        self._session_quota = session_quota

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
        response_ttl_s: float = 30 * 86_400.0,
        max_turns: int = 200,
        retry_after_s: float = 1.0,
        on_op: OpObserver | None = None,
        session_quota: SessionQuota | None = None,
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
            response_ttl_s=response_ttl_s,
            max_turns=max_turns,
            retry_after_s=retry_after_s,
            on_op=on_op,
            session_quota=session_quota,
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
            raise_if_cancelled()  # (with ``uncertain`` still set: a lock this reply granted is given back)
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
        if lease.record is None and self._session_quota is not None:
            await self._claim(lease, _ms(ttl_s))  # a new session: one more round trip, on its first turn only
        return lease

    async def _claim(self, lease: SessionLease, hold_ms: int) -> None:
        """Count a new session against its tenant's live-session quota; over it, give the lock back and raise."""
        assert self._session_quota is not None
        quota = self._session_quota(lease.tenant) or 0
        args: list[str | int] = [self._session_prefix(lease.tenant), lease.session_id, quota, hold_ms]
        try:
            async with self._op("claim"):
                claimed, live = await self._claim_script(keys=[self._index_key(lease.tenant)], args=args)
        except BaseException:
            await asyncio.shield(self.release(lease))
            raise
        if not int(claimed):
            await self.release(lease)
            raise SessionQuotaExceeded(live=int(live), limit=quota)

    async def usage(self, tenant: str) -> TenantUsage:
        """See ``SessionStore.usage``. One round trip."""
        async with self._op("usage"):
            _, live = await self._claim_script(
                keys=[self._index_key(tenant)], args=[self._session_prefix(tenant), "", 0, 0]
            )
        quota = self._session_quota(tenant) if self._session_quota else None
        return TenantUsage(live_sessions=int(live), max_sessions=quota, max_turns=self._max_turns)

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
            "" if commit.metadata is None else json.dumps(dict(commit.metadata), ensure_ascii=False),
            "" if commit.response is None else commit.response.to_json(),
            (commit.response.previous_response_id or "") if commit.response else "",
            self._response_ttl_ms,
        ]
        args.extend(_encode_exchange(exchange) for exchange in kept)
        response_key = self._response_key(lease.tenant, commit.response.id) if commit.response else keys.meta
        script_keys = [keys.meta, keys.turns, keys.lock, keys.responses, response_key]
        try:
            async with self._op("commit"):
                try:
                    reply = await self._commit_script(keys=script_keys, args=args)
                except RedisTimeoutError:
                    reply = await self._commit_script(keys=script_keys, args=args)
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

    async def rewrite(self, lease: SessionLease, messages: Sequence[Message]) -> SessionRecord:
        """See ``SessionStore.rewrite``. One round trip, which also releases the lock."""
        keys = self._keys(lease.tenant, lease.session_id)
        args: list[str | int] = [lease.version, repr(time.time()), self._ttl_ms, lease.token]
        args.extend(_encode_exchange(exchange) for exchange in group_exchanges(list(messages)))
        try:
            async with self._op("rewrite"):
                reply = await self._rewrite_script(keys=[keys.meta, keys.turns, keys.lock], args=args)
        except BaseException:
            await asyncio.shield(self.release(lease))
            raise
        lease.released = True
        if int(reply[0]) == 0:
            raise SessionConflict(
                f"session changed since it was read: expected version {lease.version}, found {int(reply[1])}",
                expected_version=lease.version,
                actual_version=int(reply[1]),
            )
        return _parse_record(lease.tenant, lease.session_id, reply[1:])

    async def save_response(self, tenant: str, response: StoredResponse) -> None:
        """See ``SessionStore.save_response``. One round trip."""
        key = self._response_key(tenant, response.id)
        args: list[str | int] = [response.to_json(), response.previous_response_id or "", self._response_ttl_ms]
        async with self._op("save_response"):
            await self._save_response_script(keys=[key], args=args)

    async def get_response(self, tenant: str, response_id: str) -> StoredResponse | None:
        """See ``SessionStore.get_response``. One round trip."""
        key = self._response_key(tenant, response_id)
        async with self._op("get_response"):
            body = await self._client.hget(key, "body")
        return None if body is None else StoredResponse.from_json(str(body))

    async def response_chain(self, tenant: str, response_id: str) -> list[StoredResponse] | None:
        """See ``SessionStore.response_chain``. One round trip: the script follows the links."""
        key = self._response_key(tenant, response_id)
        async with self._op("response_chain"):
            reply = await self._chain_script(keys=[key], args=[self._response_prefix(tenant), MAX_CHAIN])
        if int(reply[0]) == 0:
            return None
        return [StoredResponse.from_json(item) for item in json.loads(f"[{reply[1]}]")][::-1]

    async def delete_response(self, tenant: str, response_id: str) -> bool:
        """See ``SessionStore.delete_response``. One round trip."""
        key = self._response_key(tenant, response_id)
        async with self._op("delete_response"):
            removed = await self._client.delete(key)
        return int(removed) > 0

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
            removed = await self._delete_script(
                keys=[keys.meta, keys.turns, keys.responses], args=[self._response_prefix(tenant)]
            )
        return int(removed) > 0

    async def ping(self) -> None:
        """See ``SessionStore.ping``. One round trip."""
        async with self._op("ping"):
            await self._client.ping()

    async def close(self) -> None:
        """Close the client and its connection pool."""
        await self._client.aclose()

    def _session_prefix(self, tenant: str) -> str:
        return f"{self._prefix}:{_tenant_tag(tenant)}:session:"

    def _index_key(self, tenant: str) -> str:
        return f"{self._prefix}:{_tenant_tag(tenant)}:sessions"

    def _keys(self, tenant: str, session_id: str) -> _Keys:
        base = f"{self._prefix}:{_tenant_tag(tenant)}:session:{{{validate_session_id(session_id)}}}"
        return _Keys(meta=base, turns=f"{base}:turns", lock=f"{base}:lock", responses=f"{base}:responses")

    def _response_prefix(self, tenant: str) -> str:
        return f"{self._prefix}:{_tenant_tag(tenant)}:response:"

    def _response_key(self, tenant: str, response_id: str) -> str:
        return f"{self._response_prefix(tenant)}{{{validate_session_id(response_id)}}}"

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


def raise_if_cancelled() -> None:
    """Raise ``CancelledError`` if this task was cancelled while a Redis call finished.

    Python 3.11's ``asyncio.wait_for``, which redis-py awaits its replies through, returns the reply and drops the
    cancellation when both land in the same loop turn (fixed in 3.12): a client gone while its turn waits for a busy
    session lock would otherwise keep polling, and could take the lock, for the whole wait. The dropped request
    still counts in ``Task.cancelling()``.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


def _encode_exchange(exchange: Sequence[Message]) -> str:
    return json.dumps([message.to_dict() for message in exchange], ensure_ascii=False, separators=(",", ":"))


def _parse_record(tenant: str, session_id: str, fields: Sequence[Any]) -> SessionRecord:
    version, turns, created, updated, persona, prompt_tokens, completion_tokens, risk_hold, metadata = fields[:9]
    joined = fields[9]
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
        metadata=json.loads(metadata) if metadata else {},
    )
