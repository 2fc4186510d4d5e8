"""One tenant cannot starve another: fair admission, rpm/tpm, session quotas and key rotation through the real server
(vLLM on CPU, tiny model), a real Redis and the official OpenAI SDK.

One server (a second replica for the shared-rpm test) on a private redis-server, so the last test can stop Redis.
Tests run in file order and share the server: the rotation test restores the key file, the Redis test comes last.
Tenant names carry a random suffix, so counters of an earlier run never meet this one's.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import statistics
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.observability import tenant_label
from tests.conftest import TINY_MODEL
from tests.integration.redis_fixtures import RedisServer, skip_or_fail
from tests.server_process import ServerProcess
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.redis]

RUN = uuid.uuid4().hex[:8]
GREEDY, POLITE, METERED, TOKENS, QUOTA, SHARED, ROTATED = (
    f"{name}-{RUN}" for name in ("greedy", "polite", "metered", "tokens", "quota", "shared", "rotated")
)
KEYS = {tenant: f"sk-{tenant}-key" for tenant in (GREEDY, POLITE, METERED, TOKENS, QUOTA, SHARED, ROTATED)}
NEW_ROTATED_KEY = f"sk-{ROTATED}-new"
USER = [{"role": "user", "content": "I had a long day at work today."}]


def key_file_text(rotated_key: str = KEYS[ROTATED], broken: bool = False) -> str:
    lines = [
        "# tenant limits for the tests; the pool is 4 slots and 4 queue places",
        f"{KEYS[GREEDY]} {GREEDY} max_streams=2 max_queued=1",
        f"{KEYS[POLITE]} {POLITE}",
        f"{KEYS[METERED]} {METERED} rpm=3",
        f"{KEYS[TOKENS]} {TOKENS} tpm=60",
        f"{KEYS[QUOTA]} {QUOTA} max_sessions=1",
        f"{KEYS[SHARED]} {SHARED} rpm=4",
        f"{rotated_key} {ROTATED}" + (" rpm=often" if broken else ""),
    ]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        skip_or_fail("redis-server binary not found on PATH (apt-get install redis-server)")
    assert binary is not None
    server = RedisServer(binary, tmp_path_factory.mktemp("redis"), ())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "api_keys"
    path.write_text(key_file_text())
    return path


def start_replica(tiny_model_repo: Path, redis: RedisServer, key_file: Path, log: Path) -> ServerProcess:
    env = {
        "SWEETIE_REDIS_URL": redis.url,
        "SWEETIE_API_KEYS_FILE": str(key_file),
        "SWEETIE_MAX_INFLIGHT": "4",
        "SWEETIE_MAX_QUEUED": "4",
        "SWEETIE_REDIS_TIMEOUT_S": "2",
        "SWEETIE_SAFETY_SCREEN": "lexical",  # predictable: these tests need replies generated, not safety messages
    }
    args = ["--model-repo", str(tiny_model_repo), "--model", TINY_MODEL, "--kv-cache-gb", "1"]
    return ServerProcess(args, log, env=env).start()


@pytest.fixture(scope="module")
def server(
    tiny_model_repo: Path, redis_server: RedisServer, key_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    process = start_replica(tiny_model_repo, redis_server, key_file, tmp_path_factory.mktemp("logs") / "tenants.log")
    yield process
    process.stop()


def client(server: ServerProcess, tenant: str, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=key or KEYS[tenant], max_retries=0, timeout=120)


def aclient(server: ServerProcess, tenant: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.base_url, api_key=KEYS[tenant], max_retries=0, timeout=120)


def metric(server: ServerProcess, name: str, **labels: str) -> float:
    text = httpx.get(f"{server.root_url}/metrics").text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


async def ttft(api: openai.AsyncOpenAI) -> float:
    """Seconds from sending a streamed request to its first content chunk."""
    started = time.perf_counter()
    stream = await api.chat.completions.create(
        model=TINY_MODEL, messages=USER, max_tokens=16, stream=True, extra_body={"ignore_eos": True}
    )
    async with stream:
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                return time.perf_counter() - started
    raise AssertionError("the stream ended without content")


async def ttfts(api: openai.AsyncOpenAI, count: int) -> list[float]:
    return [await ttft(api) for _ in range(count)]


def test_a_flooding_tenant_does_not_delay_another(server: ServerProcess) -> None:
    """Greedy opens six long streams: two run (its cap, though the pool has four slots), one waits, three get 429;
    meanwhile polite's first tokens come as fast as on an idle server (within 2x; idle is measured before and after,
    so a change in the machine's background load does not count against the server)."""

    async def run() -> None:
        polite = aclient(server, POLITE)
        await ttfts(polite, 2)  # warm-up
        idle_before = statistics.median(await ttfts(polite, 7))
        body = {"model": TINY_MODEL, "messages": USER, "max_tokens": 4000, "stream": True, "ignore_eos": True}
        headers = {"Authorization": f"Bearer {KEYS[GREEDY]}"}
        statuses: list[int] = []
        ended: list[str] = []

        async def long_stream(http: httpx.AsyncClient) -> None:
            async with http.stream("POST", "/chat/completions", json=body, headers=headers) as response:
                statuses.append(response.status_code)
                if response.status_code == 429:
                    error = json.loads(await response.aread())["error"]
                    assert error["code"] == "rate_limit_exceeded" and response.headers["retry-after"]
                    return
                try:
                    async for _ in response.aiter_raw():  # raw bytes: the flood costs this process next to nothing
                        pass
                    ended.append("finished")
                except httpx.HTTPError as exc:
                    ended.append(repr(exc))

        async with httpx.AsyncClient(base_url=server.base_url, timeout=120) as http:
            flood = [asyncio.create_task(long_stream(http)) for _ in range(6)]
            await asyncio.wait_for(_until(lambda: statuses.count(429) == 3 and statuses.count(200) == 2), 30)
            await asyncio.wait_for(_until(lambda: metric(server, "sweetie_inflight_requests") == 2), 30)
            loaded = statistics.median(await ttfts(polite, 7))
            assert not ended, f"a greedy stream ended before the measurement did: {ended}"
            assert statuses.count(200) == 2  # greedy's third stream is still waiting for one of its own slots
            for task in flood:
                task.cancel()
            await asyncio.gather(*flood, return_exceptions=True)
        idle_after = statistics.median(await ttfts(polite, 7))
        await polite.close()
        idle = (idle_before + idle_after) / 2
        assert loaded <= 2 * idle, (
            f"polite TTFT {loaded * 1000:.0f} ms under the flood, {idle * 1000:.0f} ms idle "
            f"({idle_before * 1000:.0f} ms before, {idle_after * 1000:.0f} ms after)"
        )

    asyncio.run(run())
    greedy, polite = tenant_label(GREEDY), tenant_label(POLITE)
    assert metric(server, "sweetie_tenant_rejected_total", tenant=greedy, reason="tenant_queue_full") == 3
    assert metric(server, "sweetie_tenant_admitted_total", tenant=polite) >= 23
    assert metric(server, "sweetie_tenant_tokens_total", tenant=polite, kind="completion") > 0


