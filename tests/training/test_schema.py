"""The ServeForEmo record: round trips, and bad records rejected with messages naming line and field."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from app.core.strategies import load_catalogue
from training.schema import DatasetError, Dialogue, check_jsonl, read_jsonl, validate_dialogue, write_jsonl

GOOD: dict[str, Any] = {
    "id": "t-1",
    "source": "roleplay",
    "scenario": {
        "id": "work-001",
        "category": "work",
        "problem_type": "job crisis",
        "emotion": "anxiety",
        "intensity": 4,
        "situation": "My team is being cut.",
        "seeker": {"age_group": "35-44", "occupation": "clerk", "personality": "quiet", "wants": "a plan"},
    },
    "turns": [
        {"role": "supporter", "content": "Hi, what's on your mind?", "strategy": "Others"},
        {"role": "seeker", "content": "Work news. Bad news."},
        {"role": "supporter", "content": "What happened?", "strategy": "Question", "rationale": "Learn more."},
        {"role": "seeker", "content": "They're cutting my team."},
    ],
    "generator": {
        "models": {"seeker": "m1", "counselor": "m2", "supporter": "m3"},
        "prompts_version": "roleplay-v1",
        "seed": 7,
        "created": "2025-01-02T03:04:05Z",
    },
    "meta": {"note": "x"},
}


def write_lines(path: Path, records: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return path


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    dialogue = validate_dialogue(GOOD)
    write_jsonl(tmp_path / "out" / "d.jsonl", [dialogue, dialogue.model_copy(update={"id": "t-2"})])
    again = read_jsonl(tmp_path / "out" / "d.jsonl")
    assert [d.id for d in again] == ["t-1", "t-2"]
    assert again[0] == dialogue
    assert again[0].turns[2].rationale == "Learn more."
    assert again[0].generator is not None and again[0].generator.seed == 7


def test_seeker_may_open_and_optional_fields_may_be_absent() -> None:
    record = copy.deepcopy(GOOD)
    record["turns"] = record["turns"][1:3]
    del record["generator"], record["meta"], record["scenario"]["seeker"], record["scenario"]["id"]
    dialogue = validate_dialogue(record)
    assert dialogue.turns[0].role == "seeker" and dialogue.generator is None


def bad(mutate: Any) -> dict[str, Any]:
    record = copy.deepcopy(GOOD)
    mutate(record)
    return record


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda r: r["turns"][2].update(strategy="Foo"),
            "turns.2.strategy: 'Foo' is not a known strategy (valid: Question, Restatement or Paraphrasing,",
        ),
        (lambda r: r["turns"][2].pop("strategy"), "turns.2.strategy: supporter turns need a strategy"),
        (lambda r: r["turns"][1].update(strategy="Question"), "turns.1.strategy: seeker turns carry no strategy"),
        (lambda r: r["turns"][1].update(rationale="x"), "turns.1.rationale: seeker turns carry no rationale"),
        (lambda r: r["turns"][3].update(role="supporter", strategy="Question"), "turns.3.role: expected 'seeker'"),
        (lambda r: r["turns"].insert(0, {"role": "supporter", "content": "Hey", "strategy": "Others"}), "turns.1.role"),
        (lambda r: r["turns"][1].update(content="   "), "turns.1.content: String should have at least 1 character"),
        (lambda r: r["turns"][1].update(role="helper"), "turns.1.role: Input should be 'seeker' or 'supporter'"),
        (lambda r: r["scenario"].update(intensity=9), "scenario.intensity: Input should be less than or equal to 5"),
        (lambda r: r["scenario"]["seeker"].update(age_group="40ish"), "scenario.seeker.age_group: Input should be"),
        (lambda r: r.update(colour="red"), "colour: Extra inputs are not permitted"),
        (lambda r: r.update(source="Role Play"), "source: String should match pattern"),
        (lambda r: r.update(turns=r["turns"][:1]), "turns: List should have at least 2 items"),
    ],
)
def test_bad_records_are_rejected_with_line_and_field(tmp_path: Path, mutate: Any, expected: str) -> None:
    path = write_lines(tmp_path / "bad.jsonl", [GOOD | {"id": "ok"}, bad(mutate)])
    with pytest.raises(DatasetError) as caught:
        read_jsonl(path)
    assert str(caught.value).startswith(f"{path}:2: {expected}")


def test_every_problem_is_listed_and_json_errors_and_duplicate_ids_are_named(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "mixed.jsonl", [GOOD, "{not json", "", GOOD, bad(lambda r: r.update(id="x y"))])
    dialogues, errors = check_jsonl(path)
    assert len(dialogues) == 1
    assert errors[0].startswith(f"{path}:2: not valid JSON")
    assert errors[1] == f"{path}:4: id: duplicate id 't-1' (first on line 1)"
    assert errors[2].startswith(f"{path}:5: id: String should match pattern")
    with pytest.raises(DatasetError, match=r"\(and 2 more\)"):
        read_jsonl(path)


def test_a_deployment_catalogue_changes_what_is_valid(tmp_path: Path) -> None:
    extra = tmp_path / "strategies.yaml"
    extra.write_text("mode: extend\nstrategies:\n  - name: Humour\n    definition: Lighten the mood kindly.\n")
    record = bad(lambda r: r["turns"][2].update(strategy="Humour"))
    with pytest.raises(ValueError, match="'Humour' is not a known strategy"):
        validate_dialogue(record)
    assert validate_dialogue(record, load_catalogue(extra)).turns[2].strategy == "Humour"


def test_json_output_is_one_line_without_nulls() -> None:
    line = Dialogue.model_validate(GOOD).to_json()
    assert "\n" not in line and "null" not in line
    assert json.loads(line)["turns"][1] == {"role": "seeker", "content": "Work news. Bad news."}
