"""Accuracy and latency benchmark for the crisis-risk screens (app/chat/safety/), with bootstrap intervals.

How to run (from the repository root):

    python benchmarks/safety_bench.py --sets dev test regression --screen learned
    python benchmarks/safety_bench.py --sets regression --screen lexical
    python -m training.safety_data build --out /tmp/corpus.jsonl    # the corpus is built from the seeds
    python benchmarks/safety_bench.py --sets /tmp/corpus.jsonl --out /tmp/safety.json

Sets: a name means ``benchmarks/safety/<name>.jsonl`` (``dev``, ``dev2``, ``dev3`` and ``test`` are written
separately, before training, and never used to tune; ``dev2`` is contrast pairs, see ``safety/DEV2_README.md``;
``dev3`` is the test set's recipe by new authors, see ``safety/DEV3_README.md``; ``regression`` is the old
hand-written set kept to guard behaviour); anything ending in ``.jsonl`` is read as a path. A set that does not exist
is reported as missing and skipped. Each line is either the current format
``{"text", "context": [...], "level", "categories", "language", "group", ...}`` or the regression set's older one
``{"text", "lang", "label", "categories", "kind"}``; both are normalised on load (a ``kind`` of ``hard_negative``
becomes group ``neg.hard_negative``, ``safe`` becomes ``safe``). ``context`` (earlier user messages, oldest first)
goes to ``screen(text, context)``.

Figures per set, overall and per language, each with a 95% bootstrap interval (numpy, seeded, ``--resamples``
resamples of the items behind the figure):

* high flagged: share of ``level == high`` flagged at any level; high as high: share predicted ``high``;
* elevated flagged: share of ``level == elevated`` flagged at any level;
* recall per category: share of risky items with that category that are flagged and carry it;
* false positives on hard negatives (``level == none`` and group starting with ``neg.``) and on all ``none`` items.

Latency per ``screen()`` call (the latest message alone and, with context, the window too), wall and thread CPU
time, p50 and p99, over the sets' own items, ~1,000-character messages and a 100 KB message.

Targets (issue 12), printed next to each figure as PASS/FAIL but not asserted (the exit status is 0): high flagged
>= 0.97, high as high >= 0.90, elevated flagged >= 0.85, hard-negative false positives <= 0.05, each language within
0.02 of these; p99 wall latency < 2 ms. Results go to ``benchmarks/results/safety.json`` with the git SHA, the date
(UTC), the machine, the exact command, the screen and the artefact's sha256.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import random
import shlex
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # allow `python benchmarks/safety_bench.py` without installing the package
    sys.path.insert(0, str(ROOT))

from app.chat.safety import CATEGORIES, LexicalSafetyScreen, RiskLevel, SafetyResult, SafetyScreen  # noqa: E402
from benchmarks.results_file import provenance  # noqa: E402
from training.cli import parse_config  # noqa: E402
from training.safety_classifier import LEVEL_INDEX, level_cost  # noqa: E402

SETS_DIR = Path(__file__).resolve().parent / "safety"
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "safety.json"
HELD_OUT = ("dev", "dev2", "dev3", "test")
TARGETS: dict[str, tuple[str, float]] = {
    "high_flagged": (">=", 0.97),
    "high_as_high": (">=", 0.90),
    "elevated_flagged": (">=", 0.85),
    "hard_negative_fpr": ("<=", 0.05),
}
LANGUAGE_SLACK = 0.02
TARGET_P99_WALL_US = 2000.0
LEVEL_ALIASES = {"none": RiskLevel.NONE, "elevated": RiskLevel.ELEVATED, "high": RiskLevel.HIGH}


@dataclass(frozen=True)
class Example:
    """One labelled item, normalised from either file format."""

    text: str
    context: tuple[str, ...]
    language: str
    level: RiskLevel
    categories: tuple[str, ...]
    group: str

    @property
    def hard_negative(self) -> bool:
        return self.level is RiskLevel.NONE and self.group.startswith("neg.")


@dataclass
class BenchConfig:
    """Command-line options."""

    sets: list[str] = field(
        default_factory=lambda: ["dev", "dev2", "dev3", "test", "regression"],
        metadata={"help": "set names (benchmarks/safety/NAME.jsonl) or paths to .jsonl files"},
    )
    screen: Literal["learned", "lexical"] = field(default="learned", metadata={"help": "which screen to measure"})
    model: Path | None = field(default=None, metadata={"help": "artefact for --screen learned (default: shipped)"})
    resamples: int = field(default=1000, metadata={"help": "bootstrap resamples per figure"})
    seed: int = field(default=0, metadata={"help": "bootstrap and long-message seed"})
    rounds: int = field(default=5, metadata={"help": "timing rounds over each latency set"})
    out: Path | None = field(default=DEFAULT_OUT, metadata={"help": "results JSON ('none' to skip writing)"})
    errors: str | None = field(
        default=None, metadata={"help": "list this set's misclassified items on stderr (not for dev or test)"}
    )

    def __post_init__(self) -> None:
        if self.errors in HELD_OUT:
            raise ValueError(f"errors: {self.errors} is held out; its items are never listed (tune on the corpus)")
        if self.resamples < 1 or self.rounds < 1:
            raise ValueError("resamples, rounds: must be at least 1")


# ---------------------------------------------------------------------------------------------------------- sets


def set_path(name: str) -> Path:
    """``benchmarks/safety/<name>.jsonl`` for a name, the path itself for anything ending in ``.jsonl``."""
    return Path(name) if name.endswith(".jsonl") else SETS_DIR / f"{name}.jsonl"


def example_of(row: dict[str, Any], where: str) -> Example:
    """Either format into an :class:`Example`; ValueError naming ``where`` and the field when something is wrong."""
    try:
        text = row["text"]
        level_name = row["level"] if "level" in row else row["label"]
        language = row["language"] if "language" in row else row["lang"]
        categories = tuple(row.get("categories", ()))
        context = tuple(row.get("context") or ())
    except KeyError as exc:
        raise ValueError(f"{where}: {exc.args[0]}: missing") from None
    if level_name not in LEVEL_ALIASES:
        raise ValueError(f"{where}: level: {level_name!r} is not none|elevated|high")
    if language not in ("en", "zh"):
        raise ValueError(f"{where}: language: {language!r} is not en|zh")
    if not isinstance(text, str) or not all(isinstance(c, str) for c in context):
        raise ValueError(f"{where}: text/context: expected strings")
    if not set(categories) <= set(CATEGORIES):
        raise ValueError(f"{where}: categories: unknown category in {list(categories)}")
    level = LEVEL_ALIASES[level_name]
    if "group" in row:
        group = str(row["group"])
    else:
        kind = row.get("kind", "risky")
        group = {"hard_negative": "neg.hard_negative", "safe": "safe"}.get(kind, f"{level.value}.{kind}")
    return Example(text, context, language, level, tuple(c for c in CATEGORIES if c in categories), group)


def load_set(name_or_path: str | Path) -> list[Example]:
    """Read and normalise a set; ValueError naming the file and line for a bad line."""
    path = set_path(str(name_or_path))
    examples = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
        examples.append(example_of(row, f"{path}:{lineno}"))
    return examples


def read_sets(names: Sequence[str], report: dict[str, Any]) -> list[tuple[str, Path, list[Example]]]:
    """The named sets that exist, read; a missing one is printed, recorded in ``report[name]`` and skipped."""
    found = []
    for name in names:
        path = set_path(name)
        if not path.is_file():
            print(f"\n== {name}: {path} not found, skipped")
            report[name] = {"file": str(path), "missing": True}
            continue
        found.append((name, path, load_set(path)))
    return found


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------------------------------- accuracy


def _bootstrap(hits: np.ndarray, rng: np.random.Generator, resamples: int) -> tuple[float | None, list[float] | None]:
    """Share of true values and its 95% percentile bootstrap interval."""
    if hits.size == 0:
        return None, None
    draws = rng.integers(0, hits.size, size=(resamples, hits.size))
    shares = hits[draws].mean(axis=1)
    low, high = np.percentile(shares, [2.5, 97.5])
    return round(float(hits.mean()), 4), [round(float(low), 4), round(float(high), 4)]


def _figure(hits: Sequence[bool], rng: np.random.Generator, resamples: int) -> dict[str, Any]:
    value, interval = _bootstrap(np.asarray(hits, dtype=float), rng, resamples)
    return {"value": value, "ci95": interval, "n": len(hits)}


def evaluate(
    screen: SafetyScreen, examples: Sequence[Example], *, resamples: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """All accuracy figures of one set: overall and per language, each ``{"value", "ci95", "n"}``."""
    results = [screen.screen(ex.text, ex.context) for ex in examples]
    return figures(examples, results, resamples=resamples, seed=seed)


def figures(
    examples: Sequence[Example], results: Sequence[SafetyResult], *, resamples: int = 1000, seed: int = 0
) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    pairs = list(zip(examples, results, strict=True))

    def block(rows: list[tuple[Example, SafetyResult]]) -> dict[str, Any]:
        high = [r for ex, r in rows if ex.level is RiskLevel.HIGH]
        elevated = [r for ex, r in rows if ex.level is RiskLevel.ELEVATED]
        hard = [r for ex, r in rows if ex.hard_negative]
        none = [r for ex, r in rows if ex.level is RiskLevel.NONE]
        out: dict[str, Any] = {
            "n": len(rows),
            "high_flagged": _figure([r.flagged for r in high], rng, resamples),
            "high_as_high": _figure([r.level is RiskLevel.HIGH for r in high], rng, resamples),
            "elevated_flagged": _figure([r.flagged for r in elevated], rng, resamples),
            "elevated_as_high": _figure([r.level is RiskLevel.HIGH for r in elevated], rng, resamples),
            "hard_negative_fpr": _figure([r.flagged for r in hard], rng, resamples),
            "none_fpr": _figure([r.flagged for r in none], rng, resamples),
            "level_cost": _level_cost(rows),
            "category_recall": {},
        }
        for cat in CATEGORIES:
            with_cat = [r for ex, r in rows if ex.level is not RiskLevel.NONE and cat in ex.categories]
            out["category_recall"][cat] = _figure([r.flagged and cat in r.categories for r in with_cat], rng, resamples)
        return out

    report = block(pairs)
    report["by_language"] = {lang: block([(ex, r) for ex, r in pairs if ex.language == lang]) for lang in ("en", "zh")}
    return report


def _level_cost(rows: Sequence[tuple[Example, SafetyResult]]) -> float | None:
    """The training objective's cost of these verdicts (``training.safety_classifier.COSTS``: a missed high costs 10,
    high judged elevated 3, ..., as rates within each true level): one number to compare two screens by."""
    if not rows:
        return None
    truth = np.array([LEVEL_INDEX[ex.level.value] for ex, _ in rows])
    predicted = np.array([LEVEL_INDEX[r.level.value] for _, r in rows])
    return round(level_cost(truth, predicted), 4)


def misclassified(screen: SafetyScreen, examples: Sequence[Example]) -> list[dict[str, Any]]:
    """Items whose predicted level differs from the label (never called for the held-out sets)."""
    out = []
    for ex in examples:
        result = screen.screen(ex.text, ex.context)
        if result.level is not ex.level:
            out.append(
                {
                    "text": ex.text,
                    "context": list(ex.context),
                    "level": ex.level.value,
                    "predicted": result.level.value,
                    "predicted_categories": list(result.categories),
                    "group": ex.group,
                }
            )
    return out


# ------------------------------------------------------------------------------------------------------ latency


def long_messages(
    examples: Sequence[Example], count: int = 200, target_chars: int = 1000, *, dense: bool = True, seed: int = 7
) -> list[str]:
    """Deterministic ~1,000-character messages (about 330 Han characters for Chinese) built from a set's texts.

    ``dense=True`` joins random items (risk-dense, a near worst case); ``dense=False`` joins ``none`` items and adds
    one risky item to every fourth message (closer to a real long message).
    """
    rng = random.Random(seed)
    out = []
    for i in range(count):
        lang = "zh" if i % 3 == 2 else "en"
        pool = [ex.text for ex in examples if ex.language == lang and (dense or ex.level is RiskLevel.NONE)]
        risky = [ex.text for ex in examples if ex.language == lang and ex.level is not RiskLevel.NONE]
        if not pool:
            continue
        limit = target_chars // 3 if lang == "zh" else target_chars
        parts: list[str] = []
        while sum(len(p) + 1 for p in parts) < limit:
            parts.append(rng.choice(pool))
        if not dense and risky and i % 4 == 0:
            parts.insert(rng.randrange(len(parts)), rng.choice(risky))
        out.append((" " if lang == "en" else "").join(parts)[:limit])
    return out


def percentiles(samples: Sequence[float]) -> dict[str, float]:
    """p50, p99, max and mean of timings in microseconds."""
    ordered = sorted(samples)
    return {
        "p50_us": round(ordered[len(ordered) // 2], 1),
        "p99_us": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 1),
        "max_us": round(ordered[-1], 1),
        "mean_us": round(statistics.fmean(ordered), 1),
    }


def measure_latency(screen: SafetyScreen, calls: Sequence[tuple[str, Sequence[str]]], rounds: int) -> dict[str, Any]:
    """Per-call latency of ``screen(text, context)`` over ``rounds`` passes after a warm-up pass, in microseconds.

    ``cpu`` is the calling thread's CPU time (the screen's own cost); ``wall`` also counts waiting for a core.
    """
    for text, context in calls:
        screen.screen(text, context)
    wall: list[float] = []
    cpu: list[float] = []
    gc.collect()
    for _ in range(rounds):
        for text, context in calls:
            w0, c0 = time.perf_counter_ns(), time.thread_time_ns()
            screen.screen(text, context)
            cpu.append((time.thread_time_ns() - c0) / 1000)
            wall.append((time.perf_counter_ns() - w0) / 1000)
    return {
        "calls": len(wall),
        "mean_chars": round(statistics.fmean(len(t) + sum(map(len, c)) for t, c in calls), 1),
        "cpu": percentiles(cpu),
        "wall": percentiles(wall),
    }


def big_message(chars: int = 100_000) -> str:
    """A ~100 KB message: ordinary narrative with a disclosure at the very end."""
    filler = "Work ran late again and the bus was full, so I walked home and made noodles. "
    return (filler * (chars // len(filler) + 1))[: chars - 40] + " and honestly I want to die tonight."


# ------------------------------------------------------------------------------------------------------ targets


def target_rows(name: str, report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per target: overall, and per language with the issue's 0.02 slack."""
    rows = []
    scopes: list[tuple[str, dict[str, Any], float]] = [("all", report, 0.0)]
    scopes += [(lang, report["by_language"][lang], LANGUAGE_SLACK) for lang in ("en", "zh")]
    for scope, block, slack in scopes:
        for key, (op, goal) in TARGETS.items():
            bound = goal - slack if op == ">=" else goal + slack
            value = block[key]["value"]
            passed = value is not None and (value >= bound if op == ">=" else value <= bound)
            rows.append({"set": name, "scope": scope, "figure": key, "target": f"{op} {bound:.2f}", "value": value,
                         "passed": passed})  # fmt: skip
    return rows


