"""Accuracy and latency benchmark for the crisis safety screen (app/chat/safety/).

How to run (from the repository root):

    python benchmarks/safety_bench.py               # table, PASS/FAIL, exit 1 when a target fails
    python benchmarks/safety_bench.py --json        # the same numbers as JSON
    python benchmarks/safety_bench.py --errors train  # also list misclassified examples of one split

Data: benchmarks/safety/labelled.jsonl, hand-written before the patterns, one object per line:
``{"text", "lang": "en"|"zh", "label": "high"|"elevated"|"none", "categories": [...],
"kind": "risky"|"safe"|"hard_negative", "split": "train"|"test"}``. The test split (about 30%) was held out
while the patterns were tuned. Metrics, per split and overall:

* recall on high: share of ``label == high`` predicted ``high``;
* recall on elevated: share of ``label == elevated`` predicted ``elevated`` or ``high`` (flagged at all);
* per-category recall: share of risky examples with that category that are flagged and carry the category;
* false-positive rate on hard negatives and on clearly safe messages: share predicted above ``none``;
* latency per ``screen()`` call over many rounds, for the labelled messages and for two sets of ~1,000-character
  messages: "typical" (safe and hard-negative messages joined, one risky message in every fourth) and
  "risk-dense" (random labelled messages joined, about half risky: a near worst case, reported without a
  target). Both the thread's CPU time and wall time are reported.

Targets: recall on high >= 0.95 and FPR on hard negatives <= 0.05 (each split and overall); p99 latency < 1 ms
on the labelled and the typical ~1,000-character messages, by default on CPU time because wall-clock p99 on a
shared machine mostly measures other processes (``--clock wall`` applies it to wall time; on an idle machine the
two agree).
"""

from __future__ import annotations

import gc
import json
import random
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # allow `python benchmarks/safety_bench.py` without installing the package
    sys.path.insert(0, str(ROOT))

from app.chat.safety import CATEGORIES, LexicalSafetyScreen, RiskLevel, SafetyScreen  # noqa: E402
from training.cli import parse_config  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parent / "safety" / "labelled.jsonl"
SPLITS = ("train", "test", "all")
TARGET_HIGH_RECALL = 0.95
TARGET_HARD_NEGATIVE_FPR = 0.05
TARGET_P99_US = 1000.0
STRESS = "~1000-char risk-dense (stress, no target)"


@dataclass(frozen=True)
class Example:
    """One labelled message."""

    text: str
    lang: str
    label: RiskLevel
    categories: tuple[str, ...]
    kind: str
    split: str


@dataclass
class BenchConfig:
    """Command-line options."""

    data: Path = field(default=DEFAULT_DATA, metadata={"help": "labelled JSONL file"})
    rounds: int = field(default=30, metadata={"help": "timing rounds over every message"})
    json: bool = field(default=False, metadata={"help": "print JSON instead of a table"})
    errors: Literal["train", "test", "all"] | None = field(
        default=None, metadata={"help": "list misclassified examples of this split on stderr"}
    )
    clock: Literal["cpu", "wall"] = field(
        default="cpu",
        metadata={"help": "apply the latency target to thread CPU time (robust on shared machines) or wall time"},
    )


def load_labelled(path: Path = DEFAULT_DATA) -> list[Example]:
    """Read and validate the labelled set; a bad line raises ValueError naming the line."""
    examples = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        row = json.loads(line)
        try:
            ex = Example(
                text=row["text"],
                lang=row["lang"],
                label=RiskLevel(row["label"]),
                categories=tuple(row["categories"]),
                kind=row["kind"],
                split=row.get("split", "train"),
            )
        except (KeyError, ValueError) as exc:
            raise ValueError(f"{path}:{lineno}: bad example ({exc})") from exc
        if ex.lang not in ("en", "zh") or ex.kind not in ("risky", "safe", "hard_negative"):
            raise ValueError(f"{path}:{lineno}: lang must be en|zh and kind risky|safe|hard_negative")
        if not set(ex.categories) <= set(CATEGORIES) or ex.split not in ("train", "test"):
            raise ValueError(f"{path}:{lineno}: unknown category or split")
        examples.append(ex)
    return examples


