"""Evaluation metrics for generated supporter replies, computed by the standard libraries, with 95% intervals.

Definitions (scores are fractions in [0, 1]; tables show them as percentages):

- BLEU-2: sacrebleu's corpus BLEU with ``max_ngram_order=2``, lower-cased, its default ``13a`` tokenizer and
  ``exp`` smoothing, one reference per reply; :data:`BLEU_SIGNATURE` is the sacrebleu signature. Its interval is
  sacrebleu's own bootstrap (``n_bootstrap``).
- ROUGE-L: rouge-score's ``rougeL`` F-measure (its tokenizer: lower case, alphanumeric tokens, no stemming), per
  reply, averaged over replies.
- Distinct-n (Li et al. 2016): distinct n-grams / all n-grams over all generated replies together, on sacrebleu's
  ``13a`` tokens, lower-cased. No library ships it; it is four lines.
- Strategy accuracy and macro-F1: scikit-learn's ``accuracy_score`` and ``f1_score(average="macro")`` over the
  strategies present in the references; a missing or unknown tag is a wrong prediction. They are ``None`` when no
  reply carries a tag (a model that writes no tags is not scored on strategy, rather than scored 0).
- Baselines beside every strategy figure, computed on the same references with scikit-learn's ``DummyClassifier``:
  ``majority`` always answers the most common reference strategy; ``chance`` answers uniformly at random among
  the catalogue's strategies (the mean over :data:`CHANCE_DRAWS` seeded draws).
- Intervals (``intervals``): 95% percentile bootstrap over turns (``resamples`` seeded resamples, shared by all
  figures), including ``accuracy_minus_majority``, the paired difference between the strategy accuracy and the
  accuracy of the majority baseline (always the most common strategy of all the turns) on each resample (above 0 at
  its lower end: the model beats a constant predictor by more than the noise). Strategy figures on resamples are
  computed from a confusion matrix (the same definitions as scikit-learn; a test checks they agree). BLEU-2 uses
  sacrebleu's own bootstrap; Distinct-n a delete-one jackknife over replies (a bootstrap resample repeats replies
  and so biases Distinct-n low).
- Length: words are whitespace-separated tokens of the reply without its tag; ``words_p50``/``words_p90`` are
  nearest-rank percentiles, ``over_60_words`` is the share of replies longer than 60 words, and ``cut_off`` the
  share the server ended because it hit ``max_tokens`` (finish reason ``length``: a reply that stops mid-sentence).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

LONG_REPLY_WORDS = 60
RESAMPLES = 1000
CHANCE_DRAWS = 200
NO_TAG = "(no tag)"
BLEU_SIGNATURE = "nrefs:1|case:lc|eff:no|tok:13a|smooth:exp (sacrebleu BLEU, max_ngram_order=2)"


@dataclass(frozen=True)
class Scored:
    """One evaluated turn: reference and prediction, both without their tags."""

    reference: str
    reference_strategy: str
    prediction: str
    predicted_strategy: str | None
    finish_reason: str | None = None


def _bleu() -> Any:
    from sacrebleu.metrics.bleu import BLEU

    return BLEU(max_ngram_order=2, lowercase=True)


def bleu2(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """sacrebleu corpus BLEU-2 (see the module docstring), in [0, 1]."""
    _same_length(hypotheses, references)
    return float(_bleu().corpus_score(list(hypotheses), [list(references)]).score) / 100


def bleu2_interval(hypotheses: Sequence[str], references: Sequence[str], resamples: int) -> list[float]:
    """sacrebleu's bootstrap 95% interval of BLEU-2 (mean +- half the 2.5-97.5 percentile range), in [0, 1]."""
    score = _bleu().corpus_score(list(hypotheses), [list(references)], n_bootstrap=resamples)
    return [max(0.0, (score._mean - score._ci) / 100), (score._mean + score._ci) / 100]


