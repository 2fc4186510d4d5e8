"""The learned Strategy Planner: its inputs, training (python -m training.strategy_planner), the file it writes,
and the server failing fast on a missing or mismatched planner."""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.chat.prompt import PromptRenderer
from app.chat.strategy_planner import PLANNER_FILE, PlannerError, StrategyPlanner, planner_fields
from app.config import Settings
from app.core.manifest import Manifest, load_manifest
from app.core.messages import Message
from app.core.strategies import load_catalogue
from app.server import Components, ConfigError, build_app, check_config
from tests.fakes import FakeEngine, FakeTokenizer
from tests.server_process import ServerProcess
from tests.tiny_model import write_manifest
from training.strategy_planner import PlannerConfig, cli, main

# Two habits a planner can only learn from the words: a seeker asking what to do gets a suggestion, one saying how
# they feel gets their feeling reflected; fillers vary the wording so that nothing but those words carries the label.
ASKS = ["what should i do about {}", "any idea how i fix {}", "how do i deal with {} now"]
FEELS = ["i feel so sad about {}", "i am really lonely since {}", "i feel empty and low about {}"]
TOPICS = ["my job", "the move", "my exams", "my sister", "the breakup", "money", "my boss", "the divorce"]
SCENARIO = {"category": "work", "problem_type": "stress", "emotion": "sadness", "situation": "A hard week."}


