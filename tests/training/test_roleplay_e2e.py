"""End to end against the project's own server serving SmolLM2-135M-Instruct as "sweetiechat": taxonomy -> expanded
scenarios -> role-play with the structured counselor and the judge -> validated JSONL -> Hugging Face export.

The ``smol_server`` fixture (tests/conftest.py) starts the real server and yields its base URL
("http://127.0.0.1:PORT/v1"). A 135M model is a weak writer, role-player and judge, so the run is small (three
scenarios, two dialogues each, six turns), the judge flags instead of dropping, and the test asserts what the
pipeline guarantees rather than quality: every kept scenario and dialogue is valid, every strategy label comes from
the counselor's structured answer, and the report accounts for every dialogue.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.core.strategies import load_catalogue
from training.data import main as data_main
from training.expand import ExpandConfig
from training.roleplay import RoleplayConfig, main
from training.scenarios import load_scenarios, run_expand
from training.schema import read_jsonl


@pytest.mark.slow
def test_taxonomy_to_dialogues_to_dataset_with_the_project_server(smol_server: str, tmp_path: Path) -> None:
    scenarios = tmp_path / "scenarios.jsonl"
    expand = ExpandConfig(
        count=3, out=str(scenarios), base_url=[smol_server], attempts=6, concurrency=6, timeout=300, progress=False
    )
    assert run_expand(expand) == 0
    written = load_scenarios(scenarios)  # raises, naming line and field, if anything written is invalid
    assert 1 <= len(written) <= 3 and all(s.seeker and s.seeker.communication_style for s in written)

    out = tmp_path / "roleplay.jsonl"
    config = RoleplayConfig(
        scenarios=str(scenarios),
        out=str(out),
        base_url=[smol_server],
        model="sweetiechat",
        judge_model="sweetiechat",
        judge_action="flag",
        samples_per_scenario=2,
        max_turns=6,
        min_turns=4,
        concurrency=6,
        seeker_max_tokens=48,
        supporter_max_tokens=56,
        timeout=300,
        progress=False,
    )
    report = main(config)
    dialogues = read_jsonl(out)
    summary = json.loads(out.with_suffix(".report.json").read_text())
    assert len(dialogues) >= 1, f"no valid dialogue: {summary}"
    assert report.written == len(dialogues) and not report.failed
    assert report.written + sum(report.dropped.values()) == 2 * len(written)
    # The server enforces the counselor's JSON schema: every answer parses to a catalogue name.
    assert report.counselor_invalid == 0 and report.counselor_no_choice == 0
    names = set(load_catalogue().names)
    for dialogue in dialogues:
        assert 4 <= len(dialogue.turns) <= 6 and dialogue.turns[0].role == "seeker"
        assert all(t.strategy in names and t.rationale for t in dialogue.turns if t.role == "supporter")
        judge = dialogue.meta["judge"]
        assert isinstance(judge, dict) and ("error" in judge or judge["empathy"] in range(1, 6))
    assert summary["throughput"]["completion_tokens_per_s"] > 0 and summary["api"]["total"]["calls"] > 0

    assert data_main(["export-hf", str(tmp_path / "hf"), str(out)]) == 0
    assert "license: apache-2.0" in (tmp_path / "hf" / "README.md").read_text()
