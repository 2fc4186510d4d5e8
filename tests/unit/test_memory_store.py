"""In-process session store, deterministically with a fake clock.

The shared behaviour suite (the same tests as the Redis store) lives in tests/integration/test_redis_store.py and runs
the memory store too; these cases need a controlled clock or look at this store's own guarantees.
"""

from __future__ import annotations

import asyncio

import pytest

from app.core.messages import Message
from app.sessions.base import InvalidHistory, SessionBusy, SessionConflict, SessionStore, TurnCommit
from app.sessions.memory_store import MemorySessionStore
from tests.session_turns import commit_turn, turn

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_session_ttl_slides_with_each_commit() -> None:
    clock = FakeClock()
    store = MemorySessionStore(ttl_s=60, clock=clock)
    await commit_turn(store, "t", "s", turn("1", 0))
    clock.now += 59
    await commit_turn(store, "t", "s", turn("2", 1))
    clock.now += 59
    record = await store.get("t", "s")
    assert record is not None and record.turns == 2
    clock.now += 1
    assert await store.get("t", "s") is None
    with pytest.raises(SessionConflict):  # an expired session cannot be continued at its old version
        await commit_turn(store, "t", "s", turn("3", 2))


async def test_reading_does_not_extend_the_ttl() -> None:
    clock = FakeClock()
    store = MemorySessionStore(ttl_s=10, clock=clock)
    await commit_turn(store, "t", "s", turn("1", 0))
    for _ in range(3):
        clock.now += 4
        await store.get("t", "s")
    assert await store.get("t", "s") is None


async def test_lock_expires_by_clock_and_late_release_keeps_the_new_holder() -> None:
    clock = FakeClock()
    store = MemorySessionStore(clock=clock)
    stale = await store.open("t", "s", wait_s=0, ttl_s=30)
    with pytest.raises(SessionBusy):
        await store.open("t", "s", wait_s=0, ttl_s=30)
    clock.now += 30
    fresh = await store.open("t", "s", wait_s=0, ttl_s=30)
    await store.release(stale)  # late: must not free the new holder
    with pytest.raises(SessionBusy):
        await store.open("t", "s", wait_s=0, ttl_s=30)
    await store.release(fresh)


async def test_waiting_lock_is_granted_when_the_holder_leaves() -> None:
    store = MemorySessionStore()
    order: list[str] = []

    async def holder() -> None:
        lease = await store.open("t", "s", wait_s=0, ttl_s=30)
        order.append("holder in")
        await asyncio.sleep(0.05)
        order.append("holder out")
        await store.release(lease)

    async def waiter() -> None:
        await asyncio.sleep(0.01)
        lease = await store.open("t", "s", wait_s=5, ttl_s=30)
        order.append("waiter in")
        await store.release(lease)

    await asyncio.gather(holder(), waiter())
    assert order == ["holder in", "holder out", "waiter in"]


async def test_records_are_copies() -> None:
    store = MemorySessionStore()
    record = await commit_turn(store, "t", "s", turn("1", 0))
    record.messages.clear()
    again = await store.get("t", "s")
    assert again is not None and [m.content for m in again.messages] == ["q:1", "a:1"]


async def test_expired_sessions_are_swept_so_memory_does_not_grow() -> None:
    clock = FakeClock()
    store = MemorySessionStore(ttl_s=10, clock=clock)
    for i in range(100):
        await commit_turn(store, "t", f"old-{i}", turn("x", 0))
    clock.now += 11
    await commit_turn(store, "t", "fresh", turn("x", 0))
    assert len(store._sessions) == 1  # the 100 expired sessions are gone without being read


async def test_a_failing_observer_does_not_break_the_store() -> None:
    def observer(op: str, seconds: float, ok: bool) -> None:
        raise RuntimeError("metrics backend down")

    store = MemorySessionStore(on_op=observer)
    record = await commit_turn(store, "t", "s", turn("1", 0))
    assert record.version == 1 and await store.get("t", "s") == record


async def test_close_drops_the_data() -> None:
    store = MemorySessionStore()
    await commit_turn(store, "t", "s", turn("1", 0))
    await store.close()
    assert await store.get("t", "s") is None


async def test_protocol_conformance() -> None:
    assert isinstance(MemorySessionStore(), SessionStore)


@pytest.mark.parametrize(("kwargs", "message"), [({"ttl_s": 0}, "ttl_s"), ({"max_turns": 0}, "max_turns")])
def test_bad_limits_are_rejected(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MemorySessionStore(**kwargs)  # type: ignore[arg-type]


def test_empty_tenant_is_a_caller_error() -> None:
    store = MemorySessionStore()
    with pytest.raises(ValueError, match="tenant"):
        asyncio.run(store.get("", "s"))


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        ([], "at least one"),
        ([("user", "hi"), ("assistant", "hello")], "end with a user message"),
        ([("system", "persona"), ("user", "hi")], "role 'system' cannot be stored"),
    ],
)
def test_malformed_commits_are_rejected(messages: list[tuple[str, str]], message: str) -> None:
    with pytest.raises(InvalidHistory, match=message):
        TurnCommit(
            messages=[Message(role, text) for role, text in messages],  # type: ignore[arg-type]
            reply=Message("assistant", "r"),
            expected_version=0,
        )


def test_negative_version_or_tokens_are_rejected() -> None:
    hi, reply = [Message("user", "hi")], Message("assistant", "r")
    with pytest.raises(ValueError, match="expected_version"):
        TurnCommit(messages=hi, reply=reply, expected_version=-1)
    with pytest.raises(ValueError, match="tokens"):
        TurnCommit(messages=hi, reply=reply, expected_version=0, prompt_tokens=-1)
