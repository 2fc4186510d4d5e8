"""End to end: role-play against the project's own server serving SmolLM2-135M-Instruct as "sweetiechat".

The ``smol_server`` fixture (tests/conftest.py) starts the real server and yields its base URL
("http://127.0.0.1:PORT/v1"). A 135M model is a weak role-player, so the run uses small turn limits and more
scenarios than the three valid dialogues it must yield; the filters drop the rest and say why.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.roleplay import RoleplayConfig, main
from training.schema import read_jsonl


@pytest.mark.slow
def test_roleplay_generates_valid_dialogues_with_the_project_server(smol_server: str, tmp_path: Path) -> None:
    out = tmp_path / "roleplay.jsonl"
    config = RoleplayConfig(
        base_url=smol_server,
        model="sweetiechat",
        out=str(out),
        limit=12,
        max_turns=6,
        min_turns=4,
        concurrency=4,
        seeker_max_tokens=48,
        counselor_max_tokens=32,
        supporter_max_tokens=56,
        timeout=300,
        progress=False,
    )
    report = main(config)
    dialogues = read_jsonl(out)  # raises, naming line and field, if anything written is invalid
    summary = json.loads(out.with_suffix(".report.json").read_text())
    assert len(dialogues) >= 3, f"too few valid dialogues: {summary}"
    assert report.written == len(dialogues) and not report.failed
    assert report.written + sum(report.dropped.values()) == 12
    for dialogue in dialogues:
        assert 4 <= len(dialogue.turns) <= 6 and dialogue.turns[0].role == "seeker"
        assert all(t.strategy for t in dialogue.turns if t.role == "supporter")
        assert dialogue.generator is not None and dialogue.generator.models["supporter"] == "sweetiechat"
