"""Admission control: a bound on in-flight generations and on queued requests, shared fairly between tenants.

Decided before any stream starts: a request gets a slot (at once, or after a bounded wait in the queue) or an
OpenAI-shaped 429 with Retry-After. The global bound is the engine's batch capacity (``max_num_seqs``) by default,
so requests beyond it wait here, visible in metrics, instead of inside the engine. A request of tenant T, in order:

1. **Rate limits** (``app/chat/rate_limit.py``): T over its rpm or tpm -> 429 ``rate_limit_exceeded``.
2. **Stream cap**: T already has ``max_streams`` generations running -> it waits in T's queue even when slots are
   free; T already has ``max_queued`` waiting too -> 429 ``rate_limit_exceeded`` (reason ``tenant_queue_full``).
3. **Fair queue**: one first-come queue per tenant; a freed slot goes to the next tenant in round-robin order that
   is under its stream cap, not to whoever came first across everyone, so a tenant with fifty waiting requests and
   one with a single request alternate.
4. **Global queue full**: the newcomer takes the place of the newest waiter of the tenant with the most waiting
   (when that tenant has at least two more waiting than the newcomer's), which gets the 429 (``fair_share``)
   instead; otherwise the newcomer gets 429 ``server_overloaded``.

The caps are per replica; rpm/tpm are shared by every replica when counted in Redis. With ``fair=False``
(``SWEETIE_FAIR_ADMISSION=false``) admission is the plain global pool: one first-come queue and no per-tenant caps
(rate limits still apply). When a generation ends its slot is released with its token counts, which go to the
tenant's tpm budget and metrics.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from dataclasses import dataclass, field

import structlog

from app.chat.errors import Overloaded, RateLimited, Unavailable
from app.chat.rate_limit import RateLimiter
from app.chat.tenants import RateDecision, RateStatus, TenantDirectory, TenantLimits
from app.observability import QUEUED, REJECTED, TENANT_ADMITTED, TENANT_REJECTED, TENANT_TOKENS, tenant_label

log = structlog.get_logger(__name__)

_ONE_QUEUE = "*"
"""The single queue's key when fairness is off."""


@dataclass(eq=False)
class _Waiter:
    tenant: str
    cap: int
    """The tenant's stream cap when it queued: it is served only while the tenant runs fewer."""
    future: asyncio.Future[str | None]
    """Resolved with None (a slot is granted) or a refusal reason (pushed out of the queue)."""


@dataclass
class _Queue:
    running: int = 0
    waiters: deque[_Waiter] = field(default_factory=deque)


