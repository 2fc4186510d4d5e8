"""The sentence budget through the API (fake engine): where replies end, in streams and whole responses."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.chat.prompt import PromptRenderer
from app.config import Settings
from app.core.manifest import Manifest, SamplingDefaults
from app.server import Components, build_app
from tests.fakes import FakeEngine, FakeTokenizer

PIECES = ["I hear", " you. That", " sounds hard", ". What happened", "? Tell me", " more."]
FULL = "I hear you. That sounds hard. What happened? Tell me more."
MESSAGES = [{"role": "user", "content": "I failed my driving test"}]


@pytest.fixture
def served() -> Iterator[tuple[TestClient, FakeEngine]]:
    engine = FakeEngine(PIECES)
    manifest = Manifest(name="m", source=".", sampling=SamplingDefaults(max_sentences=2))
    components = Components(manifest=manifest, engine=engine, renderer=PromptRenderer(FakeTokenizer(), None))
    with TestClient(build_app(Settings(), components), raise_server_exceptions=False) as client:
        yield client, engine


def stream(client: TestClient, **extra: Any) -> tuple[str, list[str | None]]:
    body = {"model": "m", "messages": MESSAGES, "stream": True, **extra}
    resp = client.post("/v1/chat/completions", json=body)
    events = [json.loads(line[6:]) for line in resp.text.splitlines() if line.startswith("data: {")]
    choices = [c for e in events for c in e["choices"]]
    return "".join(c["delta"].get("content") or "" for c in choices), [c["finish_reason"] for c in choices]


def limited_total(client: TestClient) -> float:
    metrics = client.get("/metrics").text
    return float(re.search(r"^sweetie_sentence_limited_replies_total (\S+)$", metrics, re.M).group(1))  # type: ignore[union-attr]


def test_stream_ends_after_the_manifest_budget_and_stops_the_engine(served: tuple[TestClient, FakeEngine]) -> None:
    client, engine = served
    before = limited_total(client)
    text, finishes = stream(client)
    assert text == "I hear you. That sounds hard."
    assert [f for f in finishes if f] == ["stop"]
    assert engine.closed_early == 1  # generation ended at the cut, not after the last piece
    assert limited_total(client) == before + 1
    stream(client, max_sentences=0)
    assert limited_total(client) == before + 1  # a reply the model ended itself is not counted


def test_non_stream_reply_matches_the_stream(served: tuple[TestClient, FakeEngine]) -> None:
    client, _ = served
    body = client.post("/v1/chat/completions", json={"model": "m", "messages": MESSAGES}).json()
    assert body["choices"][0]["message"]["content"] == "I hear you. That sounds hard."
    assert body["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"max_sentences": 1}, "I hear you."),
        ({"max_sentences": 3}, "I hear you. That sounds hard. What happened?"),
        ({"max_sentences": 0}, FULL),  # 0: no sentence limit
        ({"ignore_eos": True}, FULL),  # fixed-length load tests are never cut
    ],
)
def test_request_overrides_the_budget(
    served: tuple[TestClient, FakeEngine], extra: dict[str, Any], expected: str
) -> None:
    client, _ = served
    assert stream(client, **extra)[0] == expected
    body = client.post("/v1/chat/completions", json={"model": "m", "messages": MESSAGES, **extra}).json()
    assert body["choices"][0]["message"]["content"] == expected


def test_every_choice_gets_its_own_budget(served: tuple[TestClient, FakeEngine]) -> None:
    client, engine = served
    body = client.post("/v1/chat/completions", json={"model": "m", "messages": MESSAGES, "n": 3}).json()
    assert [c["message"]["content"] for c in body["choices"]] == ["I hear you. That sounds hard."] * 3
    assert engine.closed_early == 1


@pytest.mark.parametrize("value", [-1, 101, "two", 1.5])
def test_bad_budget_is_a_400(served: tuple[TestClient, FakeEngine], value: object) -> None:
    client, _ = served
    resp = client.post("/v1/chat/completions", json={"model": "m", "messages": MESSAGES, "max_sentences": value})
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == "max_sentences"


def test_budget_counts_visible_text_after_the_strategy_tag() -> None:
    engine = FakeEngine(["[Question]", " Did it", " go badly? I", " am sorry."])
    manifest = Manifest(name="m", source=".", strategy_mode="model", sampling=SamplingDefaults(max_sentences=1))
    components = Components(manifest=manifest, engine=engine, renderer=PromptRenderer(FakeTokenizer(), None))
    with TestClient(build_app(Settings(), components), raise_server_exceptions=False) as client:
        message = client.post("/v1/chat/completions", json={"model": "m", "messages": MESSAGES}).json()["choices"][0]
        assert message["message"]["content"] == "Did it go badly?"
        assert message["message"]["strategy"] == "Question"
        assert stream(client)[0] == "Did it go badly?"