def dialogues(n: int, seed: int) -> list[dict[str, object]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        turns: list[dict[str, str]] = []
        for _ in range(3):
            asks = rng.random() < 0.5
            template = rng.choice(ASKS if asks else FEELS)
            turns.append({"role": "seeker", "content": template.format(rng.choice(TOPICS))})
            strategy = "Providing Suggestions" if asks else "Reflection of feelings"
            reply = "maybe try one small step today" if asks else "it sounds like that hurts a lot"
            turns.append({"role": "supporter", "content": reply, "strategy": strategy})
        out.append({"id": f"synthetic-{seed}-{i}", "source": "sample", "scenario": SCENARIO, "turns": turns})
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("planner") / "dialogues.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in dialogues(60, seed=0)))
    return path


def test_fields_read_the_latest_message_the_previous_reply_and_the_shape() -> None:
    conversation = [
        Message("system", "persona text"),
        Message("user", "hi"),
        Message("assistant", "Hello, how are you?"),
        Message("user", "not great, my exams went badly"),
    ]
    seeker, previous, shape = planner_fields(conversation)
    assert (seeker, previous) == ("not great, my exams went badly", "Hello, how are you?")
    assert shape.split() == ["replies1", "seekertells", "previousasked", "hasprevious", "length0"]
    # the first turn of a conversation: no previous reply
    assert planner_fields([Message("user", "can you help?")])[1:] == (
        "",
        "replies0 seekerasks previoustold noprevious length0",
    )


def test_trained_planner_chooses_from_the_words_and_round_trips(data: Path, tmp_path: Path) -> None:
    out = tmp_path / PLANNER_FILE
    report = main(PlannerConfig(out=out, data=[str(data)], c=[1.0], folds=2, min_df=1))
    assert report["turns"] == 180 and report["cv_accuracy"]["1"] > 0.95  # cross-validated, dialogues held apart
    assert report["majority_baseline"]["accuracy"] < 0.6 and report["inputs_sha256"] == {
        str(data): report["inputs_sha256"][str(data)]
    }
    planner = StrategyPlanner.load(out, load_catalogue().names)
    asks = [Message("user", "honestly what should i do about the new flat")]
    feels = [Message("user", "hey"), Message("assistant", "Hi there."), Message("user", "i feel so sad about it all")]
    assert planner.choose(asks) == "Providing Suggestions"
    assert planner.choose(feels) == "Reflection of feelings"
    probs = planner.probabilities(feels)
    assert set(probs) == {"Providing Suggestions", "Reflection of feelings"} and abs(sum(probs.values()) - 1) < 1e-5
    assert b"sad" not in out.read_bytes() and b"what should" not in out.read_bytes()  # hashed n-grams only


def test_model_dir_gets_the_planner_and_its_manifest_says_so(data: Path, tmp_path: Path) -> None:
    folder = tmp_path / "fine"
    folder.mkdir()
    write_manifest(folder, "fine")
    raw = (folder / "model.yaml").read_text().replace("name: fine", "name: fine\nstrategy_mode: model")
    (folder / "model.yaml").write_text(raw)
    assert cli(["--model_dir", str(folder), "--data", str(data), "--c", "1.0", "--folds", "2", "--min_df", "1"]) == 0
    manifest = load_manifest(folder / "model.yaml")
    assert manifest.strategy_tag == "planner" and (folder / PLANNER_FILE).is_file()
    assert check_config(Settings(safety_screen="lexical"), manifest).planner is not None


def test_server_refuses_a_planner_model_without_its_planner_before_loading(tmp_path: Path) -> None:
    manifest = Manifest(name="fine", source=".", strategy_mode="model", strategy_tag="planner", folder=tmp_path)
    with pytest.raises(ConfigError, match=r"strategy_tag: planner.*no strategy planner.*training.strategy_planner"):
        check_config(Settings(safety_screen="lexical"), manifest)
    # a planner whose strategies are not the catalogue's
    width = 3
    empty = {
        f"{f}_{k}": np.zeros(1, np.uint64) if k == "keys" else np.ones(1, np.float32)
        for f in ("seeker", "previous", "shape")
        for k in ("keys", "idf")
    }
    meta = json.dumps({"format": 1, "strategies": ["Hugging"], "report": {}})
    np.savez(
        tmp_path / PLANNER_FILE,
        coef=np.zeros((1, width), np.float32),
        intercept=np.zeros(1, np.float32),
        meta=np.array(meta),
        **empty,
    )
    with pytest.raises(PlannerError, match=r"\['Hugging'\] are not in the strategy catalogue"):
        StrategyPlanner.load(tmp_path / PLANNER_FILE, load_catalogue().names)
    (tmp_path / PLANNER_FILE).write_bytes(b"not an npz")
    with pytest.raises(ConfigError, match="not a readable strategy planner"):
        check_config(Settings(safety_screen="lexical"), manifest)


def test_config_rejects_esconv_valid_and_a_missing_destination(config_error: Callable[..., str]) -> None:
    assert "exactly one of --model_dir" in config_error(PlannerConfig, "--c", "1.0")
    assert "ESConv valid scores the planner" in config_error(PlannerConfig, "--out", "x.npz", "--data", "esconv:valid")


@pytest.fixture(scope="module")
def planner_folder(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fine-planner")
    main(PlannerConfig(out=folder / PLANNER_FILE, data=[str(data)], c=[1.0], folds=2, min_df=1))
    return folder


def test_server_prefills_the_planners_choice_stateless_and_in_a_session(planner_folder: Path) -> None:
    engine = FakeEngine(["Maybe", " start", " small."])
    manifest = Manifest(name="fine", source=".", strategy_mode="model", strategy_tag="planner", folder=planner_folder)
    renderer = PromptRenderer(FakeTokenizer(), None)
    components = Components(manifest=manifest, engine=engine, renderer=renderer)
    asks = [{"role": "user", "content": "what should i do about my exams"}]
    feels = {"role": "user", "content": "i feel so sad about the move"}
    with TestClient(build_app(Settings(safety_screen="lexical"), components)) as client:
        body = client.post("/v1/chat/completions", json={"model": "fine", "messages": asks}).json()
        assert body["choices"][0]["message"]["strategy"] == "Providing Suggestions"
        assert body["choices"][0]["message"]["content"] == "Maybe start small."
        # one generation, whose prompt ends with the planner's tag (no guided tag choice before it)
        assert len(engine.prompts) == 1
        assert engine.prompts[0][-len(renderer.prefill_ids("Providing Suggestions")) :] == renderer.prefill_ids(
            "Providing Suggestions"
        )
        headers = {"X-Session-Id": "planner-session"}
        for messages, expected in ((asks, "Providing Suggestions"), ([feels], "Reflection of feelings")):
            resp = client.post(
                "/v1/chat/completions", json={"model": "fine", "messages": messages, "stream": True}, headers=headers
            )
            chunks = [json.loads(line[6:]) for line in resp.text.splitlines() if line.startswith("data: {")]
            assert {c["choices"][0]["delta"].get("strategy") for c in chunks if c["choices"]} - {None} == {expected}
        stored = client.get("/v1/sessions/planner-session").json()["messages"]
        assert [m.get("strategy") for m in stored if m["role"] == "assistant"] == [
            "Providing Suggestions",
            "Reflection of feelings",
        ]
        # a requested strategy still wins over the planner
        body = client.post(
            "/v1/chat/completions", json={"model": "fine", "messages": asks, "strategy": "Question"}
        ).json()
        assert body["choices"][0]["message"]["strategy"] == "Question"


@pytest.mark.slow
def test_real_server_serves_the_planners_strategy_through_the_openai_client(
    tiny_model_repo: Path, planner_folder: Path, tmp_path: Path
) -> None:
    """The real server (vLLM on CPU, the tiny random model) with ``strategy_tag: planner``: the reply's strategy is
    the planner's, stream and non-stream, whatever the random model would have tagged."""
    import openai
    import yaml

    repo = tmp_path / "repo"
    shutil.copytree(tiny_model_repo / "tiny", repo / "fine")
    manifest = yaml.safe_load((repo / "fine" / "model.yaml").read_text())
    manifest.update(name="fine", strategy_mode="model", strategy_tag="planner")
    (repo / "fine" / "model.yaml").write_text(yaml.safe_dump(manifest))
    shutil.copy(planner_folder / PLANNER_FILE, repo / "fine" / PLANNER_FILE)
    server = ServerProcess(
        ["--model-repo", str(repo), "--model", "fine", "--kv-cache-gb", "1"], tmp_path / "server.log"
    ).start()
    try:
        client = openai.OpenAI(base_url=server.base_url, api_key="none", max_retries=0, timeout=120)
        for text, expected in (
            ("what should i do about my exams", "Providing Suggestions"),
            ("i feel so sad about the move", "Reflection of feelings"),
        ):
            messages = [{"role": "user", "content": text}]
            reply = client.chat.completions.create(model="fine", messages=messages, max_tokens=8)  # type: ignore[arg-type]
            assert (reply.choices[0].message.model_extra or {}).get("strategy") == expected
            stream = client.chat.completions.create(model="fine", messages=messages, max_tokens=8, stream=True)  # type: ignore[arg-type]
            reported = {(c.choices[0].delta.model_extra or {}).get("strategy") for c in stream if c.choices}
            assert reported - {None} == {expected}
    finally:
        server.stop()
