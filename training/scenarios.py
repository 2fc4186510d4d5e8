"""Scenarios for role-play: the hand-written seed files, expanded JSONL files, and the commands around them.

Seed scenarios are YAML files, one per category, shipped in ``training/assets/scenarios/``::

    category: work
    scenarios:
      - id: work-001
        problem_type: job crisis
        emotion: anxiety
        intensity: 4
        situation: ...
        seeker: {age_group: 25-34, occupation: ..., personality: ..., wants: ...}

(``seeker`` may also carry ``gender``, ``culture`` and ``communication_style``.) A ``.jsonl`` file with one
``Scenario`` object per line is accepted too; that is what ``expand`` writes. Every scenario needs an id (unique
across all files) and a seeker profile. A wrong field is reported as ``file:line: field.path: message``.

How to run::

    python -m training.scenarios [PATH]                  # scenarios per category (default: the seed folder)
    python -m training.scenarios coverage PATH [--taxonomy training/assets/taxonomy.yaml]
    python -m training.scenarios expand --count 3700 --base_url http://127.0.0.1:8000/v1 --out outputs/scenarios.jsonl
    python -m training.scenarios expand --help

``expand`` (:mod:`training.expand`) plans slots balanced over the taxonomy, has an LLM write each situation,
rejects near-duplicates of a kept library (the seed scenarios and everything written so far) and invalid answers,
appends the rest to ``--out``, replans given-up slots until ``--count`` scenarios are written or its attempt budget
is spent (a shortfall is reported on stderr and in the report), and prints the coverage table of the whole output file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from training.cli import parse_config
from training.expand import ExpandConfig, expand
from training.llm import FatalApiError
from training.schema import Scenario, format_validation_error, repair_jsonl_tail
from training.taxonomy import TaxonomyError, coverage, coverage_summary, format_coverage, load_taxonomy
from training.yamlfile import Lines, error_lines, load_yaml

DEFAULT_DIR = Path(__file__).resolve().parent / "assets" / "scenarios"


class ScenarioError(ValueError):
    """A scenario file is malformed; the message names the file, the line and the field."""


def _yaml_entries(path: Path) -> tuple[list[dict[str, Any]], Lines]:
    try:
        raw, lines = load_yaml(path)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("scenarios"), list):
        raise ScenarioError(f"{path}:1: expected 'category' and a 'scenarios' list at the top level")
    category = raw.get("category")
    entries = []
    for index, item in enumerate(raw["scenarios"]):
        if not isinstance(item, dict):
            raise ScenarioError(f"{path}:{lines.line(('scenarios', index))}: scenarios.{index}: expected a mapping")
        entries.append({"category": category, **item} if category is not None else item)
    return entries, lines


def _jsonl_entries(path: Path) -> list[tuple[int, Any]]:
    entries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                entries.append((number, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise ScenarioError(f"{path}:{number}: not valid JSON: {exc.msg}") from None
    return entries


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


def _read_file(file: Path) -> list[tuple[str, Scenario]]:
    """(where, scenario) for every entry of one file; ScenarioError names file, line and field."""
    found = []
    if file.suffix == ".jsonl":
        for number, record in _jsonl_entries(file):
            where = f"{file}:{number}"
            try:
                scenario = Scenario.model_validate(record)
            except ValidationError as exc:
                raise ScenarioError("\n".join(format_validation_error(exc, where))) from None
            found.append((where, _complete(scenario, where, "")))
        return found
    entries, lines = _yaml_entries(file)
    for index, record in enumerate(entries):
        prefix = ("scenarios", index)
        try:
            scenario = Scenario.model_validate(record)
        except ValidationError as exc:
            raise ScenarioError("\n".join(error_lines(exc.errors(include_url=False), file, lines, prefix))) from None
        where = f"{file}:{lines.line(prefix)}"
        found.append((where, _complete(scenario, where, f"scenarios.{index}.")))
    return found


def _complete(scenario: Scenario, where: str, field_prefix: str) -> Scenario:
    if scenario.id is None:
        raise ScenarioError(f"{where}: {field_prefix}id: role-play scenarios need an id")
    if scenario.seeker is None:
        raise ScenarioError(f"{where}: {field_prefix}seeker: role-play scenarios need a seeker profile")
    return scenario


def load_scenarios(path: str | Path = DEFAULT_DIR) -> list[Scenario]:
    """All scenarios under ``path``, in file order; ids must be unique and every scenario needs a seeker."""
    scenarios: list[Scenario] = []
    seen: dict[str, str] = {}
    for file in scenario_files(path):
        for where, scenario in _read_file(file):
            assert scenario.id is not None  # checked by _complete
            if scenario.id in seen:
                raise ScenarioError(f"{where}: id: duplicate id {scenario.id!r} (also at {seen[scenario.id]})")
            seen[scenario.id] = where
            scenarios.append(scenario)
    return scenarios


def load_library(paths: Sequence[str]) -> list[Scenario]:
    """Scenarios of every path (duplicate ids across paths allowed); ``none`` alone means no library."""
    if [p.lower() for p in paths] in ([], ["none"]):
        return []
    return [scenario for path in paths for scenario in load_scenarios(path)]


def run_expand(config: ExpandConfig) -> int:
    """``expand``: generate, then print the summary and the coverage table of the whole output file."""
    taxonomy = load_taxonomy(config.taxonomy)
    library = load_library(config.library)
    out = Path(config.out)
    existing: list[Scenario] = []
    if out.exists():
        repair_jsonl_tail(out)
        existing = load_scenarios(out)
    report = asyncio.run(expand(config, library, existing, taxonomy))
    everything = load_scenarios(out) if out.exists() and out.stat().st_size else []
    table = coverage(everything)
    print(format_coverage(table, taxonomy))
    print(f"expand: {report.summary()}")
    shortfall = report.shortfall_message()
    if shortfall:
        print(f"warning: expand: {shortfall}", file=sys.stderr)
    print(f"{out}: {len(everything)} scenarios")
    report_path = Path(config.report) if config.report else out.with_suffix(".report.json")
    body = {
        **report.as_dict(),
        "scenarios_in_file": len(everything),
        "taxonomy_combinations": taxonomy.combinations(),
        "coverage": coverage_summary(table, taxonomy),
        "config": asdict(config),
    }
    report_path.write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"report: {report_path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: list (default), ``coverage`` or ``expand``; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args[:1] == ["expand"]:
            config = parse_config(
                ExpandConfig,
                args[1:],
                description="Write new scenarios for balanced slots of the taxonomy with an LLM.",
                prog="python -m training.scenarios expand",
            )
            return run_expand(config)
        if args[:1] == ["coverage"]:
            parser = argparse.ArgumentParser(prog="python -m training.scenarios coverage")
            parser.add_argument("paths", nargs="*", default=[str(DEFAULT_DIR)], help="Scenario files or folders.")
            parser.add_argument("--taxonomy", default=None, help="Also list the taxonomy values never used.")
            options = parser.parse_args(args[1:])
            taxonomy = load_taxonomy(options.taxonomy) if options.taxonomy else None
            print(format_coverage(coverage(load_library(options.paths)), taxonomy))
            return 0
        if args[:1] in (["-h"], ["--help"]):
            print(__doc__)
            return 0
        loaded = load_scenarios(args[0] if args else DEFAULT_DIR)
        for category, count in sorted(Counter(s.category for s in loaded).items()):
            print(f"{category:<16} {count}")
        print(f"{'total':<16} {len(loaded)}")
    except (ScenarioError, TaxonomyError, FatalApiError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
