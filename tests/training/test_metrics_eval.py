"""training.evaluate without a server: model specs, comparing saved result files (JSON, markdown table, PNG), errors."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from app.core.strategies import load_catalogue
from training.evaluate import _strategy_of, cli, markdown_table, parse_model_spec
from training.metrics import Scored, summarize


def result(label: str, turns: list[Scored]) -> dict[str, Any]:
    return {"label": label, "metrics": summarize(turns)}


BASE = result(
    "base",
    [
        Scored("What happened?", "Question", "I am so sorry to hear that. " * 14, None),
        Scored("That is hard.", "Reflection of feelings", "I am so sorry to hear that.", None),
    ],
)
TUNED = result(
    "sft",
    [
        Scored("What happened?", "Question", "What happened?", "Question"),
        Scored("That is hard.", "Reflection of feelings", "That sounds hard.", "Question"),
    ],
)


def test_model_specs() -> None:
    spec = parse_model_spec("base=http://127.0.0.1:8000/v1@sweetiechat")
    assert (spec.label, spec.base_url, spec.served) == ("base", "http://127.0.0.1:8000/v1", "sweetiechat")
    spec = parse_model_spec("http://host:8001/v1/")
    assert (spec.label, spec.base_url, spec.served) == ("", "http://host:8001/v1", None)
    with pytest.raises(ValueError, match="not label=http"):
        parse_model_spec("base=localhost:8000@m")


def test_strategy_comes_from_the_response_field_else_the_tag() -> None:
    catalogue = load_catalogue()
    parsed = SimpleNamespace(content="What happened?", model_extra={"strategy": "Question"})
    assert _strategy_of(parsed, catalogue) == ("Question", "What happened?")
    raw = SimpleNamespace(content="[Providing Suggestions] Try a walk.", model_extra={})
    assert _strategy_of(raw, catalogue) == ("Providing Suggestions", "Try a walk.")
    untagged = SimpleNamespace(content="I am sorry.", model_extra=None)
    assert _strategy_of(untagged, catalogue) == (None, "I am sorry.")


def test_table_shows_percentages_and_the_baselines() -> None:
    table = markdown_table([BASE, TUNED])
    lines = table.splitlines()
    assert lines[0].startswith("| model | turns | BLEU-2 | ROUGE-L")
    sft_row = next(line for line in lines if line.startswith("| sft |"))
    cells = [c.strip() for c in sft_row.strip("|").split("|")]
    assert cells[6] == "50.0"  # strategy accuracy, percent
    assert cells[8] == "100.0"  # valid tag
    assert cells[9] == "2.5"  # avg words
    assert cells[10:14] == ["2", "3", "0.0", "0.0"]  # p50, p90 words, >60 words, cut off
    assert "Chance strategy accuracy with 8 strategies: 12.5%" in table
    assert "(p50 2, p90 3)" in table  # reference length distribution


def test_results_saved_by_an_older_version_still_compare() -> None:
    old = {"label": "old", "metrics": {k: v for k, v in BASE["metrics"].items() if k not in ("words_p50", "cut_off")}}
    row = next(line for line in markdown_table([old]).splitlines() if line.startswith("| old |"))
    assert row.count("n/a") == 2


def test_cli_compares_saved_result_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = []
    for item in (BASE, TUNED):
        path = tmp_path / f"{item['label']}.json"
        path.write_text(json.dumps(item))
        files.append(str(path))
    out = tmp_path / "out"
    assert cli(["--results", *files, "--out_dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| base |" in printed and "| sft |" in printed
    assert (out / "comparison.md").read_text() in printed
    assert [r["label"] for r in json.loads((out / "comparison.json").read_text())] == ["base", "sft"]
    assert (out / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_errors_are_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["--out_dir", str(tmp_path)]) == 2
    assert "nothing to compare" in capsys.readouterr().err
    assert cli(["--results", str(tmp_path / "missing.json")]) == 2
    assert "missing.json: file not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli(["--models", "base=localhost:8000"])
    assert "not label=http" in capsys.readouterr().err
    assert cli(["--models", "x=http://127.0.0.1:9/v1@m", "--data", str(tmp_path / "none.jsonl")]) == 2
    assert "file not found" in capsys.readouterr().err
