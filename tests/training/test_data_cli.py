"""``python -m training.data``: validate, merge, dedupe, split and stats produce the files they promise."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from training.data import main
from training.schema import read_jsonl, write_jsonl

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "training" / "assets" / "samples.jsonl"


def test_validate_reports_ok_and_exits_nonzero_with_pointed_errors(tmp_path: Path) -> None:
    broken = tmp_path / "broken.jsonl"
    lines = SAMPLES.read_text().splitlines()
    broken.write_text("\n".join([lines[0], lines[1].replace('"strategy":"Question"', '"strategy":"Foo"', 1)]) + "\n")
    command = [sys.executable, "-m", "training.data", "validate"]
    ok = subprocess.run([*command, str(SAMPLES)], cwd=REPO, capture_output=True, text=True, check=False)
    assert ok.returncode == 0 and f"{len(lines)} dialogues OK" in ok.stdout
    bad = subprocess.run([*command, str(broken)], cwd=REPO, capture_output=True, text=True, check=False)
    assert bad.returncode == 1
    assert f"{broken}:2: turns." in bad.stderr and ".strategy: 'Foo' is not a known strategy" in bad.stderr


def test_merge_refuses_duplicate_ids_and_dedupe_removes_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    samples = read_jsonl(SAMPLES)
    copy = tmp_path / "copy.jsonl"
    renamed = [samples[0].model_copy(update={"id": "renamed"}), samples[1]]
    write_jsonl(copy, renamed)
    assert main(["merge", str(SAMPLES), str(copy), "--out", str(tmp_path / "m.jsonl")]) == 1
    assert f"{copy}: id: '{samples[1].id}' is also in {SAMPLES}" in capsys.readouterr().err
    assert main(["dedupe", str(SAMPLES), str(copy), "--out", str(tmp_path / "d.jsonl")]) == 0
    assert f"kept {len(samples)}, dropped 2 (duplicate content: 1, duplicate id: 1)" in capsys.readouterr().out
    assert [d.id for d in read_jsonl(tmp_path / "d.jsonl")] == [d.id for d in samples]
    write_jsonl(copy, renamed[:1])
    assert main(["merge", str(SAMPLES), str(copy), "--out", str(tmp_path / "m.jsonl")]) == 0
    assert len(read_jsonl(tmp_path / "m.jsonl")) == len(samples) + 1


def test_split_is_deterministic_and_keeps_scenarios_together(tmp_path: Path) -> None:
    samples = read_jsonl(SAMPLES)
    # A second dialogue for the first scenario must land in the same split as the first.
    twin = samples[0].model_copy(update={"id": "twin"})
    source = tmp_path / "in.jsonl"
    write_jsonl(source, [*samples, twin])
    for name in ("a", "b"):
        assert main(["split", str(source), "--out_dir", str(tmp_path / name), "--seed", "3", "--test", "0.2"]) == 0
    parts = {name: read_jsonl(tmp_path / "a" / f"{name}.jsonl") for name in ("train", "valid", "test")}
    assert sum(len(p) for p in parts.values()) == len(samples) + 1
    assert len(parts["test"]) >= 6 and len(parts["valid"]) >= 3
    for name in parts:
        assert (tmp_path / "a" / f"{name}.jsonl").read_text() == (tmp_path / "b" / f"{name}.jsonl").read_text()
    homes = {name for name, part in parts.items() for d in part if d.scenario.id == samples[0].scenario.id}
    assert len(homes) == 1
    scenario_sets = [{d.scenario.id for d in part} for part in parts.values()]
    assert not (scenario_sets[0] & scenario_sets[1]) and not (scenario_sets[0] & scenario_sets[2])
    main(["split", str(source), "--out_dir", str(tmp_path / "c"), "--seed", "4", "--test", "0.2"])
    assert (tmp_path / "c" / "test.jsonl").read_text() != (tmp_path / "a" / "test.jsonl").read_text()


def test_stats_prints_the_table_and_writes_png_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    chart, numbers = tmp_path / "charts" / "samples.png", tmp_path / "samples.json"
    assert main(["stats", str(SAMPLES), "--chart", str(chart), "--json", str(numbers)]) == 0
    printed = capsys.readouterr().out
    samples = read_jsonl(SAMPLES)
    utterances = sum(len(d.turns) for d in samples)
    assert f"Dialogues                        {len(samples)}" in printed
    assert f"Utterances                       {utterances}" in printed
    assert f"Avg. turns per dialogue          {utterances / len(samples):.2f}" in printed
    assert "Avg. words per supporter turn" in printed and "Self-disclosure" in printed
    assert chart.read_bytes().startswith(b"\x89PNG") and chart.stat().st_size > 10_000
    stats = json.loads(numbers.read_text())
    assert stats["dialogues"] == len(samples) and stats["utterances"] == utterances
    assert sum(stats["strategies"].values()) == stats["supporter_turns"]
    assert len(stats["categories"]) == 15
