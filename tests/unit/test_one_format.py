"""One conversation format: the prompt a training example is built from is, token for token, what the server sends
the engine for the same conversation, stateless and in a session (the tiny real tokenizer, a recording engine)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.chat.prompt import PromptRenderer, load_tokenizer
from app.config import Settings
from app.core.manifest import EngineConfig, Manifest, SamplingDefaults, StrategyTag
from app.core.template import ChatTokenizer
from app.server import Components, build_app
from tests.fakes import FakeEngine
from tests.tiny_model import build_tokenizer
from training.schema import Dialogue, read_jsonl
from training.sft_data import PromptCompletion, Target, build_prompt_completion, end_of_turn_ids, targets_of

SYSTEM = "You are SweetieChat. Be kind and brief."
SAMPLES = Path(__file__).resolve().parents[2] / "training" / "assets" / "samples.jsonl"


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> ChatTokenizer:
    folder = tmp_path_factory.mktemp("tok")
    build_tokenizer(folder)
    return load_tokenizer(str(folder))


@pytest.fixture(scope="module")
def dialogue() -> Dialogue:
    # a dialogue that opens with a supporter greeting: the harder case for sessions (it seeds the first turn)
    return next(d for d in read_jsonl(SAMPLES) if d.turns[0].role == "supporter" and len(d.turns) >= 6)


def serve(
    tokenizer: ChatTokenizer, replies: list[str], strategy_tag: StrategyTag = "greedy"
) -> Iterator[tuple[TestClient, FakeEngine]]:
    engine = FakeEngine(["x"], max_model_len=4096, replies=replies)
    manifest = Manifest(
        name="fine",
        source=".",
        system_prompt=SYSTEM,
        strategy_mode="model",
        strategy_tag=strategy_tag,
        sampling=SamplingDefaults(max_tokens=64),
        engine=EngineConfig(max_model_len=4096),
    )
    components = Components(manifest=manifest, engine=engine, renderer=PromptRenderer(tokenizer, SYSTEM))
    # the lexical screen: this test is about the format, not about what the crisis screen flags in the dialogue
    with TestClient(build_app(Settings(safety_screen="lexical"), components)) as client:
        yield client, engine


def training_example(tokenizer: ChatTokenizer, target: Target) -> PromptCompletion:
    """The target's training example: the prompt ids, then the completion SFT learns."""
    example = build_prompt_completion(tokenizer, target, SYSTEM, 4096, end_of_turn_ids(tokenizer))  # type: ignore[arg-type]
    assert example is not None
    return example


def training_prompt(tokenizer: ChatTokenizer, target: Target) -> list[int]:
    """The prompt of the target's training example: the token ids before the completion SFT learns."""
    return training_example(tokenizer, target).prompt_ids


def wire(dialogue: Dialogue, upto: int) -> list[dict[str, str]]:
    return [
        {"role": "user" if t.role == "seeker" else "assistant", "content": t.content} for t in dialogue.turns[:upto]
    ]


def test_stateless_prompt_equals_the_training_prompt(tokenizer: ChatTokenizer, dialogue: Dialogue) -> None:
    targets = targets_of([dialogue])
    for client, engine in serve(tokenizer, []):
        for target in targets:
            body = {"model": "fine", "messages": wire(dialogue, target.index), "max_tokens": 8}
            assert client.post("/v1/chat/completions", json=body).status_code == 200
            assert engine.prompts[-1] == training_prompt(tokenizer, target), target.index


@pytest.mark.parametrize("strategy_tag", ["greedy", "sampled"])
def test_session_prompt_equals_the_training_prompt(
    tokenizer: ChatTokenizer, dialogue: Dialogue, strategy_tag: StrategyTag
) -> None:
    targets = targets_of([dialogue])
    # the model answers each turn with the dialogue's own tagged reply, as a fine-tuned model would write it: sampled,
    # the tag and the reply in one generation; greedy, the guided choice of the tag first, then the reply after it
    if strategy_tag == "sampled":
        replies = [f"[{t.strategy}] {t.reply}" for t in targets]
    else:
        replies = [piece for t in targets for piece in (f"[{t.strategy}]", f" {t.reply}")]
    for client, engine in serve(tokenizer, replies, strategy_tag):
        sent = 0
        for target in targets:
            new = wire(dialogue, target.index)[sent:]  # only what is new since the last turn (a greeting seeds turn 1)
            body = {"model": "fine", "messages": new, "max_tokens": 64}
            resp = client.post("/v1/chat/completions", json=body, headers={"X-Session-Id": "one-format"})
            assert resp.status_code == 200, resp.text
            message = resp.json()["choices"][0]["message"]
            assert (message["strategy"], message["content"]) == (target.strategy, target.reply)
            example = training_example(tokenizer, target)
            if strategy_tag == "sampled":
                assert engine.prompts[-1] == example.prompt_ids, target.index
            else:  # the tag is chosen on the training prompt; the reply continues the prefilled tag, whose ids are
                # exactly the start of the training completion (no space token the model never saw after a tag)
                assert engine.prompts[-2] == example.prompt_ids, target.index
                tag_ids = engine.prompts[-1][len(example.prompt_ids) :]
                assert tag_ids and tag_ids == example.completion_ids[: len(tag_ids)], target.index
                assert engine.prompts[-1][: len(example.prompt_ids)] == example.prompt_ids
            sent = target.index + 1  # the reply is stored by the server
        stored = client.get("/v1/sessions/one-format").json()["messages"]
        assert all(not m["content"].startswith("[") for m in stored)  # tags are metadata, never text
