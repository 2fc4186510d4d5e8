"""The learned risk screen, :class:`LearnedSafetyScreen`: small models over character and word n-grams.

The artefact ``model/risk_classifier.joblib`` (built by ``python -m training.safety_classifier``; see
``model/DATA_CARD.md`` for the data, the procedure and the cross-validated numbers) holds:

* a fitted :class:`~app.chat.safety.features.Featurizer` vocabulary (TF-IDF over character 1-4-grams and word
  1-2-grams, English and Chinese alike), as 64-bit hashes of the n-grams, never their text;
* a model for the level (none / elevated / high): a multinomial logistic regression, or one hidden layer of ReLU
  units over the same features (:class:`HiddenLayer`; ``model/DATA_CARD.md`` says which one ships); and one binary
  logistic regression per category (suicide, self_harm, harm_to_others, abuse), trained on risky messages;
* optionally a second level model, a hidden layer with its own featurizer (two artefacts paired by ``python -m
  training.safety_cascade``), that only judges high: it can raise a message the first model flags to ``high``, never
  flag one itself, and is scored only for flagged messages (docs/safety.md, thirteenth look and pass; the shipped
  artefact has none);
* decision thresholds chosen by cross-validation, biased toward recall on ``high``: the level is ``high`` when
  P(high) >= ``high``, else ``elevated`` when P(elevated) + P(high) >= ``flag``, else ``none``; with a second model, a
  flagged message is also ``high`` when the second model's P(high) >= ``second_high``. The categories are those whose
  probability passes their threshold, or the most probable one when none does.

:meth:`LearnedSafetyScreen.screen` judges the latest message alone and the window of recent context plus the latest
message (newest last, the last :data:`~app.chat.safety.features.MAX_CHARS` characters), and returns the higher
verdict, so risk spread over several messages is seen and risk in the latest message is never diluted by a long
context. A message longer than :data:`~app.chat.safety.features.CHUNK_CHARS` is also judged in sentence-aligned
pieces of about that size, so one risky sentence at the end of a long narrative is not diluted either. Only the
last few thousand characters of anything are read: a 100 KB message costs what a 3,000-character one does (about a
millisecond on one core).

The model is loaded once, at start-up, by :meth:`LearnedSafetyScreen.load`; a missing file or one made by an
incompatible scikit-learn fails there with :class:`SafetyModelError` naming the file. Scoring is a sparse dot product
(and, with a hidden layer, a small dense one) in numpy; scikit-learn is needed only to read the artefact. Nothing
here logs or keeps message text.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from app.chat.safety.features import (
    CHUNK_CHARS,
    MAX_CHARS,
    Featurizer,
    join_window,
    piece_starts,
    piece_weights,
    prepare,
)
from app.chat.safety.text import detect_language
from app.chat.safety.types import CATEGORIES, RiskLevel, SafetyResult

DEFAULT_MODEL_PATH = Path(__file__).resolve().parent / "model" / "risk_classifier.joblib"
ARTEFACT_FORMAT = "sweetiechat-risk-classifier/2"
"""Format 2: word n-grams are kept as hashes, like character n-grams (format 1 kept them as strings)."""
LEVELS: tuple[RiskLevel, ...] = (RiskLevel.NONE, RiskLevel.ELEVATED, RiskLevel.HIGH)
_RETRAIN = "rebuild it with `python -m training.safety_classifier`"


class SafetyModelError(RuntimeError):
    """The risk classifier artefact is missing, unreadable or incompatible; the message names the file."""


@dataclass(frozen=True)
class Thresholds:
    """Decision thresholds (probabilities) chosen by cross-validation."""

    high: float
    flag: float
    categories: tuple[float, ...]
    second_high: float | None = None
    """The second level model's P(high) that makes a flagged message high (None: no second model)."""

    def to_dict(self) -> dict[str, Any]:
        out = {"high": self.high, "flag": self.flag, "categories": dict(zip(CATEGORIES, self.categories, strict=True))}
        if self.second_high is not None:
            out["second_high"] = self.second_high
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Thresholds:
        cats = raw["categories"]
        second = raw.get("second_high")
        return cls(
            float(raw["high"]),
            float(raw["flag"]),
            tuple(float(cats[c]) for c in CATEGORIES),
            None if second is None else float(second),
        )


