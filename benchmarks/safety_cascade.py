"""How a cascade of two risk-classifier artefacts would judge: one flags, the other can raise what it flags to high.

How to run (from the repository root):

    python benchmarks/safety_cascade.py --second /tmp/hidden.joblib          # the shipped artefact flags
    python benchmarks/safety_cascade.py --first /tmp/a.joblib --second /tmp/b.joblib --second_high 0.9

``python -m training.safety_cascade`` pairs two trained artefacts into one, with thresholds chosen by
cross-validation, which ``safety_bench.py`` then measures like any other. This script measures a pair before anyone
builds it: it gives the first artefact's model the second's as its second level model, in memory, and screens with
the runtime (:class:`~app.chat.safety.classifier.LearnedSafetyScreen`), at the first artefact's thresholds plus
``second_high`` (default: the second artefact's own high threshold). The rule is the runtime's
(``app.chat.safety.classifier.level_ranks``): high when the first's P(high) passes its threshold, or when the first
flags and the second's P(high) passes ``second_high``. Categories are the first artefact's.

The figures are ``safety_bench.py``'s, with the same 95% bootstrap intervals, per set and language, next to the first
artefact alone. Results go to ``benchmarks/results/safety_cascade.json`` (git SHA, date, machine, each artefact's
sha256). The final test set is not in the default sets: report it once per shipped version with ``safety_bench.py``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from app.chat.safety.classifier import DEFAULT_MODEL_PATH, LearnedSafetyScreen, RiskModel  # noqa: E402
from benchmarks.results_file import provenance, write_results  # noqa: E402
from benchmarks.safety_bench import evaluate, file_sha256, load_set  # noqa: E402
from training.cli import parse_config  # noqa: E402


@dataclass
class CascadeConfig:
    """Command-line options."""

    second: Path = field(metadata={"help": "the artefact whose P(high) can raise what the first flags to high"})
    first: Path | None = field(default=None, metadata={"help": "the artefact that flags (default: the shipped one)"})
    second_high: float | None = field(
        default=None, metadata={"help": "the second's P(high) threshold (default: its own high threshold)"}
    )
    sets: list[str] = field(
        default_factory=lambda: ["dev", "dev2", "dev3", "regression"],
        metadata={"help": "set names (benchmarks/safety/NAME.jsonl) or paths to .jsonl files"},
    )
    resamples: int = field(default=1000, metadata={"help": "bootstrap resamples per figure"})
    out: str = field(default="safety_cascade", metadata={"help": "results name (benchmarks/results/NAME.json)"})

    def __post_init__(self) -> None:
        if self.second_high is not None and not 0.0 < self.second_high <= 1.0:
            raise ValueError("second_high: must be in (0, 1]")
        if self.resamples < 1:
            raise ValueError("resamples: must be at least 1")


def paired(first: RiskModel, second: RiskModel, second_high: float) -> LearnedSafetyScreen:
    """A screen of ``first`` with ``second`` as its second level model, as a paired artefact would load."""
    thresholds = replace(first.thresholds, second_high=second_high)
    model = RiskModel(first.featurizer, first.weights, first.bias, thresholds, first.max_chars, first.hidden, second)
    return LearnedSafetyScreen(model)


def _row(report: dict[str, Any]) -> str:
    keys = ("high_flagged", "high_as_high", "elevated_flagged", "hard_negative_fpr")
    return " / ".join(f"{report[k]['value']:.3f}" for k in keys) + f", cost {report['level_cost']:.3f}"


def main(config: CascadeConfig) -> int:
    started = provenance()
    first_path = config.first or DEFAULT_MODEL_PATH
    first = LearnedSafetyScreen.load(first_path).model
    second = LearnedSafetyScreen.load(config.second).model
    if first.second is not None or second.second is not None:
        raise SystemExit("each artefact must have one level model: an artefact with a second one is a cascade already")
    second_high = config.second_high if config.second_high is not None else second.thresholds.high
    cascade = paired(first, second, second_high)
    results: dict[str, Any] = {
        "first": {"path": str(first_path), "sha256": file_sha256(first_path), **first.thresholds.to_dict()},
        "second": {"path": str(config.second), "sha256": file_sha256(config.second), "second_high": second_high},
        "resamples": config.resamples,
        "sets": {},
    }
    print("high flagged / as high / elevated flagged / hard-negative FPR, then level cost")
    for name in config.sets:
        examples = load_set(name)
        report = {
            "cascade": evaluate(cascade, examples, resamples=config.resamples),
            "first_alone": evaluate(LearnedSafetyScreen(first), examples, resamples=config.resamples),
        }
        results["sets"][name] = report
        print(f"{name:<12} first alone  {_row(report['first_alone'])}")
        print(f"{name:<12} cascade      {_row(report['cascade'])}")
    write_results(config.out, started, results)
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_config(CascadeConfig, None, __doc__.split("\n")[0], "python benchmarks/safety_cascade.py")))
