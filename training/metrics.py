"""Evaluation metrics for generated supporter replies: pure functions over strings and labels.

Definitions (all scores are fractions in [0, 1]; tables show them as percentages):

- Tokens (BLEU, ROUGE, Distinct): :func:`tokenize`: lower case, words (letters/digits, inner apostrophes kept:
  ``don't`` is one token) and every other non-space character as its own token. ``"I'm fine, thanks!"`` ->
  ``["i'm", "fine", ",", "thanks", "!"]``.
- BLEU-2: corpus-level (Papineni et al. 2002) with one reference per reply and uniform weights over 1- and 2-grams:
  ``BP * exp((log p1 + log p2) / 2)``, ``p_n`` = clipped n-gram matches summed over the corpus / hypothesis n-grams
  summed over the corpus, ``BP = exp(1 - r / c)`` when the total hypothesis length ``c`` is below the total
  reference length ``r``; no smoothing (0 if any ``p_n`` is 0). Equal to sacrebleu's ``BLEU(max_ngram_order=2,
  tokenize="none", smooth_method="none")`` over the same tokens joined by spaces (a test checks this).
- ROUGE-L: F1 (beta = 1) of the longest common token subsequence, per reply, averaged over replies.
- Distinct-n: distinct n-grams / all n-grams, over all generated replies together (Li et al. 2016).
- Strategy accuracy: share of turns whose predicted strategy equals the reference (a missing or unknown tag is
  wrong); per-strategy precision/recall/F1 with a missing prediction counting as a miss of the true strategy;
  macro-F1 averages the strategies present in the references.
- Length: words are whitespace-separated tokens of the reply without its tag; ``words_p50``/``words_p90`` are
  nearest-rank percentiles, ``over_60_words`` is the share of replies longer than 60 words, and ``cut_off`` the
  share the server ended because it hit ``max_tokens`` (finish reason ``length``: a reply that stops mid-sentence).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)*|[^\w\s]|_")
LONG_REPLY_WORDS = 60


def tokenize(text: str) -> list[str]:
    """Lower-cased word and punctuation tokens (see the module docstring)."""
    return _TOKEN.findall(text.lower())


def ngrams(tokens: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    """Counts of the n-grams of ``tokens``."""
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str], max_n: int = 2) -> float:
    """Corpus BLEU-``max_n`` with one reference per hypothesis (BLEU-2 by default), in [0, 1]."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    matches = [0] * max_n
    totals = [0] * max_n
    hyp_len = ref_len = 0
    for hypothesis, reference in zip(hypotheses, references, strict=True):
        hyp, ref = tokenize(hypothesis), tokenize(reference)
        hyp_len += len(hyp)
        ref_len += len(ref)
        for n in range(1, max_n + 1):
            hyp_counts, ref_counts = ngrams(hyp, n), ngrams(ref, n)
            matches[n - 1] += sum(min(count, ref_counts[gram]) for gram, count in hyp_counts.items())
            totals[n - 1] += sum(hyp_counts.values())
    if hyp_len == 0 or any(m == 0 for m in matches):
        return 0.0
    log_precision = sum(math.log(m / t) for m, t in zip(matches, totals, strict=True)) / max_n
    brevity = 1.0 if hyp_len >= ref_len else math.exp(1 - ref_len / hyp_len)
    return brevity * math.exp(log_precision)


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token lists (O(len(a) * len(b)) time, O(len(b)) memory)."""
    if not a or not b:
        return 0
    previous = [0] * (len(b) + 1)
    for token in a:
        current = [0]
        for j, other in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if token == other else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l_f1(hypothesis: str, reference: str) -> float:
    """ROUGE-L F1 of one reply against its reference."""
    hyp, ref = tokenize(hypothesis), tokenize(reference)
    lcs = lcs_length(hyp, ref)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(hyp), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def mean_rouge_l(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """ROUGE-L F1 averaged over replies."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    if not hypotheses:
        return 0.0
    return sum(rouge_l_f1(h, r) for h, r in zip(hypotheses, references, strict=True)) / len(hypotheses)


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct n-grams over all n-grams of all ``texts`` (0 when there are none)."""
    counts: Counter[tuple[str, ...]] = Counter()
    for text in texts:
        counts.update(ngrams(tokenize(text), n))
    total = sum(counts.values())
    return len(counts) / total if total else 0.0


def word_count(text: str) -> int:
    """Whitespace-separated words."""
    return len(text.split())


def percentile(values: Sequence[int], q: float) -> float:
    """Nearest-rank percentile ``q`` (0-100) of ``values``; 0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return float(ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)])


