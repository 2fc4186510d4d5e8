"""Requests and tokens per minute per tenant: GCRA in Redis (one Lua script, shared by every replica) or in process.

GCRA (the generic cell rate algorithm) keeps one number per limit, the *theoretical arrival time* (TAT): the moment
the tenant's budget is full again. A request moves the request TAT forward by 60 s / rpm and is refused when that
would put it more than 60 s ahead of now: a tenant may spend a whole minute's requests at once, then one every
60/rpm s. Tokens are known only when a request ends, so they are charged then (the token TAT moves forward by
tokens x 60 s / tpm, with no ceiling: a long reply overdraws the budget and the tenant waits it off), and a request
is refused while the token TAT is so far ahead that not one token is left. Both checks are one atomic step, and a
refused request consumes nothing. One key per limit and tenant, expiring when its budget is full again::

    {prefix}:rl:{T}:requests   {prefix}:rl:{T}:tokens      (T: first 32 hex digits of sha256(tenant))

In Redis the clock is Redis's own (``TIME``), so replicas with skewed clocks still share one limit.

Redis down (refused, timed out, or an error answer): the limiter **fails open to in-process counting** rather than
refusing everyone or letting everyone through: each replica enforces the same limits on what it sees (so a tenant
may get up to replicas x its limit while Redis is away), requests keep working (stateless ones entirely; sessions
fail on their own store), and Redis is tried again after ``down_for_s``. The switch is logged once per outage
(``rate_limiter_unavailable`` / ``rate_limiter_recovered``) and counted in ``sweetie_rate_limiter_fallbacks_total``.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import structlog
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from app.chat.tenants import Budget, RateDecision, RateStatus, TenantLimits
from app.observability import RATE_LIMITER_FALLBACKS

log = structlog.get_logger(__name__)

PERIOD_MS = 60_000.0
_EPS = 1e-6
_REFUSED = {0: None, 1: "requests", 2: "tokens"}

# KEYS: requests TAT, tokens TAT. ARGV: now in ms ('' = Redis TIME), rpm (0: none), tpm (0: none), tokens to charge.
# A charge (ARGV[4] > 0) only moves the token TAT. Otherwise: {refused (0 no, 1 requests, 2 tokens),
# remaining requests, ms until the request budget is full, remaining tokens, ms until the token budget is full,
# ms to wait before retrying}. :func:`gcra` is the same arithmetic in Python (the in-process limiter); a test keeps
# the two in step.
GCRA_LUA = """
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
else
  now = tonumber(ARGV[1])
end
local period = 60000
local rpm, tpm, charge = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local function tat_of(key)
  local v = redis.call('GET', key)
  if v then return math.max(tonumber(v), now) end
  return now
end
local function save(key, tat)
  redis.call('SET', key, string.format('%.3f', tat), 'PX', math.ceil(tat - now) + 1000)
end
if charge > 0 then
  if tpm > 0 then save(KEYS[2], tat_of(KEYS[2]) + charge * period / tpm) end
  return {0, 0, 0, 0, 0, 0}
end
local refused, retry, rem_req, reset_req, rem_tok, reset_tok = 0, 0, 0, 0, 0, 0
local new_req = nil
if rpm > 0 then
  local step = period / rpm
  local tat = tat_of(KEYS[1])
  local nxt = tat + step
  if nxt - now > period + 0.001 then
    refused = 1
    retry = nxt - now - period
    reset_req = tat - now
  else
    new_req = nxt
    rem_req = math.floor((period - (nxt - now)) / step + 1e-6)
    reset_req = nxt - now
  end
end
if tpm > 0 then
  local step = period / tpm
  local used = tat_of(KEYS[2]) - now
  rem_tok = math.floor((period - used) / step + 1e-6)
  if rem_tok < 1 then
    rem_tok = 0
    if refused == 0 then refused = 2 end
    retry = math.max(retry, used - period + step)
  end
  reset_tok = used
