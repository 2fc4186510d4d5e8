"""Seed scenarios for role-play: YAML files, one per category, shipped in ``training/assets/scenarios/``.

File layout::

    category: work
    scenarios:
      - id: work-001
        problem_type: job crisis
        emotion: anxiety
        intensity: 4
        situation: ...
        seeker: {age_group: 25-34, occupation: ..., personality: ..., wants: ...}

Every seed scenario needs an id (unique across all files) and a seeker profile. A ``.jsonl`` file with one
``Scenario`` object per line is accepted too.

How to run (lists counts per category)::

    python -m training.scenarios [training/assets/scenarios]
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from training.schema import Scenario, format_validation_error

DEFAULT_DIR = Path(__file__).resolve().parent / "assets" / "scenarios"


class ScenarioError(ValueError):
    """A scenario file is malformed; the message names the file, the entry and the field."""


def _records_from_yaml(path: Path) -> list[tuple[str, dict[str, Any]]]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("scenarios"), list):
        raise ScenarioError(f"{path}: expected 'category' and a 'scenarios' list at the top level")
    category = raw.get("category")
    records = []
    for index, item in enumerate(raw["scenarios"]):
        where = f"{path}: scenarios.{index}"
        if not isinstance(item, dict):
            raise ScenarioError(f"{where}: expected a mapping")
        if category is not None:
            item = {"category": category, **item}
        records.append((where, item))
    return records


def _records_from_jsonl(path: Path) -> list[tuple[str, dict[str, Any]]]:
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                records.append((f"{path}:{number}", json.loads(line)))
            except json.JSONDecodeError as exc:
                raise ScenarioError(f"{path}:{number}: not valid JSON: {exc.msg}") from None
    return records


def scenario_files(path: str | Path) -> list[Path]:
    """The scenario files at ``path`` (a file, or a folder of ``*.yaml``/``*.yml``/``*.jsonl``), sorted."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml", ".jsonl"))
        if not files:
            raise ScenarioError(f"{path}: no *.yaml or *.jsonl scenario files in this folder")
        return files
    if not path.exists():
        raise ScenarioError(f"{path}: scenario file or folder not found")
    return [path]


def load_scenarios(path: str | Path = DEFAULT_DIR) -> list[Scenario]:
    """All seed scenarios under ``path``, in file order; ids must be unique and every scenario needs a seeker."""
    scenarios: list[Scenario] = []
    seen: dict[str, str] = {}
    for file in scenario_files(path):
        records = _records_from_jsonl(file) if file.suffix == ".jsonl" else _records_from_yaml(file)
        for where, record in records:
            try:
                scenario = Scenario.model_validate(record)
            except ValidationError as exc:
                raise ScenarioError("\n".join(format_validation_error(exc, where))) from None
            if scenario.id is None:
                raise ScenarioError(f"{where}: id: seed scenarios need an id")
            if scenario.seeker is None:
                raise ScenarioError(f"{where}: seeker: seed scenarios need a seeker profile")
            if scenario.id in seen:
                raise ScenarioError(f"{where}: id: duplicate id {scenario.id!r} (also in {seen[scenario.id]})")
            seen[scenario.id] = where
            scenarios.append(scenario)
    return scenarios


if __name__ == "__main__":
    loaded = load_scenarios(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_DIR)
    for category, count in sorted(Counter(s.category for s in loaded).items()):
        print(f"{category:<16} {count}")
    print(f"{'total':<16} {len(loaded)}")