async def _until(condition: Any) -> None:
    while not condition():
        await asyncio.sleep(0.02)


def test_over_its_rpm_a_tenant_gets_429_with_retry_after_and_rate_limit_headers(server: ServerProcess) -> None:
    api = client(server, METERED)
    first = api.chat.completions.with_raw_response.create(model=TINY_MODEL, messages=USER, max_tokens=2)
    assert first.headers["x-ratelimit-limit-requests"] == "3"
    assert first.headers["x-ratelimit-remaining-requests"] == "2"
    assert first.headers["x-ratelimit-reset-requests"].endswith("s")
    assert "x-ratelimit-limit-tokens" not in first.headers  # no tpm for this tenant
    with api.chat.completions.with_streaming_response.create(
        model=TINY_MODEL, messages=USER, max_tokens=2, stream=True
    ) as streamed:
        assert streamed.headers["x-ratelimit-remaining-requests"] == "1"  # streams carry them too
    response = api.responses.with_raw_response.create(model=TINY_MODEL, input="hello", max_output_tokens=2, store=False)
    assert response.headers["x-ratelimit-remaining-requests"] == "0"  # the Responses API shares the same budget
    with pytest.raises(openai.RateLimitError) as info:
        api.chat.completions.create(model=TINY_MODEL, messages=USER, max_tokens=2)
    error, headers = info.value, info.value.response.headers
    assert error.code == "rate_limit_exceeded" and error.type == "requests"
    assert "requests per minute (RPM): limit 3" in error.message
    assert 15 <= int(headers["retry-after"]) <= 20  # one request back every 20 s
    assert headers["x-ratelimit-remaining-requests"] == "0" and headers["x-ratelimit-limit-requests"] == "3"
    assert headers["content-type"] == "application/json"  # refused before any stream
    client(server, POLITE).chat.completions.create(model=TINY_MODEL, messages=USER, max_tokens=2)  # others unaffected
    assert metric(server, "sweetie_tenant_rejected_total", tenant=tenant_label(METERED), reason="rpm") == 1