def level_ranks(level_probs: npt.NDArray[np.floating[Any]], thresholds: Thresholds) -> npt.NDArray[np.int64]:
    """Per row of level probabilities, 0 (none), 1 (elevated) or 2 (high).

    A row is P(none), P(elevated), P(high), then, with a second level model, that model's P(high). High when
    P(high) >= ``high``; else elevated when P(elevated) + P(high) >= ``flag``; a flagged row is also high when the
    second model's P(high) >= ``second_high``."""
    high = level_probs[:, 2] >= thresholds.high
    flagged = high | (level_probs[:, 1] + level_probs[:, 2] >= thresholds.flag)
    if thresholds.second_high is not None:
        high |= flagged & (level_probs[:, 3] >= thresholds.second_high)
    return np.where(high, 2, np.where(flagged, 1, 0)).astype(np.int64)


def decide(
    level_probs: npt.NDArray[np.floating[Any]], category_probs: npt.NDArray[np.floating[Any]], thresholds: Thresholds
) -> tuple[RiskLevel, tuple[str, ...]]:
    """Level and categories from the model's probabilities (a row of :func:`level_ranks`, and P(category) each)."""
    if level_probs[2] >= thresholds.high:
        level = RiskLevel.HIGH
    elif level_probs[1] + level_probs[2] >= thresholds.flag:
        second = thresholds.second_high
        level = RiskLevel.HIGH if second is not None and level_probs[3] >= second else RiskLevel.ELEVATED
    else:
        return RiskLevel.NONE, ()
    categories = tuple(c for c, p, t in zip(CATEGORIES, category_probs, thresholds.categories, strict=True) if p >= t)
    if not categories:
        categories = (CATEGORIES[int(np.argmax(category_probs))],)
    return level, categories


def decide_rows(
    level_probs: npt.NDArray[np.floating[Any]], category_probs: npt.NDArray[np.floating[Any]], thresholds: Thresholds
) -> tuple[RiskLevel, tuple[str, ...]]:
    """:func:`decide` on each row (the whole text and its pieces), then the :func:`higher` of all rows: the highest
    level, and the union of the categories of the rows at that level. Vectorised: one call, not one per piece."""
    rank = level_ranks(level_probs, thresholds)
    top = int(rank.max())
    if top == 0:
        return RiskLevel.NONE, ()
    probs = category_probs[rank == top]
    passed = probs >= np.asarray(thresholds.categories)
    fallback = ~passed.any(axis=1)  # a row where no category passes takes its most probable one
    passed[np.flatnonzero(fallback), probs[fallback].argmax(axis=1)] = True
    chosen = passed.any(axis=0)
    return (RiskLevel.HIGH if top == 2 else RiskLevel.ELEVATED), tuple(
        c for c, on in zip(CATEGORIES, chosen.tolist(), strict=True) if on
    )


def higher(a: SafetyResult, b: SafetyResult) -> SafetyResult:
    """The higher of two verdicts on the same message; on a tie above ``none``, the union of their categories."""
    if a.level.rank != b.level.rank:
        return a if a.level.rank > b.level.rank else b
    if a.level is RiskLevel.NONE or a.categories == b.categories:
        return a
    merged = tuple(c for c in CATEGORIES if c in a.categories or c in b.categories)
    return SafetyResult(level=a.level, categories=merged, language=a.language)


@dataclass(frozen=True)
class HiddenLayer:
    """The level model's hidden layer, when it has one (``--level_model mlp``): the first ``size`` columns of the
    features' dot product (plus bias) are its pre-activations, and the level logits are ``relu(h) @ w2 + b2``."""

    w2: npt.NDArray[np.float64]
    """(size, 3): hidden units to the level logits (none, elevated, high); float64, as the logits are."""
    b2: npt.NDArray[np.float64]

    @property
    def size(self) -> int:
        return int(self.w2.shape[0])


