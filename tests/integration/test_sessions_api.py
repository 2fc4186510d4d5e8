"""Session memory through the real server (vLLM on CPU, tiny model) and a real Redis, via the official OpenAI SDK."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import redis

from tests.conftest import KEY_A, KEY_B, SESSION_TTL_S, TINY_MODEL
from tests.integration.redis_fixtures import RedisServer
from tests.server_process import ServerProcess
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.redis]
TTL_S = SESSION_TTL_S


@pytest.fixture(scope="module")
def alpha(session_server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=session_server.base_url, api_key=KEY_A, max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def beta(session_server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=session_server.base_url, api_key=KEY_B, max_retries=0, timeout=60)


def new_sid() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


def turn(client: openai.OpenAI, sid: str, text: str, **kwargs: Any) -> Any:
    return client.chat.completions.create(
        model=TINY_MODEL,
        messages=kwargs.pop("messages", [{"role": "user", "content": text}]),
        max_tokens=kwargs.pop("max_tokens", 8),
        extra_headers={"X-Session-Id": sid},
        **kwargs,
    )


def export(server: ServerProcess, sid: str, key: str = KEY_A) -> httpx.Response:
    return httpx.get(f"{server.base_url}/sessions/{sid}", headers={"Authorization": f"Bearer {key}"})


def test_two_turns_with_only_the_new_message(alpha: openai.OpenAI, session_server: ServerProcess) -> None:
    sid = new_sid()
    first = turn(alpha, sid, "My exam went badly today.")
    second = turn(alpha, sid, "I studied for weeks.")
    assert (first.model_extra["session_id"], first.model_extra["turn"]) == (sid, 1)
    assert second.model_extra["turn"] == 2
    # the second prompt carries the first exchange: at least its user message and reply tokens more
    assert second.usage.prompt_tokens >= first.usage.prompt_tokens + first.usage.completion_tokens
    stored = export(session_server, sid).json()
    assert stored["turns"] == 2
    assert [(m["role"], m["content"]) for m in stored["messages"]] == [
        ("user", "My exam went badly today."),
        ("assistant", first.choices[0].message.content),
        ("user", "I studied for weeks."),
        ("assistant", second.choices[0].message.content),
    ]
    assert stored["usage"]["completion_tokens"] == first.usage.completion_tokens + second.usage.completion_tokens
    assert stored["created"] <= stored["updated"]


def test_ten_turn_session(alpha: openai.OpenAI, session_server: ServerProcess) -> None:
    sid = new_sid()
    prompts = []
    for i in range(10):
        reply = turn(alpha, sid, f"This is message number {i}.")
        assert reply.model_extra["turn"] == i + 1
        prompts.append(reply.usage.prompt_tokens)
    assert prompts == sorted(prompts) and len(set(prompts)) == 10  # the history grows every turn
    stored = export(session_server, sid).json()
    assert stored["turns"] == 10 and len(stored["messages"]) == 20
    assert [m["content"] for m in stored["messages"][0::2]] == [f"This is message number {i}." for i in range(10)]


def test_full_history_client_gets_no_duplicates(alpha: openai.OpenAI, session_server: ServerProcess) -> None:
    sid = new_sid()
    history: list[dict[str, str]] = [{"role": "system", "content": "You are a gentle listener."}]
    for text in ("I feel lonely.", "My friends moved away.", "Thanks for listening."):
        history.append({"role": "user", "content": text})
        reply = turn(alpha, sid, "", messages=history)
        history.append({"role": "assistant", "content": reply.choices[0].message.content})
    stored = export(session_server, sid).json()
    assert stored["persona"] == "You are a gentle listener."
    assert [(m["role"], m["content"]) for m in stored["messages"]] == [(m["role"], m["content"]) for m in history[1:]]


def test_contradicting_history_is_409(alpha: openai.OpenAI) -> None:
    sid = new_sid()
    turn(alpha, sid, "First message.")
    wrong = [
        {"role": "user", "content": "Something I never said."},
        {"role": "assistant", "content": "..."},
        {"role": "user", "content": "Next."},
    ]
    with pytest.raises(openai.ConflictError) as info:
        turn(alpha, sid, "", messages=wrong)
    assert info.value.code == "session_conflict"


def test_session_id_in_body_and_invalid_ids(alpha: openai.OpenAI, session_server: ServerProcess) -> None:
    sid = new_sid()
    alpha.chat.completions.create(
        model=TINY_MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2, extra_body={"session_id": sid}
    )
    assert export(session_server, sid).json()["turns"] == 1
    with pytest.raises(openai.BadRequestError) as info:
        turn(alpha, "bad id with spaces", "hi")
    assert info.value.code == "invalid_session_id"
    with pytest.raises(openai.BadRequestError):
        turn(alpha, new_sid(), "hi", n=2)


def test_concurrent_turns_leave_a_consistent_history(session_server: ServerProcess) -> None:
    sid = new_sid()

    async def run() -> list[int]:
        client = openai.AsyncOpenAI(base_url=session_server.base_url, api_key=KEY_A, max_retries=0, timeout=60)

        async def one(i: int) -> int:
            try:
                await client.chat.completions.create(
                    model=TINY_MODEL,
                    messages=[{"role": "user", "content": f"concurrent message {i}"}],
                    max_tokens=4,
                    extra_headers={"X-Session-Id": sid},
                )
                return 200
            except openai.ConflictError as exc:
                assert exc.code == "session_busy"
                assert exc.response.headers["retry-after"]
                return 409

        statuses = await asyncio.gather(*(one(i) for i in range(12)))
        await client.close()
        return list(statuses)

    statuses = asyncio.run(run())
    ok = statuses.count(200)
    assert ok >= 1 and set(statuses) <= {200, 409}
    stored = export(session_server, sid).json()
    messages = stored["messages"]
    assert stored["turns"] == ok and len(messages) == 2 * ok
    assert [m["role"] for m in messages] == ["user", "assistant"] * ok  # never interleaved
    users = [m["content"] for m in messages[0::2]]
    assert len(set(users)) == ok  # no duplicates


def long_stream(server: ServerProcess, sid: str, text: str) -> AbstractContextManager[httpx.Response]:
    """A session turn that streams for seconds (3,500 tokens, end-of-sequence ignored)."""
    body = {
        "model": TINY_MODEL,
        "messages": [{"role": "user", "content": text}],
        "stream": True,
        "max_tokens": 3500,
        "ignore_eos": True,
    }
    headers = {"Authorization": f"Bearer {KEY_A}", "X-Session-Id": sid}
    return httpx.stream("POST", f"{server.base_url}/chat/completions", json=body, headers=headers)


def test_busy_session_answers_409_while_a_turn_streams(session_server: ServerProcess, alpha: openai.OpenAI) -> None:
    sid = new_sid()
    turn(alpha, sid, "hello")
    with long_stream(session_server, sid, "tell me a long story") as resp:
        lines = resp.iter_lines()
        next(lines)
        started = time.monotonic()
        with pytest.raises(openai.ConflictError) as info:
            turn(alpha, sid, "are you there?")
        waited = time.monotonic() - started
        # session_busy means the other turn still held the lock when the wait ran out (it is released at its commit);
        # the lock wait was the configured 0.5 s, not the other turn's length (a loaded box adds seconds to the reply,
        # and the other turn may commit right after, so its state is not checked here)
        assert info.value.code == "session_busy"
        assert 0.4 <= waited < 30
        assert sum('"content":"' in line for line in lines) > 10  # let the long turn finish and commit
    assert export(session_server, sid).json()["turns"] == 2


def test_disconnect_mid_stream_commits_nothing(session_server: ServerProcess, alpha: openai.OpenAI) -> None:
    sid = new_sid()
    turn(alpha, sid, "first turn")
    with long_stream(session_server, sid, "second turn, abandoned") as resp:
        lines = resp.iter_lines()
        for line in lines:
            if '"content":"' in line and '"content":""' not in line:
                break
    # the lock is released once the server notices; then the session continues as if the turn never happened
    deadline = time.monotonic() + 10
    while True:
        try:
            third = turn(alpha, sid, "third turn")
            break
        except openai.ConflictError:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    assert third.model_extra["turn"] == 2
    contents = [m["content"] for m in export(session_server, sid).json()["messages"][0::2]]
    assert contents == ["first turn", "third turn"]


def test_sliding_ttl_expiry(alpha: openai.OpenAI, session_server: ServerProcess, redis_url: str) -> None:
    sid = new_sid()
    turn(alpha, sid, "hello")
    raw = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        keys = sorted(raw.scan_iter(match=f"*:session:{{{sid}}}*"))
        assert len(keys) == 2  # the session's record and its turns, both with the TTL
        first = [raw.pttl(key) for key in keys]
        assert all(0 < ttl <= TTL_S * 1000 for ttl in first)
        wait_until(lambda: max(raw.pttl(key) for key in keys) < min(first) - 200, what="the TTL to run down")
        ran_down = max(raw.pttl(key) for key in keys)
        turn(alpha, sid, "still here")  # slides the expiry
        assert all(raw.pttl(key) > ran_down for key in keys)
        for key in keys:  # the session expires (as it would, TTL_S after its last turn)
            raw.pexpire(key, 1)
        wait_until(lambda: not any(raw.exists(key) for key in keys), what="the keys to expire")
    finally:
        raw.close()
    gone = export(session_server, sid)
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "session_not_found"
    assert turn(alpha, sid, "new start").model_extra["turn"] == 1


def test_tenant_isolation(alpha: openai.OpenAI, beta: openai.OpenAI, session_server: ServerProcess) -> None:
    sid = new_sid()
    turn(alpha, sid, "alpha's private message")
    assert export(session_server, sid, KEY_B).status_code == 404
    deleted = httpx.delete(f"{session_server.base_url}/sessions/{sid}", headers={"Authorization": f"Bearer {KEY_B}"})
    assert deleted.status_code == 404
    theirs = turn(beta, sid, "beta's message")
    assert theirs.model_extra["turn"] == 1  # beta got a fresh session of its own
    mine = export(session_server, sid).json()
    assert [m["content"] for m in mine["messages"][0::2]] == ["alpha's private message"]


def test_delete_then_404(alpha: openai.OpenAI, session_server: ServerProcess) -> None:
    sid = new_sid()
    turn(alpha, sid, "please forget this")
    url = f"{session_server.base_url}/sessions/{sid}"
    auth = {"Authorization": f"Bearer {KEY_A}"}
    assert httpx.delete(url, headers=auth).status_code == 204
    assert httpx.get(url, headers=auth).status_code == 404
    assert httpx.delete(url, headers=auth).status_code == 404
    assert turn(alpha, sid, "new start").model_extra["turn"] == 1


def test_api_keys_required(session_server: ServerProcess) -> None:
    client = openai.OpenAI(base_url=session_server.base_url, api_key="wrong-key-000000", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        client.chat.completions.create(model=TINY_MODEL, messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 401 and info.value.code == "invalid_api_key"
    missing = httpx.get(f"{session_server.base_url}/models")
    assert missing.status_code == 401 and "API key" in missing.json()["error"]["message"]
    assert missing.headers["www-authenticate"] == "Bearer"
    assert httpx.get(f"{session_server.root_url}/health").status_code == 200  # probes stay open


def test_long_session_prompt_is_trimmed_but_history_kept(alpha: openai.OpenAI, session_server: ServerProcess) -> None:
    sid = new_sid()
    paragraph = " ".join(["I keep thinking about everything that went wrong at work this year."] * 25)
    prompts = []
    for i in range(16):
        reply = turn(alpha, sid, f"{i}: {paragraph}", max_tokens=4)
        prompts.append(reply.usage.prompt_tokens)
    assert max(prompts) <= 4096 - 4  # never over the context (minus the reply), though the history is far longer
    drops = [before - after for before, after in pairwise(prompts) if after < before]
    assert drops, prompts  # the prompt stopped growing: the oldest turns left it
    per_turn = prompts[1] - prompts[0]
    # A block of whole turns left at once, not a message at a time: more than one turn's growth (turns differ by a
    # few tokens, as the sampled replies do).
    assert max(drops) >= 1.5 * per_turn, prompts
    assert export(session_server, sid).json()["turns"] == 16  # nothing dropped from storage


def test_store_metrics(alpha: openai.OpenAI, session_server: ServerProcess) -> None:
    turn(alpha, new_sid(), "count me")
    text = httpx.get(f"{session_server.root_url}/metrics").text
    assert 'sweetie_session_store_seconds_count{op="commit"}' in text
    assert 'sweetie_session_store_seconds_count{op="open"}' in text


# ---- Redis stopped and restarted mid-test ----


@pytest.fixture
def outage_setup(
    tiny_model_repo: Path, redis_server_factory: Callable[..., RedisServer], tmp_path: Path
) -> Iterator[tuple[ServerProcess, RedisServer]]:
    redis_server = redis_server_factory("--appendonly", "yes", "--appendfsync", "always")
    server = ServerProcess(
        ["--model-repo", str(tiny_model_repo), "--model", TINY_MODEL, "--kv-cache-gb", "1"],
        tmp_path / "outage-server.log",
        env={"SWEETIE_REDIS_URL": redis_server.url, "SWEETIE_REDIS_TIMEOUT_S": "0.5"},
    ).start()
    yield server, redis_server
    server.stop()


def test_redis_outage_fails_fast_and_recovers(outage_setup: tuple[ServerProcess, RedisServer]) -> None:
    server, redis_server = outage_setup
    client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=30)
    sid = new_sid()
    first = turn(client, sid, "before the outage")
    stored_response = client.responses.create(model=TINY_MODEL, input="before the outage", max_output_tokens=2)
    redis_server.stop()
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as info:
        turn(client, sid, "during the outage")
    assert time.monotonic() - started < 3  # bounded timeout, not a hang
    assert info.value.status_code == 503
    assert info.value.code == "session_store_unavailable"
    assert int(info.value.response.headers["retry-after"]) >= 1
    stateless = client.chat.completions.create(
        model=TINY_MODEL, messages=[{"role": "user", "content": "no session"}], max_tokens=2
    )
    assert stateless.choices[0].finish_reason in {"stop", "length"}
    # Responses: a stored chain needs Redis (503 with Retry-After); an unstored response does not
    with pytest.raises(openai.APIStatusError) as chained:
        client.responses.create(
            model=TINY_MODEL, input="during", previous_response_id=stored_response.id, max_output_tokens=2
        )
    assert chained.value.status_code == 503 and int(chained.value.response.headers["retry-after"]) >= 1
    unstored = client.responses.create(model=TINY_MODEL, input="during", store=False, max_output_tokens=2)
    assert unstored.status in {"completed", "incomplete"}
    redis_server.start()
    second = turn(client, sid, "after the outage")
    assert second.model_extra["turn"] == 2
    assert second.usage.prompt_tokens > first.usage.prompt_tokens
    stored = httpx.get(f"{server.base_url}/sessions/{sid}").json()
    assert [m["content"] for m in stored["messages"][0::2]] == ["before the outage", "after the outage"]
    errors = httpx.get(f"{server.root_url}/metrics").text
    assert 'sweetie_session_store_errors_total{op="open"}' in errors  # the outage was counted


def test_strategy_and_safety_are_stored_in_the_session(alpha: openai.OpenAI, session_server: ServerProcess) -> None:
    sid = new_sid()
    turn(alpha, sid, "I want to kill myself, I have a plan.", extra_body={"strategy": "Question", "locale": "en-US"})
    stored = export(session_server, sid).json()
    user, assistant = stored["messages"]
    assert user["safety"]["level"] == "high"
    assert assistant["strategy"] is None  # the vetted message replaced the reply: it used no support strategy
    assert "988" in assistant["content"]  # what the person saw: the vetted message
    turn(alpha, sid, "I failed my exam today.", extra_body={"strategy": "Question"})
    assert export(session_server, sid).json()["messages"][3]["strategy"] == "Question"


def test_high_risk_holds_for_three_turns_across_a_restart_and_escalates_without_text(
    alpha: openai.OpenAI,
    session_server: ServerProcess,
    redis_url: str,
    tiny_model_repo: Path,
    tmp_path: Path,
) -> None:
    sid, request_id = new_sid(), f"esc-{uuid.uuid4().hex[:8]}"
    risky = "I have the pills ready and I want to end my life tonight."
    first = alpha.chat.completions.create(
        model=TINY_MODEL,
        messages=[{"role": "user", "content": risky}],
        max_tokens=8,
        extra_headers={"X-Session-Id": sid, "X-Request-Id": request_id},
    )
    assert first.model_extra["safety"]["level"] == "high" and first.model_extra["safety"]["action"] == "replace"

    raw = redis.Redis.from_url(redis_url, decode_responses=True)
    try:  # the on-call stream got one text-free event for the turn
        events = [fields for _id, fields in raw.xrevrange("sweetie:escalations", count=200)]
        event = next(e for e in events if e["request_id"] == request_id)
    finally:
        raw.close()
    assert event["session_id"] == sid and event["level"] == "high" and event["categories"] == "suicide"
    assert set(event) == {"tenant", "session_id", "request_id", "level", "categories", "time"}
    assert "alpha" not in event["tenant"] and risky not in json.dumps(event)

    # Another replica (same Redis) continues the session: the hold lives with the session, not in a process.
    other = ServerProcess(
        ["--model-repo", str(tiny_model_repo), "--model", TINY_MODEL, "--kv-cache-gb", "1"],
        tmp_path / "replica.log",
        env={"SWEETIE_REDIS_URL": redis_url, "SWEETIE_API_KEYS": f"{KEY_A}:alpha,{KEY_B}:beta"},
    ).start()
    try:
        replica = openai.OpenAI(base_url=other.base_url, api_key=KEY_A, max_retries=0, timeout=60)
        levels = []
        for text in ["Thanks. Can we talk about what I should cook for dinner?"] * 4:
            reply = turn(replica, sid, text, extra_body={"locale": "en-US"})
            levels.append((reply.model_extra["safety"]["level"], reply.model_extra["safety"]["action"]))
    finally:
        other.stop()
    # three calmer turns stay elevated (resources still shown), the fourth is back to none
    assert levels == [("elevated", "frame")] * 3 + [("none", "none")]
    stored = export(session_server, sid).json()["messages"]
    assert [m.get("safety", {}).get("level") for m in stored if m["role"] == "user"] == [
        "high",
        *["elevated"] * 3,
        None,
    ]