def test_over_its_tpm_a_tenant_waits_for_tokens(server: ServerProcess) -> None:
    api = client(server, TOKENS)
    first = api.chat.completions.with_raw_response.create(
        model=TINY_MODEL, messages=USER, max_tokens=60, extra_body={"ignore_eos": True}
    )
    assert first.headers["x-ratelimit-limit-tokens"] == "60"
    assert first.parse().usage is not None and first.parse().usage.total_tokens > 60  # the whole minute, and more
    refusals: list[openai.RateLimitError] = []

    def refused() -> bool:  # the tokens are charged as the turn closes, a moment after the response
        try:
            api.chat.completions.create(model=TINY_MODEL, messages=USER, max_tokens=1)
        except openai.RateLimitError as exc:
            refusals.append(exc)
            return True
        return False

    wait_until(refused, timeout=10, what="the tpm limit to refuse")
    error = refusals[0]
    assert error.code == "rate_limit_exceeded" and error.type == "tokens"
    assert error.response.headers["x-ratelimit-remaining-tokens"] == "0"
    assert int(error.response.headers["retry-after"]) >= 1


def test_a_tenant_over_its_live_session_quota_cannot_start_another(server: ServerProcess) -> None:
    api, sid = client(server, QUOTA), f"quota-{uuid.uuid4().hex[:8]}"
    api.chat.completions.create(model=TINY_MODEL, messages=USER, max_tokens=2, extra_headers={"X-Session-Id": sid})
    with pytest.raises(openai.RateLimitError) as info:  # the SDK does not retry it (x-should-retry: false)
        api.chat.completions.create(
            model=TINY_MODEL, messages=USER, max_tokens=2, extra_headers={"X-Session-Id": f"{sid}-2"}
        )
    assert info.value.code == "session_quota_exceeded" and info.value.type == "insufficient_quota"
    assert "at most 1" in info.value.message and info.value.response.headers["x-should-retry"] == "false"
    api.chat.completions.create(model=TINY_MODEL, messages=USER, max_tokens=2, extra_headers={"X-Session-Id": sid})
    auth = {"Authorization": f"Bearer {KEYS[QUOTA]}"}
    exported = httpx.get(f"{server.base_url}/sessions/{sid}", headers=auth).json()
    assert exported["quota"] == {"live_sessions": 1, "max_sessions": 1, "max_turns": 200, "stored_turns": 2}
    assert httpx.delete(f"{server.base_url}/sessions/{sid}", headers=auth).status_code == 204
    api.chat.completions.create(  # room again
        model=TINY_MODEL, messages=USER, max_tokens=2, extra_headers={"X-Session-Id": f"{sid}-2"}
    )