# ------------------------------------------------------------------------------------------------------- output


def _fmt(fig: dict[str, Any]) -> str:
    if fig["value"] is None:
        return "n/a"
    low, high = fig["ci95"]
    return f"{fig['value']:.3f} [{low:.3f}, {high:.3f}] n={fig['n']}"


def print_set(name: str, report: dict[str, Any], targets: list[dict[str, Any]]) -> None:
    verdict = {(t["scope"], t["figure"]): t for t in targets}
    print(f"\n== {name}: {report['n']} items")
    rows = [
        ("high flagged (any level)", "high_flagged"),
        ("high flagged as high", "high_as_high"),
        ("elevated flagged", "elevated_flagged"),
        ("elevated predicted high", "elevated_as_high"),
        ("false positives, hard negatives", "hard_negative_fpr"),
        ("false positives, all none", "none_fpr"),
    ]
    for scope, block in (("all", report), *((lang, report["by_language"][lang]) for lang in ("en", "zh"))):
        print(f"  [{scope}]")
        for label, key in rows:
            t = verdict.get((scope, key))
            mark = f"  {'PASS' if t['passed'] else 'FAIL'} (target {t['target']})" if t else ""
            print(f"    {label:<34}{_fmt(block[key]):<36}{mark}")
        for cat in CATEGORIES:
            print(f"    {'recall, ' + cat:<34}{_fmt(block['category_recall'][cat])}")
        print(f"    {'level cost (training weights)':<34}{block['level_cost']}")


