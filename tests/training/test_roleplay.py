"""Role-play generation against a scripted OpenAI-compatible HTTP server: roles, structured counselor, per-turn
checks and cuts, judge, scale (samples, shards, fleets), retries, resume, report."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.core.strategies import load_catalogue
from tests.training.fake_llm_server import FREE_TEXT_COUNSELOR, RISKY_LINE, STRATEGIES, ScriptedLLM, dead_url, serve
from training.cli import parse_config
from training.roleplay import FatalApiError, RoleplayConfig, cli, derive_seed, main
from training.schema import Dialogue, read_jsonl

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
    scripted.reset()
    return scripted, url


def make_config(tmp_path: Path, url: str, scenarios: list[dict[str, Any]], **overrides: Any) -> RoleplayConfig:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "scenarios.yaml"
    path.write_text(yaml.safe_dump({"category": "work", "scenarios": scenarios}))
    values: dict[str, Any] = {
        "scenarios": str(path),
        "out": str(tmp_path / "out" / "roleplay.jsonl"),
        "base_url": [url],
        "model": "default-model",
        "max_turns": 12,
        "min_turns": 4,
        "concurrency": 3,
        "max_retries": 1,
        "progress": False,
    }
    return RoleplayConfig(**(values | overrides))


def judge_meta(dialogue: Dialogue) -> Any:
    """The dialogue's ``meta.judge`` (a JSON value), for indexing in asserts."""
    return dialogue.meta["judge"]


def saved_report(config: RoleplayConfig) -> dict[str, Any]:
    return dict(json.loads(Path(config.out).with_suffix(".report.json").read_text()))


