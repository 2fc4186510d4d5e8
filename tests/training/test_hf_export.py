"""``python -m training.data export-hf``: a Hugging Face datasets folder that loads, and a card that says where the
data came from and under which licence."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from training.data import main
from training.hf_export import overall_licence
from training.schema import Dialogue, read_jsonl, write_jsonl

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "training" / "assets" / "samples.jsonl"


def test_export_hf_writes_loadable_splits_and_a_card(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    samples = read_jsonl(SAMPLES)
    train, test = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    write_jsonl(train, samples[:-4])
    record = samples[-1].model_dump(mode="json") | {
        "id": "roleplay-x-n0-s3",
        "source": "roleplay",
        "generator": {"models": {"seeker": "m1", "supporter": "m2"}, "prompts_version": "roleplay-v2", "seed": 3,
                      "created": "2026-12-01T10:00:00Z"},
        "meta": {"judge": {"empathy": 4, "version": "judge-v1"}, "usage": {"seeker": {"calls": 3}}},
    }  # fmt: skip
    roleplay = Dialogue.model_validate(record)
    write_jsonl(test, [*samples[-4:-1], roleplay])
    out = tmp_path / "hf"
    assert main(["export-hf", str(out), str(train), str(test), "--name", "Demo"]) == 0
    assert "train 30, validation 0, test 4" in capsys.readouterr().out

    import datasets

    loaded = datasets.load_dataset(str(out))
    assert set(loaded) == {"train", "test"} and loaded["train"].num_rows == 30 and loaded["test"].num_rows == 4
    row = loaded["test"][3]
    assert row["id"] == "roleplay-x-n0-s3" and row["turns"][1]["strategy"] == roleplay.turns[1].strategy
    assert json.loads(row["meta"])["judge"]["empathy"] == 4
    assert row["scenario"]["category"] == roleplay.scenario.category

    card = (out / "README.md").read_text()
    assert card.startswith("---\nlicense: apache-2.0\n") and "# Demo" in card
    assert hashlib.sha256(train.read_bytes()).hexdigest() in card and str(test) in card
    assert "| sample | 33 | apache-2.0 |" in card and "| roleplay | 1 | apache-2.0 |" in card
    assert "roleplay-v2" in card and "seeker: m1" in card and "Seeds: 3" in card
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["splits"] == {"train": 30, "validation": 0, "test": 4}
    assert provenance["judge_versions"] == ["judge-v1"] and len(provenance["inputs"]) == 2


def test_esconv_makes_the_export_non_commercial_and_ids_must_be_unique(tmp_path: Path) -> None:
    assert overall_licence({"esconv", "roleplay"}) == "cc-by-nc-4.0"
    assert overall_licence({"sample", "roleplay"}) == "apache-2.0"
    assert overall_licence({"sample", "mystery"}) == "other"
    one = tmp_path / "a.jsonl"
    write_jsonl(one, read_jsonl(SAMPLES)[:2])
    assert main(["export-hf", str(tmp_path / "hf"), str(one), str(one)]) == 1


def test_an_export_with_esconv_dialogues_says_cc_by_nc_in_its_card(tmp_path: Path) -> None:
    # A made-up two-turn dialogue in the ESConv importer's shape (no real ESConv text).
    fake_esconv = {
        "id": "esconv-train-00001",
        "source": "esconv",
        "scenario": {"category": "work", "problem_type": "job crisis", "emotion": "anxiety", "intensity": 3,
                     "situation": "A made-up situation for a test."},
        "turns": [
            {"role": "seeker", "content": "I made this line up for a test."},
            {"role": "supporter", "content": "What happened next in your made-up story?", "strategy": "Question"},
        ],
        "meta": {"split": "train", "experience_type": "Current Experience"},
    }  # fmt: skip
    train = tmp_path / "train.jsonl"
    write_jsonl(train, [Dialogue.model_validate(fake_esconv), *read_jsonl(SAMPLES)[:2]])
    out = tmp_path / "hf"
    assert main(["export-hf", str(out), str(train), "--name", "Mixed"]) == 0
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlicense: cc-by-nc-4.0\n")
    assert "**Non-commercial.** This export contains ESConv dialogues (CC BY-NC 4.0)" in card
    assert "| esconv | 1 | cc-by-nc-4.0 | ESConv (Liu et al., 2021" in card and "non-commercial use only" in card
    assert "| sample | 2 | apache-2.0 |" in card
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["license"] == "cc-by-nc-4.0" and provenance["sources"]["esconv"]["license"] == "cc-by-nc-4.0"
