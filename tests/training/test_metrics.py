"""Evaluation metrics on fixed strings, against values computed by hand (and sacrebleu for BLEU)."""

from __future__ import annotations

import math

import pytest

from app.core.format import parse_reply
from app.core.strategies import load_catalogue
from training.metrics import (
    Scored,
    accuracy,
    corpus_bleu,
    distinct_n,
    lcs_length,
    macro_f1,
    mean_rouge_l,
    per_class_f1,
    rouge_l_f1,
    summarize,
    tokenize,
)

HYP = "the cat sat on the mat"
REF = "the cat is on the mat"


def test_tokenize_keeps_contractions_and_splits_punctuation() -> None:
    assert tokenize("I'm fine, thanks!") == ["i'm", "fine", ",", "thanks", "!"]
    assert tokenize("  Don't   PANIC...") == ["don't", "panic", ".", ".", "."]


def test_bleu2_single_pair_by_hand() -> None:
    # unigrams: the x2, cat, on, mat match -> 5/6; bigrams: "the cat", "on the", "the mat" -> 3/5; same length.
    assert corpus_bleu([HYP], [REF]) == pytest.approx(math.sqrt(5 / 6 * 3 / 5))


def test_bleu2_is_corpus_level_with_brevity_penalty() -> None:
    # Second pair: "hello there" vs "hello there friend": 2/2 unigrams, 1/1 bigram.
    # Corpus: p1 = 7/8, p2 = 4/6, c = 8 < r = 9 -> BP = exp(1 - 9/8).
    expected = math.exp(1 - 9 / 8) * math.sqrt(7 / 8 * 4 / 6)
    assert corpus_bleu([HYP, "hello there"], [REF, "hello there friend"]) == pytest.approx(expected)
    # Not the mean of sentence scores.
    mean = (corpus_bleu([HYP], [REF]) + corpus_bleu(["hello there"], ["hello there friend"])) / 2
    assert abs(expected - mean) > 0.01


def test_bleu_clips_repeated_words_and_is_zero_without_bigram_matches() -> None:
    assert corpus_bleu(["the the the"], ["the cat"]) == 0.0
    assert corpus_bleu(["the the the"], ["the cat"], max_n=1) == pytest.approx(1 / 3)
    assert corpus_bleu([""], ["anything"]) == 0.0


def test_bleu2_matches_sacrebleu_on_the_same_tokens() -> None:
    sacrebleu = pytest.importorskip("sacrebleu")
    hyps = [HYP, "hello there", "I'm so sorry you are going through this, it sounds hard."]
    refs = [REF, "hello there friend", "That sounds really hard. I'm sorry."]
    bleu = sacrebleu.metrics.BLEU(max_ngram_order=2, tokenize="none", smooth_method="none")
    theirs = bleu.corpus_score([" ".join(tokenize(h)) for h in hyps], [[" ".join(tokenize(r)) for r in refs]]).score
    assert corpus_bleu(hyps, refs) * 100 == pytest.approx(theirs, abs=1e-6)


def test_rouge_l_by_hand() -> None:
    assert lcs_length(list("abcd"), list("bde")) == 2
    assert rouge_l_f1(HYP, REF) == pytest.approx(5 / 6)  # LCS "the cat on the mat"
    assert rouge_l_f1("a b c d", "b d e") == pytest.approx(4 / 7)  # P = 2/4, R = 2/3
    assert rouge_l_f1("", "b d e") == 0.0
    assert mean_rouge_l([HYP, "a b c d"], [REF, "b d e"]) == pytest.approx((5 / 6 + 4 / 7) / 2)


def test_distinct_n_over_all_replies() -> None:
    texts = ["I am sad", "I am happy"]
    assert distinct_n(texts, 1) == pytest.approx(4 / 6)
    assert distinct_n(texts, 2) == pytest.approx(3 / 4)
    assert distinct_n(["ok"], 2) == 0.0


def test_strategy_accuracy_and_f1_by_hand() -> None:
    refs = ["Question", "Question", "Restatement", "Affirmation"]
    preds = ["Question", "Restatement", "Restatement", None]
    scores = per_class_f1(refs, preds)
    assert scores["Question"].precision == 1.0 and scores["Question"].recall == 0.5
    assert scores["Question"].f1 == pytest.approx(2 / 3)
    assert scores["Restatement"].f1 == pytest.approx(2 / 3)
    assert scores["Affirmation"].f1 == 0.0 and scores["Affirmation"].support == 1
    assert accuracy(refs, preds) == 0.5
    assert macro_f1(scores) == pytest.approx(4 / 9)


def test_parse_reply_uses_the_catalogue() -> None:
    catalogue = load_catalogue()
    assert parse_reply("[question] How are you?", catalogue) == ("Question", "How are you?")
    assert parse_reply("  [Reflection] You feel alone.", catalogue) == ("Reflection of feelings", "You feel alone.")
    # Not a catalogue strategy: the text stays as the server would show it.
    assert parse_reply("[Hug] There there.", catalogue) == (None, "[Hug] There there.")
    assert parse_reply("No tag [Question] here", catalogue) == (None, "No tag [Question] here")


def test_summarize_lengths_tags_and_baselines() -> None:
    long_reply = " ".join(["word"] * 61)
    turns = [
        Scored("What happened?", "Question", "What happened?", "Question"),
        Scored("That is hard.", "Reflection of feelings", long_reply, None, "length"),
        Scored("Tell me more?", "Question", "I hear you.", "Reflection of feelings", "stop"),
    ]
    report = summarize(turns)
    assert report["reply_words"] == [2, 61, 3]
    assert (report["words_p50"], report["words_p90"]) == (3, 61)
    assert report["cut_off"] == pytest.approx(1 / 3)  # one reply hit max_tokens
    assert (report["reference_words_p50"], report["reference_words_p90"]) == (3, 3)
    assert report["turns"] == 3
    assert report["avg_words"] == pytest.approx((2 + 61 + 3) / 3)
    assert report["over_60_words"] == pytest.approx(1 / 3)
    assert report["valid_tag_rate"] == pytest.approx(2 / 3)
    assert report["strategy_accuracy"] == pytest.approx(1 / 3)
    assert report["majority_strategy"] == "Question"
    assert report["majority_baseline_accuracy"] == pytest.approx(2 / 3)
    assert report["per_strategy"]["Question"]["support"] == 2
