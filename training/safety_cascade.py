"""Combine two trained risk-classifier artefacts into one cascade: the first flags, the second can raise to high.

How to run (from the repository root; each training run takes about ten minutes on two busy cores)::

    python -m training.safety_classifier --compare_lexical false --oof_out /tmp/d.npz --out /tmp/d/rc.joblib
    python -m training.safety_classifier --compare_lexical false --esconv_supporter true --level_model mlp \\
        --hidden 32 --min_df 10 --ordinary_weight 1 --oof_out /tmp/m.npz --out /tmp/m/rc.joblib
    python -m training.safety_cascade --first /tmp/d/rc.joblib --first_oof /tmp/d.npz \\
        --second /tmp/m/rc.joblib --second_oof /tmp/m.npz --out app/chat/safety/model/risk_classifier.joblib

It pairs two models trained apart, each keeping its own featurizer (docs/safety.md, the thirteenth look: the
shipped logistic regression flags well on its 528,000 n-grams, the hidden layer judges high well on its 176,000).
Procedure:

1. The first run's documents are rebuilt from its artefact's recorded settings (the corpus must still hash the same),
   and both runs' out-of-fold level probabilities are read: the first's for every item, the second's P(high) for the
   same items (the second run's items must include them; its extra items, such as ESConv supporter turns, are not
   scored).
2. The three level thresholds (the first's high and flag, the second's high) are chosen as training chooses them
   (:func:`training.safety_classifier.choose_level_thresholds`: the lowest cost under the first run's caps), the
   second's on the grid from 0.5; the runtime rule is :func:`app.chat.safety.classifier.level_ranks`.
3. The artefact keeps the first's featurizer, and its level and category weights as float16 arrays; the second's
   featurizer, and its hidden layer with the first layer as int8 (one scale per hidden unit). The second's category
   models are not kept: categories are the first's. The data card is the first's with the cascade's section added.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from app.chat.safety.classifier import ARTEFACT_FORMAT, DEFAULT_MODEL_PATH, hidden_layer_w1
from training.cli import parse_config
from training.safety_classifier import (
    Docs,
    OutOfFold,
    SafetyClassifierConfig,
    choose_level_thresholds,
    cost_rows,
    data_card,
    excluded_seed_files,
    level_cost,
    level_rates,
    predicted_levels,
    training_items,
)


@dataclass
class CascadeConfig:
    """Command-line options."""

    first: Path = field(metadata={"help": "the artefact that flags (a logistic-regression level model)"})
    first_oof: Path = field(metadata={"help": "its training run's --oof_out file"})
    second: Path = field(metadata={"help": "the artefact whose P(high) can raise what the first flags (hidden layer)"})
    second_oof: Path = field(metadata={"help": "its training run's --oof_out file"})
    out: Path = field(default=DEFAULT_MODEL_PATH, metadata={"help": "artefact to write (.joblib)"})
    data_card: Path | None = field(default=None, metadata={"help": "data card path; default: DATA_CARD.md by --out"})


def _load(path: Path) -> dict[str, Any]:
    import joblib

    if not path.is_file():
        raise SystemExit(f"{path}: artefact not found")
    data = joblib.load(path)
    if not isinstance(data, dict) or data.get("format") != ARTEFACT_FORMAT:
        raise SystemExit(f"{path}: not a risk classifier artefact of format {ARTEFACT_FORMAT!r}")
    return data


def _run_config(metadata: dict[str, Any]) -> SafetyClassifierConfig:
    """The first run's settings, from its artefact's metadata."""
    recorded = metadata["config"]
    paths = {f.name for f in fields(SafetyClassifierConfig) if "Path" in str(f.type)}
    values: dict[str, Any] = {k: (Path(v) if k in paths and v is not None else v) for k, v in recorded.items()}
    return SafetyClassifierConfig(**values)


def _oof(path: Path) -> tuple[npt.NDArray[np.str_], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(ids, level, level_latest) of a one-setting --oof_out file."""
    if not path.is_file():
        raise SystemExit(f"{path}: out-of-fold file not found (train with --oof_out {path})")
    data = np.load(path)
    if data["level"].shape[0] != 1:
        raise SystemExit(f"{path}: the run cross-validated {data['level'].shape[0]} level settings; pair one")
    return data["ids"], data["level"][0], data["level_latest"][0]


def cascade_oof(ids: Sequence[str], first_oof: Path, second_oof: Path) -> OutOfFold:
    """Four-column out-of-fold level probabilities for ``ids``: the first's three, the second's P(high)."""
    first_ids, first_level, first_latest = _oof(first_oof)
    if list(first_ids) != list(ids):
        raise SystemExit(f"{first_oof}: its items differ from the first run's, rebuilt from its recorded settings")
    second_ids, second_level, second_latest = _oof(second_oof)
    where = {item_id: k for k, item_id in enumerate(second_ids.tolist())}
    missing = [i for i in ids if i not in where]
    if missing:
        raise SystemExit(f"{second_oof}: {len(missing)} of the first run's items are missing (e.g. {missing[0]})")
    rows = np.array([where[i] for i in ids])
    n = len(ids)
    return OutOfFold(
        np.hstack([first_level, second_level[rows, 2:3]]),
        np.zeros((n, 4)),
        np.hstack([first_latest, second_latest[rows, 2:3]]),
        np.zeros((n, 4)),
    )


