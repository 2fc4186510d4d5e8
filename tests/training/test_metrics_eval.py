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
    return {"label": label, "errors": 1, "metrics": summarize(turns, load_catalogue().names, resamples=50)}


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


def test_table_shows_percentages_intervals_and_the_baselines_beside_strategy_figures() -> None:
    table = markdown_table([BASE, TUNED])
    lines = table.splitlines()
    assert lines[0].startswith("| model | turns | failed | screened | BLEU-2 | ROUGE-L")
    titles = [c.strip() for c in lines[0].strip("|").split("|")]
    assert titles[titles.index("strategy acc") + 1] == "majority / chance"
    assert titles[titles.index("strategy macro-F1") + 1] == "majority / chance"
    row = dict(
        zip(
            titles,
            (c.strip() for c in next(li for li in lines if li.startswith("| sft |")).strip("|").split("|")),
            strict=True,
        )
    )
    assert row["turns"] == "2" and row["failed"] == "1"
    assert row["strategy acc"].startswith("50.0 [")  # percent, with its 95% interval
    cells = [c.strip() for c in next(li for li in lines if li.startswith("| sft |")).strip("|").split("|")]
    assert cells[titles.index("strategy acc") + 1].startswith("50.0 / ")  # accuracy of always "Question"
    assert cells[titles.index("strategy macro-F1") + 1].startswith("33.3 / ")  # its macro-F1: (2/3 + 0) / 2
    assert row["valid tag"].startswith("100.0") and row["avg words"].startswith("2.5 [")
    assert (row["p50 words"], row["p90 words"]) == ("2", "3")
    base = dict(
        zip(
            titles,
            (c.strip() for c in next(li for li in lines if li.startswith("| base |")).strip("|").split("|")),
            strict=True,
        )
    )
    assert base["strategy acc"] == "n/a (no tags)"  # an untagged model is not scored 0 on strategy
    assert "(p50 2, p90 3)" in table  # reference length distribution
    assert "uniformly random among the catalogue's strategies" in table


def test_results_saved_by_an_older_version_still_compare() -> None:
    old = {"label": "old", "metrics": {k: v for k, v in TUNED["metrics"].items() if k not in ("words_p50", "cut_off")}}
    row = next(line for line in markdown_table([old]).splitlines() if line.startswith("| old |"))
    assert row.count("| n/a |") == 2


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
