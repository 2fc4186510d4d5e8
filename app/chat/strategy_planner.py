"""The learned Strategy Planner: picks the next reply's support strategy from the conversation, without the LLM.

A ``model``-mode manifest with ``strategy_tag: planner`` prefills the tag this planner chooses (like a requested
strategy), and the fine-tuned model writes the reply under it. It is a multinomial logistic regression over TF-IDF
word 1-2-grams (hashed, :class:`app.chat.safety.features.Featurizer`) of three fields that every path has, a
stateless request as much as a session (none of them is a tag a client never saw):

- the seeker's latest message;
- the supporter's previous reply (what it did last: a question, a suggestion, ...);
- a few shape words: how many supporter replies came before, whether either message asks a question, and the
  latest message's length.

``python -m training.strategy_planner`` trains it (on ESConv train by default) and writes ``strategy_planner.npz``
into a model folder: plain arrays and a JSON report, read back with ``allow_pickle=False`` (no pickled code, no
n-gram text). Nothing here logs or keeps text.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from app.chat.safety.features import Featurizer, prepare
from app.core.messages import Message

PLANNER_FILE = "strategy_planner.npz"
"""The planner's file name inside a model folder."""
FIELDS = ("seeker", "previous", "shape")
FIELD_CHARS = 1500
"""Only the last this-many characters of a message are read."""
FORMAT_VERSION = 1


class PlannerError(RuntimeError):
    """The planner file is missing, unreadable or does not match the catalogue."""


def planner_fields(conversation: Sequence[Message]) -> tuple[str, str, str]:
    """The planner's three inputs for the reply that follows ``conversation`` (system messages are ignored)."""
    turns = [m for m in conversation if m.role != "system"]
    seeker = turns[-1].content if turns and turns[-1].role == "user" else ""
    replies = [m.content for m in turns if m.role == "assistant"]
    previous = replies[-1] if replies else ""
    shape = " ".join(
        (
            f"replies{min(len(replies), 12)}",
            "seekerasks" if "?" in seeker else "seekertells",
            "previousasked" if "?" in previous else "previoustold",
            "noprevious" if not replies else "hasprevious",
            f"length{min(len(seeker.split()) // 8, 6)}",
        )
    )
    return seeker, previous, shape


def field_texts(conversation: Sequence[Message]) -> tuple[str, str, str]:
    """:func:`planner_fields`, normalised for the featurizers."""
    seeker, previous, shape = planner_fields(conversation)
    return prepare(seeker, FIELD_CHARS), prepare(previous, FIELD_CHARS), shape


@dataclass(frozen=True)
class StrategyPlanner:
    """A fitted planner: one featurizer per field, features side by side, one weight row per strategy."""

    featurizers: tuple[Featurizer, Featurizer, Featurizer]
    coef: npt.NDArray[np.float32]
    """(strategies, features)."""
    intercept: npt.NDArray[np.float32]
    strategies: tuple[str, ...]
    report: dict[str, Any]
    """What training measured (cross-validated accuracy, baselines, data hashes); no text."""

    def vector(self, texts: Sequence[str]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """(feature indices, values) of the three prepared field texts."""
        indices, values, offset = [], [], 0
        for featurizer, text in zip(self.featurizers, texts, strict=True):
            idx, val = featurizer.transform(text)
            indices.append(idx + offset)
            values.append(val)
            offset += featurizer.n_features
        return np.concatenate(indices), np.concatenate(values)

    def probabilities(self, conversation: Sequence[Message]) -> dict[str, float]:
        """Each strategy's probability as the next reply's."""
        indices, values = self.vector(field_texts(conversation))
        scores = self.coef[:, indices] @ values + self.intercept
        exp = np.exp(scores - scores.max())
        probs = exp / exp.sum()
        return {name: float(p) for name, p in zip(self.strategies, probs, strict=True)}

    def choose(self, conversation: Sequence[Message]) -> str:
        """The most likely strategy for the reply that follows ``conversation``."""
        probs = self.probabilities(conversation)
        return max(probs, key=probs.__getitem__)

    def save(self, path: Path) -> None:
        arrays: dict[str, Any] = {"coef": self.coef, "intercept": self.intercept}
        for name, featurizer in zip(FIELDS, self.featurizers, strict=True):
            state = featurizer.to_state()
            arrays[f"{name}_keys"] = state["word_keys"]
            arrays[f"{name}_idf"] = state["word_idf"]
        meta = {"format": FORMAT_VERSION, "strategies": list(self.strategies), "report": self.report}
        arrays["meta"] = np.array(json.dumps(meta))
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as fh:
            np.savez_compressed(fh, **arrays)

    @classmethod
    def load(cls, path: Path, catalogue_names: Sequence[str] | None = None) -> StrategyPlanner:
        """Read a planner file; with ``catalogue_names``, every strategy it predicts must be in the catalogue."""
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
            meta = json.loads(str(arrays["meta"]))
            if meta.get("format") != FORMAT_VERSION:
                raise PlannerError(f"{path}: format {meta.get('format')!r}, expected {FORMAT_VERSION}")
            featurizers = (
                _featurizer(arrays, FIELDS[0]),
                _featurizer(arrays, FIELDS[1]),
                _featurizer(arrays, FIELDS[2]),
            )
            strategies = tuple(str(s) for s in meta["strategies"])
            coef = np.asarray(arrays["coef"], dtype=np.float32)
            intercept = np.asarray(arrays["intercept"], dtype=np.float32)
        except FileNotFoundError:
            raise PlannerError(
                f"{path}: no strategy planner (train one: python -m training.strategy_planner --model_dir "
                f"{path.parent})"
            ) from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise PlannerError(f"{path}: not a readable strategy planner ({exc})") from None
        width = sum(f.n_features for f in featurizers)
        if coef.shape != (len(strategies), width) or intercept.shape != (len(strategies),):
            raise PlannerError(f"{path}: weights of shape {coef.shape} do not match {len(strategies)} strategies")
        if catalogue_names is not None:
            unknown = sorted(set(strategies) - set(catalogue_names))
            if unknown:
                raise PlannerError(f"{path}: strategies {unknown} are not in the strategy catalogue")
        return cls(featurizers, coef, intercept, strategies, dict(meta.get("report", {})))


def word_featurizer(keys: npt.NDArray[np.uint64], idf: npt.NDArray[np.float32]) -> Featurizer:
    """A featurizer of word 1-2-grams only (no character block): one planner field."""
    return Featurizer(
        np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.float32), keys, idf, char_ngrams=(1, 1), word_ngrams=(1, 2)
    )


def _featurizer(arrays: dict[str, Any], name: str) -> Featurizer:
    """One field's featurizer from the planner file's arrays (keys checked sorted and unique)."""
    state = word_featurizer(arrays[f"{name}_keys"], arrays[f"{name}_idf"]).to_state()
    return Featurizer.from_state(state)
