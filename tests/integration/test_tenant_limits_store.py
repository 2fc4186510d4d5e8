"""Tenant limits against the stores and a real Redis, without a model: the live-session quota (Redis and in-process
stores alike), and the rpm/tpm limiter in Redis (the Lua script against its Python twin, two replicas sharing one
limit, Redis going away and coming back)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio
import structlog

from app.chat.rate_limit import GCRA_LUA, RedisRateLimiter, gcra
from app.chat.tenants import TenantLimits
from app.sessions.base import SessionBusy, SessionQuotaExceeded, SessionStore
from app.sessions.memory_store import MemorySessionStore
from app.sessions.redis_store import RedisSessionStore
from tests.integration.redis_fixtures import RedisServer
from tests.session_turns import commit_turn, turn

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

StoreFactory = Callable[..., SessionStore]
QUOTAS = {"small": 2, "other": 1}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[SessionStore]:
    """A store whose tenants ``small`` and ``other`` may have 2 and 1 live sessions; everyone else any number."""
    made: SessionStore
    if request.param == "redis":
        url, prefix = request.getfixturevalue("redis_url"), request.getfixturevalue("redis_key_prefix")
        made = RedisSessionStore.from_url(url, key_prefix=prefix, op_timeout_s=2.0, session_quota=QUOTAS.get)
    else:
        made = MemorySessionStore(session_quota=QUOTAS.get)
    yield made
    await made.close()


async def test_live_session_quota(store: SessionStore) -> None:
    await commit_turn(store, "small", "s1", turn("1", version=0))
    await commit_turn(store, "small", "s2", turn("1", version=0))
    with pytest.raises(SessionQuotaExceeded) as info:
        await store.open("small", "s3", wait_s=0, ttl_s=10)
    assert (info.value.live, info.value.limit) == (2, 2) and "max_sessions" in str(info.value)
    await commit_turn(store, "small", "s1", turn("2", version=1))  # existing sessions go on
    await commit_turn(store, "other", "s1", turn("1", version=0))  # another tenant has its own quota
    await commit_turn(store, "unlimited", "s9", turn("1", version=0))
    usage = await store.usage("small")
    assert (usage.live_sessions, usage.max_sessions, usage.max_turns) == (2, 2, 200)
    assert (await store.usage("unlimited")).to_dict() == {"live_sessions": 1, "max_sessions": None, "max_turns": 200}
    assert await store.delete("small", "s2")
    await commit_turn(store, "small", "s3", turn("1", version=0))  # a deleted session no longer counts
    assert (await store.usage("small")).live_sessions == 2


async def test_a_refused_or_abandoned_first_turn_leaves_nothing_behind(store: SessionStore) -> None:
    lease = await store.open("other", "first", wait_s=0, ttl_s=10)  # claimed: the first turn is under way
    with pytest.raises(SessionQuotaExceeded):
        await store.open("other", "second", wait_s=0, ttl_s=10)  # the first one counts while it generates
    await store.release(lease)  # ... and is abandoned (client gone): it never became a session
    try:
        second = await store.open("other", "second", wait_s=0, ttl_s=10)  # the refusal left no lock behind
    except SessionBusy:
        pytest.fail("a refused open left the session locked")
    await store.release(second)
    assert (await store.usage("other")).live_sessions == 0  # abandoned first turns are not sessions


# ---- rpm / tpm in Redis ----


@pytest.mark.redis
async def test_the_lua_script_and_the_python_twin_agree(redis_url: str, redis_key_prefix: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    script = client.register_script(GCRA_LUA)
    keys = [f"{redis_key_prefix}:rl:{{t}}:requests", f"{redis_key_prefix}:rl:{{t}}:tokens"]
    rng = random.Random(7)
    now, tats = 1_700_000_000_000.0, [0.0, 0.0]
    rpm, tpm = 7, 900
    try:
        for _ in range(300):
            now += rng.choice([0, 1, 250, 3000, 8571.5, 20000])
            if rng.random() < 0.3:
                tokens = rng.randint(1, 400)
                await script(keys=keys, args=[repr(now), 0, tpm, tokens])
                tats[1] = round(max(tats[1], now) + tokens * 60_000 / tpm, 3)
                continue
            answer = [int(x) for x in await script(keys=keys, args=[repr(now), rpm, tpm, 0])]
            expected, new_tat = gcra(tats[0], tats[1], now, rpm, tpm)
            assert answer == expected, (now, tats)
            if new_tat is not None:
                tats[0] = new_tat
    finally:
        await client.aclose()


@pytest.mark.redis
async def test_two_replicas_share_one_tenants_rpm(redis_url: str, redis_key_prefix: str) -> None:
    replicas = [RedisRateLimiter.from_url(redis_url, timeout_s=2.0, key_prefix=redis_key_prefix) for _ in range(2)]
    limits = TenantLimits(rpm=5)
    try:
        verdicts = [await replicas[i % 2].check("shared", limits) for i in range(6)]
        assert [v.refused for v in verdicts] == [None] * 5 + ["requests"]
        remaining = [v.status.requests.remaining for v in verdicts if v.status.requests]
        assert remaining == [4, 3, 2, 1, 0, 0]
        assert 11 <= verdicts[-1].retry_after_s <= 12  # one request back every 12 s
        assert (await replicas[0].check("someone-else", limits)).refused is None
    finally:
        for replica in replicas:
            await replica.close()


@pytest.mark.redis
async def test_redis_down_counts_in_process_then_returns(redis_server_factory: Callable[..., RedisServer]) -> None:
    server = redis_server_factory()
    limiter = RedisRateLimiter.from_url(server.url, timeout_s=0.5)
    limiter._down_for_s = 0.0  # try Redis again on every call (the default waits a second)
    limits = TenantLimits(rpm=3, tpm=1000)
    try:
        assert (await limiter.check("t", limits)).refused is None  # 1 counted in Redis
        server.stop()
        with structlog.testing.capture_logs() as logs:
            local = [await limiter.check("t", limits) for _ in range(4)]  # fails open to in-process counting
            await limiter.charge("t", limits, 10)
        assert [v.refused for v in local] == [None, None, None, "requests"]  # the limit still holds, per replica
        assert [e["event"] for e in logs].count("rate_limiter_unavailable") == 1  # logged once per outage
        server.start()
        with structlog.testing.capture_logs() as logs:
            back = await limiter.check("t", limits)
        assert back.refused is None and back.status.requests is not None
        assert back.status.requests.remaining == 2  # counted in Redis again (which kept nothing over its restart)
        assert any(e["event"] == "rate_limiter_recovered" for e in logs)
    finally:
        await limiter.close()
