"""Data tooling for ServeForEmo JSONL files: validate, merge, dedupe, split, stats, export-hf.

How to run::

    python -m training.data validate training/assets/samples.jsonl outputs/roleplay.jsonl
    python -m training.data merge outputs/roleplay.jsonl outputs/esconv_train.jsonl --out outputs/all.jsonl
    python -m training.data dedupe outputs/all.jsonl --out outputs/all.dedup.jsonl
    python -m training.data split outputs/all.dedup.jsonl --out_dir outputs/splits --valid 0.1 --test 0.1 --seed 0
    python -m training.data stats outputs/splits/train.jsonl --chart outputs/train_stats.png
    python -m training.data export-hf outputs/hf/serveforemo outputs/splits/{train,valid,test}.jsonl

Every command validates its inputs first (``--strategies`` selects a deployment catalogue) and exits 1 with
``file:line: field: message`` lines when a record is invalid. ``split`` keeps all dialogues of one scenario in the
same split (scenario id, or the situation text when there is no id) and is deterministic for a given ``--seed``.
``export-hf OUT FILE...`` writes a Hugging Face ``datasets`` folder (parquet splits named after the files:
``train``/``valid``/``test``, any other file joins ``train``) and a dataset card with sources, licences (ESConv is
CC BY-NC 4.0), generator models, prompt versions, seeds and input hashes (:mod:`training.hf_export`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from app.core.strategies import StrategyCatalogue, load_catalogue
from training.schema import DatasetError, Dialogue, check_jsonl, word_count, write_jsonl


class DataError(ValueError):
    """Inputs cannot be processed; the message says which file and why."""


def load_all(paths: Sequence[str | Path], catalogue: StrategyCatalogue) -> list[tuple[Path, list[Dialogue]]]:
    """Read and validate every file; raises DatasetError listing all problems of all files."""
    loaded, errors = [], []
    for path in paths:
        if not Path(path).exists():
            raise DataError(f"{path}: file not found")
        dialogues, problems = check_jsonl(path, catalogue)
        loaded.append((Path(path), dialogues))
        errors.extend(problems)
    if errors:
        raise DatasetError(errors)
    return loaded


def merge(inputs: list[tuple[Path, list[Dialogue]]]) -> list[Dialogue]:
    """Concatenate in order; the same id in two places is an error (run ``dedupe`` for overlapping files)."""
    seen: dict[str, Path] = {}
    merged = []
    for path, dialogues in inputs:
        for dialogue in dialogues:
            if dialogue.id in seen:
                raise DataError(
                    f"{path}: id: {dialogue.id!r} is also in {seen[dialogue.id]}; use `dedupe` for overlapping files"
                )
            seen[dialogue.id] = path
            merged.append(dialogue)
    return merged


def _content_key(dialogue: Dialogue) -> tuple[str, ...]:
    return tuple(t.role + ":" + re.sub(r"[\W_]+", " ", t.content.lower()).strip() for t in dialogue.turns)


def dedupe(dialogues: Sequence[Dialogue]) -> tuple[list[Dialogue], Counter[str]]:
    """Keep the first of dialogues sharing an id or the same turns (ignoring case and punctuation)."""
    ids: set[str] = set()
    contents: set[tuple[str, ...]] = set()
    kept, dropped = [], Counter[str]()
    for dialogue in dialogues:
        key = _content_key(dialogue)
        if dialogue.id in ids:
            dropped["duplicate id"] += 1
        elif key in contents:
            dropped["duplicate content"] += 1
        else:
            ids.add(dialogue.id)
            contents.add(key)
            kept.append(dialogue)
    return kept, dropped


def scenario_key(dialogue: Dialogue) -> str:
    """What keeps dialogues together in one split: the scenario id, else a hash of the situation."""
    if dialogue.scenario.id:
        return f"id:{dialogue.scenario.id}"
    return "situation:" + hashlib.sha256(dialogue.scenario.situation.encode()).hexdigest()[:16]


def split(dialogues: Sequence[Dialogue], valid: float, test: float, seed: int) -> dict[str, list[Dialogue]]:
    """train/valid/test by scenario; shares are of scenarios, at least one each when asked for and possible."""
    if valid < 0 or test < 0 or valid + test >= 1:
        raise DataError(f"--valid {valid} --test {test}: need non-negative shares that sum to less than 1")
    keys = sorted({scenario_key(d) for d in dialogues})
    random.Random(seed).shuffle(keys)

    def share(fraction: float) -> int:
        count = round(len(keys) * fraction)
        return max(count, 1) if fraction > 0 and len(keys) >= 3 else count

    n_test, n_valid = share(test), share(valid)
    assignment = {key: "test" for key in keys[:n_test]}
    assignment.update({key: "valid" for key in keys[n_test : n_test + n_valid]})
    parts: dict[str, list[Dialogue]] = {"train": [], "valid": [], "test": []}
    for dialogue in dialogues:
        parts[assignment.get(scenario_key(dialogue), "train")].append(dialogue)
    return parts


@dataclass
class Stats:
    """ServeForEmo-style corpus statistics."""

    dialogues: int = 0
    utterances: int = 0
    seeker_turns: int = 0
    supporter_turns: int = 0
    avg_turns_per_dialogue: float = 0.0
    avg_words_seeker: float = 0.0
    avg_words_supporter: float = 0.0
    strategies: Counter[str] = field(default_factory=Counter)
    categories: Counter[str] = field(default_factory=Counter)
    sources: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, counters sorted by frequency."""
        data = asdict(self)
        for name in ("strategies", "categories", "sources"):
            data[name] = dict(getattr(self, name).most_common())
        return data


