"""Strategy tags: parsing, streaming strip across chunk boundaries, and the API over a fake engine."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Literal, TypeAlias

import pytest
from fastapi.testclient import TestClient

from app.chat.prompt import PromptRenderer
from app.config import Settings
from app.core.format import TagStripper
from app.core.manifest import Manifest
from app.core.strategies import load_catalogue
from app.server import Components, build_app
from tests.fakes import FakeEngine, FakeTokenizer

CATALOGUE = load_catalogue()
StrategyTag: TypeAlias = Literal["greedy", "sampled"]


@pytest.mark.parametrize(
    ("text", "strategy", "rest"),
    [
        ("[Question] How long has this been going on?", "Question", "How long has this been going on?"),
        ("  [reflection of feelings]   That sounds lonely.", "Reflection of feelings", "That sounds lonely."),
        ("[Providing Suggestions]Try a walk.", "Providing Suggestions", "Try a walk."),
        ("[Nonsense] hi", None, "[Nonsense] hi"),
        ("No tag here.", None, "No tag here."),
        ("[" + "x" * 80 + "] long", None, "[" + "x" * 80 + "] long"),
    ],
)
def test_whole_reply_tag(text: str, strategy: str | None, rest: str) -> None:
    stripper = TagStripper(CATALOGUE)
    assert stripper.feed(text) + stripper.finish() == rest
    assert stripper.strategy == strategy


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 100])
def test_stripper_handles_any_chunk_boundary(chunk: int) -> None:
    text = "[Affirmation and Reassurance] You handled that with real courage."
    stripper = TagStripper(CATALOGUE)
    pieces = [stripper.feed(text[i : i + chunk]) for i in range(0, len(text), chunk)]
    assert "".join(pieces) + stripper.finish() == "You handled that with real courage."
    assert stripper.strategy == "Affirmation and Reassurance"


def test_stripper_releases_non_tags_without_delay() -> None:
    stripper = TagStripper(CATALOGUE)
    assert stripper.feed("Hello") == "Hello"  # first visible token is not held back
    other = TagStripper(CATALOGUE)
    assert other.feed("[not a") == ""  # could still be a tag: held back
    assert other.feed(" strategy] hi") == "[not a strategy] hi"
    assert other.strategy is None
    unterminated = TagStripper(CATALOGUE)
    assert unterminated.feed("[Ques") == ""
    assert unterminated.finish() == "[Ques"


def model_mode_client(
    pieces: list[str], strategy_tag: StrategyTag = "sampled", engine: FakeEngine | None = None
) -> Iterator[TestClient]:
    manifest = Manifest(name="fine", source=".", strategy_mode="model", strategy_tag=strategy_tag)
    components = Components(
        manifest=manifest, engine=engine or FakeEngine(pieces), renderer=PromptRenderer(FakeTokenizer(), None)
    )
    with TestClient(build_app(Settings(), components), raise_server_exceptions=False) as client:
        yield client


MESSAGES = [{"role": "user", "content": "I failed my driving test"}]


def test_model_mode_stream_strips_tag_split_across_chunks() -> None:
    for client in model_mode_client(["[Ques", "tion", "] How", " did it", " go?"]):
        resp = client.post("/v1/chat/completions", json={"model": "fine", "messages": MESSAGES, "stream": True})
        events = [line[6:] for line in resp.text.splitlines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        deltas = [json.loads(e)["choices"][0]["delta"] for e in events[:-1] if json.loads(e)["choices"]]
        contents = [d.get("content", "") for d in deltas]
        assert "".join(contents) == "How did it go?"
        first_visible = next(d for d in deltas if d.get("content"))
        assert first_visible["strategy"] == "Question" and first_visible["content"] == "How"


def test_model_mode_non_stream_returns_strategy() -> None:
    for client in model_mode_client(["[Self-disclosure]", " I failed mine twice."]):
        body = client.post("/v1/chat/completions", json={"model": "fine", "messages": MESSAGES}).json()
        assert body["choices"][0]["message"] == {
            "role": "assistant",
            "content": "I failed mine twice.",
            "strategy": "Self-disclosure",
        }


def test_requested_strategy_in_model_mode_is_prefilled_and_reported() -> None:
    for client in model_mode_client(["Did", " it", " go badly?"]):
        body = client.post(
            "/v1/chat/completions", json={"model": "fine", "messages": MESSAGES, "strategy": "question"}
        ).json()
        assert body["choices"][0]["message"]["strategy"] == "Question"
        assert body["choices"][0]["message"]["content"] == "Did it go badly?"


def test_unknown_strategy_lists_valid_names() -> None:
    for client in model_mode_client(["x"]):
        resp = client.post("/v1/chat/completions", json={"model": "fine", "messages": MESSAGES, "strategy": "Hugs"})
        error = resp.json()["error"]
        assert resp.status_code == 400 and error["param"] == "strategy"
        assert all(name in error["message"] for name in CATALOGUE.names)


def test_greedy_tag_is_the_models_guided_choice_then_prefilled_before_the_sampled_reply() -> None:
    engine = FakeEngine([], replies=["[Reflection of feelings]", "That sounds so lonely."])
    for client in model_mode_client([], "greedy", engine):
        body = client.post("/v1/chat/completions", json={"model": "fine", "messages": MESSAGES}).json()
        assert body["choices"][0]["message"] == {
            "role": "assistant",
            "content": "That sounds so lonely.",
            "strategy": "Reflection of feelings",
        }
    choice, reply = engine.calls
    assert choice.temperature == 0.0 and choice.choices == tuple(f"[{name}]" for name in CATALOGUE.names)
    assert reply.choices == () and reply.temperature != 0.0  # the reply itself is still sampled
    # The reply's prompt is the choice's prompt plus the chosen tag: exactly what a prefilled request renders.
    tag_ids = PromptRenderer(FakeTokenizer(), None).tokenizer.encode("[Reflection of feelings] ")
    assert engine.prompts[1] == engine.prompts[0] + tag_ids


def test_greedy_tag_that_names_no_strategy_leaves_the_tag_to_the_model_and_is_counted() -> None:
    engine = FakeEngine([], replies=["[Hugs]", "[Question] How did it go?"])
    for client in model_mode_client([], "greedy", engine):
        before = _counselor_invalid(client)
        body = client.post("/v1/chat/completions", json={"model": "fine", "messages": MESSAGES}).json()
        assert body["choices"][0]["message"]["strategy"] == "Question"
        assert body["choices"][0]["message"]["content"] == "How did it go?"
        assert _counselor_invalid(client) == before + 1
    assert engine.prompts[1] == engine.prompts[0]  # nothing was prefilled


def test_sampled_tag_makes_one_generation_at_the_reply_temperature() -> None:
    engine = FakeEngine(["[Question] How", " did it go?"])
    for client in model_mode_client([], "sampled", engine):
        body = client.post("/v1/chat/completions", json={"model": "fine", "messages": MESSAGES}).json()
        assert body["choices"][0]["message"]["strategy"] == "Question"
    assert len(engine.calls) == 1 and engine.calls[0].choices == ()


def _counselor_invalid(client: TestClient) -> float:
    match = re.search(r"^sweetie_counselor_invalid_total (\S+)$", client.get("/metrics").text, re.M)
    assert match is not None
    return float(match.group(1))
