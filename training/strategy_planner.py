"""Train the learned Strategy Planner (:mod:`app.chat.strategy_planner`) and put it into a model folder.

How to run (from the repository root; a few minutes on 2 cores)::

    python -m training.strategy_planner --model_dir outputs/sft_esconv/model_repo/sweetiechat-esconv
    python -m training.strategy_planner --out /tmp/planner.npz --limit 2000 --c 1.0 --folds 2   # a quick look

With ``--model_dir`` the planner is written to ``<model_dir>/strategy_planner.npz`` and the folder's ``model.yaml``
gets ``strategy_tag: planner`` (``--set_manifest false`` leaves it alone), so the server prefills the planner's
choice and the fine-tuned model writes the reply under it.

Procedure: every supporter turn of ``--data`` (default ESConv train; ESConv valid is never read here, so
``benchmarks/strategy_tag.py`` can compare planners on valid-dev and ``benchmarks/sft_esconv.py`` measure them on
valid-test) becomes its three fields (:func:`app.chat.strategy_planner.planner_fields`: the seeker's latest
message, the supporter's previous reply, shape words). Grouped k-fold cross-validation (a dialogue's turns stay on
one side) over the ``--c`` grid, the vocabulary and IDF fitted on the training side of each fold; the C with the best
mean accuracy is refitted on every turn. The report (cross-validated accuracy per C beside the majority-class and
chance baselines, the strategy counts, the sha256 of every input) goes into the file and is printed; it holds no
conversation text, and the file holds hashed n-grams only.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from app.chat.safety.features import Featurizer, word_ngram_hashes
from app.chat.strategy_planner import PLANNER_FILE, StrategyPlanner, field_texts, word_featurizer
from app.core.manifest import ManifestError, load_manifest
from app.core.strategies import load_catalogue
from training.cli import parse_config
from training.safety_classifier import to_matrix, vocabulary
from training.sft import sha256_file
from training.sft_data import SftDataError, context_messages, load_sources, sample_targets, targets_of

Matrix = Any  # scipy.sparse.csr_matrix


@dataclass
class PlannerConfig:
    """Settings for ``python -m training.strategy_planner``."""

    model_dir: Path | None = field(
        default=None, metadata={"help": "Model folder (an export): writes strategy_planner.npz there."}
    )
    out: Path | None = field(default=None, metadata={"help": "Planner file to write instead (no manifest change)."})
    set_manifest: bool = field(
        default=True, metadata={"help": "With --model_dir: set strategy_tag: planner in its model.yaml."}
    )
    data: list[str] = field(
        default_factory=lambda: ["esconv:train"],
        metadata={"help": "ServeForEmo JSONL files and/or esconv:train (never esconv:valid: it scores planners)."},
    )
    c: list[float] = field(default_factory=lambda: [0.3, 1.0], metadata={"help": "Logistic regression C grid."})
    folds: int = field(default=4, metadata={"help": "Cross-validation folds (grouped by dialogue)."})
    min_df: int = field(default=2, metadata={"help": "Keep n-grams seen in at least this many training turns."})
    max_iter: int = field(default=2000, metadata={"help": "Logistic regression iterations."})
    limit: int | None = field(default=None, metadata={"help": "Train on a seeded subset of this many turns."})
    seed: int = field(default=0, metadata={"help": "Seed of --limit's subset."})

    def __post_init__(self) -> None:
        if (self.model_dir is None) == (self.out is None):
            raise ValueError("give exactly one of --model_dir (a model folder) or --out (a file)")
        if self.folds < 2:
            raise ValueError("folds: need at least 2")
        if not self.c or any(c <= 0 for c in self.c):
            raise ValueError("c: give one or more positive values")
        if self.min_df < 1:
            raise ValueError("min_df: must be at least 1")
        if any(spec.startswith("esconv:valid") for spec in self.data):
            raise ValueError("data: ESConv valid scores the planner (benchmarks); train on esconv:train")


@dataclass
class Turns:
    """The training turns as the planner sees them."""

    texts: list[tuple[str, str, str]]
    words: list[list[npt.NDArray[np.uint64]]]
    """Per field, per turn: the unique word n-gram hashes (for the vocabulary)."""
    labels: npt.NDArray[np.str_]
    groups: npt.NDArray[np.str_]


def load_turns(config: PlannerConfig) -> tuple[Turns, dict[str, str]]:
    """Every supporter turn of ``config.data`` (or a seeded subset) and the sha256 of every input file."""
    sources = load_sources(config.data, load_catalogue())
    targets = targets_of([d for source in sources for d in source.dialogues])
    if config.limit is not None:
        targets = sample_targets(targets, config.limit, config.seed)
    texts = [field_texts(context_messages(t)) for t in targets]
    words = [[np.unique(word_ngram_hashes(row[i])[0]) for row in texts] for i in range(3)]
    hashes = {str(path): sha256_file(path) for source in sources for path in source.files}
    labels = np.array([t.strategy for t in targets])
    groups = np.array([t.dialogue.id for t in targets])
    return Turns(texts, words, labels, groups), hashes


def fit_featurizers(
    turns: Turns, rows: npt.NDArray[np.int64], min_df: int
) -> tuple[Featurizer, Featurizer, Featurizer]:
    """One word-n-gram featurizer per field, fitted on ``rows``."""

    def one(i: int) -> Featurizer:
        return word_featurizer(*vocabulary(turns.words[i], rows, min_df))

    return one(0), one(1), one(2)


def features(featurizers: Sequence[Featurizer], turns: Turns, rows: npt.NDArray[np.int64]) -> Matrix:
    """The rows' features, built with the runtime's own transform, fields side by side."""
    from scipy.sparse import hstack

    blocks = [to_matrix(f, [turns.texts[r][i] for r in rows]) for i, f in enumerate(featurizers)]
    return hstack(blocks).tocsr()


def fit(turns: Turns, rows: npt.NDArray[np.int64], c: float, config: PlannerConfig) -> tuple[Any, Any]:
    """(featurizers, fitted LogisticRegression) on ``rows``."""
    from sklearn.linear_model import LogisticRegression

    featurizers = fit_featurizers(turns, rows, config.min_df)
    model = LogisticRegression(C=c, max_iter=config.max_iter)
    model.fit(features(featurizers, turns, rows), turns.labels[rows])
    return featurizers, model


def cross_validate(turns: Turns, config: PlannerConfig) -> dict[float, float]:
    """Mean grouped k-fold accuracy per C."""
    from sklearn.model_selection import GroupKFold

    folds = list(GroupKFold(config.folds).split(turns.texts, turns.labels, turns.groups))
    accuracy: dict[float, float] = {}
    for c in config.c:
        scores = []
        for k, (train, test) in enumerate(folds, 1):
            started = time.monotonic()
            featurizers, model = fit(turns, train, c, config)
            predicted = model.predict(features(featurizers, turns, test))
            scores.append(float(np.mean(predicted == turns.labels[test])))
            print(
                f"  C={c:g} fold {k}/{len(folds)}: accuracy {scores[-1]:.3f} ({time.monotonic() - started:.0f} s)",
                flush=True,
            )
        accuracy[c] = float(np.mean(scores))
    return accuracy


def main(config: PlannerConfig) -> dict[str, Any]:
    out = config.out if config.out is not None else Path(str(config.model_dir)) / PLANNER_FILE
    if config.model_dir is not None:
        load_manifest(Path(config.model_dir) / "model.yaml")  # fail before training when it is not a model folder
    print(f"[1/3] reading {', '.join(config.data)}", flush=True)
    turns, hashes = load_turns(config)
    counts = Counter(turns.labels.tolist())
    majority, majority_n = counts.most_common(1)[0]
    print(f"      {len(turns.labels)} supporter turns, {len(counts)} strategies", flush=True)
    print(f"[2/3] {config.folds}-fold cross-validation (grouped by dialogue) over C = {config.c}", flush=True)
    accuracy = cross_validate(turns, config)
    chosen = max(accuracy, key=accuracy.__getitem__)
    print(f"[3/3] refitting with C={chosen:g} on all {len(turns.labels)} turns", flush=True)
    rows = np.arange(len(turns.labels))
    featurizers, model = fit(turns, rows, chosen, config)
    report: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
        "turns": len(turns.labels),
        "strategies": dict(counts.most_common()),
        "cv_accuracy": {f"{c:g}": round(a, 4) for c, a in accuracy.items()},
        "chosen_c": chosen,
        "majority_baseline": {"strategy": majority, "accuracy": round(majority_n / len(turns.labels), 4)},
        "chance_baseline": round(1 / len(counts), 4),
        "inputs_sha256": hashes,
    }
    coef, intercept = np.asarray(model.coef_, dtype=np.float32), np.asarray(model.intercept_, dtype=np.float32)
    if len(model.classes_) == 2:  # one binary row: softmax over (-s/2, s/2) is the sigmoid of s
        coef, intercept = np.vstack([-coef / 2, coef / 2]), np.concatenate([-intercept / 2, intercept / 2])
    planner = StrategyPlanner(
        featurizers,
        coef,
        intercept,
        tuple(str(s) for s in model.classes_),
        report,
    )
    planner.save(out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    if config.model_dir is not None and config.set_manifest:
        from training.export import write_manifest

        folder = Path(config.model_dir)
        manifest = load_manifest(folder / "model.yaml")
        write_manifest(folder, manifest.model_copy(update={"strategy_tag": "planner"}))
        print(f"set strategy_tag: planner in {folder / 'model.yaml'}")
    print(
        "cross-validated accuracy: "
        + ", ".join(f"C={c} {a:.1%}" for c, a in report["cv_accuracy"].items())
        + f" (majority '{majority}' {majority_n / len(turns.labels):.1%}, chance {1 / len(counts):.1%})"
    )
    return report


def cli(argv: Sequence[str] | None = None) -> int:
    config = parse_config(PlannerConfig, argv, description=__doc__, prog="python -m training.strategy_planner")
    try:
        main(config)
    except (SftDataError, ManifestError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(cli())
