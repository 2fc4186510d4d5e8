"""How well learned risk classifiers rank risk, before any threshold: ROC AUCs per set, artefacts side by side.

How to run (from the repository root):

    python benchmarks/safety_ranking.py          # the shipped artefact on dev, dev2 and the regression set
    python benchmarks/safety_ranking.py --models shipped /tmp/candidate.joblib --names shipped candidate
    python benchmarks/safety_ranking.py --models /tmp/a.joblib /tmp/b.joblib /tmp/a.joblib+/tmp/b.joblib

``safety_bench.py`` measures a screen at its thresholds. Two artefacts can differ there because one ranks messages
better or only because cross-validation put its thresholds elsewhere; this script separates the two. Per item it takes
the scores the screen decides from: P(elevated) + P(high) and P(high), the highest over the latest message (its
sentence-aligned pieces too when it is long) and, with context, the window of recent messages. Per set and language:

* flagged: AUC of P(elevated) + P(high), risky items against hard negatives (``level == none``, group ``neg.*``);
* high: AUC of P(high), high items against hard negatives;
* high vs elevated: AUC of P(high), high items against elevated ones;
* at the target false-positive rate (issue 12: at most 5% of hard negatives flagged): the share of high items
  flagged at the lowest threshold on P(elevated) + P(high) that flags at most that share of the set's hard negatives,
  and likewise the share judged high by P(high). Each set picks its own best threshold here, so these are upper bounds
  of what any threshold could give this model on that set, not what the shipped thresholds give.

A model given as ``A+B`` (``+`` between artefacts) is the mean of their level probabilities, row by row: how an
ensemble of those artefacts would rank, before anyone builds one.

An AUC is the chance that a random positive scores above a random negative (ties count half). Results go to
``benchmarks/results/safety_ranking.json`` (git SHA, date, machine, each artefact's sha256). The final test set is not
in the default sets: report it once per shipped version with ``safety_bench.py``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from app.chat.safety.classifier import DEFAULT_MODEL_PATH, LearnedSafetyScreen, RiskModel  # noqa: E402
from benchmarks.results_file import provenance, write_results  # noqa: E402
from benchmarks.safety_bench import Example, file_sha256, load_set  # noqa: E402
from training.cli import parse_config  # noqa: E402


@dataclass
class RankingConfig:
    """Command-line options."""

    models: list[str] = field(
        default_factory=lambda: ["shipped"],
        metadata={"help": "artefacts (.joblib), 'shipped' for the default one, or A+B for the mean of artefacts"},
    )
    names: list[str] | None = field(default=None, metadata={"help": "a label per model (default: the file stem)"})
    sets: list[str] = field(
        default_factory=lambda: ["dev", "dev2", "dev3", "regression"],
        metadata={"help": "set names (benchmarks/safety/NAME.jsonl) or paths to .jsonl files"},
    )
    out: str = field(default="safety_ranking", metadata={"help": "results name (benchmarks/results/NAME.json)"})

    def __post_init__(self) -> None:
        if self.names is not None and len(self.names) != len(self.models):
            raise ValueError(f"names: give one per model ({len(self.models)}), got {len(self.names)}")


def auc(positive: npt.NDArray[np.float64], negative: npt.NDArray[np.float64]) -> float | None:
    """Chance that a random positive scores above a random negative (ties half); None when a side is empty."""
    if positive.size == 0 or negative.size == 0:
        return None
    pos, neg = positive[:, None], negative[None, :]
    return round(float(np.mean((pos > neg) + 0.5 * (pos == neg))), 4)


TARGET_FPR = 0.05
"""Issue 12's ceiling on the share of hard negatives flagged."""