class RiskModel:
    """Featurizer + weights + thresholds: text in, probabilities out. Stateless after construction.

    ``weights`` has one row per feature: the level columns (3 logits, or a hidden layer's pre-activations), then the
    4 category logits (none for a model that only judges the level), so one row gather serves both models.

    ``second``, when set, is another level model with its own featurizer (``python -m training.safety_cascade``): it
    can raise a message this model flags to high. Level rows are then
    P(none), P(elevated), P(high), and the second model's P(high), which is computed only for a message this model
    flags (0 otherwise: it could not change the verdict)."""

    max_chars: int
    second: RiskModel | None

    def __init__(
        self,
        featurizer: Featurizer,
        weights: npt.NDArray[np.float32],
        bias: npt.NDArray[np.float32],
        thresholds: Thresholds,
        max_chars: int = MAX_CHARS,
        hidden: HiddenLayer | None = None,
        second: RiskModel | None = None,
        categories: bool = True,
    ) -> None:
        if (second is None) != (thresholds.second_high is None):
            raise ValueError("a second level model and the second_high threshold come together")
        if second is not None and (second.max_chars != max_chars or second.second is not None):
            raise ValueError("the second level model must read the same text and have no second model itself")
        level_width = len(LEVELS) if hidden is None else hidden.size
        expected = (featurizer.n_features, level_width + (len(CATEGORIES) if categories else 0))
        if weights.shape != expected:
            raise ValueError(f"weights have shape {weights.shape}, expected {expected}")
        self.featurizer = featurizer
        _ = featurizer.index  # the lookup table (~40 ms to build): now, not on the first message screened
        self.weights = np.ascontiguousarray(weights, dtype=np.float32)
        self.bias = np.asarray(bias, dtype=np.float32)
        self.thresholds = thresholds
        self.max_chars = max_chars
        self.hidden = hidden
        self.second = second
        self._level_width = level_width

    def _probabilities(
        self, logits: npt.NDArray[np.float64]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Rows of raw outputs (k, width) to level (k, 3) and category (k, 4; k, 0 for a level-only model)
        probabilities."""
        level = logits[:, : self._level_width]
        if self.hidden is not None:
            level = np.maximum(level, 0.0) @ self.hidden.w2 + self.hidden.b2
        level = level - level.max(axis=1, keepdims=True)
        level_probs = np.exp(level) / np.exp(level).sum(axis=1, keepdims=True)
        return level_probs, 1.0 / (1.0 + np.exp(-logits[:, self._level_width :]))

    def probabilities(self, text: str) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """(P(none), P(elevated), P(high)) and P(category) for the last ``max_chars`` characters of ``text``."""
        indices, values = self.featurizer.transform(prepare(text, self.max_chars))
        logits = self.bias.astype(np.float64)
        if indices.size:
            logits = logits + values @ np.take(self.weights, indices, axis=0)
        level, category = self._probabilities(logits[None, :])
        return level[0], category[0]

    def long_text_probabilities(self, text: str) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Level (k + 1, 3) and category (k + 1, 4) probabilities of a long text: row 0 for the whole text (its last
        ``max_chars`` characters), rows 1.. for its k pieces (see ``piece_starts``), from one pass over the text."""
        norm = prepare(text, self.max_chars)
        starts = piece_starts(norm)
        k = len(starts)
        logits = np.tile(self.bias.astype(np.float64), (k + 1, 1))
        piece, indices, counts = self.featurizer.piece_counts(norm, starts)
        if indices.size:
            idf = np.take(self.featurizer.all_idf, indices)
            # the whole text's counts are the pieces' counts summed per feature (each piece's features ascend, so a
            # stable sort merges them cheaply); ``inverse`` maps each (piece, feature) to its column
            order = np.argsort(indices, kind="stable")
            ordered = indices[order]
            new = np.concatenate(([True], ordered[1:] != ordered[:-1]))
            features = ordered[new]
            inverse = np.empty(indices.size, dtype=np.int64)
            inverse[order] = np.cumsum(new) - 1
            whole_idf = np.empty(features.size, dtype=np.float32)
            whole_idf[inverse] = idf
            whole_counts = np.bincount(inverse, weights=counts).astype(np.int64)
            # TF-IDF rows (whole text, then each piece) over the text's features, each block (character, word)
            # L2-normalised on its own, times the features' weights
            n_char = self.featurizer.char_keys.size
            whole_block = (features >= n_char).astype(np.int64)
            piece_block = 2 * piece + (indices >= n_char)
            tfidf = np.zeros((k + 1) * features.size, dtype=np.float32)
            tfidf[: features.size] = piece_weights(whole_counts, whole_idf, whole_block, 2)
            tfidf[(piece + 1) * features.size + inverse] = piece_weights(counts, idf, piece_block, 2 * k)
            rows = np.take(self.weights, features, axis=0)  # np.take: about 3x faster than [] for a row gather
            logits += tfidf.reshape(k + 1, features.size) @ rows
        return self._probabilities(logits)

    def rows(self, latest: str, context: Sequence[str] = ()) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Every (level, category) probability row the screen decides from: the latest message, and its pieces when
        it is long (:meth:`long_text_probabilities`); then, with context, the window of recent messages and it.

        ``latest`` is what the screen reads of the message (at most twice ``max_chars`` of its tail)."""
        if len(latest) <= CHUNK_CHARS:
            level, category = (probs[None, :] for probs in self.probabilities(latest))
        else:  # a long message: judged whole and piece by piece, so one risky sentence is not diluted
            level, category = self.long_text_probabilities(latest)
        if context and len(latest) < self.max_chars:
            window = self.probabilities(join_window(context, latest, self.max_chars))
            level, category = np.vstack([level, window[0]]), np.vstack([category, window[1]])
        if self.second is not None:  # its P(high) as a fourth column; only a flagged message needs it
            level = np.hstack([level, np.zeros((level.shape[0], 1))])
            if level_ranks(level, self.thresholds).any():
                level[:, 3] = self.second.rows(latest, context)[0][:, 2]
        return level, category

    @classmethod
    def from_artefact(cls, data: dict[str, Any]) -> RiskModel:
        """Build from the artefact's dict.

        ``level_model``: a fitted scikit-learn logistic regression, its plain arrays (``{"kind": "logistic", "coef",
        "intercept"}``), or a hidden layer's (``{"kind": "mlp", "w1", "b1", "w2", "b2"}``, ``w1`` float16, or int8
        with a ``w1_scale`` per hidden unit). ``category_models``: four fitted binary logistic regressions, or their
        plain arrays (``{"coef", "intercept"}``). ``second_level_model``, when present: a hidden layer's arrays with
        its own ``featurizer``."""
        category_models = data["category_models"]
        if len(category_models) != len(CATEGORIES):
            raise ValueError(f"expected {len(CATEGORIES)} category models, got {len(category_models)}")
        columns, bias, hidden = _level_columns(data["level_model"])
        for model in category_models:
            coef, intercept = _logistic_arrays(model)
            columns.append(coef.reshape(1, -1).T)
            bias.append(intercept.reshape(1))
        max_chars = int(data.get("max_chars", MAX_CHARS))
        second: RiskModel | None = None
        if data.get("second_level_model") is not None:
            arrays = data["second_level_model"]
            if not isinstance(arrays, dict) or arrays.get("kind") != "mlp" or "featurizer" not in arrays:
                raise ValueError("second_level_model: expected a hidden layer's arrays with its own featurizer")
            second_columns, second_bias, second_hidden = _level_columns(arrays)
            second = cls(
                Featurizer.from_state(arrays["featurizer"]),
                np.hstack(second_columns).astype(np.float32),
                np.concatenate(second_bias).astype(np.float32),
                Thresholds(1.0, 1.0, ()),  # never decides: the first model's thresholds do
                max_chars,
                second_hidden,
                categories=False,
            )
        return cls(
            Featurizer.from_state(data["featurizer"]),
            np.hstack(columns).astype(np.float32),
            np.concatenate(bias).astype(np.float32),
            Thresholds.from_dict(data["thresholds"]),
            max_chars,
            hidden,
            second,
        )


def hidden_layer_w1(arrays: dict[str, Any]) -> npt.NDArray[np.float32]:
    """A hidden layer's first-layer weights (features, hidden) as float32: stored as float16, or as int8 with one
    scale per hidden unit (``w1_scale``)."""
    w1 = np.asarray(arrays["w1"])
    if w1.dtype == np.int8:
        return np.asarray(w1.astype(np.float32) * np.asarray(arrays["w1_scale"], dtype=np.float32), dtype=np.float32)
    return w1.astype(np.float32)


def _logistic_arrays(model: Any) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(coef, intercept) of a fitted scikit-learn logistic regression, or of its plain arrays."""
    if isinstance(model, dict):
        return np.asarray(model["coef"], dtype=np.float64), np.asarray(model["intercept"], dtype=np.float64)
    return np.asarray(model.coef_, dtype=np.float64), np.asarray(model.intercept_, dtype=np.float64)