class Admission:
    """Counts running and queued generations per tenant; ``acquire`` returns a :class:`Slot` or raises
    ``Overloaded``/``RateLimited`` (429) or, while draining, ``Unavailable`` (503).

    Args:
        max_inflight, max_queued: the global pool: generations at once, requests waiting.
        queue_timeout_s: longest wait in the queue (then 429 ``queue_timeout``).
        tenants: per-tenant limits (default: none beyond the pool).
        limiter: rpm/tpm counting (default: none).
        fair: per-tenant caps and the round-robin queue; False: one first-come queue.
    """

    def __init__(
        self,
        max_inflight: int,
        max_queued: int,
        queue_timeout_s: float,
        retry_after_s: int = 1,
        *,
        tenants: TenantDirectory | None = None,
        limiter: RateLimiter | None = None,
        fair: bool = True,
    ) -> None:
        self.max_inflight = max_inflight
        self.max_queued = max_queued
        self.queue_timeout_s = queue_timeout_s
        self.retry_after_s = retry_after_s
        self.tenants = tenants or TenantDirectory(max_inflight=max_inflight, max_queued=max_queued)
        self.limiter = limiter
        self.fair = fair
        self.running = 0
        self.draining = False
        self._queued = 0
        self._queues: dict[str, _Queue] = {}
        self._ring: deque[str] = deque()
        """Keys of the queues with waiters, in round-robin order."""
        self._charges: set[asyncio.Task[None]] = set()

    @property
    def queued(self) -> int:
        return self._queued

    @property
    def busy(self) -> int:
        """Running plus queued: what a drain waits for."""
        return self.running + self._queued

    def usage(self, tenant: str) -> tuple[int, int]:
        """(running, queued) of one tenant in this replica (of everyone when fairness is off)."""
        queue = self._queues.get(tenant if self.fair else _ONE_QUEUE)
        return (queue.running, len(queue.waiters)) if queue else (0, 0)

    async def acquire(self, tenant: str) -> Slot:
        """A generation slot for ``tenant``, at once or after a wait in the fair queue."""
        if self.draining:
            raise self._refuse(tenant, "draining")
        limits = self.tenants.limits_for(tenant)
        status: RateStatus | None = None
        if self.limiter is not None and (limits.rpm or limits.tpm):
            verdict = await self.limiter.check(tenant, limits)
            status = verdict.status
            if verdict.refused is not None:
                raise self._refuse(tenant, "rpm" if verdict.refused == "requests" else "tpm", limits, verdict)
            if self.draining:
                raise self._refuse(tenant, "draining")
        key = tenant if self.fair else _ONE_QUEUE
        cap = min(limits.max_streams or self.max_inflight, self.max_inflight) if self.fair else self.max_inflight
        queue_cap = limits.max_queued if self.fair and limits.max_queued is not None else self.max_queued
        queue = self._queues.setdefault(key, _Queue())
        if self.running < self.max_inflight and queue.running < cap:
            self._grant(queue)
            return self._admitted(tenant, key, limits, status)
        if len(queue.waiters) >= queue_cap and queue_cap < self.max_queued:  # a cap of its own, not the pool's
            self._forget_if_idle(key)
            raise self._refuse(tenant, "tenant_queue_full", limits, status=status)
        if self._queued >= self.max_queued and not (self.fair and self._push_out(key)):
            self._forget_if_idle(key)
            raise self._refuse(tenant, "queue_full", limits)
        waiter = _Waiter(tenant, cap, asyncio.get_running_loop().create_future())
        queue.waiters.append(waiter)
        self._queued += 1
        if len(queue.waiters) == 1:
            self._ring.append(key)
        QUEUED.set(self._queued)
        try:
            await asyncio.wait_for(asyncio.shield(waiter.future), self.queue_timeout_s)
        except TimeoutError:
            if _granted(waiter):  # handed a slot just as the wait ran out: keep it
                return self._admitted(tenant, key, limits, status)
            raise self._refuse(tenant, "queue_timeout", limits) from None
        except BaseException:
            if _granted(waiter):
                self._release(key)  # got a slot but the caller went away: pass it on
            raise
        finally:
            self._unqueue(key, waiter)
            waiter.future.cancel()
            QUEUED.set(self._queued)
        refusal = waiter.future.result()
        if refusal is not None:
            raise self._refuse(tenant, refusal, limits, status=status)
        return self._admitted(tenant, key, limits, status)

    async def close(self) -> None:
        """Wait (briefly) for token charges still on their way to the limiter, then close the limiter."""
        if self._charges:
            await asyncio.wait(set(self._charges), timeout=2.0)
        if self.limiter is not None:
            await self.limiter.close()

    # ---- the queue ----

    def _grant(self, queue: _Queue) -> None:
        queue.running += 1
        self.running += 1

    def _admitted(self, tenant: str, key: str, limits: TenantLimits, status: RateStatus | None) -> Slot:
        TENANT_ADMITTED.labels(tenant=tenant_label(tenant)).inc()
        return Slot(self, tenant, key, limits, status)

    def _release(self, key: str) -> None:
        queue = self._queues[key]
        queue.running -= 1
        self.running -= 1
        self._dispatch()
        self._forget_if_idle(key)

    def _dispatch(self) -> None:
        """Hand free slots to waiters: the next tenant in round-robin order that is under its stream cap."""
        while self.running < self.max_inflight and self._ring:
            for _ in range(len(self._ring)):
                key = self._ring[0]
                self._ring.rotate(-1)  # served or not, this tenant goes to the back of the round
                queue = self._queues[key]
                head = queue.waiters[0]
                if queue.running < head.cap:
                    queue.waiters.popleft()
                    self._queued -= 1
                    if not queue.waiters:
                        self._ring.remove(key)
                    self._grant(queue)
                    head.future.set_result(None)
                    break
            else:
                break  # every waiting tenant is at its stream cap
        QUEUED.set(self._queued)

    def _push_out(self, key: str) -> bool:
        """Make room in a full queue: refuse the newest waiter of the tenant with the most waiting, if it has at
        least two more than ``key`` (so turns never just swap). True if a place was freed."""
        mine = len(self._queues[key].waiters)
        others = [(len(q.waiters), k) for k, q in self._queues.items() if k != key and q.waiters]
        if not others:
            return False
        most, victim_key = max(others)
        if most < mine + 2:
            return False
        victim = self._queues[victim_key]
        waiter = victim.waiters.pop()
        self._queued -= 1
        if not victim.waiters:
            self._ring.remove(victim_key)
        waiter.future.set_result("fair_share")
        return True

    def _unqueue(self, key: str, waiter: _Waiter) -> None:
        queue = self._queues.get(key)
        if queue is not None and waiter in queue.waiters:
            queue.waiters.remove(waiter)
            self._queued -= 1
            if not queue.waiters:
                self._ring.remove(key)
        self._forget_if_idle(key)

    def _forget_if_idle(self, key: str) -> None:
        queue = self._queues.get(key)
        if queue is not None and queue.running == 0 and not queue.waiters:
            del self._queues[key]

    # ---- accounting and refusals ----

    def _account(self, tenant: str, limits: TenantLimits, prompt_tokens: int, completion_tokens: int) -> None:
        label = tenant_label(tenant)
        if prompt_tokens:
            TENANT_TOKENS.labels(tenant=label, kind="prompt").inc(prompt_tokens)
        if completion_tokens:
            TENANT_TOKENS.labels(tenant=label, kind="completion").inc(completion_tokens)
        tokens = prompt_tokens + completion_tokens
        if self.limiter is None or not limits.tpm or tokens <= 0:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(self._charge(tenant, limits, tokens))  # never delays the response
        self._charges.add(task)
        task.add_done_callback(self._charges.discard)

    async def _charge(self, tenant: str, limits: TenantLimits, tokens: int) -> None:
        assert self.limiter is not None
        try:
            await self.limiter.charge(tenant, limits, tokens)
        except Exception:
            log.warning("token_charge_failed", tenant=tenant_label(tenant), exc_info=True)

    def _refuse(
        self,
        tenant: str,
        reason: str,
        limits: TenantLimits | None = None,
        verdict: RateDecision | None = None,
        status: RateStatus | None = None,
    ) -> Overloaded | Unavailable:
        """Count a refusal and build its error (reasons: the ``reason`` label of the rejection metrics)."""
        REJECTED.labels(reason=reason).inc()
        TENANT_REJECTED.labels(tenant=tenant_label(tenant), reason=reason).inc()
        retry = self.retry_after_s
        if reason == "draining":
            return Unavailable("The server is shutting down; retry on another replica.", retry_after_s=1)
        if reason == "queue_full":
            return Overloaded(
                "The server is at capacity; please retry shortly.", code="server_overloaded", retry_after_s=retry
            )
        if reason == "queue_timeout":
            return Overloaded(
                "The server is at capacity; please retry shortly.", code="queue_timeout", retry_after_s=retry
            )
        assert limits is not None
        if verdict is not None:
            wait = max(1, math.ceil(verdict.retry_after_s))
            name, limit = (
                ("requests per minute (RPM)", limits.rpm)
                if reason == "rpm"
                else ("tokens per minute (TPM)", limits.tpm)
            )
            message = f"Rate limit reached for {name}: limit {limit}. Please try again in {wait}s."
            return RateLimited(message, reason=reason, retry_after_s=wait, status=verdict.status)
        if reason == "fair_share":
            message = (
                "The server is at capacity and this API key's tenant has more requests waiting than any other; "
                "please retry shortly."
            )
        else:
            message = (
                f"Too many concurrent requests for this API key's tenant: at most {limits.max_streams} generating "
                f"and {limits.max_queued} waiting. Please retry when one has finished."
            )
        return RateLimited(message, reason=reason, retry_after_s=retry, status=status)


def _granted(waiter: _Waiter) -> bool:
    future = waiter.future
    return future.done() and not future.cancelled() and future.result() is None


class Slot:
    """One admitted generation; ``release`` (idempotent) gives it back and charges the tokens it used."""

    def __init__(
        self, admission: Admission, tenant: str, key: str, limits: TenantLimits, rate: RateStatus | None
    ) -> None:
        self._admission: Admission | None = admission
        self.tenant = tenant
        self._key = key
        self._limits = limits
        self.rate = rate
        """The tenant's rpm/tpm budgets at admission (``x-ratelimit-*`` headers); None without such limits."""

    def release(self, prompt_tokens: int = 0, completion_tokens: int = 0) -> None:
        if self._admission is None:
            return
        admission, self._admission = self._admission, None
        admission._release(self._key)
        admission._account(self.tenant, self._limits, prompt_tokens, completion_tokens)
