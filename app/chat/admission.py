"""Admission control: a bound on in-flight generations and on requests queued for a slot.

Decided before any stream starts: a request either gets a slot (at once, or after a bounded wait in the queue) or
an OpenAI-shaped 429 with Retry-After. The default bound is the engine's batch capacity (``max_num_seqs``), so
requests beyond it wait here, visible in metrics, instead of inside the engine.
"""

from __future__ import annotations

import asyncio
from collections import deque

from app.chat.errors import Overloaded, Unavailable
from app.observability import QUEUED, REJECTED


class Admission:
    """Counts running and queued generations; ``acquire`` returns a :class:`Slot` or raises ``Overloaded`` (429)
    or, while draining, ``Unavailable`` (503)."""

    def __init__(self, max_inflight: int, max_queued: int, queue_timeout_s: float, retry_after_s: int = 1) -> None:
        self.max_inflight = max_inflight
        self.max_queued = max_queued
        self.queue_timeout_s = queue_timeout_s
        self.retry_after_s = retry_after_s
        self.running = 0
        self.draining = False
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def queued(self) -> int:
        return len(self._waiters)

    @property
    def busy(self) -> int:
        """Running plus queued: what a drain waits for."""
        return self.running + self.queued

    def _reject(self, reason: str) -> Overloaded:
        REJECTED.labels(reason=reason).inc()
        return Overloaded(
            "The server is at capacity; please retry shortly.",
            code="server_overloaded" if reason == "queue_full" else "queue_timeout",
            retry_after_s=self.retry_after_s,
        )

    async def acquire(self) -> Slot:
        if self.draining:
            REJECTED.labels(reason="draining").inc()
            raise Unavailable("The server is shutting down; retry on another replica.", retry_after_s=1)
        if self.running < self.max_inflight and not self._waiters:
            self.running += 1
            return Slot(self)
        if len(self._waiters) >= self.max_queued:
            raise self._reject("queue_full")
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        QUEUED.set(len(self._waiters))
        try:
            await asyncio.wait_for(asyncio.shield(waiter), self.queue_timeout_s)
        except TimeoutError:
            if waiter.done() and not waiter.cancelled():  # handed a slot just as the wait ran out: keep it
                return Slot(self)
            raise self._reject("queue_timeout") from None
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._release()  # got a slot but the caller went away: pass it on
            raise
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            waiter.cancel()
            QUEUED.set(len(self._waiters))
        return Slot(self)

    def _release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes straight to the next waiter
                QUEUED.set(len(self._waiters))
                return
        self.running -= 1


class Slot:
    """One admitted generation; ``release`` is idempotent."""

    def __init__(self, admission: Admission) -> None:
        self._admission: Admission | None = admission

    def release(self) -> None:
        if self._admission is not None:
            self._admission._release()
            self._admission = None