def _level_columns(
    model: Any,
) -> tuple[list[npt.NDArray[np.float64]], list[npt.NDArray[np.float64]], HiddenLayer | None]:
    """A level model's weight columns and bias, and its hidden layer's output side when it has one."""
    if isinstance(model, dict) and model.get("kind") == "mlp":
        w2 = np.asarray(model["w2"], dtype=np.float64)
        if w2.ndim != 2 or w2.shape[1] != len(LEVELS):
            raise ValueError(f"hidden layer w2 has shape {w2.shape}, expected (hidden, 3)")
        hidden = HiddenLayer(w2, np.asarray(model["b2"], dtype=np.float64))
        return [hidden_layer_w1(model).astype(np.float64)], [np.asarray(model["b1"], dtype=np.float64)], hidden
    if isinstance(model, dict) and model.get("kind") != "logistic":
        raise ValueError(f"unknown level model kind {model.get('kind')!r}")
    if not isinstance(model, dict) and [int(c) for c in model.classes_] != list(range(len(LEVELS))):
        raise ValueError(f"level model classes {list(model.classes_)} are not 0, 1, 2 (none/elevated/high)")
    coef, intercept = _logistic_arrays(model)
    if coef.shape[0] != len(LEVELS):
        raise ValueError(f"level model coef has {coef.shape[0]} rows, expected 3 (none/elevated/high)")
    return [coef.T], [intercept], None


