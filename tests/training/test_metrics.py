"""Evaluation metrics: the library values (sacrebleu, rouge-score, scikit-learn), the baselines beside the strategy
figures, and the 95% intervals."""

from __future__ import annotations

import random

import numpy as np
import pytest

from app.core.format import parse_reply
from app.core.strategies import load_catalogue
from training.metrics import (
    NO_TAG,
    Scored,
    _Strategies,
    baselines,
    bleu2,
    distinct_n,
    jackknife_interval,
    ngram_lists,
    percentile,
    rouge_l_scores,
    strategy_scores,
    summarize,
)

STRATEGIES = list(load_catalogue().names)
HYPS = ["the cat sat on the mat", "hello there", "I'm so sorry you are going through this, it sounds hard."]
REFS = ["the cat is on the mat", "hello there friend", "That sounds really hard. I'm sorry."]


def test_text_metrics_are_the_libraries() -> None:
    from rouge_score.rouge_scorer import RougeScorer
    from sacrebleu.metrics.bleu import BLEU

    theirs = BLEU(max_ngram_order=2, lowercase=True).corpus_score(HYPS, [REFS]).score
    assert bleu2(HYPS, REFS) * 100 == pytest.approx(theirs)
    assert bleu2(["The Cat sat"], ["the cat sat"]) == pytest.approx(1.0)  # lower-cased
    scorer = RougeScorer(["rougeL"])
    assert rouge_l_scores(HYPS, REFS) == [
        scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(HYPS, REFS, strict=True)
    ]
    assert rouge_l_scores(HYPS[:1], REFS[:1])[0] == pytest.approx(5 / 6)  # LCS "the cat on the mat"
    with pytest.raises(ValueError, match="3 items but 2"):
        bleu2(HYPS, REFS[:2])


def test_distinct_n_over_all_replies_on_13a_tokens() -> None:
    texts = ["I am sad", "I am happy"]
    assert distinct_n(texts, 1) == pytest.approx(4 / 6)
    assert distinct_n(texts, 2) == pytest.approx(3 / 4)
    assert distinct_n(["Sad, sad."], 1) == pytest.approx(3 / 4)  # "sad" "," "sad" "."
    assert distinct_n(["ok"], 2) == 0.0


def test_strategy_scores_are_scikit_learns_and_the_resampling_path_agrees() -> None:
    from sklearn.metrics import accuracy_score, f1_score

    refs = ["Question", "Question", "Restatement or Paraphrasing", "Affirmation and Reassurance"]
    preds: list[str | None] = ["Question", "Restatement or Paraphrasing", "Restatement or Paraphrasing", None]
    accuracy, macro = strategy_scores(refs, preds)
    assert accuracy == 0.5 and macro == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)  # by hand
    rng = random.Random(0)
    for _ in range(20):
        n = rng.randint(5, 60)
        refs = [rng.choice(STRATEGIES[:5]) for _ in range(n)]
        preds = [rng.choice([*STRATEGIES, None]) for _ in range(n)]
        filled = [p if p is not None else NO_TAG for p in preds]
        expected_f1 = f1_score(refs, filled, labels=sorted(set(refs)), average="macro", zero_division=0)
        assert strategy_scores(refs, preds) == pytest.approx((accuracy_score(refs, filled), expected_f1))
        codes = _Strategies(refs, preds)
        sample = np.asarray([rng.randrange(n) for _ in range(n)])
        picked_refs, picked_preds = [refs[i] for i in sample], [preds[i] for i in sample]
        fast = codes.scores(sample)
        assert fast[:2] == pytest.approx(strategy_scores(picked_refs, picked_preds))
        majority = max(sorted(set(refs)), key=refs.count)  # always answering the most common strategy of all turns
        assert fast[2] == pytest.approx(picked_refs.count(majority) / n)


def test_baselines_majority_and_chance() -> None:
    refs = ["Question"] * 6 + ["Others"] * 3 + ["Information"]
    found = baselines(refs, STRATEGIES)
    assert found["majority"] == {"strategy": "Question", "accuracy": 0.6, "macro_f1": pytest.approx(0.75 / 3)}
    assert found["chance"]["strategies"] == 8
    assert found["chance"]["accuracy"] == pytest.approx(1 / 8, abs=0.03)  # the mean of seeded uniform draws
    assert found == baselines(refs, STRATEGIES)  # seeded


def test_percentiles_are_nearest_rank() -> None:
    assert (percentile(list(range(1, 11)), 50), percentile(list(range(1, 11)), 90)) == (5, 9)
    assert percentile([], 50) == 0.0