def _ratio(hits: int, total: int) -> float | None:
    return round(hits / total, 4) if total else None


def evaluate(screen: SafetyScreen, examples: Sequence[Example]) -> dict[str, dict[str, Any]]:
    """Accuracy metrics per split ("train", "test", "all"); each value is a share with its count."""
    predictions = [screen.screen(ex.text) for ex in examples]
    report: dict[str, dict[str, Any]] = {}
    for split in SPLITS:
        pairs = [(ex, p) for ex, p in zip(examples, predictions, strict=True) if split in ("all", ex.split)]
        high = [(ex, p) for ex, p in pairs if ex.label is RiskLevel.HIGH]
        elevated = [(ex, p) for ex, p in pairs if ex.label is RiskLevel.ELEVATED]
        hard = [(ex, p) for ex, p in pairs if ex.kind == "hard_negative"]
        safe = [(ex, p) for ex, p in pairs if ex.kind == "safe"]
        risky = [(ex, p) for ex, p in pairs if ex.kind == "risky"]
        metrics: dict[str, Any] = {
            "n": len(pairs),
            "high_recall": _ratio(sum(p.level is RiskLevel.HIGH for _, p in high), len(high)),
            "n_high": len(high),
            "elevated_recall": _ratio(sum(p.flagged for _, p in elevated), len(elevated)),
            "n_elevated": len(elevated),
            "elevated_predicted_high": sum(p.level is RiskLevel.HIGH for _, p in elevated),
            "risky_exact_level": _ratio(sum(p.level is ex.label for ex, p in risky), len(risky)),
            "hard_negative_fpr": _ratio(sum(p.flagged for _, p in hard), len(hard)),
            "n_hard_negative": len(hard),
            "safe_fpr": _ratio(sum(p.flagged for _, p in safe), len(safe)),
            "n_safe": len(safe),
            "category_recall": {},
            "by_lang": {},
        }
        for cat in CATEGORIES:
            with_cat = [(ex, p) for ex, p in risky if cat in ex.categories]
            hit = sum(p.flagged and cat in p.categories for _, p in with_cat)
            metrics["category_recall"][cat] = {"recall": _ratio(hit, len(with_cat)), "n": len(with_cat)}
        for lang in ("en", "zh"):
            lh = [(ex, p) for ex, p in high if ex.lang == lang]
            lhn = [(ex, p) for ex, p in hard if ex.lang == lang]
            metrics["by_lang"][lang] = {
                "high_recall": _ratio(sum(p.level is RiskLevel.HIGH for _, p in lh), len(lh)),
                "n_high": len(lh),
                "hard_negative_fpr": _ratio(sum(p.flagged for _, p in lhn), len(lhn)),
                "n_hard_negative": len(lhn),
            }
        report[split] = metrics
    return report


def misclassified(screen: SafetyScreen, examples: Sequence[Example], split: str) -> list[dict[str, Any]]:
    """Examples of one split whose predicted level differs from the label (for tuning on the train split)."""
    out = []
    for ex in examples:
        if split not in ("all", ex.split):
            continue
        result = screen.screen(ex.text)
        if result.level is not ex.label:
            out.append(
                {
                    "text": ex.text,
                    "label": ex.label.value,
                    "predicted": result.level.value,
                    "predicted_categories": list(result.categories),
                    "kind": ex.kind,
                }
            )
    return out