def test_two_replicas_share_one_tenants_rpm(
    server: ServerProcess,
    tiny_model_repo: Path,
    redis_server: RedisServer,
    key_file: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    second = start_replica(tiny_model_repo, redis_server, key_file, tmp_path_factory.mktemp("logs") / "replica.log")
    try:
        replicas = [client(server, SHARED), client(second, SHARED)]
        for i in range(4):
            replicas[i % 2].chat.completions.create(model=TINY_MODEL, messages=USER, max_tokens=1)
        for replica in replicas:  # the fifth is refused on either: they count together
            with pytest.raises(openai.RateLimitError) as info:
                replica.chat.completions.create(model=TINY_MODEL, messages=USER, max_tokens=1)
            assert info.value.code == "rate_limit_exceeded"
    finally:
        second.stop()


def test_key_rotation_on_sighup(server: ServerProcess, key_file: Path) -> None:
    assert server.proc is not None
    old, new = client(server, ROTATED), client(server, ROTATED, NEW_ROTATED_KEY)
    body = {"model": TINY_MODEL, "messages": USER, "stream": True, "max_tokens": 3000, "ignore_eos": True}
    headers = {"Authorization": f"Bearer {KEYS[ROTATED]}"}
    with httpx.stream(
        "POST", f"{server.base_url}/chat/completions", json=body, headers=headers, timeout=120
    ) as in_flight:
        lines = in_flight.iter_lines()
        next(lines)  # streaming under the old key
        key_file.write_text(key_file_text(rotated_key=NEW_ROTATED_KEY))
        reloads = server.log_text().count("api_keys_reloaded")
        server.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: server.log_text().count("api_keys_reloaded") > reloads, timeout=10, what="the reload")
        with pytest.raises(openai.AuthenticationError):  # removed: refused at once
            old.chat.completions.create(model=TINY_MODEL, messages=USER, max_tokens=1)
        new.chat.completions.create(model=TINY_MODEL, messages=USER, max_tokens=1)  # added: works at once
        rest = [line for line in lines if line]
    assert rest[-1] == "data: [DONE]" and '"finish_reason":"length"' in "".join(rest)  # the old key's stream finished

    key_file.write_text(key_file_text(rotated_key=KEYS[ROTATED], broken=True))  # malformed: line 8, field rpm
    failures = server.log_text().count("api_keys_reload_failed")
    server.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: server.log_text().count("api_keys_reload_failed") > failures, timeout=10, what="the refusal")
    new.chat.completions.create(model=TINY_MODEL, messages=USER, max_tokens=1)  # the old keys stay in force
    with pytest.raises(openai.AuthenticationError):
        old.chat.completions.create(model=TINY_MODEL, messages=USER, max_tokens=1)
    log = server.log_text()
    assert f"{key_file}:8: field 'rpm'" in log
    assert not any(key in log for key in (*KEYS.values(), NEW_ROTATED_KEY))  # never a key in the logs

    key_file.write_text(key_file_text())  # as the module started
    reloads = server.log_text().count("api_keys_reloaded")
    server.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: server.log_text().count("api_keys_reloaded") > reloads, timeout=10, what="the restore")


def test_with_redis_down_stateless_requests_work_and_limits_hold_per_replica(
    server: ServerProcess, redis_server: RedisServer
) -> None:
    redis_server.stop()
    polite = client(server, POLITE)
    reply = polite.chat.completions.create(model=TINY_MODEL, messages=USER, max_tokens=2)
    assert reply.choices[0].message.content is not None  # stateless: Redis is not needed
    with pytest.raises(openai.APIStatusError) as info:
        polite.chat.completions.create(
            model=TINY_MODEL, messages=USER, max_tokens=2, extra_headers={"X-Session-Id": "needs-redis"}
        )
    assert info.value.status_code == 503 and info.value.code == "session_store_unavailable"
    metered = client(server, METERED)  # rpm=3, now counted in this process: three pass, the fourth is refused
    for _ in range(3):
        metered.chat.completions.create(model=TINY_MODEL, messages=USER, max_tokens=1)
    with pytest.raises(openai.RateLimitError):
        metered.chat.completions.create(model=TINY_MODEL, messages=USER, max_tokens=1)
    assert "rate_limiter_unavailable" in server.log_text()
    assert metric(server, "sweetie_rate_limiter_fallbacks_total") >= 4