def turns_like(accuracy: float, n: int, seed: int = 0) -> list[Scored]:
    """``n`` tagged turns, 40% "Question" in the references, predicted right with probability ``accuracy``."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        ref = "Question" if rng.random() < 0.4 else rng.choice(STRATEGIES[1:])
        pred = ref if rng.random() < accuracy else rng.choice([s for s in STRATEGIES if s != ref])
        out.append(Scored(f"reference {i} is here", ref, f"reply {i} {rng.randrange(50)} words", pred))
    return out


def test_summary_intervals_contain_the_figures_and_shrink_with_more_turns() -> None:
    small = summarize(turns_like(0.5, 60), STRATEGIES, resamples=200)
    large = summarize(turns_like(0.5, 400), STRATEGIES, resamples=200)
    for report in (small, large):
        for name, (low, high) in report["intervals"].items():
            assert low <= report[name] + 1e-6 and report[name] <= high + 1e-6, name
    width = {name: high - low for name, (low, high) in large["intervals"].items()}
    assert (
        width["strategy_accuracy"]
        < small["intervals"]["strategy_accuracy"][1] - small["intervals"]["strategy_accuracy"][0]
    )
    assert 0.04 < width["strategy_accuracy"] < 0.14  # about +-5 points at 400 turns
    assert summarize(turns_like(0.5, 60), STRATEGIES, resamples=200) == small  # seeded


def test_a_constant_predictor_does_not_beat_the_majority_baseline() -> None:
    turns = turns_like(0.7, 300)
    good = summarize(turns, STRATEGIES, resamples=200)
    assert good["accuracy_minus_majority"] > 0 and good["intervals"]["accuracy_minus_majority"][0] > 0
    constant = [Scored(t.reference, t.reference_strategy, t.prediction, "Question") for t in turns]
    flat = summarize(constant, STRATEGIES, resamples=200)
    assert flat["strategy_accuracy"] == pytest.approx(flat["baselines"]["majority"]["accuracy"])
    assert flat["accuracy_minus_majority"] == pytest.approx(0)
    assert flat["intervals"]["accuracy_minus_majority"][0] <= 0


def test_untagged_replies_are_not_scored_on_strategy() -> None:
    turns = [Scored("What happened?", "Question", "I am so sorry.", None) for _ in range(5)]
    report = summarize(turns, STRATEGIES, resamples=50)
    assert report["valid_tag_rate"] == 0.0
    assert report["strategy_accuracy"] is None and report["strategy_macro_f1"] is None
    assert "strategy_accuracy" not in report["intervals"] and report["per_strategy"] == {}
    assert report["baselines"]["majority"]["accuracy"] == 1.0  # still shown beside the n/a


def test_distinct_interval_is_a_jackknife_around_the_figure() -> None:
    replies = [f"reply {i} about the exam and the rent {i % 7}" for i in range(200)]
    low, high = jackknife_interval(ngram_lists(replies, 2))
    point = distinct_n(replies, 2)
    assert low < point < high and high - low < 0.05
    same = jackknife_interval(ngram_lists(["the same words"] * 10, 2))
    assert same[0] == pytest.approx(same[1])  # no reply differs from another: no spread


def test_summarize_lengths_tags_and_cut_offs() -> None:
    long_reply = " ".join(["word"] * 61)
    turns = [
        Scored("What happened?", "Question", "What happened?", "Question"),
        Scored("That is hard.", "Reflection of feelings", long_reply, None, "length"),
        Scored("Tell me more?", "Question", "I hear you.", "Reflection of feelings", "stop"),
    ]
    report = summarize(turns, STRATEGIES, resamples=50)
    assert report["reply_words"] == [2, 61, 3]
    assert (report["words_p50"], report["words_p90"]) == (3, 61)
    assert report["cut_off"] == pytest.approx(1 / 3)  # one reply hit max_tokens
    assert (report["reference_words_p50"], report["reference_words_p90"]) == (3, 3)
    assert report["turns"] == 3
    assert report["avg_words"] == pytest.approx((2 + 61 + 3) / 3)
    assert report["over_60_words"] == pytest.approx(1 / 3)
    assert report["valid_tag_rate"] == pytest.approx(2 / 3)
    assert report["strategy_accuracy"] == pytest.approx(1 / 3)
    assert report["baselines"]["majority"]["strategy"] == "Question"
    assert report["baselines"]["majority"]["accuracy"] == pytest.approx(2 / 3)
    assert report["accuracy_minus_majority"] == pytest.approx(1 / 3 - 2 / 3)
    assert report["per_strategy"]["Question"]["support"] == 2


def test_parse_reply_uses_the_catalogue() -> None:
    catalogue = load_catalogue()
    assert parse_reply("[question] How are you?", catalogue) == ("Question", "How are you?")
    assert parse_reply("  [Reflection] You feel alone.", catalogue) == ("Reflection of feelings", "You feel alone.")
    # Not a catalogue strategy: the text stays as the server would show it.
    assert parse_reply("[Hug] There there.", catalogue) == (None, "[Hug] There there.")
    assert parse_reply("No tag [Question] here", catalogue) == (None, "No tag [Question] here")