def compute_stats(dialogues: Sequence[Dialogue]) -> Stats:
    """Counts and averages over ``dialogues`` (words are whitespace-separated tokens)."""
    stats = Stats(dialogues=len(dialogues))
    words = {"seeker": 0, "supporter": 0}
    for dialogue in dialogues:
        stats.categories[dialogue.scenario.category] += 1
        stats.sources[dialogue.source] += 1
        for turn in dialogue.turns:
            stats.utterances += 1
            words[turn.role] += word_count(turn.content)
            if turn.role == "seeker":
                stats.seeker_turns += 1
            else:
                stats.supporter_turns += 1
                stats.strategies[turn.strategy or "?"] += 1
    if dialogues:
        stats.avg_turns_per_dialogue = stats.utterances / len(dialogues)
    if stats.seeker_turns:
        stats.avg_words_seeker = words["seeker"] / stats.seeker_turns
    if stats.supporter_turns:
        stats.avg_words_supporter = words["supporter"] / stats.supporter_turns
    return stats


def format_table(stats: Stats, catalogue: StrategyCatalogue) -> str:
    """The statistics table printed by ``stats``."""
    rows = [
        ("Dialogues", f"{stats.dialogues:,}"),
        ("Utterances", f"{stats.utterances:,}"),
        ("Avg. turns per dialogue", f"{stats.avg_turns_per_dialogue:.2f}"),
        ("Avg. words per seeker turn", f"{stats.avg_words_seeker:.2f}"),
        ("Avg. words per supporter turn", f"{stats.avg_words_supporter:.2f}"),
        ("Sources", ", ".join(f"{k} {v}" for k, v in stats.sources.most_common())),
    ]
    lines = [f"{name:<32} {value}" for name, value in rows]
    total = max(stats.supporter_turns, 1)
    lines.append("Strategy distribution (supporter turns)")
    names = catalogue.names + sorted(set(stats.strategies) - set(catalogue.names))
    for name in names:
        count = stats.strategies[name]
        lines.append(f"  {name:<30} {count:>8,} {100 * count / total:6.1f}%")
    lines.append(f"Categories ({len(stats.categories)})")
    for name, count in stats.categories.most_common():
        lines.append(f"  {name:<30} {count:>8,} {100 * count / max(stats.dialogues, 1):6.1f}%")
    return "\n".join(lines)