def recall_at_fpr(positive: npt.NDArray[np.float64], negative: npt.NDArray[np.float64], max_fpr: float) -> float | None:
    """Share of ``positive`` above the lowest threshold that puts at most ``max_fpr`` of ``negative`` at or above it
    (a score must beat the first negative that would exceed the budget); None when a side is empty."""
    if positive.size == 0 or negative.size == 0:
        return None
    allowed = int(np.floor(max_fpr * negative.size + 1e-9))
    if allowed >= negative.size:
        return 1.0
    bar = np.sort(negative)[::-1][allowed]  # the highest negative that must stay below the threshold
    return round(float(np.mean(positive > bar)), 4)


def scores(models: Sequence[RiskModel], example: Example) -> tuple[float, float]:
    """(P(elevated) + P(high), P(high)), each the highest over the rows the screen decides this item from; with
    several models, of the mean of their level probabilities (the rows are the same: they depend on the text)."""
    rows = [model.rows(example.text[-2 * model.max_chars :], example.context)[0][:, :3] for model in models]
    level = np.mean(rows, axis=0)  # a cascade artefact's first model (its second only raises what that flags)
    return float((level[:, 1] + level[:, 2]).max()), float(level[:, 2].max())


def ranking(models: Sequence[RiskModel], examples: Sequence[Example]) -> dict[str, Any]:
    """The three AUCs, overall and per language."""
    scored = np.array([scores(models, ex) for ex in examples])
    level = np.array([ex.level.value for ex in examples])
    hard = np.array([ex.hard_negative for ex in examples])
    language = np.array([ex.language for ex in examples])

    def block(rows: npt.NDArray[np.bool_]) -> dict[str, float | None]:
        flag, high = scored[rows, 0], scored[rows, 1]
        lv, hn = level[rows], hard[rows]
        return {
            "flagged": auc(flag[lv != "none"], flag[hn]),
            "high": auc(high[lv == "high"], high[hn]),
            "high_vs_elevated": auc(high[lv == "high"], high[lv == "elevated"]),
            "high_flagged_at_target_fpr": recall_at_fpr(flag[lv == "high"], flag[hn], TARGET_FPR),
            "high_as_high_at_target_fpr": recall_at_fpr(high[lv == "high"], high[hn], TARGET_FPR),
        }

    everything = np.ones(len(examples), dtype=bool)
    return {"all": block(everything), **{lang: block(language == lang) for lang in ("en", "zh")}}


def main(config: RankingConfig) -> int:
    started = provenance()
    parts = [[DEFAULT_MODEL_PATH if m == "shipped" else Path(m) for m in spec.split("+")] for spec in config.models]
    names = config.names or ["+".join(p.stem if p != DEFAULT_MODEL_PATH else "shipped" for p in ps) for ps in parts]
    loaded = {path: LearnedSafetyScreen.load(path).model for ps in parts for path in ps}
    models = {name: [loaded[path] for path in ps] for name, ps in zip(names, parts, strict=True)}
    sets = {name: load_set(name) for name in config.sets}
    results: dict[str, Any] = {
        "models": {
            name: [{"path": str(path), "sha256": file_sha256(path)} for path in ps]
            for name, ps in zip(names, parts, strict=True)
        },
        "sets": {},
    }
    print(f"AUC, then high-risk items flagged / judged high at a hard-negative FPR <= {TARGET_FPR} (best threshold)")
    print(f"{'set':<12}{'model':<16}{'scope':<6}{'flagged':>9}{'high':>9}{'high vs elevated':>18}{'at FPR':>16}")
    for set_name, examples in sets.items():
        results["sets"][set_name] = {}
        for name, model in models.items():
            report = ranking(model, examples)
            results["sets"][set_name][name] = report
            for scope, figures in report.items():
                cells = [f"{figures[k]:.3f}" if figures[k] is not None else "n/a" for k in figures]
                at = f"{cells[3]} / {cells[4]}"
                print(f"{set_name:<12}{name:<16}{scope:<6}{cells[0]:>9}{cells[1]:>9}{cells[2]:>18}{at:>16}")
    write_results(config.out, started, results)
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_config(RankingConfig, None, __doc__.split("\n")[0], "python benchmarks/safety_ranking.py")))