def test_three_roles_and_a_judge_make_valid_dialogues(
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
        judge_model="judge-m",
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
        assert [t.strategy for t in supporter] == STRATEGIES[:4]  # exactly what the structured counselor chose
        assert supporter[0].rationale == "Turn 0: fits now."
        for turn in supporter:  # label, echoed tag and run-on into the seeker's line are cleaned away
            assert turn.content.startswith(f"A short reply using {turn.strategy} (#") and "Seeker" not in turn.content
        assert dialogue.generator is not None and dialogue.generator.prompts_version == "roleplay-v2"
        assert dialogue.generator.models == {
            "seeker": "seeker-m",
            "counselor": "counselor-m",
            "supporter": "default-model",
            "judge": "judge-m",
        }
        meta: Any = dialogue.meta
        assert meta["end"] == "seeker_end" and meta["sample"] == 0
        assert meta["judge"]["empathy"] == 4 and meta["judge"]["strategy_used"] == [True] * 4
        assert meta["usage"]["seeker"]["calls"] == 5 and meta["usage"]["judge"]["calls"] == 1
        assert meta["usage"]["supporter"]["completion_tokens"] > 0 and meta["latency_s"] > 0
    seeker, counselor, supporter_calls = (llm.requests_for(r) for r in ("seeker", "counselor", "supporter"))
    assert len(seeker) == 15 and len(counselor) == len(supporter_calls) == 12
    assert {r["model"] for r in seeker} == {"seeker-m"} and {r["temperature"] for r in seeker} == {1.1}
    assert {r["max_tokens"] for r in counselor} == {33} and {r["model"] for r in supporter_calls} == {"default-model"}
    # The counselor is asked for structured output: an enum of exactly the catalogue's names and a short rationale.
    schema = counselor[0]["response_format"]["json_schema"]["schema"]
    assert counselor[0]["response_format"]["type"] == "json_schema"
    assert schema["properties"]["strategy"]["enum"] == load_catalogue().names
    assert schema["required"] == ["rationale", "strategy"] and schema["properties"]["rationale"]["maxLength"] <= 300
    assert "response_format" not in seeker[0] and "response_format" not in supporter_calls[0]
    judge_schema = llm.requests_for("judge")[0]["response_format"]["json_schema"]["schema"]
    assert judge_schema["properties"]["strategy_used"]["minItems"] == 4
    seeds = [r["seed"] for r in llm.requests]
    assert len(set(seeds)) == len(seeds)  # every call gets its own derived seed
    summary = saved_report(config)
    assert summary["written"] == 3 and summary["yield"] == 1.0
    assert summary["api"]["usage"]["seeker"]["calls"] == 15 and summary["api"]["usage"]["judge"]["calls"] == 3
    assert summary["strategy_distribution"] == {name: 3 for name in STRATEGIES[:4]}
    assert summary["judge"]["judged"] == 3 and summary["judge"]["mean"]["empathy"] == 4.0
    assert summary["judge"]["strategy_adherence"] == 1.0
    assert summary["throughput"]["dialogues_per_hour"] > 0 and summary["throughput"]["completion_tokens_per_s"] > 0
    assert summary["ends"] == {"seeker_end": 3} and summary["avg_turns_per_dialogue"] == 9
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


def test_samples_resume_by_dialogue_id_and_another_seed_adds_to_the_same_file(
    server: tuple[ScriptedLLM, str], tmp_path: Path
) -> None:
    llm, url = server
    first = main(make_config(tmp_path, url, NORMAL[:2], samples_per_scenario=2))
    out = tmp_path / "out" / "roleplay.jsonl"
    ids = [d.id for d in read_jsonl(out)]
    assert first.written == 4 and sorted(ids) == [f"roleplay-t-{i}-n{n}-s0" for i in (1, 2) for n in (0, 1)]
    texts = {d.id: d.turns[0].content for d in read_jsonl(out)}
    assert texts["roleplay-t-1-n0-s0"] != texts["roleplay-t-1-n1-s0"]  # samples differ
    llm.reset()
    again = main(make_config(tmp_path, url, NORMAL[:2], samples_per_scenario=3))
    assert again.skipped_existing == 4 and again.written == 2 and again.dialogues == 6
    other_seed = main(make_config(tmp_path, url, NORMAL[:2], samples_per_scenario=1, seed=7))
    assert other_seed.skipped_existing == 0 and other_seed.written == 2  # not silently skipped
    assert len({d.id for d in read_jsonl(out)}) == 8


def test_shards_split_the_job_list(server: tuple[ScriptedLLM, str], tmp_path: Path) -> None:
    _, url = server
    ids = []
    for index in range(3):
        config = make_config(tmp_path / str(index), url, NORMAL, samples_per_scenario=2, shard=f"{index}/3")
        report = main(config)
        ids.append({d.id for d in read_jsonl(config.out)})
        assert report.dialogues == len(ids[-1])
    assert sum(map(len, ids)) == 8 and len(set.union(*ids)) == 8
    with pytest.raises(ValueError, match="--shard '3/3'"):
        main(make_config(tmp_path / "bad", url, NORMAL, shard="3/3"))


def test_a_fleet_is_used_round_robin_and_a_dead_endpoint_fails_over(
    server: tuple[ScriptedLLM, str], tmp_path: Path
) -> None:
    _, url = server
    same_server = url.replace("127.0.0.1", "localhost")
    config = make_config(tmp_path / "fleet", url, NORMAL, base_url=[url, same_server], concurrency=4)
    report = main(config)
    per_endpoint = saved_report(config)["api"]["calls_per_endpoint"]
    assert report.written == 4 and set(per_endpoint) == {url, same_server}
    assert per_endpoint[url] == per_endpoint[same_server]  # four identical dialogues, two on each
    dead = dead_url()
    config = make_config(tmp_path / "dead", url, NORMAL[:2], base_url=[dead, url], max_retries=0)
    report = main(config)
    summary = saved_report(config)
    assert report.written == 2 and summary["api"]["failovers"] > 0
    assert summary["api"]["errors"]["seeker:APIConnectionError"] >= 1
    assert set(summary["api"]["calls_per_endpoint"]) == {url}


def test_transient_errors_are_retried_by_the_client(server: tuple[ScriptedLLM, str], tmp_path: Path) -> None:
    llm, url = server
    llm.fail_next.extend([429, 500, 503])
    config = make_config(tmp_path, url, NORMAL[:1], max_retries=3)
    report = main(config)
    assert report.written == 1 and not report.failed
    assert saved_report(config)["api"]["client_retries"] == {"seeker": 3}
    assert len(llm.requests) == 3 + 5 + 4 + 4  # failures, then seeker, counselor, supporter calls


def test_garbage_and_a_down_endpoint_are_counted_and_never_corrupt_the_output(
    server: tuple[ScriptedLLM, str], tmp_path: Path
) -> None:
    llm, url = server
    llm.fail_next.extend(["garbage", "empty"])  # first seeker call: two bad answers, then it gives up on the turn
    config = make_config(tmp_path, url, NORMAL[:2], concurrency=1, turn_retries=0)
    report = main(config)
    summary = saved_report(config)
    assert summary["api"]["errors"] == {"seeker:garbage": 2}
    assert report.dropped == {"too_short": 1} and report.too_short_after == {"cut:api_error:garbage": 1}
    assert report.written == 1 and len(read_jsonl(config.out)) == 1
    down = make_config(tmp_path / "down", url, NORMAL[:2], base_url=[dead_url()], max_retries=0)
    report = main(down)
    assert report.written == 0 and report.dropped == {"too_short": 2} and not report.failed
    assert report.ends == {"cut:api_error:APIConnectionError": 2}
    assert Path(down.out).read_text() == ""
    again = main(make_config(tmp_path / "down", url, NORMAL[:2]))  # the endpoint is back: resume finishes
    assert again.written == 2 and len(read_jsonl(down.out)) == 2


def test_resume_skips_finished_dialogues(server: tuple[ScriptedLLM, str], tmp_path: Path) -> None:
    llm, url = server
    main(make_config(tmp_path, url, NORMAL, limit=2))
    first = Path(tmp_path / "out" / "roleplay.jsonl").read_text()
    llm.reset()
    report = main(make_config(tmp_path, url, NORMAL, limit=3))
    assert report.skipped_existing == 2 and report.written == 1
    assert all("Ordinary trouble number 3." in r["messages"][0]["content"] for r in llm.requests_for("seeker"))
    assert Path(tmp_path / "out" / "roleplay.jsonl").read_text().startswith(first)


def test_an_interrupted_last_line_is_removed_before_resuming(server: tuple[ScriptedLLM, str], tmp_path: Path) -> None:
    _, url = server
    config = make_config(tmp_path, url, NORMAL[:2], limit=1)
    main(config)
    with Path(config.out).open("a") as handle:
        handle.write('{"id": "roleplay-t-2-n0-s0", "source": "rolep')  # crash mid-write
    report = main(make_config(tmp_path, url, NORMAL[:2]))
    assert report.written == 1 and report.skipped_existing == 1
    assert sorted(str(d.scenario.id) for d in read_jsonl(config.out)) == ["t-1", "t-2"]


def test_bad_turns_are_asked_again_then_the_dialogue_is_cut(server: tuple[ScriptedLLM, str], tmp_path: Path) -> None:
    _, url = server
    scenarios = [
        NORMAL[0],
        scenario("quiet", "QUIET: the seeker only ever ends the chat."),
        scenario("confused", "CONFUSED: the seeker talks like a counselor."),
    ]
    config = make_config(tmp_path, url, scenarios, turn_retries=2)
    report = main(config)
    assert report.written == 1 and report.dropped == {"too_short": 2}
    assert report.reasks == {"seeker:early_end": 2, "seeker:role_confusion": 2}
    assert report.too_short_after == {"cut:early_end": 1, "cut:role_confusion": 1}
    assert [d.scenario.id for d in read_jsonl(config.out)] == ["t-1"]
    # The seeker's third line (11 words) is too long: asked again, then the dialogue is cut at its last good turn
    # and kept, since it is long enough.
    cut = make_config(tmp_path / "cut", url, NORMAL[:1], max_seeker_words=10, min_turns=2, turn_retries=1)
    report = main(cut)
    (dialogue,) = read_jsonl(cut.out)
    assert report.written == 1 and report.reasks == {"seeker:overlong_turn": 1}
    assert [t.role for t in dialogue.turns] == ["seeker", "supporter"] and dialogue.meta["end"] == "cut:overlong_turn"
    # Over-long supporter replies from the first turn on: cut before any reply, too short to keep.
    tight = make_config(tmp_path / "tight", url, NORMAL[:1], max_supporter_words=3, min_turns=2, turn_retries=1)
    report = main(tight)
    assert report.reasks == {"supporter:overlong_turn": 1} and report.too_short_after == {"cut:overlong_turn": 1}


def test_counselor_free_text_is_never_read_as_a_strategy(server: tuple[ScriptedLLM, str], tmp_path: Path) -> None:
    llm, url = server
    config = make_config(tmp_path, url, [scenario("p", "Ordinary.", problem="PICKY topic")], counselor_retries=1)
    report = main(config)
    # "I would not use Providing Suggestions yet; use Question." is not JSON: asked again, then the dialogue ends.
    assert report.counselor_no_choice == 1 and report.counselor_invalid == 2 and report.reasks["counselor:invalid"] == 1
    assert report.written == 0 and report.dropped == {"too_short": 1} and report.ends == {"cut:no_strategy": 1}
    assert all(r["messages"][-1]["content"] != FREE_TEXT_COUNSELOR for r in llm.requests)
    assert not llm.requests_for("supporter")  # no default strategy: no supporter turn without a valid choice


def test_a_late_counselor_failure_keeps_the_dialogue_up_to_there(
    server: tuple[ScriptedLLM, str], tmp_path: Path
) -> None:
    _, url = server
    scenarios = [
        scenario("stubborn", "Ordinary.", problem="STUBBORN topic"),
        scenario("wavering", "Ordinary.", problem="WAVERING topic"),
    ]
    report = main(make_config(tmp_path, url, scenarios, counselor_retries=1))
    by_id = {d.scenario.id: d for d in read_jsonl(tmp_path / "out" / "roleplay.jsonl")}
    stubborn = by_id["stubborn"]
    assert len(stubborn.turns) == 7 and stubborn.turns[-1].role == "seeker"  # ends at the turn with no choice
    assert stubborn.meta["end"] == "cut:no_strategy"
    assert len(by_id["wavering"].turns) == 9  # every first answer was re-asked and the re-ask was valid
    assert report.reasks["counselor:invalid"] == 4 + 1 and report.counselor_no_choice == 1


def test_replies_framed_by_the_crisis_screen_are_cut_out(server: tuple[ScriptedLLM, str], tmp_path: Path) -> None:
    _, url = server
    config = make_config(tmp_path, url, [scenario("r", "RISKY situation.")], min_turns=4)
    report = main(config)
    (dialogue,) = read_jsonl(config.out)
    assert report.safety_flagged == {"supporter": 1} and report.ends == {"cut:safety": 1}
    assert len(dialogue.turns) == 4 and dialogue.turns[-1].role == "supporter"  # the flagged seeker turn is gone
    assert all(RISKY_LINE not in t.content and "crisis line" not in t.content for t in dialogue.turns)


def test_the_judge_drops_or_flags_below_its_thresholds(server: tuple[ScriptedLLM, str], tmp_path: Path) -> None:
    _, url = server
    scenarios = [NORMAL[0], scenario("rude", "RUDE situation.")]
    dropped = make_config(tmp_path / "drop", url, scenarios, judge_url=[url], judge_min_score=2)
    report = main(dropped)
    assert report.written == 1 and report.dropped == {"judge": 1}
    summary = saved_report(dropped)["judge"]
    assert summary["judged"] == 2 and summary["dropped"] == 1 and summary["below_threshold"] == {"empathy<2": 1}
    assert summary["histogram"]["empathy"] == {"1": 1, "2": 0, "3": 0, "4": 1, "5": 0}
    flagged = make_config(
        tmp_path / "flag", url, scenarios, judge_url=[url], judge_action="flag", judge_min_adherence=0.9, max_turns=16
    )
    report = main(flagged)
    assert report.written == 2 and not report.dropped
    meta = {d.scenario.id: judge_meta(d) for d in read_jsonl(flagged.out)}
    assert meta["rude"]["flags"] == ["empathy<2"] and "flags" not in meta["t-1"]
    assert saved_report(flagged)["judge"]["flagged"] == 1


def test_the_judge_drops_or_flags_dialogues_whose_strategies_it_finds_unused(
    server: tuple[ScriptedLLM, str], tmp_path: Path
) -> None:
    _, url = server
    scenarios = [NORMAL[0], scenario("sloppy", "SLOPPY situation.")]  # the judge finds 2 of its 4 strategies unused
    dropped = make_config(tmp_path / "drop", url, scenarios, judge_url=[url], judge_min_adherence=0.75)
    report = main(dropped)
    assert report.written == 1 and report.dropped == {"judge": 1}
    assert [d.scenario.id for d in read_jsonl(dropped.out)] == ["t-1"]
    summary = saved_report(dropped)["judge"]
    assert summary["judged"] == 2 and summary["dropped"] == 1 and summary["below_threshold"] == {"adherence<0.75": 1}
    assert summary["strategy_adherence"] == 0.75  # 6 of 8 supporter turns, over both dialogues
    flagged = make_config(
        tmp_path / "flag", url, scenarios, judge_url=[url], judge_min_adherence=0.75, judge_action="flag"
    )
    report = main(flagged)
    assert report.written == 2 and not report.dropped
    meta = {d.scenario.id: judge_meta(d) for d in read_jsonl(flagged.out)}
    assert meta["sloppy"]["flags"] == ["adherence<0.75"] and meta["sloppy"]["adherence"] == 0.5
    assert meta["sloppy"]["strategy_used"] == [False, True, False, True]
    assert "flags" not in meta["t-1"] and meta["t-1"]["adherence"] == 1.0
    assert saved_report(flagged)["judge"]["flagged"] == 1


def test_a_judge_that_keeps_failing_never_costs_the_dialogue(server: tuple[ScriptedLLM, str], tmp_path: Path) -> None:
    llm, url = server
    llm.fail_role["judge"] = ["nonsense"]  # one answer that is not the rubric: asked again, the re-ask is valid
    once = make_config(tmp_path / "once", url, NORMAL[:1], judge_url=[url], counselor_retries=2)
    report = main(once)
    (dialogue,) = read_jsonl(once.out)
    assert report.reasks["judge:invalid"] == 1 and len(llm.requests_for("judge")) == 2
    assert judge_meta(dialogue)["empathy"] == 4 and saved_report(once)["judge"]["failed"] == {}
    llm.reset()
    llm.broken["judge"] = "nonsense"  # never the rubric: re-asked twice, then the dialogue is kept without a verdict
    invalid = make_config(tmp_path / "invalid", url, NORMAL[:2], judge_url=[url], counselor_retries=2)
    report = main(invalid)
    assert report.written == 2 and not report.dropped and not report.failed
    assert len(llm.requests_for("judge")) == 2 * 3 and report.reasks["judge:invalid"] == 2 * 2
    dialogues = read_jsonl(invalid.out)
    assert [d.meta["judge"] for d in dialogues] == [{"error": "invalid", "version": "judge-v1"}] * 2
    assert all(len(d.turns) == 9 for d in dialogues)  # the dialogue itself is untouched
    summary = saved_report(invalid)["judge"]
    assert summary["failed"] == {"invalid": 2} and summary["judged"] == 0 and summary["dropped"] == 0
    llm.reset()
    llm.broken["judge"] = "garbage"  # the judge's endpoint answers an HTML page
    garbage = make_config(tmp_path / "garbage", url, NORMAL[:2], judge_url=[url])
    report = main(garbage)
    assert report.written == 2 and not report.dropped and not report.failed
    assert [judge_meta(d)["error"] for d in read_jsonl(garbage.out)] == ["api_error:garbage"] * 2
    summary = saved_report(garbage)
    assert summary["judge"]["failed"] == {"api_error:garbage": 2} and summary["api"]["errors"] == {"judge:garbage": 4}


def test_only_the_counselor_or_the_judge_failing_is_counted_and_the_output_stays_valid(
    server: tuple[ScriptedLLM, str], tmp_path: Path
) -> None:
    llm, url = server
    config = make_config(tmp_path, url, NORMAL[:2], judge_url=[dead_url()], max_retries=0)
    report = main(config)  # judge endpoint down: every dialogue kept, the error recorded
    assert report.written == 2 and not report.failed
    assert [judge_meta(d)["error"] for d in read_jsonl(config.out)] == ["api_error:APIConnectionError"] * 2
    summary = saved_report(config)
    assert summary["judge"]["failed"] == {"api_error:APIConnectionError": 2}
    assert set(summary["api"]["errors"]) == {"judge:APIConnectionError"}
    before = Path(config.out).read_text()
    llm.broken["counselor"] = "garbage"  # counselor answering garbage: nothing can be finished, nothing crashes
    report = main(make_config(tmp_path, url, NORMAL[:2], samples_per_scenario=2, judge_url=[url], max_retries=0))
    assert report.dialogues == 4 and report.skipped_existing == 2 and report.written == 0 and not report.failed
    assert report.dropped == {"too_short": 2} and report.ends == {"cut:api_error:garbage": 2}
    assert saved_report(config)["api"]["errors"] == {"counselor:garbage": 4} and not llm.requests_for("judge")
    assert Path(config.out).read_text() == before
    assert all(json.loads(line)["id"] for line in before.splitlines()) and len(read_jsonl(config.out)) == 2
    llm.reset()
    down = make_config(tmp_path / "down", url, NORMAL[:2], counselor_base_url=[dead_url()], max_retries=0)
    report = main(down)  # counselor endpoint down; seeker and supporter fine
    assert report.written == 0 and report.dropped == {"too_short": 2} and not report.failed
    assert report.ends == {"cut:api_error:APIConnectionError": 2}
    assert set(saved_report(down)["api"]["errors"]) == {"counselor:APIConnectionError"}
    assert Path(down.out).read_text() == "" and len(llm.requests_for("seeker")) == 2


def test_each_role_uses_only_its_own_endpoints_round_robin(tmp_path: Path) -> None:
    fakes = {name: ScriptedLLM() for name in ("seeker-a", "seeker-b", "counselor", "supporter", "judge")}
    with ExitStack() as stack:
        urls = {name: stack.enter_context(serve(fake)) for name, fake in fakes.items()}
        config = make_config(
            tmp_path,
            dead_url(),  # the default endpoint is down: no role may fall back to it
            NORMAL,
            seeker_base_url=[urls["seeker-a"], urls["seeker-b"]],
            counselor_base_url=[urls["counselor"]],
            supporter_base_url=[urls["supporter"]],
            judge_url=[urls["judge"]],
            max_retries=0,
            concurrency=4,
        )
        report = main(config)
    assert report.written == 4 and not report.dropped
    for name, fake in fakes.items():
        assert fake.requests and {r["_role"] for r in fake.requests} == {name.split("-")[0]}, name
    # Round-robin within the seeker's list: two whole dialogues on each endpoint (5 seeker turns each).
    situations = {
        name: {r["messages"][0]["content"].split("Ordinary trouble number ")[1][0] for r in fakes[name].requests}
        for name in ("seeker-a", "seeker-b")
    }
    assert situations == {"seeker-a": {"1", "3"}, "seeker-b": {"2", "4"}}
    assert len(fakes["seeker-a"].requests) == len(fakes["seeker-b"].requests) == 10
    assert len(fakes["judge"].requests) == 4 and len(fakes["counselor"].requests) == 16
    summary = saved_report(config)["api"]
    assert summary["errors"] == {} and summary["failovers"] == 0
    assert set(summary["calls_per_endpoint"]) == set(urls.values())


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
    fleet = parse_config(RoleplayConfig, ["--base_url", "http://a/v1", "http://b/v1", "--judge_url", "http://j/v1"])
    assert fleet.base_url == ["http://a/v1", "http://b/v1"] and fleet.judging


@pytest.mark.parametrize(
    "preset", sorted((Path(__file__).resolve().parents[2] / "training" / "configs").glob("roleplay*.yaml"))
)
def test_shipped_presets_parse(preset: Path) -> None:
    config = parse_config(RoleplayConfig, ["--config", str(preset)])
    config.check()
    assert all(url.endswith("/v1") for url in config.base_url)
