"""The risk screen's level model with one hidden layer (``python -m training.safety_classifier --level_model mlp``).

A logistic regression over n-grams gives each n-gram one weight per level, so an n-gram that appears in more hard
negatives than crisis messages ("轻生" in "不再想轻生", "新闻里有人轻生") ends up pulling toward ``none`` even in
"我想轻生".
A hidden layer lets the model combine features (a risk phrase with or without a negation, a third person or a news
frame), at the price of more weights. The network is the smallest that can do that: the TF-IDF row (the runtime's own
features) times ``w1`` plus ``b1``, a ReLU, then ``w2``/``b2`` to the three level logits. It trains with PyTorch
(``EmbeddingBag`` over the sparse rows, weighted cross-entropy, Adam, dropout on the hidden units) and exports plain
arrays, so the runtime (``app.chat.safety.classifier.HiddenLayer``) scores it in numpy without PyTorch.

The class follows the part of the scikit-learn estimator API that cross-validation uses (``fit`` with
``sample_weight``, ``predict_proba``, ``classes_``); :meth:`HiddenLayerClassifier.export` gives the artefact's arrays.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from app.chat.safety.classifier import hidden_layer_w1

Matrix = Any  # scipy.sparse.csr_matrix


@dataclass
class HiddenLayerClassifier:
    """A one-hidden-layer network over sparse TF-IDF rows, for the three risk levels."""

    hidden: int = 64
    epochs: int = 2
    dropout: float = 0.5
    learning_rate: float = 2e-3
    batch_size: int = 256
    seed: int = 0
    threads: int = 1
    quiet: bool = True
    classes_: npt.NDArray[np.int64] = field(init=False, default_factory=lambda: np.zeros(0, np.int64))
    _arrays: dict[str, npt.NDArray[np.float32]] = field(init=False, default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.hidden < 1 or self.epochs < 1 or self.batch_size < 1:
            raise ValueError("hidden, epochs, batch_size: must be at least 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("dropout: must be in [0, 1)")

    def fit(
        self, x: Matrix, y: npt.NDArray[np.int64], sample_weight: npt.NDArray[np.float64] | None = None
    ) -> HiddenLayerClassifier:
        """Train on CSR rows ``x`` with labels 0..2 (none, elevated, high) and per-row weights."""
        import torch

        torch.set_num_threads(self.threads)
        torch.manual_seed(self.seed)
        x = x.tocsr()
        n, n_features = x.shape
        self.classes_ = np.unique(y).astype(np.int64)
        if self.classes_.tolist() != [0, 1, 2]:
            raise ValueError(f"labels must cover 0, 1, 2 (none, elevated, high); got {self.classes_.tolist()}")
        weights = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        w1 = torch.nn.EmbeddingBag(n_features, self.hidden, mode="sum")
        torch.nn.init.normal_(w1.weight, std=0.02)
        b1 = torch.nn.Parameter(torch.zeros(self.hidden))
        out = torch.nn.Linear(self.hidden, 3)
        optimiser = torch.optim.Adam([w1.weight, b1, *out.parameters()], lr=self.learning_rate)
        row_weight = torch.from_numpy((weights / weights.mean()).astype(np.float32))
        labels = torch.from_numpy(np.asarray(y, dtype=np.int64))
        for epoch in range(self.epochs):
            started, total = time.perf_counter(), 0.0
            order = np.random.default_rng(self.seed + epoch).permutation(n)
            for start in range(0, n, self.batch_size):
                batch = order[start : start + self.batch_size]
                hidden = torch.relu(_bag(w1, x[batch]) + b1)
                hidden = torch.nn.functional.dropout(hidden, self.dropout, training=True)
                losses = torch.nn.functional.cross_entropy(out(hidden), labels[batch], reduction="none")
                loss = (losses * row_weight[batch]).mean()
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                total += float(loss.detach()) * batch.size
            if not self.quiet:
                print(f"        epoch {epoch + 1}/{self.epochs}: loss {total / n:.4f} "
                      f"({time.perf_counter() - started:.0f}s)", flush=True)  # fmt: skip
        self._arrays = {  # w1 is stored as float16 (half the artefact); predict with the rounded weights too
            "w1": w1.weight.detach().numpy().astype(np.float16).astype(np.float32),
            "b1": b1.detach().numpy().astype(np.float32),
            "w2": out.weight.detach().numpy().T.astype(np.float32).copy(),
            "b2": out.bias.detach().numpy().astype(np.float32),
        }
        return self

    def predict_proba(self, x: Matrix) -> npt.NDArray[np.float64]:
        """(n, 3) level probabilities, computed from the exported arrays as the runtime computes them."""
        if not self._arrays:
            raise ValueError("fit first")
        a = self._arrays
        pre = np.asarray(x.tocsr().astype(np.float32) @ a["w1"], dtype=np.float64) + a["b1"]
        logits = np.maximum(pre, 0.0) @ a["w2"].astype(np.float64) + a["b2"]
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        return np.asarray(probs / probs.sum(axis=1, keepdims=True), dtype=np.float64)

    @classmethod
    def from_export(cls, level_model: dict[str, Any]) -> HiddenLayerClassifier:
        """The network of an artefact's ``level_model`` (:meth:`export`), scoring as it did when it was trained."""
        network = cls(hidden=int(level_model["w2"].shape[0]))
        network.classes_ = np.arange(3, dtype=np.int64)
        network._arrays = {name: np.asarray(level_model[name], dtype=np.float32) for name in ("b1", "w2", "b2")}
        network._arrays["w1"] = hidden_layer_w1(level_model)  # float16, or int8 with a scale per hidden unit
        return network

    def export(self) -> dict[str, Any]:
        """The artefact's ``level_model``: plain arrays the runtime reads without PyTorch or this class."""
        if not self._arrays:
            raise ValueError("fit first")
        arrays = {name: array.copy() for name, array in self._arrays.items()}
        return {"kind": "mlp", **arrays, "w1": arrays["w1"].astype(np.float16)}


def _bag(w1: Any, rows: Matrix) -> Any:
    """Sparse rows times ``w1``: each row's features, weighted by their TF-IDF values, summed."""
    import torch

    indices = torch.from_numpy(rows.indices.astype(np.int64))
    offsets = torch.from_numpy(rows.indptr[:-1].astype(np.int64))
    values = torch.from_numpy(rows.data.astype(np.float32))
    return w1(indices, offsets, per_sample_weights=values)
