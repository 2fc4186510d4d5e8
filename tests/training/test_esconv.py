"""ESConv import: all 1,105 shared dialogues, strategy counts matching the source before and after merging."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from training.esconv import import_esconv
from training.schema import read_jsonl

REPO = Path(__file__).resolve().parents[2]


def raw_counts(path: Path) -> tuple[int, int, Counter[str], Counter[str]]:
    """Count the source file independently: conversations, utterances, strategies per utterance and per run."""
    conversations, utterances, per_utterance, per_run = 0, 0, Counter[str](), Counter[str]()
    for line in path.read_text(encoding="utf-8").splitlines():
        conversations += 1
        previous = None
        for message in json.loads(line)["dialog"]:
            utterances += 1
            if message["speaker"] == "sys":
                per_utterance[message["strategy"]] += 1
                if previous != "sys":
                    per_run[message["strategy"]] += 1  # first strategy of a run of supporter messages
            previous = message["speaker"]
    return conversations, utterances, per_utterance, per_run


def test_import_matches_the_source_counts(esconv_dir: Path) -> None:
    total = 0
    for split, expected in (("train", 910), ("valid", 195)):
        dialogues, report = import_esconv(esconv_dir, split)
        conversations, utterances, per_utterance, per_run = raw_counts(esconv_dir / f"{split}.jsonl")
        assert len(dialogues) == conversations == report.dialogues == expected
        assert report.utterances == utterances
        assert report.strategy_counts_raw == per_utterance
        assert report.strategy_counts_merged == per_run
        merged = Counter(t.strategy for d in dialogues for t in d.turns if t.role == "supporter")
        assert merged == per_run
        assert report.turns == sum(len(d.turns) for d in dialogues) < utterances
        total += len(dialogues)
    assert total == 1105


def test_train_split_matches_the_readme_numbers(esconv_dir: Path) -> None:
    _, report = import_esconv(esconv_dir, "train")
    assert report.utterances == 26648
    assert report.strategy_counts_raw["Question"] == 2622
    assert report.strategy_counts_raw["Restatement or Paraphrasing"] == 798


def test_merged_turns_alternate_and_keep_the_text(esconv_dir: Path) -> None:
    dialogues, _ = import_esconv(esconv_dir, "valid")
    first_raw = json.loads((esconv_dir / "valid.jsonl").read_text(encoding="utf-8").splitlines()[0])
    joined = " ".join(m["text"].strip() for m in first_raw["dialog"])
    assert " ".join(t.content for t in dialogues[0].turns) == joined
    assert dialogues[0].id == "esconv-valid-0000" and dialogues[0].source == "esconv"
    assert dialogues[0].scenario.problem_type == first_raw["problem_type"].lower()


def test_cli_writes_outside_the_repo_and_refuses_tracked_paths(esconv_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "esconv_all.jsonl"
    command = [sys.executable, "-m", "training.esconv", "--split", "all", "--esconv_dir", str(esconv_dir)]
    done = subprocess.run([*command, "--out", str(out)], cwd=REPO, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "1105 dialogues" in done.stdout
    assert len(read_jsonl(out)) == 1105
    report = json.loads(out.with_suffix(".report.json").read_text())
    assert report["merge_rule"] == "first" and sum(report["strategy_counts_raw"].values()) == 15481
    refused = subprocess.run(
        [*command, "--out", "training/esconv_copy.jsonl"], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert refused.returncode == 2 and "must not be committed" in refused.stderr
    assert not (REPO / "training" / "esconv_copy.jsonl").exists()


def test_env_variable_points_at_another_copy(esconv_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "esconv"
    copy.mkdir()
    (copy / "valid.jsonl").write_text((esconv_dir / "valid.jsonl").read_text().splitlines()[0] + "\n")
    monkeypatch.setenv("SWEETIE_ESCONV_DIR", str(copy))
    dialogues, _ = import_esconv(split="valid")
    assert len(dialogues) == 1