end
if refused == 0 and new_req then save(KEYS[1], new_req) end
return {refused, rem_req, math.ceil(reset_req), rem_tok, math.ceil(reset_tok), math.ceil(retry)}
"""


class RateLimiter(Protocol):
    """Per-tenant rpm/tpm. ``check`` decides (and counts the request when admitted); ``charge`` adds a finished
    request's tokens."""

    async def check(self, tenant: str, limits: TenantLimits) -> RateDecision: ...

    async def charge(self, tenant: str, limits: TenantLimits, tokens: int) -> None: ...

    async def close(self) -> None: ...


def gcra(requests_tat: float, tokens_tat: float, now: float, rpm: int, tpm: int) -> tuple[list[int], float | None]:
    """The check of :data:`GCRA_LUA` in Python: (its six-number answer, the new request TAT or None)."""
    refused, retry, rem_req, reset_req, rem_tok, reset_tok = 0, 0.0, 0, 0.0, 0, 0.0
    new_req = None
    if rpm > 0:
        step = PERIOD_MS / rpm
        tat = max(requests_tat, now)
        nxt = tat + step
        if nxt - now > PERIOD_MS + 0.001:
            refused, retry, reset_req = 1, nxt - now - PERIOD_MS, tat - now
        else:
            new_req = nxt
            rem_req = math.floor((PERIOD_MS - (nxt - now)) / step + _EPS)
            reset_req = nxt - now
    if tpm > 0:
        step = PERIOD_MS / tpm
        used = max(tokens_tat, now) - now
        rem_tok = math.floor((PERIOD_MS - used) / step + _EPS)
        if rem_tok < 1:
            rem_tok = 0
            refused = refused or 2
            retry = max(retry, used - PERIOD_MS + step)
        reset_tok = used
    answer = [refused, rem_req, math.ceil(reset_req), rem_tok, math.ceil(reset_tok), math.ceil(retry)]
    return answer, (round(new_req, 3) if refused == 0 and new_req is not None else None)


def decision(answer: Sequence[int | str], limits: TenantLimits) -> RateDecision:
    """A :class:`RateDecision` from the six numbers of :data:`GCRA_LUA` (or :func:`gcra`)."""
    refused, rem_req, reset_req, rem_tok, reset_tok, retry = (int(x) for x in answer)
    status = RateStatus(
        requests=Budget(limits.rpm, rem_req, reset_req / 1000) if limits.rpm else None,
        tokens=Budget(limits.tpm, rem_tok, reset_tok / 1000) if limits.tpm else None,
    )
    return RateDecision(status=status, refused=_REFUSED[refused], retry_after_s=retry / 1000 if refused else 0.0)