def write_chart(stats: Stats, catalogue: StrategyCatalogue, path: Path, title: str) -> None:
    """A PNG with the strategy distribution and the category counts side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = catalogue.names + sorted(set(stats.strategies) - set(catalogue.names))
    total = max(stats.supporter_turns, 1)
    categories = stats.categories.most_common()
    figure, (left, right) = plt.subplots(1, 2, figsize=(13, max(4.0, 0.35 * len(categories) + 1.5)))
    left.barh(names[::-1], [100 * stats.strategies[n] / total for n in names[::-1]], color="#d9776f")
    left.set_xlabel("% of supporter turns")
    left.set_title("Strategies")
    right.barh([c for c, _ in categories[::-1]], [n for _, n in categories[::-1]], color="#6f9fd9")
    right.set_xlabel("dialogues")
    right.set_title("Categories")
    figure.suptitle(
        f"{title}: {stats.dialogues:,} dialogues, {stats.utterances:,} utterances, "
        f"{stats.avg_turns_per_dialogue:.1f} turns/dialogue"
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.data", description=__doc__.split("\n")[0])
    parser.add_argument("--strategies", default=None, help="Deployment strategy YAML (extend/replace).")
    commands = parser.add_subparsers(dest="command", required=True)
    validate = commands.add_parser("validate", help="Check files; print every problem as file:line: field.")
    validate.add_argument("files", nargs="+")
    merge_cmd = commands.add_parser("merge", help="Concatenate files (ids must be unique).")
    merge_cmd.add_argument("files", nargs="+")
    merge_cmd.add_argument("--out", required=True)
    dedupe_cmd = commands.add_parser("dedupe", help="Drop repeated ids and repeated dialogues.")
    dedupe_cmd.add_argument("files", nargs="+")
    dedupe_cmd.add_argument("--out", required=True)
    split_cmd = commands.add_parser("split", help="train/valid/test by scenario, deterministic.")
    split_cmd.add_argument("files", nargs="+")
    split_cmd.add_argument("--out_dir", "--out-dir", required=True)
    split_cmd.add_argument("--valid", type=float, default=0.1, help="Share of scenarios for valid.")
    split_cmd.add_argument("--test", type=float, default=0.1, help="Share of scenarios for test.")
    split_cmd.add_argument("--seed", type=int, default=0)
    stats_cmd = commands.add_parser("stats", help="Print the statistics table and write a PNG chart.")
    stats_cmd.add_argument("files", nargs="+")
    stats_cmd.add_argument("--chart", default=None, help="PNG path; default outputs/<first file>_stats.png.")
    stats_cmd.add_argument("--json", default=None, help="Also write the numbers as JSON here.")
    export = commands.add_parser(
        "export-hf",
        help="Write a Hugging Face datasets folder (parquet splits) with a dataset card.",
        description="Files named train/valid/test.jsonl become those splits; any other file joins train.",
    )
    export.add_argument("out", help="Output folder (README.md, provenance.json, data/*.parquet).")
    export.add_argument("files", nargs="+")
    export.add_argument("--name", default="ServeForEmo (SweetieChat)", help="Dataset name in the card.")
    return parser


def run(args: argparse.Namespace) -> None:
    """Execute one parsed command (raises DatasetError / DataError on bad input)."""
    catalogue = load_catalogue(args.strategies)
    inputs = load_all(args.files, catalogue)
    if args.command == "validate":
        for path, dialogues in inputs:
            print(f"{path}: {len(dialogues)} dialogues OK")
    elif args.command == "merge":
        count = write_jsonl(args.out, merge(inputs))
        print(f"{args.out}: {count} dialogues from {len(inputs)} file(s)")
    elif args.command == "dedupe":
        kept, dropped = dedupe([d for _, dialogues in inputs for d in dialogues])
        write_jsonl(args.out, kept)
        detail = ", ".join(f"{k}: {v}" for k, v in sorted(dropped.items())) or "none"
        print(f"{args.out}: kept {len(kept)}, dropped {sum(dropped.values())} ({detail})")
    elif args.command == "split":
        parts = split(merge(inputs), args.valid, args.test, args.seed)
        out_dir = Path(args.out_dir)
        for name, dialogues in parts.items():
            write_jsonl(out_dir / f"{name}.jsonl", dialogues)
            scenarios = len({scenario_key(d) for d in dialogues})
            print(f"{out_dir / f'{name}.jsonl'}: {len(dialogues)} dialogues, {scenarios} scenarios")
    elif args.command == "export-hf":
        from training.hf_export import split_of, write_hf_dataset

        splits: dict[str, list[Dialogue]] = {"train": [], "validation": [], "test": []}
        for path, dialogues in inputs:
            splits[split_of(path)].extend(dialogues)
        merge(inputs)  # ids must be unique across the whole export
        table = format_table(compute_stats([d for _, dialogues in inputs for d in dialogues]), catalogue)
        info = write_hf_dataset(Path(args.out), splits, [path for path, _ in inputs], args.name, table)
        counts = ", ".join(f"{name} {count}" for name, count in info["splits"].items())
        print(f"{args.out}: {counts}; licence {info['license']}; card {Path(args.out) / 'README.md'}")
    elif args.command == "stats":
        stats = compute_stats([d for _, dialogues in inputs for d in dialogues])
        print(format_table(stats, catalogue))
        first = inputs[0][0]
        chart = Path(args.chart) if args.chart else Path("outputs") / f"{first.stem}_stats.png"
        title = first.name if len(inputs) == 1 else f"{len(inputs)} files"
        write_chart(stats, catalogue, chart, title)
        print(f"chart: {chart}")
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(stats.as_dict(), indent=2) + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (1 for invalid data)."""
    args = _parser().parse_args(argv)
    try:
        run(args)
    except DatasetError as exc:
        for problem in exc.errors:
            print(problem, file=sys.stderr)
        print(f"{len(exc.errors)} problem(s) found", file=sys.stderr)
        return 1
    except (DataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