@dataclass(frozen=True)
class ClassScore:
    """Precision, recall and F1 of one strategy; ``support`` is its count in the references."""

    precision: float
    recall: float
    f1: float
    support: int


def per_class_f1(references: Sequence[str], predictions: Sequence[str | None]) -> dict[str, ClassScore]:
    """Scores for every label in the references or predictions (None predictions only count as misses)."""
    if len(references) != len(predictions):
        raise ValueError(f"{len(references)} references but {len(predictions)} predictions")
    labels = sorted(set(references) | {p for p in predictions if p is not None})
    scores = {}
    for label in labels:
        tp = sum(r == label and p == label for r, p in zip(references, predictions, strict=True))
        fp = sum(r != label and p == label for r, p in zip(references, predictions, strict=True))
        fn = sum(r == label and p != label for r, p in zip(references, predictions, strict=True))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        scores[label] = ClassScore(precision, recall, f1, tp + fn)
    return scores


def accuracy(references: Sequence[str], predictions: Sequence[str | None]) -> float:
    """Share of exact matches (None never matches)."""
    if len(references) != len(predictions):
        raise ValueError(f"{len(references)} references but {len(predictions)} predictions")
    if not references:
        return 0.0
    return sum(r == p for r, p in zip(references, predictions, strict=True)) / len(references)


def macro_f1(scores: dict[str, ClassScore]) -> float:
    """Mean F1 over the labels that occur in the references."""
    present = [score.f1 for score in scores.values() if score.support > 0]
    return sum(present) / len(present) if present else 0.0


@dataclass(frozen=True)
class Scored:
    """One evaluated turn: reference and prediction, both without their tags."""

    reference: str
    reference_strategy: str
    prediction: str
    predicted_strategy: str | None
    finish_reason: str | None = None


def summarize(turns: Sequence[Scored]) -> dict[str, Any]:
    """All metrics over ``turns`` (see the module docstring), JSON-ready."""
    predictions = [t.prediction for t in turns]
    references = [t.reference for t in turns]
    ref_strategies = [t.reference_strategy for t in turns]
    predicted = [t.predicted_strategy for t in turns]
    lengths = [word_count(p) for p in predictions]
    reference_lengths = [word_count(r) for r in references]
    classes = per_class_f1(ref_strategies, predicted)
    count = len(turns)
    majority = Counter(ref_strategies).most_common(1)
    return {
        "turns": count,
        "bleu2": corpus_bleu(predictions, references),
        "rouge_l": mean_rouge_l(predictions, references),
        "distinct1": distinct_n(predictions, 1),
        "distinct2": distinct_n(predictions, 2),
        "strategy_accuracy": accuracy(ref_strategies, predicted),
        "strategy_macro_f1": macro_f1(classes),
        "valid_tag_rate": sum(p is not None for p in predicted) / count if count else 0.0,
        "avg_words": sum(lengths) / count if count else 0.0,
        "words_p50": percentile(lengths, 50),
        "words_p90": percentile(lengths, 90),
        "over_60_words": sum(n > LONG_REPLY_WORDS for n in lengths) / count if count else 0.0,
        "cut_off": sum(t.finish_reason == "length" for t in turns) / count if count else 0.0,
        "reply_words": lengths,
        "reference_avg_words": sum(reference_lengths) / count if count else 0.0,
        "reference_words_p50": percentile(reference_lengths, 50),
        "reference_words_p90": percentile(reference_lengths, 90),
        "majority_strategy": majority[0][0] if majority else None,
        "majority_baseline_accuracy": majority[0][1] / count if majority else 0.0,
        "per_strategy": {
            name: {"precision": s.precision, "recall": s.recall, "f1": s.f1, "support": s.support}
            for name, s in classes.items()
        },
    }