class MemoryRateLimiter:
    """GCRA in this process (no Redis configured, or Redis down). ``clock``: monotonic seconds (tests fake it)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tats: dict[str, list[float]] = {}  # tenant -> [requests TAT, tokens TAT], in ms of the clock

    def check_now(self, tenant: str, limits: TenantLimits) -> RateDecision:
        if not (limits.rpm or limits.tpm):
            return RateDecision()
        now = self._clock() * 1000
        tats = self._tats.setdefault(tenant, [now, now])
        answer, new_tat = gcra(tats[0], tats[1], now, limits.rpm or 0, limits.tpm or 0)
        if new_tat is not None:
            tats[0] = new_tat
        self._prune(now)
        return decision(answer, limits)

    def charge_now(self, tenant: str, limits: TenantLimits, tokens: int) -> None:
        if not limits.tpm or tokens <= 0:
            return
        now = self._clock() * 1000
        tats = self._tats.setdefault(tenant, [now, now])
        tats[1] = round(max(tats[1], now) + tokens * PERIOD_MS / limits.tpm, 3)

    async def check(self, tenant: str, limits: TenantLimits) -> RateDecision:
        return self.check_now(tenant, limits)

    async def charge(self, tenant: str, limits: TenantLimits, tokens: int) -> None:
        self.charge_now(tenant, limits, tokens)

    async def close(self) -> None:
        self._tats.clear()

    def _prune(self, now: float) -> None:
        """Forget tenants whose budgets are full again (keeps the table as small as the set of active tenants)."""
        if len(self._tats) > 1024:
            for tenant in [t for t, (r, k) in self._tats.items() if r <= now and k <= now]:
                del self._tats[tenant]


class RedisRateLimiter:
    """GCRA in Redis, shared by every replica; counts in this process while Redis is down (see the module doc).

    Args:
        client: a ``redis.asyncio.Redis`` with ``decode_responses=True``; the limiter owns it.
        key_prefix: first part of the keys (``sweetie``, as the session store).
        down_for_s: after a Redis failure, how long to count in-process before trying Redis again.
        fallback: the in-process limiter used meanwhile (a fresh one by default).
    """

    def __init__(
        self,
        client: Redis,
        *,
        key_prefix: str = "sweetie",
        down_for_s: float = 1.0,
        fallback: MemoryRateLimiter | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._prefix = key_prefix
        self._script = client.register_script(GCRA_LUA)
        self._fallback = fallback or MemoryRateLimiter(clock)
        self._down_for_s = down_for_s
        self._clock = clock
        self._down_until: float | None = None

    @classmethod
    def from_url(cls, url: str, *, timeout_s: float, key_prefix: str = "sweetie") -> RedisRateLimiter:
        """A limiter over its own small connection pool; ``timeout_s`` bounds connects, calls and the pool wait."""
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=32,
            timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            socket_timeout=timeout_s,
            retry=Retry(NoBackoff(), retries=1, supported_errors=(RedisConnectionError,)),
            decode_responses=True,
        )
        return cls(Redis.from_pool(pool), key_prefix=key_prefix)

    def keys(self, tenant: str) -> list[str]:
        tag = hashlib.sha256(tenant.encode()).hexdigest()[:32]
        return [f"{self._prefix}:rl:{{{tag}}}:requests", f"{self._prefix}:rl:{{{tag}}}:tokens"]

    async def check(self, tenant: str, limits: TenantLimits) -> RateDecision:
        if not (limits.rpm or limits.tpm):
            return RateDecision()
        if self._degraded():
            return self._fallback.check_now(tenant, limits)
        try:
            answer = await self._script(keys=self.keys(tenant), args=["", limits.rpm or 0, limits.tpm or 0, 0])
        except (RedisError, OSError) as exc:
            self._trip(exc)
            return self._fallback.check_now(tenant, limits)
        self._recovered()
        return decision(answer, limits)

    async def charge(self, tenant: str, limits: TenantLimits, tokens: int) -> None:
        if not limits.tpm or tokens <= 0:
            return
        if self._degraded():
            self._fallback.charge_now(tenant, limits, tokens)
            return
        try:
            await self._script(keys=self.keys(tenant), args=["", 0, limits.tpm, tokens])
        except (RedisError, OSError) as exc:
            self._trip(exc)
            self._fallback.charge_now(tenant, limits, tokens)

    async def close(self) -> None:
        await self._client.aclose()

    def _degraded(self) -> bool:
        if self._down_until is None or self._clock() >= self._down_until:
            return False
        RATE_LIMITER_FALLBACKS.inc()
        return True

    def _trip(self, exc: BaseException) -> None:
        RATE_LIMITER_FALLBACKS.inc()
        if self._down_until is None:
            log.warning(
                "rate_limiter_unavailable",
                error_type=type(exc).__name__,
                detail="Redis did not answer: counting rpm/tpm in this process (per replica) until it does",
            )
        self._down_until = self._clock() + self._down_for_s

    def _recovered(self) -> None:
        if self._down_until is not None:
            self._down_until = None
            log.info("rate_limiter_recovered", detail="rpm/tpm counted in Redis again")
