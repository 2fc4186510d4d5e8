"""Fair admission: per-tenant stream and queue caps, the round-robin queue, push-out, and rpm/tpm with a fake clock.

Everything runs on the real event loop with real futures; "time" only moves where a test moves the fake clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest

from app.chat.admission import Admission, Slot
from app.chat.errors import Overloaded, RateLimited
from app.chat.rate_limit import MemoryRateLimiter
from app.chat.tenants import TenantDirectory, TenantLimits, pool_defaults
from app.observability import TENANT_LABEL_LIMIT, tenant_label
from tests.waiting import async_wait_until


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coro)


def directory(max_inflight: int, max_queued: int, **limits: TenantLimits) -> TenantDirectory:
    return TenantDirectory(max_inflight=max_inflight, max_queued=max_queued, limits=limits, tenants=limits)


async def queue_up(admission: Admission, tenant: str, count: int = 1) -> list[asyncio.Task[Slot]]:
    """Start ``count`` requests of ``tenant`` and wait until they are all queued."""
    tasks = []
    for _ in range(count):
        before = admission.queued
        tasks.append(asyncio.create_task(admission.acquire(tenant)))
        await async_wait_until(
            lambda b=before: admission.queued == b + 1, what=f"a request of {tenant} to queue", timeout=5
        )
    return tasks


def test_defaults_are_a_share_of_the_pool() -> None:
    alone = pool_defaults(TenantLimits(), max_inflight=16, max_queued=16, tenants=1)
    assert (alone.max_streams, alone.max_queued) == (16, 16)
    shared = pool_defaults(TenantLimits(), max_inflight=5, max_queued=0, tenants=3)
    assert (shared.max_streams, shared.max_queued, shared.rpm) == (3, 0, None)
    configured = pool_defaults(TenantLimits(rpm=60, max_streams=2), max_inflight=16, max_queued=16, tenants=2)
    assert (configured.rpm, configured.max_streams, configured.max_queued) == (60, 2, 8)
    table = directory(8, 8, gold=TenantLimits(max_streams=6), bronze=TenantLimits(rpm=10))
    assert table.limits_for("gold").max_streams == 6
    assert table.limits_for("bronze") == TenantLimits(rpm=10, max_streams=4, max_queued=4)
    assert table.limits_for("unknown") == table.defaults
    table.update({}, ["only-one"])  # a reload leaving one tenant: the whole pool again
    assert table.limits_for("gold").max_streams == 8


def test_a_tenant_at_its_stream_cap_waits_while_another_gets_a_free_slot() -> None:
    async def main() -> None:
        admission = Admission(4, 8, queue_timeout_s=5, tenants=directory(4, 8, a=TenantLimits(), b=TenantLimits()))
        a1, a2 = await admission.acquire("a"), await admission.acquire("a")  # a's cap: half the pool
        [a3] = await queue_up(admission, "a")  # slots are free, but a is at its cap
        assert admission.running == 2 and admission.usage("a") == (2, 1)
        b1 = await asyncio.wait_for(admission.acquire("b"), 1)  # b is not behind a's queue
        assert admission.usage("b") == (1, 0)
        a1.release()
        await asyncio.wait_for(a3, 1)  # a's own slot freed: its waiter goes on
        for slot in (a2, b1, a3.result()):
            slot.release()
        assert (admission.running, admission.queued) == (0, 0)

    run(main())


def test_over_its_queue_cap_a_tenant_gets_rate_limit_exceeded_and_others_are_unaffected() -> None:
    async def main() -> None:
        limits = {"a": TenantLimits(max_streams=1, max_queued=1), "b": TenantLimits()}
        admission = Admission(2, 8, queue_timeout_s=5, tenants=directory(2, 8, **limits))
        slot = await admission.acquire("a")
        [waiting] = await queue_up(admission, "a")
        with pytest.raises(RateLimited) as info:
            await admission.acquire("a")
        assert info.value.code == "rate_limit_exceeded" and info.value.reason == "tenant_queue_full"
        assert info.value.retry_after_s >= 1
        assert "at most 1 generating and 1 waiting" in info.value.message
        other = await asyncio.wait_for(admission.acquire("b"), 1)
        other.release()
        slot.release()
        (await asyncio.wait_for(waiting, 1)).release()

    run(main())


def test_free_slots_go_round_robin_across_tenants_not_first_come() -> None:
    async def main() -> None:
        order: list[str] = []
        admission = Admission(1, 10, queue_timeout_s=5)  # caps = the whole pool: only the queue order matters
        holder = await admission.acquire("c")
        waiting = {"a": await queue_up(admission, "a", 3), "b": await queue_up(admission, "b", 2)}
        running = holder
        for _ in range(5):
            running.release()
            done, _ = await asyncio.wait([t for ts in waiting.values() for t in ts], return_when="FIRST_COMPLETED")
            [task] = done
            tenant = next(name for name, tasks in waiting.items() if task in tasks)
            waiting[tenant].remove(task)
            order.append(tenant)
            running = task.result()
        running.release()
        assert order == ["a", "b", "a", "b", "a"]  # first come would be a, a, a, b, b

    run(main())


def test_without_fairness_the_queue_is_first_come() -> None:
    async def main() -> None:
        admission = Admission(1, 10, queue_timeout_s=5, fair=False, tenants=directory(1, 10, a=TenantLimits()))
        holder = await admission.acquire("c")
        tasks = [*await queue_up(admission, "a", 2), *await queue_up(admission, "b", 1)]
        running = holder
        for expected in tasks:
            running.release()
            running = await asyncio.wait_for(expected, 1)
        running.release()
        assert admission.running == 0

    run(main())


def test_a_full_queue_pushes_out_the_greediest_tenants_newest_waiter() -> None:
    async def main() -> None:
        limits = {"a": TenantLimits(max_streams=1, max_queued=3), "b": TenantLimits(max_streams=1)}
        admission = Admission(1, 3, queue_timeout_s=5, tenants=directory(1, 3, **limits))
        holder = await admission.acquire("a")
        a_waiters = await queue_up(admission, "a", 3)  # the whole global queue
        b_waiter = asyncio.create_task(admission.acquire("b"))  # takes the place of a's newest
        await async_wait_until(lambda: admission.usage("b") == (0, 1), what="b to queue", timeout=5)
        with pytest.raises(RateLimited) as info:
            await asyncio.wait_for(a_waiters[-1], 1)
        assert info.value.reason == "fair_share" and admission.queued == 3
        holder.release()
        first = await asyncio.wait_for(a_waiters[0], 1)  # a was first in the round
        first.release()
        (await asyncio.wait_for(b_waiter, 1)).release()  # then b, before a's second
        (await asyncio.wait_for(a_waiters[1], 1)).release()
        assert (admission.running, admission.queued) == (0, 0)

    run(main())


def test_a_full_queue_without_a_greedier_tenant_is_server_overloaded() -> None:
    async def main() -> None:
        admission = Admission(1, 1, queue_timeout_s=5, tenants=directory(1, 1, a=TenantLimits(), b=TenantLimits()))
        holder = await admission.acquire("a")
        [waiting] = await queue_up(admission, "a")
        with pytest.raises(Overloaded) as info:
            await admission.acquire("b")  # a has one waiting, b none: not two more, no push-out
        assert info.value.code == "server_overloaded" and not isinstance(info.value, RateLimited)
        holder.release()
        (await asyncio.wait_for(waiting, 1)).release()

    run(main())


def test_rpm_gcra_with_a_fake_clock() -> None:
    async def main() -> None:
        clock = FakeClock()
        tenants = directory(4, 4, a=TenantLimits(rpm=2))
        admission = Admission(4, 4, queue_timeout_s=5, tenants=tenants, limiter=MemoryRateLimiter(clock))
        first = await admission.acquire("a")
        assert first.rate is not None and first.rate.requests is not None
        assert (first.rate.requests.limit, first.rate.requests.remaining) == (2, 1)
        assert first.rate.requests.reset_s == pytest.approx(30.0)
        second = await admission.acquire("a")
        assert second.rate is not None and second.rate.requests is not None and second.rate.requests.remaining == 0
        with pytest.raises(RateLimited) as info:
            await admission.acquire("a")
        assert info.value.reason == "rpm" and info.value.retry_after_s == 30
        assert info.value.status is not None and info.value.status.requests is not None
        assert info.value.status.requests.remaining == 0
        assert "requests per minute (RPM): limit 2" in info.value.message
        other = await admission.acquire("b")  # no rpm for b: no budget reported
        assert other.rate is None
        clock.now += 29.9
        with pytest.raises(RateLimited):
            await admission.acquire("a")  # a refused request consumed nothing
        clock.now += 0.1
        third = await admission.acquire("a")
        for slot in (first, second, third, other):
            slot.release()

    run(main())


def test_tpm_is_charged_when_the_generation_ends() -> None:
    async def main() -> None:
        clock = FakeClock()
        admission = Admission(
            4, 4, queue_timeout_s=5, tenants=directory(4, 4, a=TenantLimits(tpm=600)), limiter=MemoryRateLimiter(clock)
        )
        slot = await admission.acquire("a")
        assert slot.rate is not None and slot.rate.tokens is not None and slot.rate.tokens.remaining == 600
        slot.release(prompt_tokens=500, completion_tokens=100)  # the whole minute's budget
        await async_wait_until(lambda: not admission._charges, what="the charge to land")
        with pytest.raises(RateLimited) as info:
            await admission.acquire("a")
        assert info.value.reason == "tpm" and info.value.retry_after_s == 1  # one token back after 0.1 s
        clock.now += 30
        half = await admission.acquire("a")
        assert half.rate is not None and half.rate.tokens is not None and half.rate.tokens.remaining == 300
        half.release()
        await admission.close()

    run(main())


def test_tenant_labels_are_hashes_and_capped() -> None:
    label = tenant_label("acme-corp")
    assert len(label) == 8 and "acme" not in label and label == tenant_label("acme-corp")
    labels = {tenant_label(f"tenant-{i}") for i in range(TENANT_LABEL_LIMIT + 50)}
    assert "other" in labels and len(labels) <= TENANT_LABEL_LIMIT + 1