def long_messages(
    examples: Sequence[Example], count: int = 200, target_chars: int = 1000, *, dense: bool = True
) -> list[str]:
    """Deterministic ~1,000-character messages (about 330 Han characters for Chinese) built from labelled ones.

    ``dense=True`` joins random labelled messages, so roughly half are risky and a third hard negatives: a
    near worst case for the screen. ``dense=False`` joins safe and hard-negative messages and adds one risky
    message to every fourth: closer to a real long message, mostly narrative with at most one disclosure.
    """
    rng = random.Random(7)
    out = []
    for i in range(count):
        lang = "zh" if i % 3 == 2 else "en"
        pool = [ex.text for ex in examples if ex.lang == lang and (dense or ex.kind != "risky")]
        risky = [ex.text for ex in examples if ex.lang == lang and ex.kind == "risky"]
        limit = target_chars // 3 if lang == "zh" else target_chars  # Han text is ~3x denser
        parts: list[str] = []
        while sum(len(p) + 1 for p in parts) < limit:
            parts.append(rng.choice(pool))
        if not dense and i % 4 == 0:
            parts.insert(rng.randrange(len(parts)), rng.choice(risky))
        joined = (" " if lang == "en" else "").join(parts)
        out.append(joined[:limit])
    return out


def _percentiles(samples: list[float]) -> dict[str, float]:
    samples = sorted(samples)
    return {
        "p50_us": round(samples[len(samples) // 2], 1),
        "p99_us": round(samples[min(len(samples) - 1, int(len(samples) * 0.99))], 1),
        "max_us": round(samples[-1], 1),
        "mean_us": round(statistics.fmean(samples), 1),
    }


def measure_latency(screen: SafetyScreen, texts: Sequence[str], rounds: int) -> dict[str, Any]:
    """Per-call latency over ``rounds`` passes (after a warm-up pass), in microseconds.

    ``cpu`` is the calling thread's CPU time (the screen's own cost); ``wall`` also counts time spent waiting for
    a core, which on a shared machine is mostly other processes.
    """
    for text in texts:
        screen.screen(text)
    wall: list[float] = []
    cpu: list[float] = []
    gc.collect()
    for _ in range(rounds):
        for text in texts:
            w0, c0 = time.perf_counter_ns(), time.thread_time_ns()
            screen.screen(text)
            cpu.append((time.thread_time_ns() - c0) / 1000)
            wall.append((time.perf_counter_ns() - w0) / 1000)
    return {
        "calls": len(wall),
        "mean_chars": round(statistics.fmean(len(t) for t in texts), 1),
        "cpu": _percentiles(cpu),
        "wall": _percentiles(wall),
    }


def check_targets(
    report: dict[str, dict[str, Any]], latency: dict[str, dict[str, Any]], clock: str = "cpu"
) -> list[dict[str, Any]]:
    """One row per target and split: name, value, passed. Latency targets use ``clock`` ("cpu" or "wall")."""
    rows = []
    for split in SPLITS:
        m = report[split]
        rows.append(
            {
                "target": f"{split}: recall on high >= {TARGET_HIGH_RECALL}",
                "value": m["high_recall"],
                "passed": m["high_recall"] is not None and m["high_recall"] >= TARGET_HIGH_RECALL,
            }
        )
        rows.append(
            {
                "target": f"{split}: FPR on hard negatives <= {TARGET_HARD_NEGATIVE_FPR}",
                "value": m["hard_negative_fpr"],
                "passed": m["hard_negative_fpr"] is not None and m["hard_negative_fpr"] <= TARGET_HARD_NEGATIVE_FPR,
            }
        )
    for name, lat in latency.items():
        if name == STRESS:
            continue  # reported, not held to the target: see long_messages()
        p99 = lat[clock]["p99_us"]
        rows.append(
            {
                "target": f"{clock} latency p99, {name} < {TARGET_P99_US:.0f} us",
                "value": p99,
                "passed": p99 < TARGET_P99_US,
            }
        )
    return rows


def _fmt(value: float | None) -> str:
    return "  n/a" if value is None else f"{value:.3f}"


def print_table(
    report: dict[str, dict[str, Any]], latency: dict[str, dict[str, Any]], targets: list[dict[str, Any]]
) -> None:
    """Human-readable report."""
    header = f"{'metric':<34}" + "".join(f"{s:>16}" for s in SPLITS)
    print(header)
    print("-" * len(header))

    def row(label: str, key: str, count: str | None = None) -> None:
        cells = ""
        for s in SPLITS:
            m = report[s]
            cell = _fmt(m[key]) + (f" (n={m[count]})" if count else "")
            cells += f"{cell:>16}"
        print(f"{label:<34}{cells}")

    print(f"{'examples':<34}" + "".join(f"{report[s]['n']:>16}" for s in SPLITS))
    row("recall, high", "high_recall", "n_high")
    row("recall, elevated (flagged)", "elevated_recall", "n_elevated")
    print(
        f"{'elevated predicted high (count)':<34}"
        + "".join(f"{report[s]['elevated_predicted_high']:>16}" for s in SPLITS)
    )
    row("exact level, risky", "risky_exact_level")
    for cat in CATEGORIES:
        cells = ""
        for s in SPLITS:
            c = report[s]["category_recall"][cat]
            cell = f"{_fmt(c['recall'])} (n={c['n']})"
            cells += f"{cell:>16}"
        print(f"{'recall, ' + cat:<34}{cells}")
    row("FPR, hard negatives", "hard_negative_fpr", "n_hard_negative")
    row("FPR, safe", "safe_fpr", "n_safe")
    for lang in ("en", "zh"):
        for key, label, count in (
            ("high_recall", "recall, high", "n_high"),
            ("hard_negative_fpr", "FPR, hard negatives", "n_hard_negative"),
        ):
            cells = ""
            for s in SPLITS:
                b = report[s]["by_lang"][lang]
                cell = f"{_fmt(b[key])} (n={b[count]})"
                cells += f"{cell:>16}"
            name = f"  [{lang}] {label}"
            print(f"{name:<34}{cells}")
    print()
    for name, lat in latency.items():
        print(f"latency per message, {name} ({lat['calls']} calls, mean {lat['mean_chars']:.0f} chars):")
        for clock in ("cpu", "wall"):
            p = lat[clock]
            print(
                f"  {clock:<4} p50 {p['p50_us']:8.1f} us   p99 {p['p99_us']:8.1f} us   max {p['max_us']:9.1f} us"
                f"   mean {p['mean_us']:8.1f} us"
            )
    print()
    for t in targets:
        value = t["value"]
        shown = "n/a" if value is None else (f"{value:.1f}" if "latency" in t["target"] else f"{value:.3f}")
        print(f"{'PASS' if t['passed'] else 'FAIL'}  {t['target']:<48} {shown}")


def main(config: BenchConfig) -> int:
    """Run the benchmark; return the process exit status (1 when a target fails)."""
    examples = load_labelled(config.data)
    screen = LexicalSafetyScreen()
    report = evaluate(screen, examples)
    latency = {
        "labelled messages": measure_latency(screen, [ex.text for ex in examples], config.rounds),
        "~1000-char typical": measure_latency(screen, long_messages(examples, dense=False), config.rounds),
        STRESS: measure_latency(screen, long_messages(examples, dense=True), config.rounds),
    }
    targets = check_targets(report, latency, config.clock)
    if config.json:
        print(
            json.dumps(
                {
                    "accuracy": report,
                    "latency": latency,
                    "targets": targets,
                    "config": {k: str(v) for k, v in asdict(config).items()},
                },
                indent=2,
                ensure_ascii=False,
            )
        )
    else:
        print_table(report, latency, targets)
    if config.errors:
        for item in misclassified(screen, examples, config.errors):
            print(json.dumps(item, ensure_ascii=False), file=sys.stderr)
    return 0 if all(t["passed"] for t in targets) else 1


if __name__ == "__main__":
    sys.exit(main(parse_config(BenchConfig, None, __doc__.split("\n")[0], "python benchmarks/safety_bench.py")))