class LearnedSafetyScreen:
    """Default :class:`~app.chat.safety.types.SafetyScreen`: the learned risk classifier.

    Create it with :meth:`load` (reads the artefact once); then :meth:`screen` is thread-safe and never logs or
    keeps text.
    """

    def __init__(self, model: RiskModel, metadata: dict[str, Any] | None = None) -> None:
        self.model = model
        self.metadata = dict(metadata or {})
        """Provenance from the artefact (corpus sha256, CV metrics, versions); holds no message text."""

    @classmethod
    def load(cls, path: str | Path | None = None) -> LearnedSafetyScreen:
        """Read the artefact (default: the one shipped in ``app/chat/safety/model/``); :class:`SafetyModelError`
        naming the file when it is missing, unreadable, of another format, or made by an incompatible
        scikit-learn (another major version, or one this scikit-learn cannot unpickle)."""
        path = Path(path) if path is not None else DEFAULT_MODEL_PATH
        if not path.is_file():
            raise SafetyModelError(f"{path}: risk classifier artefact not found; {_RETRAIN}")
        data = _read(path)
        try:
            model = RiskModel.from_artefact(data)
        except (KeyError, AttributeError, TypeError, ValueError) as exc:
            raise SafetyModelError(f"{path}: not a usable risk classifier artefact ({exc}); {_RETRAIN}") from None
        return cls(model, data.get("metadata"))

    def screen(self, text: str, context: Sequence[str] = ()) -> SafetyResult:
        """Screen the latest user message, alone and together with the recent context (oldest first).

        Returns the highest verdict over :meth:`RiskModel.rows` (the message, its pieces when long, the window with
        its context). ``language`` is detected from the latest message's script.
        """
        latest = text[-2 * self.model.max_chars :]
        language = detect_language(latest)
        if not latest.strip():
            return SafetyResult(language=language)
        level_rows, category_rows = self.model.rows(latest, context)
        if len(level_rows) == 1:  # a short message without context (most of them): the scalar decision is quicker
            level, categories = decide(level_rows[0], category_rows[0], self.model.thresholds)
        else:
            level, categories = decide_rows(level_rows, category_rows, self.model.thresholds)
        return SafetyResult(level=level, categories=categories, language=language)


def _read(path: Path) -> dict[str, Any]:
    """Unpickle the artefact; any version or format problem becomes a :class:`SafetyModelError` naming ``path``."""
    try:
        import joblib
        import sklearn
        from sklearn.exceptions import InconsistentVersionWarning
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise SafetyModelError(
            f"{path}: scikit-learn and joblib are needed to read the risk classifier ({exc})"
        ) from None
    installed = str(sklearn.__version__)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InconsistentVersionWarning)  # judged below, by major version
        try:
            data = joblib.load(path)
        except Exception as exc:
            raise SafetyModelError(
                f"{path}: cannot be read with scikit-learn {installed} ({type(exc).__name__}: {exc}); {_RETRAIN}"
            ) from None
    if not isinstance(data, dict) or data.get("format") != ARTEFACT_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise SafetyModelError(f"{path}: format {found!r}, expected {ARTEFACT_FORMAT!r}; {_RETRAIN}")
    made_by = str(data.get("sklearn_version", "unknown"))
    if made_by.split(".")[0] != installed.split(".")[0]:
        raise SafetyModelError(
            f"{path}: made by scikit-learn {made_by}, incompatible with the installed {installed}; {_RETRAIN}"
        )
    return data
