"""Scenario and persona expansion: taxonomy, balanced plan, near-duplicate removal, validation, coverage table."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.training.fake_llm_server import DUPLICATE_SITUATION, ScriptedLLM, dead_url, serve
from training.expand import NearDuplicates, expand_messages, situation_problem
from training.scenarios import ScenarioError, load_scenarios, main
from training.taxonomy import DEFAULT_TAXONOMY, TaxonomyError, coverage, load_taxonomy, plan

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def llm() -> Iterator[tuple[ScriptedLLM, str]]:
    scripted = ScriptedLLM()
    with serve(scripted) as url:
        yield scripted, url


@pytest.fixture
def server(llm: tuple[ScriptedLLM, str]) -> tuple[ScriptedLLM, str]:
    llm[0].reset()
    return llm


def test_the_shipped_taxonomy_spans_the_seeker_attributes_the_issue_asks_for() -> None:
    taxonomy = load_taxonomy()
    seeker = taxonomy.seeker
    assert {"13-17", "65+"} <= set(seeker.age_groups) and len(seeker.genders) >= 3 and len(seeker.cultures) >= 15
    styles = " ".join(seeker.communication_styles)
    assert all(word in styles for word in ("terse", "rambling", "guarded", "angry", "joking"))
    assert len(taxonomy.categories) >= 15 and taxonomy.combinations() > 1_000_000


def test_a_plan_of_3700_slots_is_balanced_over_every_dimension() -> None:
    taxonomy = load_taxonomy()
    slots = plan(taxonomy, 3700, seed=0)
    assert len(slots) == 3700 and plan(taxonomy, 3700, seed=0) == slots and plan(taxonomy, 3700, seed=1) != slots
    for dimension in ("category", "gender", "culture", "age_group", "communication_style", "personality"):
        counts = Counter(getattr(slot, dimension) for slot in slots)
        assert max(counts.values()) - min(counts.values()) <= 1, dimension  # every value used equally often
    for category, spec in taxonomy.categories.items():
        ours = [s for s in slots if s.category == category]
        problems = Counter(s.problem_type for s in ours)
        assert set(problems) == set(spec.problem_types) and max(problems.values()) - min(problems.values()) <= 1
        assert {s.age_group for s in ours} <= set(spec.age_groups or taxonomy.seeker.age_groups)
    for slot in slots[:200]:
        assert slot.occupation in taxonomy.seeker.occupations[slot.age_group]  # type: ignore[index]
    assert not [s for s in slots if s.category == "work" and s.age_group == "13-17"]
    intensities = Counter(slot.intensity for slot in slots)
    assert set(intensities) == set(taxonomy.intensities) and max(intensities.values()) - min(intensities.values()) <= 1
    # Emotions and wants: a category with its own list is balanced within itself, the others share the global list.
    for dimension, default in (("emotion", taxonomy.emotions), ("wants", taxonomy.seeker.wants)):
        field_name = "emotions" if dimension == "emotion" else "wants"
        groups: dict[str, tuple[list[str], list[str]]] = {"shared": (list(default), [])}
        for slot in slots:
            own = getattr(taxonomy.categories[slot.category], field_name)
            key = slot.category if own else "shared"
            groups.setdefault(key, (list(own or default), []))[1].append(getattr(slot, dimension))
        assert len(groups) > 1 and groups["shared"][1], dimension  # both kinds occur in the shipped taxonomy
        for key, (values, used) in groups.items():
            counts = Counter(used)
            assert set(counts) == set(values), (dimension, key)  # every value used ...
            assert max(counts.values()) - min(counts.values()) <= 1, (dimension, key)  # ... equally often
    for age in taxonomy.seeker.age_groups:
        occupations = Counter(s.occupation for s in slots if s.age_group == age)
        assert set(occupations) == set(taxonomy.seeker.occupations[age]), age
        assert max(occupations.values()) - min(occupations.values()) <= 1, age


def test_the_expand_prompt_carries_every_attribute_of_the_slot() -> None:
    for slot in plan(load_taxonomy(), 40, seed=2):
        system, user = (message["content"] for message in expand_messages(slot))
        assert "scenario descriptions" in system
        for value in (slot.communication_style, slot.wants, slot.emotion, slot.occupation, slot.culture, slot.gender):
            assert value in user, value
        assert slot.problem_type in user and f"intensity {slot.intensity} of 5" in user
        assert f"How they talk: {slot.communication_style}." in user
        assert f"What they want from talking about it: {slot.wants}." in user


def test_taxonomy_errors_name_file_line_and_field(tmp_path: Path) -> None:
    text = DEFAULT_TAXONOMY.read_text()
    broken = tmp_path / "taxonomy.yaml"
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip().startswith("genders:"))
    lines[at] = lines[at].replace("genders:", "gendres:")
    broken.write_text("\n".join(lines) + "\n")
    with pytest.raises(TaxonomyError) as error:
        load_taxonomy(broken)
    assert f"{broken}:{at + 1}: seeker.gendres: Extra inputs are not permitted" in str(error.value)
    assert f"{broken}:" in str(error.value) and "seeker.genders: Field required" in str(error.value)
    broken.write_text(text.replace('age_groups: ["13-17", "18-24", "25-34", "35-44", "45-54"]', "age_groups: [teen]"))
    with pytest.raises(TaxonomyError, match=r"taxonomy\.yaml:\d+: categories\.study\.age_groups\.0: Input should be"):
        load_taxonomy(broken)
    broken.write_text(text.replace("genders: [woman, man, non-binary]", "genders: [woman, man, woman]"))
    with pytest.raises(TaxonomyError, match=r"seeker\.genders: Value error, repeated value\(s\) \['woman'\]"):
        load_taxonomy(broken)


def test_scenario_jsonl_errors_name_file_line_and_field(tmp_path: Path) -> None:
    seeker: dict[str, Any] = {"age_group": "65+", "occupation": "o", "personality": "p", "wants": "w"}
    good: dict[str, Any] = {"id": "x-1", "category": "work", "problem_type": "p", "emotion": "e"}
    good["situation"] = "I lost it."
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps(good | {"seeker": seeker | {"style": "terse"}}) + "\n")
    with pytest.raises(ScenarioError, match=r"s\.jsonl:1: seeker\.style: Extra inputs are not permitted"):
        load_scenarios(path)
    good["seeker"] = seeker
    path.write_text(json.dumps(good) + "\n" + json.dumps(good | {"id": "x-2", "intensity": 9}) + "\n")
    with pytest.raises(ScenarioError, match=r"s\.jsonl:2: intensity: Input should be less than or equal to 5"):
        load_scenarios(path)


def test_situation_checks_and_near_duplicates() -> None:
    assert situation_problem("I lost my job at the plant last week and my wife does not know yet.", 12, 70) is None
    assert situation_problem("She lost her job at the plant last week and her husband does not know.", 12, 70) == (
        "not_first_person"
    )
    assert situation_problem("I feel bad.", 12, 70) == "too_short"
    assert situation_problem("As an AI I cannot have a situation but I can imagine my job loss here.", 12, 70) == (
        "off_task"
    )
    kept = NearDuplicates(threshold=0.5)
    kept.add("a", "I lost my job at the car plant last week and my wife still does not know about it.")
    assert kept.match("I lost my job at the car plant last week and my wife still doesn't know about it!") == "a"
    assert kept.match("My daughter stopped talking to me after an argument about her wedding plans in May.") is None


def expand_args(tmp_path: Path, url: str, *extra: str) -> list[str]:
    return [
        "expand",
        "--base_url",
        url,
        "--model",
        "writer-m",
        "--out",
        str(tmp_path / "scenarios.jsonl"),
        "--concurrency",
        "8",
        "--max_retries",
        "0",
        "--no-progress",
        *extra,
    ]


def test_expand_writes_distinct_balanced_valid_scenarios_and_prints_coverage(
    server: tuple[ScriptedLLM, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    llm, url = server
    llm.duplicate_every, llm.invalid_every = 7, 11
    assert main(expand_args(tmp_path, url, "--count", "100", "--attempts", "5")) == 0
    printed = capsys.readouterr().out
    scenarios = load_scenarios(tmp_path / "scenarios.jsonl")  # validates every line against the schema
    assert len(scenarios) == 100 and len({s.situation for s in scenarios}) == 100
    assert sum(s.situation == DUPLICATE_SITUATION for s in scenarios) == 1  # kept once, then rejected as near-dup
    table = coverage(scenarios)
    assert max(table["category"].values()) - min(table["category"].values()) <= 1
    assert len(table["category"]) == 15 and len(table["communication_style"]) == 8
    assert all(s.seeker and s.seeker.gender and s.seeker.culture and s.seeker.communication_style for s in scenarios)
    assert "category             work" in printed and "communication_style" in printed and "100 written" in printed
    report: dict[str, Any] = json.loads((tmp_path / "scenarios.report.json").read_text())
    assert report["written"] == 100 and report["failed_slots"] == 0
    assert report["rejected"]["near_duplicate"] >= 8 and report["rejected"]["invalid_json"] >= 5
    assert report["coverage"]["category"]["missing"] == [] and report["api"]["usage"]["writer"]["calls"] > 100
    # Resume: the same command has nothing left to do; another seed adds new scenarios to the same file.
    llm.reset()
    assert main(expand_args(tmp_path, url, "--count", "100")) == 0
    assert not llm.requests
    assert main(expand_args(tmp_path, url, "--count", "20", "--seed", "1")) == 0
    assert len(load_scenarios(tmp_path / "scenarios.jsonl")) == 120


def test_expand_survives_a_down_endpoint_and_names_bad_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(expand_args(tmp_path, dead_url(), "--count", "3", "--attempts", "1")) == 0
    report = json.loads((tmp_path / "scenarios.report.json").read_text())
    # Given-up slots are replanned until the default budget (2 x attempts x 3 = 6 answers) is spent; then it stops.
    assert report["written"] == 0 and report["failed_slots"] == 6 and report["replanned"] == 3
    assert report["attempts"] == report["attempt_budget"] == 6 and report["budget_exhausted"]
    assert report["shortfall"] == 3 and report["rejected"] == {"api:APIConnectionError": 6}
    assert "short by 3 of 3 scenarios" in capsys.readouterr().err
    assert (tmp_path / "scenarios.jsonl").read_text() == ""
    broken = tmp_path / "taxonomy.yaml"
    broken.write_text("categories: {}\n")
    assert main(expand_args(tmp_path, dead_url(), "--taxonomy", str(broken))) == 2
    assert f"{broken}:1: " in capsys.readouterr().err


def test_expand_replans_given_up_slots_until_count_scenarios_are_written(
    server: tuple[ScriptedLLM, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    llm, url = server
    llm.duplicate_every, llm.invalid_every = 5, 7  # one try per slot: about a third of the slots are given up
    assert main(expand_args(tmp_path, url, "--count", "60", "--attempts", "1")) == 0
    printed = capsys.readouterr()
    scenarios = load_scenarios(tmp_path / "scenarios.jsonl")
    report: dict[str, Any] = json.loads((tmp_path / "scenarios.report.json").read_text())
    assert len(scenarios) == report["written"] == 60 and len({s.situation for s in scenarios}) == 60
    assert report["failed_slots"] >= 10 and report["replanned"] == report["failed_slots"]
    assert report["shortfall"] == 0 and not report["budget_exhausted"] and report["attempts"] <= 120
    assert report["rejected"]["near_duplicate"] >= 5 and report["rejected"]["invalid_json"] >= 5
    replacements = [s for s in scenarios if int(str(s.id).rsplit("-", 1)[1]) >= 60]
    assert len(replacements) == 60 - sum(int(str(s.id).rsplit("-", 1)[1]) < 60 for s in scenarios) > 0
    # A replacement is of the given-up slot's category: the categories stay exactly as planned.
    assert coverage(scenarios)["category"] == Counter(s.category for s in plan(load_taxonomy(), 60, seed=0))
    assert f"60 requested, 0 already done, 60 written, {report['failed_slots']} slots given up" in printed.out
    assert f"{report['replanned']} replanned" in printed.out and "short by" not in printed.err
    llm.reset()  # resume: the replacements count, so there is nothing left to do
    assert main(expand_args(tmp_path, url, "--count", "60", "--attempts", "1")) == 0
    assert not llm.requests


def test_a_spent_attempt_budget_reports_the_shortfall(
    server: tuple[ScriptedLLM, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    llm, url = server
    llm.invalid_every = 2
    argv = expand_args(tmp_path, url, "--count", "20", "--attempts", "1", "--concurrency", "1")
    assert main([*argv, "--max_attempts", "15"]) == 0
    printed = capsys.readouterr()
    report: dict[str, Any] = json.loads((tmp_path / "scenarios.report.json").read_text())
    written = len(load_scenarios(tmp_path / "scenarios.jsonl"))
    assert report["written"] == written < 15 and report["shortfall"] == 20 - written
    assert report["attempts"] == report["attempt_budget"] == 15 and report["budget_exhausted"]
    assert f"20 requested, 0 already done, {written} written" in printed.out and "15 of 15 attempts" in printed.out
    assert f"short by {20 - written} of 20 scenarios: the attempt budget of 15 is spent" in printed.err
    assert main([*argv, "--max_attempts", "100"]) == 0  # the same command with more budget tops the file up
    assert len(load_scenarios(tmp_path / "scenarios.jsonl")) == 20


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["-m", "training.scenarios", "expand", "--help"], "--similarity"),
        (["-m", "training.roleplay", "--help"], "--samples_per_scenario"),
        (["-m", "training.data", "export-hf", "--help"], "--name"),
    ],
)
def test_help_is_quick_and_imports_no_heavy_package(argv: list[str], flag: str) -> None:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-X", "importtime", *argv], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert flag in result.stdout
    imported = {line.rpartition("|")[2].strip() for line in result.stderr.splitlines() if "import time" in line}
    assert imported and not imported & {"torch", "transformers", "vllm", "datasets", "datasketch", "openai"}
    assert time.perf_counter() - started < 20