def _float16_logistic(model: Any) -> dict[str, Any]:
    return {
        "kind": "logistic",
        "coef": np.asarray(model.coef_, dtype=np.float16),
        "intercept": np.asarray(model.intercept_, dtype=np.float32),
    }


def _int8_hidden_layer(arrays: dict[str, Any], featurizer: dict[str, Any]) -> dict[str, Any]:
    """A hidden layer's arrays with ``w1`` as int8 and one scale per hidden unit (the largest weight maps to 127)."""
    w1 = hidden_layer_w1(arrays)
    scale = np.maximum(np.abs(w1).max(axis=0), 1e-12) / 127.0
    quantised = np.clip(np.round(w1 / scale), -127, 127).astype(np.int8)
    return {
        "kind": "mlp",
        "w1": quantised,
        "w1_scale": scale.astype(np.float32),
        "b1": np.asarray(arrays["b1"], dtype=np.float32),
        "w2": np.asarray(arrays["w2"], dtype=np.float32),
        "b2": np.asarray(arrays["b2"], dtype=np.float32),
        "featurizer": featurizer,
    }


def main(config: CascadeConfig) -> dict[str, Any]:
    import joblib

    started = time.perf_counter()
    first, second = _load(config.first), _load(config.second)
    if isinstance(first["level_model"], dict) or not isinstance(second["level_model"], dict):
        raise SystemExit("pair a logistic-regression artefact (--first) with a hidden-layer one (--second)")
    report = dict(first["metadata"])
    run = _run_config(report)
    data = training_items(run, stages=3)
    if data.corpus_sha != report["corpus"]["sha256"]:
        raise SystemExit(f"the corpus now hashes {data.corpus_sha[:12]}, the first run's {report['corpus']['sha256']}")
    items = data.items
    docs = Docs.from_items(items, excluded_seed_files(run.cap_exclude_seeds), run.negation)
    oof = cascade_oof([it["id"] for it in items], config.first_oof, config.second_oof)
    print(f"[2/3] documents and out-of-fold probabilities ready ({len(items)} items)", flush=True)
    level_thresholds, cost = choose_level_thresholds(docs, oof, run.caps())
    pred = predicted_levels(docs, oof, level_thresholds)
    alone = predicted_levels(docs, replace(oof, level=oof.level[:, :3], level_latest=oof.level_latest[:, :3]),
                             replace(level_thresholds, second_high=None))  # fmt: skip
    thresholds = {**first["thresholds"], "high": level_thresholds.high, "flag": level_thresholds.flag,
                  "second_high": level_thresholds.second_high}  # fmt: skip
    rows = cost_rows(docs)
    report["chosen"] = {**report["chosen"], "thresholds": thresholds, "cv_cost": round(cost, 4)}
    report["cascade"] = {
        "second": {
            "path": str(config.second),
            "sha256": hashlib.sha256(config.second.read_bytes()).hexdigest(),
            "config": second["metadata"]["config"],
            "features": second["metadata"]["features"],
        },
        "cv": {**level_rates(docs, pred), "cost": round(cost, 4)},
        "cv_first_alone_at_these_thresholds": {
            **level_rates(docs, alone),
            "cost": round(level_cost(docs.y_level, alone, rows), 4),
        },
        "storage": "first model's weights float16; second model's first layer int8 (one scale per hidden unit)",
    }
    print(f"      thresholds {json.dumps(thresholds)}; CV cost {cost:.4f}; {json.dumps(report['cascade']['cv'])}")
    artefact = {
        **{k: v for k, v in first.items() if k not in ("level_model", "category_models", "thresholds", "metadata")},
        "level_model": _float16_logistic(first["level_model"]),
        "category_models": [
            {k: v for k, v in _float16_logistic(m).items() if k != "kind"} for m in first["category_models"]
        ],
        "second_level_model": _int8_hidden_layer(second["level_model"], second["featurizer"]),
        "thresholds": thresholds,
        "metadata": report,
    }
    config.out.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(artefact, config.out, compress=("lzma", 6))
    size = config.out.stat().st_size
    sha = hashlib.sha256(config.out.read_bytes()).hexdigest()
    card = config.data_card or config.out.parent / "DATA_CARD.md"
    card.write_text(data_card(report, sha, size, config.out), encoding="utf-8")
    print(f"[3/3] wrote {config.out} ({size / 1e6:.2f} MB, sha256 {sha[:12]}) and {card} "
          f"in {time.perf_counter() - started:.0f}s")  # fmt: skip
    return report


def cli(argv: Sequence[str] | None = None) -> int:
    config = parse_config(CascadeConfig, argv, __doc__.split("\n")[0], "python -m training.safety_cascade")
    main(config)
    return 0


if __name__ == "__main__":
    sys.exit(cli())
