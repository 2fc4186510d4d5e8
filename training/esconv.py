"""Import ESConv (Liu et al., ACL 2021) into ServeForEmo dialogues.

ESConv is CC BY-NC 4.0 and is never copied into this repository: it is read from ``../shared/data/esconv``
(relative to the repository root), or from ``$SWEETIE_ESCONV_DIR``, or ``--esconv_dir``; the output must go to a
git-ignored folder such as ``outputs/``.

Merging: ESConv often has several consecutive messages from one speaker; the schema needs alternating turns, so
they are joined (with a space) into one turn. A merged supporter turn keeps the strategy of its FIRST part: the
opening move is what a reader meets first, and it matches the ``[Strategy] reply`` format in which the tag leads the
reply. Strategy counts before merging (per ESConv utterance) and after (per merged turn) go into the report.

How to run::

    python -m training.esconv --out outputs/esconv_train.jsonl --split train
    python -m training.esconv --out outputs/esconv_all.jsonl --split all --esconv_dir /data/esconv
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.core.strategies import StrategyCatalogue, load_catalogue
from training.cli import parse_config
from training.schema import Dialogue, Scenario, Turn, write_jsonl

REPO_ROOT = Path(__file__).resolve().parents[1]
ENV_DIR = "SWEETIE_ESCONV_DIR"
SPLITS = ("train", "valid")
MERGE_RULE = "first"

# ESConv problem types -> ServeForEmo scenario categories (the seed scenarios use the same categories).
CATEGORIES = {
    "job crisis": "work",
    "ongoing depression": "mental_health",
    "breakup with partner": "romance",
    "problems with friends": "friendship",
    "academic pressure": "study",
    "procrastination": "study",
    "school bullying": "study",
    "sleep problems": "health",
    "alcohol abuse": "health",
    "conflict with parents": "family",
    "issues with parents": "family",
    "issues with children": "parenting",
    "appearance anxiety": "identity",
}


class EsconvError(ValueError):
    """The ESConv files are missing or not in the expected layout."""


def default_esconv_dir() -> Path:
    """``$SWEETIE_ESCONV_DIR`` if set, else ``<repo>/../shared/data/esconv``."""
    env = os.environ.get(ENV_DIR)
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data" / "esconv"


@dataclass
class ImportReport:
    """What an import read and wrote; strategy counts before and after merging consecutive messages."""

    split: str
    dialogues: int = 0
    utterances: int = 0
    turns: int = 0
    merged_supporter_turns_with_mixed_strategies: int = 0
    merge_rule: str = MERGE_RULE
    strategy_counts_raw: Counter[str] = field(default_factory=Counter)
    strategy_counts_merged: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, counts sorted by frequency."""
        return {
            "split": self.split,
            "dialogues": self.dialogues,
            "utterances": self.utterances,
            "turns": self.turns,
            "merged_supporter_turns_with_mixed_strategies": self.merged_supporter_turns_with_mixed_strategies,
            "merge_rule": self.merge_rule,
            "strategy_counts_raw": dict(self.strategy_counts_raw.most_common()),
            "strategy_counts_merged": dict(self.strategy_counts_merged.most_common()),
        }


