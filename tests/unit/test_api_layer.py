"""API layer over a fake engine: stream framing, in-band engine errors, readiness, defaults."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app.api.protocol import ChatCompletionStreamResponse
from app.chat.prompt import PromptRenderer
from app.config import Settings
from app.core.manifest import Manifest, SamplingDefaults
from app.server import Components, build_app
from tests.fakes import FakeEngine, FakeTokenizer

MESSAGES = [{"role": "user", "content": "I had a rough day"}]


def make_client(engine: FakeEngine, **settings: object) -> Iterator[TestClient]:
    manifest = Manifest(
        name="fake", source=".", system_prompt="Be kind.", sampling=SamplingDefaults(max_tokens=7, temperature=0.3)
    )
    components = Components(manifest=manifest, engine=engine, renderer=PromptRenderer(FakeTokenizer(), "Be kind."))
    with TestClient(build_app(Settings(**settings), components), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine(["Hello", " there", "."])


@pytest.fixture
def client(engine: FakeEngine) -> Iterator[TestClient]:
    yield from make_client(engine)


def sse_events(text: str) -> list[str]:
    return [line.removeprefix("data: ") for line in text.splitlines() if line.startswith("data: ")]


def test_non_stream_joins_pieces_and_counts_tokens(client: TestClient) -> None:
    body = client.post("/v1/chat/completions", json={"model": "fake", "messages": MESSAGES}).json()
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "Hello there."}
    assert body["choices"][0]["finish_reason"] == "stop"
    # system prompt (2 words) + user message (5 words), two template tokens each
    assert body["usage"] == {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}


def test_manifest_sampling_defaults_apply_when_request_is_silent(client: TestClient, engine: FakeEngine) -> None:
    client.post("/v1/chat/completions", json={"model": "fake", "messages": MESSAGES})
    client.post("/v1/chat/completions", json={"model": "fake", "messages": MESSAGES, "temperature": 1.5})
    assert (engine.calls[0].max_tokens, engine.calls[0].temperature) == (7, 0.3)
    assert engine.calls[1].temperature == 1.5


def test_stream_framing(client: TestClient) -> None:
    resp = client.post(
        "/v1/chat/completions",
        json={"model": "fake", "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}},
    )
    assert resp.headers["content-type"].startswith("text/event-stream")
    events = sse_events(resp.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    for chunk in chunks:  # every event matches the documented chunk model (extensions included)
        ChatCompletionStreamResponse.model_validate(chunk, strict=False)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == "Hello there."
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 3


def test_engine_failure_mid_stream_is_in_band_and_ends_with_done() -> None:
    for client in make_client(FakeEngine(["Hello", " there", "."], fail_after=2)):
        resp = client.post("/v1/chat/completions", json={"model": "fake", "messages": MESSAGES, "stream": True})
        assert resp.status_code == 200
        events = sse_events(resp.text)
        assert events[-1] == "[DONE]"
        error = json.loads(events[-2])["error"]
        assert error["type"] == "server_error" and error["code"] == "engine_error"
        assert "Traceback" not in resp.text
        streamed = "".join(
            json.loads(e)["choices"][0]["delta"].get("content", "") for e in events[:-2] if json.loads(e)["choices"]
        )
        assert streamed == "Hello there"


def test_engine_failure_without_stream_is_openai_shaped_500() -> None:
    for client in make_client(FakeEngine(["a", "b"], fail_after=1)):
        resp = client.post("/v1/chat/completions", json={"model": "fake", "messages": MESSAGES})
        assert resp.status_code == 500
        assert resp.json()["error"]["type"] == "server_error"


def test_not_ready_engine_gives_503_with_retry_after(engine: FakeEngine, client: TestClient) -> None:
    engine.ready = False
    resp = client.post("/v1/chat/completions", json={"model": "fake", "messages": MESSAGES})
    assert resp.status_code == 503 and resp.headers["retry-after"] == "5"
    assert resp.json()["error"]["type"] == "service_unavailable"
    assert client.get("/ready").status_code == 503
    assert client.get("/health").status_code == 200


def test_too_many_messages_is_400() -> None:
    for client in make_client(FakeEngine(["x"])):
        messages = [{"role": "user", "content": "hi"}] * 600
        resp = client.post("/v1/chat/completions", json={"model": "fake", "messages": messages})
        assert resp.status_code == 400 and resp.json()["error"]["code"] == "array_above_max_length"


def test_openapi_schema_is_served(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert "/v1/chat/completions" in schema["paths"]


def test_conversation_text_only_logged_when_operator_enables_it(capsys: pytest.CaptureFixture[str]) -> None:
    secret = "my very private sadness"
    for client in make_client(FakeEngine(["ok"])):
        client.post("/v1/chat/completions", json={"model": "fake", "messages": [{"role": "user", "content": secret}]})
    assert secret not in capsys.readouterr().out
    for client in make_client(FakeEngine(["ok"]), log_content=True):
        client.post("/v1/chat/completions", json={"model": "fake", "messages": [{"role": "user", "content": secret}]})
    assert secret in capsys.readouterr().out


RISKY = [{"role": "user", "content": "I have the pills ready and I want to end my life tonight."}]


def test_high_risk_is_replaced_by_default_and_nothing_is_generated(client: TestClient, engine: FakeEngine) -> None:
    body = client.post("/v1/chat/completions", json={"model": "fake", "messages": RISKY, "locale": "en-US"}).json()
    assert body["safety"] == {"level": "high", "categories": ["suicide"], "action": "replace"}
    assert "988" in body["choices"][0]["message"]["content"] and "Hello" not in body["choices"][0]["message"]["content"]
    assert engine.calls == [] and body["usage"]["completion_tokens"] == 0


def test_a_manifest_may_frame_high_risk_around_the_models_reply() -> None:
    engine = FakeEngine(["Hello", " there", "."])
    manifest = Manifest(name="fake", source=".", safety_high_action="frame")
    components = Components(manifest=manifest, engine=engine, renderer=PromptRenderer(FakeTokenizer(), None))
    with TestClient(build_app(Settings(), components)) as client:
        body = client.post("/v1/chat/completions", json={"model": "fake", "messages": RISKY, "locale": "en-US"}).json()
    text = body["choices"][0]["message"]["content"]
    assert body["safety"]["action"] == "frame" and "988" in text
    assert text.index("988") < text.index("Hello there.")  # resources first, then the model's reply


def test_a_100_kb_message_is_screened_quickly_and_risk_at_its_end_is_found() -> None:
    filler = "Today was long and I walked the dog and made soup and read a book. " * 1500  # ~100 KB
    message = [{"role": "user", "content": filler + "I have the pills ready and I want to end my life tonight."}]
    for client in make_client(FakeEngine(["ok"], max_model_len=1_000_000), max_request_bytes=400_000):
        started = time.perf_counter()
        body = client.post("/v1/chat/completions", json={"model": "fake", "messages": message}).json()
        assert time.perf_counter() - started < 5  # bounded: the screen reads the last few thousand characters
        assert body["safety"]["level"] == "high"
