"""Session stores: one behaviour suite run against both the Redis and the in-process store, plus Redis failures.

The ``redis`` cases use SWEETIE_TEST_REDIS_URL (default redis://127.0.0.1:6379/15) and skip when it does not answer,
except under CI=true, where they fail. Outage tests start private redis-server processes.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import pytest
import redis
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from app.core.messages import Message
from app.sessions.base import (
    InvalidSessionId,
    SessionBusy,
    SessionConflict,
    SessionRecord,
    SessionStore,
    SessionStoreUnavailable,
    StoredResponse,
    TurnCommit,
)
from app.sessions.memory_store import MemorySessionStore
from app.sessions.redis_store import RedisSessionStore
from tests.session_turns import commit_turn, turn
from tests.waiting import async_wait_until

if TYPE_CHECKING:
    from tests.integration.redis_fixtures import RedisServer

# Fixtures redis_url, redis_key_prefix, redis_server_factory (a conftest may import them as well).

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

TENANT = "tenant-a"
OTHER_TENANT = "tenant-b"
SID = "sess-1"

StoreFactory = Callable[..., SessionStore]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def make_store(request: pytest.FixtureRequest) -> AsyncIterator[StoreFactory]:
    """``make_store(**options) -> SessionStore`` for the parametrized backend; stores are closed afterwards."""
    stores: list[SessionStore] = []
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("redis_key_prefix")

        def make(**options: Any) -> SessionStore:
            # Generous timeouts: this suite tests semantics, not fail-fast (a loaded CI box must not flake it).
            store = RedisSessionStore.from_url(url, key_prefix=prefix, op_timeout_s=2.0, **options)
            stores.append(store)
            return store
    else:

        def make(**options: Any) -> SessionStore:
            store = MemorySessionStore(**options)
            stores.append(store)
            return store

    yield make
    for store in stores:
        await store.close()


async def _gone(store: SessionStore) -> bool:
    return await store.get(TENANT, SID) is None


def contents(record: SessionRecord | None) -> list[str]:
    assert record is not None
    return [message.content for message in record.messages]


# ---------------------------------------------------------------------------------------------------------------
# Behaviour suite: both stores
# ---------------------------------------------------------------------------------------------------------------


async def test_commits_append_turns_and_bump_metadata(make_store: StoreFactory) -> None:
    store = make_store()
    assert await store.get(TENANT, SID) is None

    first = await commit_turn(
        store,
        TENANT,
        SID,
        TurnCommit(
            messages=[Message("user", "I lost my job today.")],
            reply=Message("assistant", "That sounds really hard.", strategy="Reflection of feelings", tokens=7),
            prompt_tokens=40,
            completion_tokens=7,
            expected_version=0,
            persona="You are a kind supporter.",
        ),
    )
    assert (first.version, first.turns) == (1, 1)
    assert first.created > 0 and first.updated == first.created
    assert first.persona == "You are a kind supporter."

    second = await commit_turn(store, TENANT, SID, turn("2", version=1, prompt_tokens=60, completion_tokens=5))
    assert (second.version, second.turns) == (2, 2)
    assert second.created == first.created and second.updated >= first.updated
    assert second.persona == "You are a kind supporter."  # None keeps the persona

    record = await store.get(TENANT, SID)
    assert record == second
    assert contents(record) == ["I lost my job today.", "That sounds really hard.", "q:2", "a:2"]
    assert [m.role for m in record.messages] == ["user", "assistant", "user", "assistant"]
    assert record.messages[1].strategy == "Reflection of feelings"
    assert record.messages[1].tokens == 7 and record.messages[0].tokens is None
    assert (record.prompt_tokens, record.completion_tokens) == (100, 12)
    assert not record.trimmed


async def test_persona_can_be_replaced_and_cleared(make_store: StoreFactory) -> None:
    store = make_store()
    await commit_turn(store, TENANT, SID, turn("1", version=0, persona="old"))
    replaced = await commit_turn(store, TENANT, SID, turn("2", version=1, persona="new"))
    assert replaced.persona == "new"
    cleared = await commit_turn(store, TENANT, SID, turn("3", version=2, persona=""))
    assert cleared.persona is None


async def test_stale_version_is_a_conflict_and_changes_nothing(make_store: StoreFactory) -> None:
    store = make_store()
    await commit_turn(store, TENANT, SID, turn("1", version=0))
    with pytest.raises(SessionConflict) as caught:
        await commit_turn(store, TENANT, SID, turn("stale", version=0))
    assert (caught.value.expected_version, caught.value.actual_version) == (0, 1)
    with pytest.raises(SessionConflict):
        await commit_turn(store, TENANT, "never-created", turn("x", version=3))
    assert contents(await store.get(TENANT, SID)) == ["q:1", "a:1"]
    assert await store.get(TENANT, "never-created") is None


async def test_lock_contention_raises_busy_after_the_wait(make_store: StoreFactory) -> None:
    store = make_store()
    held = await store.open(TENANT, SID, wait_s=0, ttl_s=10)
    start = time.monotonic()
    with pytest.raises(SessionBusy):
        await store.open(TENANT, SID, wait_s=0.3, ttl_s=10)
    assert time.monotonic() - start >= 0.3  # it waited out wait_s before answering busy
    # Another session, or the same id of another tenant, is not blocked.
    for tenant, session_id in [(TENANT, "sess-2"), (OTHER_TENANT, SID)]:
        await store.release(await store.open(tenant, session_id, wait_s=0, ttl_s=10))
    await store.release(held)
    await store.release(await store.open(TENANT, SID, wait_s=0, ttl_s=10))  # free again


async def test_open_reads_the_session_under_the_lock_and_commit_releases_it(make_store: StoreFactory) -> None:
    store = make_store()
    lease = await store.open(TENANT, SID, wait_s=0, ttl_s=10)
    assert lease.record is None and lease.version == 0
    record = await store.commit(lease, turn("1", version=0))
    again = await store.open(TENANT, SID, wait_s=0, ttl_s=10)  # no release call needed after a commit
    assert again.record == record and again.version == 1
    await store.release(again)
    await store.release(again)  # idempotent


async def test_lock_expires_and_a_stale_holder_cannot_release_the_new_one(make_store: StoreFactory) -> None:
    store = make_store()
    stale = await store.open(TENANT, SID, wait_s=0, ttl_s=0.3)  # a holder that "crashed": it never releases in time

    start = time.monotonic()
    fresh = await store.open(TENANT, SID, wait_s=10, ttl_s=10)
    assert time.monotonic() - start >= 0.25  # granted only once the stale lock expired

    await store.release(stale)  # late release of an expired lock: must not free the fresh one
    with pytest.raises(SessionBusy):
        await store.open(TENANT, SID, wait_s=0.05, ttl_s=10)
    await store.commit(fresh, turn("fresh", version=0))
    with pytest.raises(SessionConflict):  # nor can the stale holder commit over the fresh holder's turn
        await store.commit(stale, turn("stale", version=0))
    assert contents(await store.get(TENANT, SID)) == ["q:fresh", "a:fresh"]
    await store.release(await store.open(TENANT, SID, wait_s=0, ttl_s=10))  # the commit released the lock


@pytest.mark.parametrize("turns", [0, 1, 2, 3, 6, None], ids=lambda t: "after 50 ms" if t is None else f"{t} turns")
async def test_cancelled_open_leaves_no_lock_behind(make_store: StoreFactory, turns: int | None) -> None:
    """A turn queued behind a busy session whose client goes away stops waiting at once, wherever the cancellation
    lands: before the first poll, while a poll's reply is on its way (1-3 loop turns in: Python 3.11's wait_for
    inside redis-py used to drop it, and the open polled on for the whole wait), or between polls."""
    store = make_store()
    held = await store.open(TENANT, SID, wait_s=0, ttl_s=30)
    waiter = asyncio.create_task(store.open(TENANT, SID, wait_s=30, ttl_s=30))  # queued behind it, then the client
    if turns is None:
        await asyncio.sleep(0.05)  # goes away while it polls
    for _ in range(turns or 0):
        await asyncio.sleep(0)
    waiter.cancel()
    done, _ = await asyncio.wait({waiter}, timeout=10)
    assert done, "the cancelled open kept waiting for the lock"
    assert waiter.cancelled()
    await store.release(held)
    await store.release(await store.open(TENANT, SID, wait_s=0, ttl_s=30))  # free at once, not after the 30 s TTL


async def test_lock_arguments_are_checked(make_store: StoreFactory) -> None:
    store = make_store()
    with pytest.raises(ValueError, match="ttl_s"):
        await store.open(TENANT, SID, wait_s=0, ttl_s=0)
    with pytest.raises(ValueError, match="wait_s"):
        await store.open(TENANT, SID, wait_s=-1, ttl_s=1)


async def test_session_expires_after_sliding_ttl(make_store: StoreFactory) -> None:
    # Only lower bounds on time: a stalled machine makes expiry later, never earlier.
    store = make_store(ttl_s=3)
    await commit_turn(store, TENANT, SID, turn("1", version=0))
    await asyncio.sleep(1.5)
    await commit_turn(store, TENANT, SID, turn("2", version=1))  # restarts the TTL
    last_commit = time.monotonic()
    assert contents(await store.get(TENANT, SID)) == ["q:1", "a:1", "q:2", "a:2"]
    await async_wait_until(lambda: _gone(store), timeout=30, what="the session to expire")
    assert time.monotonic() - last_commit >= 2.9  # 3 s after the LAST commit (the first one's TTL was 1.5 s ago)
    restarted = await commit_turn(store, TENANT, SID, turn("3", version=0))
    assert (restarted.version, restarted.turns, contents(restarted)) == (1, 1, ["q:3", "a:3"])


async def test_max_turns_drops_oldest_whole_turns(make_store: StoreFactory) -> None:
    store = make_store(max_turns=3)
    for i in range(5):
        record = await commit_turn(store, TENANT, SID, turn(str(i), version=i))
    assert contents(record) == ["q:2", "a:2", "q:3", "a:3", "q:4", "a:4"]
    assert (record.turns, record.stored_turns, record.version, record.trimmed) == (5, 3, 5, True)
    assert await store.get(TENANT, SID) == record

    # A new session seeded with earlier turns: every turn counts, only the last 3 are kept, whole.
    seeded = await commit_turn(
        store,
        TENANT,
        "seeded",
        TurnCommit(
            messages=[
                Message(role, text)
                for role, text in [
                    *[("user", "u1"), ("assistant", "b1")],
                    *[("user", "u2"), ("user", "u2b"), ("assistant", "b2")],
                    *[("user", "u3"), ("assistant", "b3")],
                    ("user", "u4"),
                ]
            ],
            reply=Message("assistant", "b4"),
            expected_version=0,
        ),
    )
    assert (seeded.turns, seeded.stored_turns, seeded.version) == (4, 3, 1)
    assert contents(seeded) == ["u2", "u2b", "b2", "u3", "b3", "u4", "b4"]


async def test_tenants_are_isolated(make_store: StoreFactory) -> None:
    store = make_store()
    await commit_turn(store, TENANT, SID, turn("private", version=0))

    assert await store.get(OTHER_TENANT, SID) is None
    assert await store.delete(OTHER_TENANT, SID) is False
    with pytest.raises(SessionConflict):  # cannot continue A's session: B's view of the id is empty
        await commit_turn(store, OTHER_TENANT, SID, turn("intrude", version=1))
    own = await commit_turn(store, OTHER_TENANT, SID, turn("own", version=0))
    assert contents(own) == ["q:own", "a:own"]

    assert contents(await store.get(TENANT, SID)) == ["q:private", "a:private"]
    assert contents(await store.get(OTHER_TENANT, SID)) == ["q:own", "a:own"]


async def test_delete_then_get_returns_none(make_store: StoreFactory) -> None:
    store = make_store()
    await commit_turn(store, TENANT, SID, turn("1", version=0))
    assert await store.delete(TENANT, SID) is True
    assert await store.get(TENANT, SID) is None
    assert await store.delete(TENANT, SID) is False
    again = await commit_turn(store, TENANT, SID, turn("after", version=0))
    assert (again.version, contents(again)) == (1, ["q:after", "a:after"])


async def test_concurrent_locked_turns_never_interleave(make_store: StoreFactory) -> None:
    store = make_store()

    async def one_turn(i: int) -> None:
        lease = await store.open(TENANT, SID, wait_s=30, ttl_s=10)
        try:
            await asyncio.sleep(0.001 * (i % 3))  # "generation": give others a chance to interleave
            await store.commit(lease, turn(str(i), version=lease.version))
        finally:
            await store.release(lease)

    await asyncio.gather(*(one_turn(i) for i in range(20)))

    record = await store.get(TENANT, SID)
    assert record is not None
    assert (record.turns, record.version, len(record.messages)) == (20, 20, 40)
    pairs = [(record.messages[k].content, record.messages[k + 1].content) for k in range(0, 40, 2)]
    assert all(q == f"q:{a[2:]}" and a.startswith("a:") for q, a in pairs)  # each question followed by its answer
    assert sorted(int(q[2:]) for q, _ in pairs) == list(range(20))  # all present, none twice


async def test_version_check_alone_prevents_lost_updates(make_store: StoreFactory) -> None:
    store = make_store()
    await commit_turn(store, TENANT, SID, turn("seed", version=0))

    async def racer(i: int) -> bool:
        record = await store.get(TENANT, SID)
        assert record is not None
        await asyncio.sleep(0.001)
        try:
            await commit_turn(store, TENANT, SID, turn(str(i), version=record.version))
        except SessionConflict:
            return False
        return True

    won = await asyncio.gather(*(racer(i) for i in range(10)))
    record = await store.get(TENANT, SID)
    assert record is not None
    assert sum(won) >= 1 and record.turns == 1 + sum(won)
    assert len(record.messages) == 2 * record.turns


async def test_invalid_session_ids_are_rejected(make_store: StoreFactory) -> None:
    store = make_store()
    for bad in ["", "x" * 129, "has space", "a/b", "{tag}", "ü"]:
        with pytest.raises(InvalidSessionId):
            await store.get(TENANT, bad)
        with pytest.raises(InvalidSessionId):
            await commit_turn(store, TENANT, bad, turn("x", version=0))
        with pytest.raises(InvalidSessionId):
            await store.delete(TENANT, bad)
        with pytest.raises(InvalidSessionId):
            await store.open(TENANT, bad, wait_s=0, ttl_s=1)
    ok = "A-z_0.9:" + "x" * 120
    assert (await commit_turn(store, TENANT, ok, turn("x", version=0))).session_id == ok


async def test_observer_sees_every_operation(make_store: StoreFactory) -> None:
    seen: list[tuple[str, float, bool]] = []
    store = make_store(on_op=lambda op, seconds, ok: seen.append((op, seconds, ok)))
    await store.ping()
    await commit_turn(store, TENANT, SID, turn("1", version=0))
    await store.get(TENANT, SID)
    await store.release(await store.open(TENANT, SID, wait_s=0, ttl_s=5))
    await store.delete(TENANT, SID)
    assert [op for op, _, _ in seen] == ["ping", "open", "commit", "get", "open", "release", "delete"]
    assert all(ok and 0 <= seconds < 1 for _, seconds, ok in seen)


def response(rid: str, previous: str | None = None, conversation: str | None = None) -> StoredResponse:
    return StoredResponse(
        id=rid,
        created_at=time.time(),
        input=[Message("user", f"in:{rid}", id=f"msg_in_{rid}")],
        output=[Message("assistant", f"out:{rid}", id=f"msg_out_{rid}")],
        previous_response_id=previous,
        conversation_id=conversation,
        body={"model": "m", "status": "completed"},
    )


async def test_responses_chain_and_branch(make_store: StoreFactory) -> None:
    store = make_store()
    for rid, previous in [("resp_1", None), ("resp_2", "resp_1"), ("resp_3", "resp_1"), ("resp_4", "resp_2")]:
        await store.save_response(TENANT, response(rid, previous))
    chain = await store.response_chain(TENANT, "resp_4")
    assert chain is not None and [r.id for r in chain] == ["resp_1", "resp_2", "resp_4"]
    branch = await store.response_chain(TENANT, "resp_3")  # two responses continue resp_1: both chains hold
    assert branch is not None and [r.id for r in branch] == ["resp_1", "resp_3"]
    assert [m.content for m in branch[1].input] == ["in:resp_3"] and branch[1].output[0].id == "msg_out_resp_3"
    stored = await store.get_response(TENANT, "resp_2")
    assert stored is not None and stored.body == {"model": "m", "status": "completed"}
    assert await store.get_response(OTHER_TENANT, "resp_2") is None  # another tenant's ids are not found
    assert await store.response_chain(OTHER_TENANT, "resp_4") is None
    assert await store.delete_response(TENANT, "resp_1") is True
    assert await store.response_chain(TENANT, "resp_4") is None  # a deleted ancestor breaks the chain
    assert await store.delete_response(TENANT, "resp_1") is False


async def test_conversation_items_metadata_and_erasure(make_store: StoreFactory) -> None:
    store = make_store()
    conv = "conv_test1"
    lease = await store.open(TENANT, conv, wait_s=1, ttl_s=10)
    created = await store.commit(lease, TurnCommit(messages=[], reply=None, expected_version=0, metadata={"a": "1"}))
    assert (created.version, created.messages, created.metadata) == (1, [], {"a": "1"})
    items = [Message("user", "hello"), Message("assistant", "hi there")]
    lease = await store.open(TENANT, conv, wait_s=1, ttl_s=10)
    added = await store.commit(lease, TurnCommit(messages=items, reply=None, expected_version=1))
    assert [m.content for m in added.messages] == ["hello", "hi there"]
    assert all(m.id and m.id.startswith("msg_") for m in added.messages) and added.metadata == {"a": "1"}
    # a turn that also stores its response, in the same atomic step
    lease = await store.open(TENANT, conv, wait_s=1, ttl_s=10)
    turned = await store.commit(
        lease,
        TurnCommit(
            messages=[Message("user", "in:resp_c", id="msg_in_resp_c")],
            reply=Message("assistant", "out:resp_c", id="msg_out_resp_c"),
            expected_version=2,
            response=response("resp_c", conversation=conv),
        ),
    )
    assert [m.id for m in turned.messages[-2:]] == ["msg_in_resp_c", "msg_out_resp_c"]
    assert await store.get_response(TENANT, "resp_c") is not None
    # deleting one item rewrites the list, version-checked
    lease = await store.open(TENANT, conv, wait_s=1, ttl_s=10)
    kept = [m for m in turned.messages if m.content != "hi there"]
    rewritten = await store.rewrite(lease, kept)
    assert [m.content for m in rewritten.messages] == ["hello", "in:resp_c", "out:resp_c"]
    assert rewritten.version == 4
    stale = await store.open(TENANT, conv, wait_s=1, ttl_s=10)
    await store.release(await store.open(TENANT, "other", wait_s=1, ttl_s=10))
    stale.record = turned  # read before the rewrite: its rewrite must not apply
    with pytest.raises(SessionConflict):
        await store.rewrite(stale, kept[:1])
    # erasing the conversation erases its items and the responses recorded with it
    assert await store.delete(TENANT, conv) is True
    assert await store.get(TENANT, conv) is None and await store.get_response(TENANT, "resp_c") is None


async def test_store_satisfies_protocol(make_store: StoreFactory) -> None:
    assert isinstance(make_store(), SessionStore)


# ---------------------------------------------------------------------------------------------------------------
# Redis only
# ---------------------------------------------------------------------------------------------------------------


class CountingConnection(Connection):
    """Counts network round trips: every command or pipeline is written with one ``send_packed_command``."""

    sent = 0

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        type(self).sent += 1
        await super().send_packed_command(command, check_health)


@pytest.mark.redis
async def test_a_turn_costs_two_round_trips(redis_url: str, redis_key_prefix: str) -> None:
    pool = BlockingConnectionPool.from_url(redis_url, connection_class=CountingConnection, decode_responses=True)
    store = RedisSessionStore(Redis.from_pool(pool), key_prefix=redis_key_prefix)
    try:
        for i in range(3):
            if i == 2:  # scripts loaded and a connection open: count a steady-state turn
                CountingConnection.sent = 0
            await commit_turn(store, TENANT, SID, turn(str(i), version=i))
        assert CountingConnection.sent == 2  # open (lock + read), commit (+ unlock); the release is a no-op
    finally:
        await store.close()


class LossyConnection(Connection):
    """Loses the reply of the next command after Redis executed it (a network blip between reply and read)."""

    lose_next = False

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        response = await super().read_response(*args, **kwargs)
        if type(self).lose_next:
            type(self).lose_next = False
            await self.disconnect()
            raise redis.ConnectionError("simulated lost reply")
        return response


@pytest.mark.redis
async def test_a_retried_commit_or_lock_whose_reply_was_lost_is_not_applied_twice(
    redis_url: str, redis_key_prefix: str
) -> None:
    # from_url's policy: a connection error is retried once on a fresh connection. The retry re-runs the script;
    # it must recognise its own commit id / lock token instead of answering "conflict" / "busy".
    pool = BlockingConnectionPool.from_url(
        redis_url,
        connection_class=LossyConnection,
        decode_responses=True,
        retry=Retry(NoBackoff(), retries=1, supported_errors=(redis.ConnectionError,)),
    )
    store = RedisSessionStore(Redis.from_pool(pool), key_prefix=redis_key_prefix)
    try:
        await commit_turn(store, TENANT, SID, turn("1", version=0))  # load the scripts first: their replies matter
        lease = await store.open(TENANT, SID, wait_s=0, ttl_s=10)
        LossyConnection.lose_next = True
        record = await store.commit(lease, turn("2", version=1))
        assert not LossyConnection.lose_next  # the reply was really lost once
        assert (record.version, record.turns, contents(record)) == (2, 2, ["q:1", "a:1", "q:2", "a:2"])

        LossyConnection.lose_next = True
        lease = await store.open(TENANT, SID, wait_s=0, ttl_s=10)
        assert not LossyConnection.lose_next and lease.version == 2
        with pytest.raises(SessionBusy):  # and it is really held
            await store.open(TENANT, SID, wait_s=0, ttl_s=10)
        await store.release(lease)
    finally:
        await store.close()


class LateReplyConnection(Connection):
    """Redis runs the script, but its reply is read too late: the client sees a timeout (a busy event loop)."""

    late_replies = 0
    _script = False

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        packed = command if isinstance(command, bytes | bytearray) else b"".join(command)
        self._script = b"EVALSHA" in packed.upper()  # not the connection handshake, only the store's scripts
        await super().send_packed_command(command, check_health)

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        response = await super().read_response(*args, **kwargs)
        if self._script and type(self).late_replies > 0:
            type(self).late_replies -= 1
            await self.disconnect()
            raise redis.TimeoutError("simulated: the reply came after the socket timeout")
        return response


def late_reply_store(redis_url: str, prefix: str) -> RedisSessionStore:
    pool = BlockingConnectionPool.from_url(
        redis_url,
        connection_class=LateReplyConnection,
        decode_responses=True,
        retry=Retry(NoBackoff(), retries=1, supported_errors=(redis.ConnectionError,)),
    )
    return RedisSessionStore(Redis.from_pool(pool), key_prefix=prefix)


@pytest.mark.redis
async def test_a_timed_out_lock_poll_is_polled_again_not_a_503(redis_url: str, redis_key_prefix: str) -> None:
    store = late_reply_store(redis_url, redis_key_prefix)
    try:
        await commit_turn(store, TENANT, SID, turn("1", version=0))  # scripts loaded
        LateReplyConnection.late_replies = 1  # the lock is granted, but the grant is read as a timeout
        lease = await store.open(TENANT, SID, wait_s=2, ttl_s=300)
        assert LateReplyConnection.late_replies == 0 and lease.version == 1
        with pytest.raises(SessionBusy):  # it holds the lock (the second poll re-entered with the same token)
            await store.open(TENANT, SID, wait_s=0, ttl_s=10)
        LateReplyConnection.late_replies = 1  # the commit's reply is late too: retried once, applied once
        record = await store.commit(lease, turn("2", version=1))
        assert (record.version, contents(record)[-2:]) == (2, ["q:2", "a:2"])
        await store.release(await store.open(TENANT, SID, wait_s=0, ttl_s=10))  # and the commit released it
    finally:
        LateReplyConnection.late_replies = 0
        await store.close()


@pytest.mark.redis
async def test_a_lock_granted_just_before_a_timeout_is_never_left_held(redis_url: str, redis_key_prefix: str) -> None:
    store = late_reply_store(redis_url, redis_key_prefix)
    try:
        await commit_turn(store, TENANT, SID, turn("1", version=0))
        await store.release(await store.open(TENANT, SID, wait_s=0, ttl_s=10))  # every script loaded
        LateReplyConnection.late_replies = 10_000  # every poll is granted or re-entered, and read as a timeout
        with pytest.raises(SessionStoreUnavailable):  # no poll got an answer within the wait: a 503, not a 409
            await store.open(TENANT, SID, wait_s=0.3, ttl_s=300)
        LateReplyConnection.late_replies = 0
        # The lock it was granted (300 s TTL) was released: the next turn gets it at once.
        await store.release(await store.open(TENANT, SID, wait_s=0, ttl_s=10))
    finally:
        LateReplyConnection.late_replies = 0
        await store.close()


@pytest.mark.redis
async def test_keys_are_namespaced_by_hashed_tenant_and_expire_together(redis_url: str, redis_key_prefix: str) -> None:
    store = RedisSessionStore.from_url(redis_url, key_prefix=redis_key_prefix, ttl_s=60)
    raw = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        await commit_turn(store, "sk-secret-api-key", SID, turn("1", version=0))
        await commit_turn(store, OTHER_TENANT, SID, turn("1", version=0))
        keys = sorted(raw.scan_iter(match=f"{redis_key_prefix}:*"))
        assert len(keys) == 4 and not any("sk-secret" in key or OTHER_TENANT in key for key in keys)
        assert all(key.split(":session:")[1].startswith("{" + SID + "}") for key in keys)
        assert len({key.split(":")[1] for key in keys}) == 2  # one namespace per tenant
        assert all(0 < raw.pttl(key) <= 60_000 for key in keys)
    finally:
        raw.close()
        await store.close()


async def test_unreachable_redis_fails_fast() -> None:
    seen: list[tuple[str, bool]] = []
    store = RedisSessionStore.from_url(
        "redis://127.0.0.1:1/0", retry_after_s=2.5, on_op=lambda op, _s, ok: seen.append((op, ok))
    )
    try:
        calls: list[Callable[[], Any]] = [
            lambda: store.ping(),
            lambda: store.get(TENANT, SID),
            lambda: commit_turn(store, TENANT, SID, turn("1", version=0)),
            lambda: store.delete(TENANT, SID),
        ]
        for call in calls:
            start = time.monotonic()
            with pytest.raises(SessionStoreUnavailable) as caught:
                await call()
            assert time.monotonic() - start < 2.0
            assert caught.value.retry_after == 2.5
        start = time.monotonic()
        with pytest.raises(SessionStoreUnavailable):
            await store.open(TENANT, SID, wait_s=5, ttl_s=5)
        assert time.monotonic() - start < 2.0  # refused connections are an outage, not "busy": no waiting out wait_s
        assert seen == [("ping", False), ("get", False), ("open", False), ("delete", False), ("open", False)]
    finally:
        await store.close()


async def test_hung_redis_times_out_fast() -> None:
    # A listener that never answers: TCP connects (kernel backlog), then the read times out.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        store = RedisSessionStore.from_url(f"redis://127.0.0.1:{port}/0", op_timeout_s=0.3)
        try:
            start = time.monotonic()
            with pytest.raises(SessionStoreUnavailable):
                await store.get(TENANT, SID)
            assert time.monotonic() - start < 2.0
        finally:
            await store.close()


@pytest.mark.redis
async def test_store_survives_a_redis_restart(redis_server_factory: Callable[..., RedisServer]) -> None:
    server = redis_server_factory("--appendonly", "yes", "--appendfsync", "always")
    store = RedisSessionStore.from_url(server.url)
    try:
        await commit_turn(store, TENANT, SID, turn("1", version=0))
        await commit_turn(store, TENANT, SID, turn("2", version=1))

        server.stop()
        for call in (lambda: store.get(TENANT, SID), lambda: commit_turn(store, TENANT, SID, turn("3", version=2))):
            start = time.monotonic()
            with pytest.raises(SessionStoreUnavailable):
                await call()
            assert time.monotonic() - start < 2.0

        server.start()  # same port and data dir; the AOF brings the data back, scripts are gone (NOSCRIPT)
        record = await store.get(TENANT, SID)
        assert contents(record) == ["q:1", "a:1", "q:2", "a:2"]
        assert record is not None and record.version == 2
        after = await commit_turn(store, TENANT, SID, turn("3", version=2))
        assert (after.version, contents(after)[-2:]) == (3, ["q:3", "a:3"])
    finally:
        await store.close()


@pytest.mark.redis
async def test_store_recovers_after_redis_hangs(redis_server_factory: Callable[..., RedisServer]) -> None:
    server = redis_server_factory("--enable-debug-command", "yes")
    store = RedisSessionStore.from_url(server.url)
    try:
        await commit_turn(store, TENANT, SID, turn("1", version=0))
        sleeper = subprocess.Popen(
            ["redis-cli", "-p", str(server.port), "DEBUG", "SLEEP", "3"], stdout=subprocess.DEVNULL
        )
        await asyncio.sleep(0.3)  # let DEBUG SLEEP block the server
        start = time.monotonic()
        with pytest.raises(SessionStoreUnavailable):
            await store.get(TENANT, SID)
        assert time.monotonic() - start < 2.0  # the 0.5 s read timeout, not the 3 s hang
        await asyncio.to_thread(sleeper.wait, 10)
        assert contents(await store.get(TENANT, SID)) == ["q:1", "a:1"]
    finally:
        await store.close()