def iter_raw(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for each ESConv conversation in a JSON-lines file."""
    if not path.exists():
        raise EsconvError(f"{path}: not found; set ${ENV_DIR} or --esconv_dir to the folder with train/valid.jsonl")
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    yield number, json.loads(line)
                except json.JSONDecodeError as exc:
                    raise EsconvError(f"{path}:{number}: not valid JSON: {exc.msg}") from None


def _intensity(raw: dict[str, Any]) -> int | None:
    value = (raw.get("survey_score") or {}).get("seeker", {}).get("initial_emotion_intensity")
    try:
        number = int(str(value).strip())
    except ValueError:
        return None
    return number if 1 <= number <= 5 else None


def convert(
    raw: dict[str, Any], dialogue_id: str, catalogue: StrategyCatalogue, report: ImportReport, where: str
) -> Dialogue:
    """One ESConv conversation as a Dialogue; updates ``report``'s counters."""
    dialog = raw.get("dialog")
    if not isinstance(dialog, list) or not dialog:
        raise EsconvError(f"{where}: dialog: expected a non-empty list of messages")
    groups: list[tuple[str, list[str], list[str]]] = []  # (role, texts, strategies)
    for index, message in enumerate(dialog):
        speaker, text = message.get("speaker"), str(message.get("text", "")).strip()
        if speaker not in ("usr", "sys"):
            raise EsconvError(f"{where}: dialog.{index}.speaker: {speaker!r} is not 'usr' or 'sys'")
        role = "seeker" if speaker == "usr" else "supporter"
        report.utterances += 1
        strategy = ""
        if role == "supporter":
            found = catalogue.canonical(str(message.get("strategy", "")))
            if found is None:
                raise EsconvError(f"{where}: dialog.{index}.strategy: {message.get('strategy')!r} is not known")
            strategy = found
            report.strategy_counts_raw[strategy] += 1
        if not text:
            continue
        if groups and groups[-1][0] == role:
            groups[-1][1].append(text)
            groups[-1][2].append(strategy)
        else:
            groups.append((role, [text], [strategy]))
    turns = []
    for role, texts, strategies in groups:
        if role == "supporter":
            report.strategy_counts_merged[strategies[0]] += 1
            report.merged_supporter_turns_with_mixed_strategies += len(set(strategies)) > 1
            turns.append(Turn(role="supporter", content=" ".join(texts), strategy=strategies[0]))
        else:
            turns.append(Turn(role="seeker", content=" ".join(texts)))
    problem = str(raw.get("problem_type", "")).strip().lower() or "unknown"
    scenario = Scenario(
        category=CATEGORIES.get(problem, "other"),
        problem_type=problem,
        emotion=str(raw.get("emotion_type", "")).strip().lower() or "unknown",
        intensity=_intensity(raw),
        situation=str(raw.get("situation", "")).strip() or "(not given)",
    )
    report.turns += len(turns)
    report.dialogues += 1
    return Dialogue.model_validate(
        {
            "id": dialogue_id,
            "source": "esconv",
            "scenario": scenario,
            "turns": turns,
            "meta": {"split": report.split, "experience_type": raw.get("experience_type")},
        },
        context={"catalogue": catalogue},
    )


def import_esconv(
    esconv_dir: Path | None = None, split: str = "train", catalogue: StrategyCatalogue | None = None
) -> tuple[list[Dialogue], ImportReport]:
    """Dialogues of one split (``train``, ``valid``) or ``all``, with the import report."""
    if split not in (*SPLITS, "all"):
        raise EsconvError(f"split: {split!r} is not valid (valid: train, valid, all)")
    folder = esconv_dir or default_esconv_dir()
    catalogue = catalogue or load_catalogue()
    report = ImportReport(split=split)
    dialogues = []
    for name in SPLITS if split == "all" else (split,):
        path = folder / f"{name}.jsonl"
        for index, (number, raw) in enumerate(iter_raw(path)):
            dialogues.append(convert(raw, f"esconv-{name}-{index:04d}", catalogue, report, f"{path}:{number}"))
    return dialogues, report


def check_not_committable(out: Path) -> None:
    """Refuse to write ESConv text to a path inside this git checkout that git would track."""
    target = out.resolve()
    if not target.is_relative_to(REPO_ROOT):
        return
    try:
        result = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "check-ignore", "-q", str(target)], capture_output=True, check=False
        )
    except OSError:
        return  # no git: nothing to protect
    if result.returncode == 1:
        raise EsconvError(
            f"--out {out}: this path is inside the repository and not git-ignored; ESConv is CC BY-NC 4.0 and "
            "must not be committed. Write under outputs/ (ignored) or outside the repository."
        )


@dataclass
class EsconvConfig:
    """Settings for ``python -m training.esconv``."""

    out: str = field(default="outputs/esconv_train.jsonl", metadata={"help": "Output JSONL (git-ignored place)."})
    split: str = field(default="train", metadata={"help": "train, valid or all."})
    esconv_dir: str | None = field(
        default=None, metadata={"help": f"ESConv folder; default ${ENV_DIR} or ../shared/data/esconv."}
    )
    strategies: str | None = field(default=None, metadata={"help": "Deployment strategy YAML (extend/replace)."})
    report: str | None = field(default=None, metadata={"help": "Report JSON path; default <out>.report.json."})


def main(config: EsconvConfig) -> ImportReport:
    """Import, write the JSONL and the report, print a summary."""
    out = Path(config.out)
    check_not_committable(out)
    esconv_dir = Path(config.esconv_dir) if config.esconv_dir else None
    dialogues, report = import_esconv(esconv_dir, config.split, load_catalogue(config.strategies))
    write_jsonl(out, dialogues)
    report_path = Path(config.report) if config.report else out.with_suffix(".report.json")
    report_path.write_text(json.dumps(report.as_dict(), indent=2) + "\n", encoding="utf-8")
    print(
        f"{out}: {report.dialogues} dialogues, {report.utterances} ESConv utterances -> {report.turns} turns "
        f"(supporter turns with mixed strategies after merging: {report.merged_supporter_turns_with_mixed_strategies})"
    )
    print(f"{'strategy':<30} {'utterances':>10} {'turns':>8}")
    for name, count in report.strategy_counts_raw.most_common():
        print(f"{name:<30} {count:>10} {report.strategy_counts_merged[name]:>8}")
    print(f"report: {report_path}")
    return report


def cli(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    config = parse_config(
        EsconvConfig, argv, description="Import ESConv into ServeForEmo JSONL.", prog="python -m training.esconv"
    )
    try:
        main(config)
    except EsconvError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(cli())
