"""Role-play generation against a scripted OpenAI-compatible HTTP server: roles, retries, resume, filters."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.training.fake_llm_server import ScriptedLLM, serve
from training.cli import parse_config
from training.roleplay import FatalApiError, RoleplayConfig, cli, derive_seed, main
from training.schema import read_jsonl

PROFILE = {"age_group": "25-34", "occupation": "nurse", "personality": "calm", "wants": "to vent"}


def scenario(ident: str, situation: str, problem: str = "job crisis") -> dict[str, Any]:
    return {
        "id": ident,
        "problem_type": problem,
        "emotion": "anxiety",
        "intensity": 3,
        "situation": situation,
        "seeker": PROFILE,
    }


NORMAL = [scenario(f"t-{i}", f"Ordinary trouble number {i}.") for i in range(1, 5)]


@pytest.fixture(scope="module")
def llm() -> Iterator[tuple[ScriptedLLM, str]]:
    scripted = ScriptedLLM()
    with serve(scripted) as url:
        yield scripted, url


@pytest.fixture
def server(llm: tuple[ScriptedLLM, str]) -> tuple[ScriptedLLM, str]:
    scripted, url = llm
    with scripted.lock:
        scripted.requests.clear()
        scripted.fail_next.clear()
    return scripted, url


def make_config(tmp_path: Path, url: str, scenarios: list[dict[str, Any]], **overrides: Any) -> RoleplayConfig:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "scenarios.yaml"
    path.write_text(yaml.safe_dump({"category": "work", "scenarios": scenarios}))
    values: dict[str, Any] = {
        "scenarios": str(path),
        "out": str(tmp_path / "out" / "roleplay.jsonl"),
        "base_url": url,
        "model": "default-model",
        "max_turns": 12,
        "min_turns": 4,
        "concurrency": 3,
        "backoff_base": 0.01,
        "backoff_max": 0.05,
        "progress": False,
    }
    return RoleplayConfig(**(values | overrides))


def test_three_roles_make_valid_dialogues(
    server: tuple[ScriptedLLM, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    llm, url = server
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-value")
    config = make_config(
        tmp_path,
        url,
        NORMAL[:3],
        seeker_model="seeker-m",
        counselor_model="counselor-m",
        seeker_temperature=1.1,
        counselor_max_tokens=33,
    )
    report = main(config)
    dialogues = read_jsonl(config.out)
    assert report.written == len(dialogues) == 3 and not report.dropped and not report.failed
    assert {d.scenario.id for d in dialogues} == {"t-1", "t-2", "t-3"}
    for dialogue in dialogues:
        # The seeker's fifth line carries [END]: 9 turns, ending on a seeker turn with the marker removed.
        assert len(dialogue.turns) == 9 and dialogue.turns[-1].role == "seeker"
        assert "[END]" not in dialogue.turns[-1].content and dialogue.turns[-1].content.startswith("Thanks")
        supporter = [t for t in dialogue.turns if t.role == "supporter"]
        # The counselor's varied answer formats are all understood, in order, with their rationales.
        assert [t.strategy for t in supporter] == [
            "Question",
            "Reflection of feelings",
            "Restatement or Paraphrasing",
            "Affirmation and Reassurance",
        ]
        assert supporter[0].rationale == "Learn what happened first."
        for turn in supporter:  # label, echoed tag and run-on into the seeker's line are cleaned away
            assert turn.content.startswith(f"A short reply using {turn.strategy} (#") and "Seeker" not in turn.content
        assert not dialogue.turns[0].content.startswith("Seeker:")
        assert dialogue.generator is not None
        assert dialogue.generator.models == {
            "seeker": "seeker-m",
            "counselor": "counselor-m",
            "supporter": "default-model",
        }
        assert dialogue.generator.prompts_version == "roleplay-v1"
    seeker, counselor, supporter_calls = (llm.requests_for(r) for r in ("seeker", "counselor", "supporter"))
    assert len(seeker) == 15 and len(counselor) == len(supporter_calls) == 12
    assert {r["model"] for r in seeker} == {"seeker-m"} and {r["temperature"] for r in seeker} == {1.1}
    assert {r["max_tokens"] for r in counselor} == {33} and {r["model"] for r in supporter_calls} == {"default-model"}
    seeds = [r["seed"] for r in llm.requests]
    assert len(set(seeds)) == len(seeds)  # every call gets its own derived seed
    summary = json.loads(Path(config.out).with_suffix(".report.json").read_text())
    assert summary["written"] == 3 and summary["api_calls"] == {"counselor": 12, "seeker": 15, "supporter": 12}
    assert "sk-secret-value" not in Path(config.out).with_suffix(".report.json").read_text()


def test_same_seed_same_dialogues_other_seed_other_dialogues(server: tuple[ScriptedLLM, str], tmp_path: Path) -> None:
    _, url = server
    runs = []
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        config = make_config(tmp_path / name, url, NORMAL[:2], seed=seed, concurrency=2)
        main(config)
        runs.append({d.id.rsplit("-s", 1)[0]: [t.model_dump() for t in d.turns] for d in read_jsonl(config.out)})
    assert runs[0] == runs[1]
    assert runs[0] != runs[2] and runs[0].keys() == runs[2].keys()
    assert derive_seed(5, "t-1") == derive_seed(5, "t-1") != derive_seed(5, "t-2")


def test_transient_errors_are_retried(server: tuple[ScriptedLLM, str], tmp_path: Path) -> None:
    llm, url = server
    llm.fail_next.extend([429, 500, 503])
    report = main(make_config(tmp_path, url, NORMAL[:1]))
    assert report.written == 1 and report.api_retries == 3 and not report.failed
    assert len(llm.requests) == 3 + 5 + 4 + 4  # failures, then seeker, counselor, supporter calls


def test_persistent_errors_fail_the_scenario_and_resume_finishes_it(
    server: tuple[ScriptedLLM, str], tmp_path: Path
) -> None:
    llm, url = server
    llm.fail_next.extend([500] * 3)
    config = make_config(tmp_path, url, NORMAL[:1], max_retries=2)
    report = main(config)
    assert report.written == 0 and report.failed == {"InternalServerError": 1} and report.api_retries == 2
    assert Path(config.out).read_text() == ""
    again = main(config)
    assert again.written == 1 and again.skipped_existing == 0
    assert len(read_jsonl(config.out)) == 1


def test_resume_skips_finished_scenarios(server: tuple[ScriptedLLM, str], tmp_path: Path) -> None:
    llm, url = server
    main(make_config(tmp_path, url, NORMAL, limit=2))
    first = Path(tmp_path / "out" / "roleplay.jsonl").read_text()
    llm.requests.clear()
    report = main(make_config(tmp_path, url, NORMAL, limit=3))
    assert report.skipped_existing == 2 and report.written == 1
    assert all("Ordinary trouble number 3." in r["messages"][0]["content"] for r in llm.requests_for("seeker"))
    assert Path(tmp_path / "out" / "roleplay.jsonl").read_text().startswith(first)
    assert sorted(str(d.scenario.id) for d in read_jsonl(tmp_path / "out" / "roleplay.jsonl")) == ["t-1", "t-2", "t-3"]


def test_an_interrupted_last_line_is_removed_before_resuming(server: tuple[ScriptedLLM, str], tmp_path: Path) -> None:
    _, url = server
    config = make_config(tmp_path, url, NORMAL[:2], limit=1)
    main(config)
    with Path(config.out).open("a") as handle:
        handle.write('{"id": "roleplay-t-2-s0", "source": "rolep')  # crash mid-write
    report = main(make_config(tmp_path, url, NORMAL[:2]))
    assert report.written == 1 and report.skipped_existing == 1
    assert sorted(str(d.scenario.id) for d in read_jsonl(config.out)) == ["t-1", "t-2"]


def test_quality_filters_drop_and_report_why(
    server: tuple[ScriptedLLM, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, url = server
    scenarios = [
        NORMAL[0],
        scenario("quiet", "QUIET: the seeker only ever ends the chat."),
        scenario("confused", "CONFUSED: the seeker talks like a counselor."),
    ]
    config = make_config(tmp_path, url, scenarios, max_supporter_words=60)
    report = main(config)
    assert report.written == 1 and report.dropped == {"too_short": 1, "role_confusion": 1}
    assert report.empty_reasks == 2  # the bare early [END] was asked again before giving up
    printed = capsys.readouterr().out
    assert "2 dropped (role_confusion: 1, too_short: 1)" in printed
    saved = json.loads(Path(config.out).with_suffix(".report.json").read_text())
    assert saved["dropped"] == {"role_confusion": 1, "too_short": 1}
    assert [d.scenario.id for d in read_jsonl(config.out)] == ["t-1"]
    tight = make_config(tmp_path / "tight", url, NORMAL[:1], max_supporter_words=3)
    assert main(tight).dropped == {"overlong_turn": 1}


def test_unreadable_counselor_is_asked_again_then_defaulted(server: tuple[ScriptedLLM, str], tmp_path: Path) -> None:
    llm, url = server
    config = make_config(tmp_path, url, [scenario("p", "Ordinary.", problem="PICKY topic")], counselor_retries=1)
    report = main(config)
    (dialogue,) = read_jsonl(config.out)
    supporter = [t for t in dialogue.turns if t.role == "supporter"]
    assert {t.strategy for t in supporter} == {"Reflection of feelings"} and all(t.rationale is None for t in supporter)
    assert report.counselor_defaulted == len(supporter) == 4 and report.counselor_reasks == 4
    assert len(llm.requests_for("counselor")) == 8


def test_auth_errors_stop_the_run(server: tuple[ScriptedLLM, str], tmp_path: Path) -> None:
    llm, url = server
    llm.fail_next.append(401)
    with pytest.raises(FatalApiError, match="seeker endpoint"):
        main(make_config(tmp_path, url, NORMAL[:1]))


def test_cli_flags_and_yaml_preset(server: tuple[ScriptedLLM, str], tmp_path: Path) -> None:
    _, url = server
    config = make_config(tmp_path, url, NORMAL[:2])
    preset = tmp_path / "preset.yaml"
    preset.write_text(yaml.safe_dump({"base_url": url, "scenarios": config.scenarios, "min_turns": 4}))
    out = tmp_path / "cli.jsonl"
    status = cli(["--config", str(preset), "--out", str(out), "--limit", "1", "--no-progress", "--max-turns", "6"])
    assert status == 0
    (dialogue,) = read_jsonl(out)
    assert len(dialogue.turns) == 6
    assert cli(["--config", str(preset), "--min_turns", "9", "--max_turns", "6"]) == 2


@pytest.mark.parametrize(
    "preset", sorted((Path(__file__).resolve().parents[2] / "training" / "configs").glob("roleplay*.yaml"))
)
def test_shipped_presets_parse(preset: Path) -> None:
    config = parse_config(RoleplayConfig, ["--config", str(preset)])
    config.check()
    assert config.base_url.endswith("/v1")