def rouge_l_scores(hypotheses: Sequence[str], references: Sequence[str]) -> list[float]:
    """rouge-score ``rougeL`` F-measure of each reply against its reference."""
    from rouge_score.rouge_scorer import RougeScorer

    _same_length(hypotheses, references)
    scorer = RougeScorer(["rougeL"], use_stemmer=False)
    return [scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(hypotheses, references, strict=True)]


def tokens(text: str) -> list[str]:
    """sacrebleu's ``13a`` tokens of ``text``, lower-cased."""
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

    tokenized: str = Tokenizer13a()(text.lower())  # type: ignore[no-untyped-call]
    return tokenized.split()


def ngram_lists(texts: Sequence[str], n: int) -> list[list[tuple[str, ...]]]:
    """The n-grams of each text."""
    out = []
    for text in texts:
        words = tokens(text)
        out.append([tuple(words[i : i + n]) for i in range(len(words) - n + 1)])
    return out


def distinct(grams: Sequence[Sequence[tuple[str, ...]]]) -> float:
    """Distinct n-grams over all n-grams of all texts (0 when there are none)."""
    counts: Counter[tuple[str, ...]] = Counter(g for text in grams for g in text)
    total = sum(counts.values())
    return len(counts) / total if total else 0.0


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct-n of ``texts`` (see the module docstring)."""
    return distinct(ngram_lists(texts, n))


def word_count(text: str) -> int:
    """Whitespace-separated words."""
    return len(text.split())


def percentile(values: Sequence[int], q: float) -> float:
    """Nearest-rank percentile ``q`` (0-100) of ``values``; 0 when empty."""
    if not values:
        return 0.0
    return float(np.percentile(np.asarray(values), q, method="inverted_cdf"))


def strategy_scores(references: Sequence[str], predictions: Sequence[str | None]) -> tuple[float, float]:
    """(accuracy, macro-F1 over the strategies present in the references), by scikit-learn."""
    from sklearn.metrics import accuracy_score, f1_score

    _same_length(references, predictions)
    if not references:
        return 0.0, 0.0
    predicted = [p if p is not None else NO_TAG for p in predictions]
    labels = sorted(set(references))
    accuracy = float(accuracy_score(references, predicted))
    macro = float(f1_score(references, predicted, labels=labels, average="macro", zero_division=0))
    return accuracy, macro


def per_strategy(references: Sequence[str], predictions: Sequence[str | None]) -> dict[str, dict[str, float]]:
    """scikit-learn precision, recall, F1 and support of every strategy in the references or predictions."""
    from sklearn.metrics import precision_recall_fscore_support

    predicted = [p if p is not None else NO_TAG for p in predictions]
    labels = sorted(set(references) | {p for p in predictions if p is not None})
    if not labels:
        return {}
    precision, recall, f1, support = precision_recall_fscore_support(
        references, predicted, labels=labels, zero_division=0
    )
    return {
        label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for label, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
    }


def baselines(references: Sequence[str], strategies: Sequence[str], seed: int = 0) -> dict[str, dict[str, Any]]:
    """Majority-class and uniform-chance strategy predictors scored like a model (scikit-learn DummyClassifier)."""
    from sklearn.dummy import DummyClassifier

    if not references:
        return {}
    refs = np.asarray(references)
    features = np.zeros((len(refs), 1))
    majority = DummyClassifier(strategy="most_frequent").fit(features, refs)
    constant = list(majority.predict(features))
    accuracy, macro = strategy_scores(references, constant)
    classes = sorted(set(strategies) | set(references))
    everything = np.arange(len(refs))
    draws = []
    for draw in range(CHANCE_DRAWS):
        uniform = DummyClassifier(strategy="uniform", random_state=seed + draw).fit(
            np.zeros((len(classes), 1)), classes
        )
        draws.append(_Strategies(references, list(uniform.predict(features))).scores(everything)[:2])
    return {
        "majority": {"strategy": str(constant[0]), "accuracy": accuracy, "macro_f1": macro},
        "chance": {
            "strategies": len(classes),
            "accuracy": float(np.mean([a for a, _ in draws])),
            "macro_f1": float(np.mean([m for _, m in draws])),
        },
    }


def mean_of(values: np.ndarray) -> Callable[[np.ndarray], float]:
    """The statistic "mean of ``values`` over the turns ``idx``"."""
    return lambda idx: float(values[idx].mean()) if len(idx) else 0.0


def bootstrap_intervals(
    statistics: Mapping[str, Callable[[np.ndarray], float]], n: int, resamples: int, seed: int
) -> dict[str, list[float]]:
    """95% percentile bootstrap interval of each ``statistic(turn indices)``; every statistic sees the same
    ``resamples`` resamples of the ``n`` turns (so differences between them are paired)."""
    everything = np.arange(n)
    if n < 2:
        return {name: [statistic(everything)] * 2 for name, statistic in statistics.items()}
    samples = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    intervals = {}
    for name, statistic in statistics.items():
        values = np.array([statistic(sample) for sample in samples])
        intervals[name] = [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]
    return intervals


def jackknife_interval(grams: Sequence[Sequence[tuple[str, ...]]]) -> list[float]:
    """Normal 95% interval of Distinct-n from the delete-one jackknife over replies.

    A bootstrap resample repeats replies, and a repeated reply repeats its n-grams, so bootstrapped Distinct-n is
    biased low; leaving one reply out at a time does not repeat anything."""
    counts: Counter[tuple[str, ...]] = Counter(g for text in grams for g in text)
    types, total, n = len(counts), sum(counts.values()), len(grams)
    point = types / total if total else 0.0
    if n < 2 or not total:
        return [point, point]
    left_out = []
    for text in grams:
        own = Counter(text)
        remaining = total - len(text)
        gone = sum(1 for gram, k in own.items() if counts[gram] == k)
        left_out.append((types - gone) / remaining if remaining else 0.0)
    values = np.asarray(left_out)
    stderr = float(np.sqrt((n - 1) / n * np.sum((values - values.mean()) ** 2)))
    return [point - 1.96 * stderr, point + 1.96 * stderr]


class _Strategies:
    """Reference and predicted strategies as integer codes, for fast accuracy and macro-F1 on resamples (the same
    definitions as scikit-learn's accuracy_score and f1_score(average="macro", labels=reference strategies))."""

    def __init__(self, references: Sequence[str], predictions: Sequence[str | None]) -> None:
        names = [*sorted(set(references) | {p for p in predictions if p is not None}), NO_TAG]
        code = {name: i for i, name in enumerate(names)}
        self.size = len(names)
        self.true = np.asarray([code[r] for r in references], dtype=np.int64)
        counts = Counter(references)
        self.majority = code[max(sorted(counts), key=lambda name: counts[name])] if references else -1
        self.pred = np.asarray([code[p if p is not None else NO_TAG] for p in predictions], dtype=np.int64)

    def scores(self, idx: np.ndarray) -> tuple[float, float, float]:
        """(accuracy, macro-F1, accuracy of always answering the majority strategy of ALL turns) over ``idx``."""
        true, pred = self.true[idx], self.pred[idx]
        k = self.size
        matrix = np.bincount(true * k + pred, minlength=k * k).reshape(k, k)
        hits = np.diag(matrix).astype(float)
        support, predicted = matrix.sum(axis=1), matrix.sum(axis=0)
        present = support > 0
        f1 = 2 * hits[present] / (2 * hits[present] + (predicted - hits)[present] + (support - hits)[present])
        n = len(idx)
        return float(hits.sum() / n), float(f1.mean()), float(support[self.majority] / n)


def _same_length(a: Sequence[Any], b: Sequence[Any]) -> None:
    if len(a) != len(b):
        raise ValueError(f"{len(a)} items but {len(b)} to compare them with")


def _majority_accuracy(references: Sequence[str]) -> float:
    return Counter(references).most_common(1)[0][1] / len(references) if references else 0.0


def summarize(
    turns: Sequence[Scored], strategies: Sequence[str] = (), *, resamples: int = RESAMPLES, seed: int = 0
) -> dict[str, Any]:
    """All metrics over ``turns`` with 95% intervals and the strategy baselines, JSON-ready.

    ``strategies`` is the catalogue (the chance baseline draws among them; default: the reference strategies).
    """
    count = len(turns)
    predictions = [t.prediction for t in turns]
    references = [t.reference for t in turns]
    ref_strategies = [t.reference_strategy for t in turns]
    predicted = [t.predicted_strategy for t in turns]
    lengths = np.asarray([word_count(p) for p in predictions], dtype=float)
    reference_lengths = [word_count(r) for r in references]
    rouge = np.asarray(rouge_l_scores(predictions, references), dtype=float)
    unigrams, bigrams = ngram_lists(predictions, 1), ngram_lists(predictions, 2)
    tagged = np.asarray([p is not None for p in predicted], dtype=float)
    cut = np.asarray([t.finish_reason == "length" for t in turns], dtype=float)

    statistics: dict[str, Callable[[np.ndarray], float]] = {
        "rouge_l": mean_of(rouge),
        "valid_tag_rate": mean_of(tagged),
        "avg_words": mean_of(lengths),
        "over_60_words": mean_of((lengths > LONG_REPLY_WORDS).astype(float)),
        "cut_off": mean_of(cut),
    }
    scored_strategy = count > 0 and bool(tagged.any())
    summary: dict[str, Any] = {name: statistic(np.arange(count)) for name, statistic in statistics.items()}
    summary |= {"strategy_accuracy": None, "strategy_macro_f1": None, "accuracy_minus_majority": None}
    if scored_strategy:
        codes = _Strategies(ref_strategies, predicted)
        statistics["strategy_accuracy"] = lambda idx: codes.scores(idx)[0]
        statistics["strategy_macro_f1"] = lambda idx: codes.scores(idx)[1]
        statistics["accuracy_minus_majority"] = lambda idx: codes.scores(idx)[0] - codes.scores(idx)[2]
        accuracy, macro = strategy_scores(ref_strategies, predicted)  # scikit-learn
        summary |= {
            "strategy_accuracy": accuracy,
            "strategy_macro_f1": macro,
            "accuracy_minus_majority": accuracy - _majority_accuracy(ref_strategies),
        }
    intervals = bootstrap_intervals(statistics, count, resamples, seed)
    summary["bleu2"] = bleu2(predictions, references) if count else 0.0
    intervals["bleu2"] = bleu2_interval(predictions, references, resamples) if count > 1 else [summary["bleu2"]] * 2
    summary["distinct1"], summary["distinct2"] = distinct(unigrams), distinct(bigrams)
    intervals["distinct1"], intervals["distinct2"] = jackknife_interval(unigrams), jackknife_interval(bigrams)
    return {
        "turns": count,
        **summary,
        "words_p50": percentile(lengths.astype(int).tolist(), 50),
        "words_p90": percentile(lengths.astype(int).tolist(), 90),
        "intervals": intervals,
        "baselines": baselines(ref_strategies, strategies or ref_strategies, seed),
        "reply_words": lengths.astype(int).tolist(),
        "reference_avg_words": sum(reference_lengths) / count if count else 0.0,
        "reference_words_p50": percentile(reference_lengths, 50),
        "reference_words_p90": percentile(reference_lengths, 90),
        "per_strategy": per_strategy(ref_strategies, predicted) if scored_strategy else {},
        "definitions": {
            "bleu2": BLEU_SIGNATURE,
            "rouge_l": "rouge-score rougeL F-measure, mean over replies",
            "intervals": f"95%: percentile bootstrap over turns ({resamples} resamples, seed {seed}); BLEU-2: "
            "sacrebleu's bootstrap; Distinct-n: delete-one jackknife (normal)",
        },
    }