def print_latency(latency: dict[str, dict[str, Any]]) -> None:
    print("\nlatency per screen() call (latest message, and the window when there is context):")
    for name, lat in latency.items():
        wall, cpu = lat["wall"], lat["cpu"]
        ok = "PASS" if wall["p99_us"] < TARGET_P99_WALL_US else "FAIL"
        size = f"{lat['calls']:>6} calls, mean {lat['mean_chars']:>8.0f} chars"
        wall_text = f"wall p50 {wall['p50_us']:7.1f} p99 {wall['p99_us']:7.1f} us"
        cpu_text = f"cpu p50 {cpu['p50_us']:7.1f} p99 {cpu['p99_us']:7.1f} us"
        print(f"  {name:<34} {size} | {wall_text} | {cpu_text}  {ok} (target wall p99 < {TARGET_P99_WALL_US:.0f} us)")


def make_screen(config: BenchConfig) -> tuple[SafetyScreen, str | None]:
    """The screen to measure and its artefact's sha256 (None for the lexical screen)."""
    if config.screen == "lexical":
        return LexicalSafetyScreen(), None
    from app.chat.safety.classifier import DEFAULT_MODEL_PATH, LearnedSafetyScreen

    path = config.model or DEFAULT_MODEL_PATH
    return LearnedSafetyScreen.load(path), file_sha256(path)


def main(config: BenchConfig) -> int:
    """Run the benchmark and write the results; returns 0 (targets are reported, not asserted)."""
    started = provenance()
    started["command"] = shlex.join(["python", *sys.argv])
    screen, artefact_sha = make_screen(config)
    sets: dict[str, Any] = {}
    all_targets: list[dict[str, Any]] = []
    latency_calls: dict[str, list[tuple[str, Sequence[str]]]] = {}
    pooled: list[Example] = []
    for name, path, examples in read_sets(config.sets, sets):
        report = evaluate(screen, examples, resamples=config.resamples, seed=config.seed)
        targets = target_rows(name, report)
        print_set(name, report, targets)
        sets[name] = {"file": str(path), "sha256": file_sha256(path), **report}
        all_targets.extend(targets)
        latency_calls[f"{name} items"] = [(ex.text, ex.context) for ex in examples]
        pooled.extend(examples)
        if config.errors == name:
            for item in misclassified(screen, examples):
                print(json.dumps(item, ensure_ascii=False), file=sys.stderr)
    latency: dict[str, dict[str, Any]] = {}
    for name, calls in latency_calls.items():
        latency[name] = measure_latency(screen, calls, config.rounds)
    if pooled:
        typical = long_messages(pooled, dense=False, seed=config.seed + 7)
        latency["~1000-char typical"] = measure_latency(screen, [(t, ()) for t in typical], config.rounds)
    big = big_message()
    latency["100 KB message"] = measure_latency(screen, [(big, ())] * 20, config.rounds)
    print_latency(latency)
    failed = [t for t in all_targets if not t["passed"]]
    print(f"\ntargets: {len(all_targets) - len(failed)} of {len(all_targets)} met (reported, not asserted)")
    result = {
        **started,
        "load_average_after": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "screen": config.screen,
        "artefact_sha256": artefact_sha,
        "resamples": config.resamples,
        "seed": config.seed,
        "sets": sets,
        "latency": latency,
        "latency_target_p99_wall_us": TARGET_P99_WALL_US,
        "targets": all_targets,
    }
    if config.out is not None:
        config.out.parent.mkdir(parents=True, exist_ok=True)
        config.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {config.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_config(BenchConfig, None, __doc__.split("\n")[0], "python benchmarks/safety_bench.py")))
