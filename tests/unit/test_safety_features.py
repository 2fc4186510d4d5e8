"""The learned screen's feature lookups and long-message scoring: fast paths that must give the plain answers.

``HashIndex`` (a table in front of the sorted vocabulary) must find exactly what a binary search finds; the one-pass
scoring of a long message must equal scoring each piece (and the whole text) on its own; and the vectorised verdict
over those rows must equal judging each row and keeping the higher verdict.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from app.chat.safety import RiskLevel, SafetyResult
from app.chat.safety.classifier import (
    LearnedSafetyScreen,
    Thresholds,
    decide,
    decide_rows,
    higher,
    level_ranks,
)
from app.chat.safety.features import HashIndex, piece_starts, prepare


@pytest.fixture(scope="module")
def screen() -> LearnedSafetyScreen:
    return LearnedSafetyScreen.load()


def _binary_search(keys: np.ndarray, features: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    order = np.argsort(keys)
    keys, features = keys[order], features[order]
    pos = np.minimum(np.searchsorted(keys, hashes), max(keys.size - 1, 0))
    if not keys.size:
        return np.full(hashes.size, -1)
    return np.where(keys[pos] == hashes, features[pos], -1)


@pytest.mark.parametrize("size", [0, 1, 7, 5000])
def test_hash_index_finds_exactly_what_a_binary_search_finds(size: int) -> None:
    rng = np.random.default_rng(size)
    # half the keys crowd into a few homes (same top bits), so slots are contested and the fallback is exercised
    crowded = (np.uint64(0xABC) << np.uint64(52)) | rng.integers(0, 2**40, size // 2, dtype=np.uint64)
    keys = np.unique(np.concatenate([crowded, rng.integers(0, 2**63, size - size // 2, dtype=np.uint64)]))
    features = rng.permutation(keys.size).astype(np.int64)
    index = HashIndex.build(keys, features)
    strangers = np.concatenate(
        [
            rng.integers(0, 2**63, 3000, dtype=np.uint64),
            (np.uint64(0xABC) << np.uint64(52)) | rng.integers(0, 2**40, 3000, dtype=np.uint64),  # homes of keys
        ]
    )
    queries = np.concatenate([keys, strangers, keys[::-1]])
    found = index.find(queries)
    np.testing.assert_array_equal(found, _binary_search(keys, features, queries))
    assert (found[: keys.size] == features).all()  # every key is found
    if size >= 5000:
        taken = index.slot_features >= 0
        assert taken.mean() <= 0.3 + 1e-9 and taken.sum() < keys.size  # some keys did lose their slot


def test_the_shipped_vocabulary_answers_as_a_binary_search(screen: LearnedSafetyScreen) -> None:
    featurizer = screen.model.featurizer
    keys = np.concatenate([featurizer.char_keys, featurizer.word_keys])
    rng = np.random.default_rng(0)
    queries = np.concatenate([keys[rng.integers(0, keys.size, 20_000)], rng.integers(0, 2**63, 20_000, np.uint64)])
    np.testing.assert_array_equal(featurizer.index.find(queries), _binary_search(keys, np.arange(keys.size), queries))


def _plain_logits(screen: LearnedSafetyScreen, counts: Counter[int]) -> np.ndarray:
    """One row's logits, written out: TF-IDF per block, each block L2-normalised, dot the weights."""
    model = screen.model
    n_char = model.featurizer.char_keys.size
    logits = model.bias.astype(np.float64).copy()
    for block in (True, False):
        feats = np.array(sorted(f for f in counts if (f < n_char) == block), dtype=np.int64)
        if not feats.size:
            continue
        values = (1 + np.log([counts[f] for f in feats])) * model.featurizer.all_idf[feats]
        values /= np.sqrt((values**2).sum())
        logits += values @ model.weights[feats].astype(np.float64)
    level = logits[:-4]
    if model.hidden is not None:  # a hidden layer: those columns are its pre-activations
        level = np.maximum(level, 0) @ model.hidden.w2.astype(np.float64) + model.hidden.b2
    return np.concatenate([level, logits[-4:]])


def test_a_long_message_scores_as_its_whole_and_its_pieces_would(screen: LearnedSafetyScreen) -> None:
    model = screen.model
    text = (
        "work ran late again and the bus never came. 我一个人走回家，路上下着雨。 my sister called, we laughed "
        "about nothing! then i sat in the dark for an hour. honestly i keep thinking i'd be better off gone. "
    ) * 6
    norm = prepare(text, model.max_chars)
    starts = piece_starts(norm)
    piece, features, counts = model.featurizer.piece_counts(norm, starts)
    rows: list[Counter[int]] = [Counter() for _ in range(len(starts) + 1)]
    for p, f, c in zip(piece.tolist(), features.tolist(), counts.tolist(), strict=True):
        rows[p + 1][f] += c
        rows[0][f] += c
    level, categories = model.long_text_probabilities(text)
    assert level.shape == (len(starts) + 1, 3) and len(starts) >= 5
    for i, row in enumerate(rows):
        logits = _plain_logits(screen, row)
        expected_level = np.exp(logits[:3] - logits[:3].max())
        np.testing.assert_allclose(level[i], expected_level / expected_level.sum(), atol=1e-5)
        np.testing.assert_allclose(categories[i], 1 / (1 + np.exp(-logits[3:])), atol=1e-5)


def test_the_verdict_over_rows_is_the_higher_of_each_rows_verdict() -> None:
    rng = np.random.default_rng(1)
    thresholds = Thresholds(high=0.7, flag=0.6, categories=(0.5, 0.4, 0.3, 0.6))
    for _ in range(2000):
        rows = int(rng.integers(1, 6))
        level = rng.dirichlet([0.6, 0.4, 0.4], size=rows)
        categories = rng.random((rows, 4)) ** 2
        expected = SafetyResult()
        for i in range(rows):
            lvl, cats = decide(level[i], categories[i], thresholds)
            expected = higher(expected, SafetyResult(level=lvl, categories=cats))
        got = decide_rows(level, categories, thresholds)
        assert got == (expected.level, expected.categories)
    assert decide_rows(np.array([[1.0, 0.0, 0.0]]), np.zeros((1, 4)), thresholds) == (RiskLevel.NONE, ())


def test_a_second_level_model_raises_what_the_first_flags_to_high_and_never_flags_by_itself() -> None:
    """A paired artefact (python -m training.safety_cascade): rows carry the second model's P(high) as a fourth
    column."""
    cats = np.array([0.9, 0.1, 0.1, 0.1])
    with_second = Thresholds(high=0.8, flag=0.5, categories=(0.5,) * 4, second_high=0.9)
    flagged_and_second = np.array([0.2, 0.7, 0.1, 0.95])
    assert decide(flagged_and_second, cats, with_second) == (RiskLevel.HIGH, ("suicide",))
    assert decide(np.array([0.2, 0.7, 0.1, 0.5]), cats, with_second)[0] is RiskLevel.ELEVATED
    assert decide(np.array([0.9, 0.05, 0.05, 0.99]), cats, with_second) == (RiskLevel.NONE, ())  # not flagged
    assert decide(np.array([0.1, 0.05, 0.85, 0.0]), cats, with_second)[0] is RiskLevel.HIGH  # the first's own high
    rows = np.array([[0.9, 0.05, 0.05, 0.99], [0.2, 0.7, 0.1, 0.95]])
    assert decide_rows(rows, np.tile(cats, (2, 1)), with_second) == (RiskLevel.HIGH, ("suicide",))
    without = Thresholds(high=0.8, flag=0.5, categories=(0.5,) * 4)
    assert decide(flagged_and_second[:3], cats, without)[0] is RiskLevel.ELEVATED
    rng = np.random.default_rng(2)
    for _ in range(500):  # decide and the vectorised rule agree, row by row and over rows
        level = np.hstack([rng.dirichlet([0.6, 0.4, 0.4], size=3), rng.random((3, 1))])
        expected = SafetyResult()
        for i in range(3):
            lvl, got_cats = decide(level[i], cats, with_second)
            assert level_ranks(level[i : i + 1], with_second)[0] == lvl.rank
            expected = higher(expected, SafetyResult(level=lvl, categories=got_cats))
        assert decide_rows(level, np.tile(cats, (3, 1)), with_second)[0] is expected.level


def test_the_table_is_built_when_the_screen_loads_not_on_the_first_message() -> None:
    fresh = LearnedSafetyScreen.load()
    assert "index" in vars(fresh.model.featurizer)  # cached_property already filled: the first request does not pay


def test_a_hash_in_both_vocabularies_is_refused_not_guessed() -> None:
    from app.chat.safety.features import Featurizer

    shared = np.array([5, 9], dtype=np.uint64)
    featurizer = Featurizer(shared, np.ones(2, np.float32), np.array([9, 11], np.uint64), np.ones(2, np.float32))
    with pytest.raises(ValueError, match="share a hash"):
        featurizer.transform("anything")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I'm not suicidal, just tired", "i'm not ~suicidal just tired"),
        ("i dont want to die but i cant go on", "i dont ~want ~to ~die but i cant ~go ~on"),
        ("I'm suicidal and I don't know what to do", "i'm suicidal and i don't ~know ~what ~to ~do"),
        (
            "never thought I would say this out loud. I want to die",
            "never ~thought ~i ~would ~say this out loud i want to die",
        ),
        ("no", "no"),
    ],
)
def test_words_in_a_negations_scope_are_marked_up_to_the_clause_end(text: str, expected: str) -> None:
    from app.chat.safety.features import word_ngrams

    assert " ".join(word_ngrams(prepare(text), (1, 1), negation=True)) == expected
    assert "~" not in " ".join(word_ngrams(prepare(text), (1, 1)))  # off unless the artefact asks for it


def test_a_denial_and_a_statement_share_no_feature_for_the_denied_word() -> None:
    from app.chat.safety.features import word_ngram_hashes

    def words(text: str, negation: bool) -> set[int]:
        return set(word_ngram_hashes(prepare(text), (1, 1), negation)[0].tolist())

    said, denied = words("i'm suicidal", True), words("i'm not suicidal", True)
    assert len(said & denied) == 1  # "i'm" only: "suicidal" and "~suicidal" are different features
    assert len(words("i'm suicidal", False) & words("i'm not suicidal", False)) == 2


def test_negation_features_score_a_long_message_as_its_pieces_would() -> None:
    """The one-pass piece counts use the same marked words as scoring each piece on its own (each piece starts
    at a clause end here, so no scope crosses a cut)."""
    from app.chat.safety.features import Featurizer, word_ngram_hashes

    text = prepare("I'm not going to hurt anyone. " * 4 + "But I don't want to be here anymore. " * 4)
    starts = piece_starts(text, 60)
    assert len(starts) > 2
    keys = np.unique(word_ngram_hashes(text, (1, 2), True)[0])
    featurizer = Featurizer(
        np.zeros(0, np.uint64), np.ones(0, np.float32), keys, np.ones(keys.size, np.float32), negation=True
    )
    piece, feature, count = featurizer.piece_counts(text, starts)
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(text)
        found = featurizer.index.find(word_ngram_hashes(text[start:end], (1, 2), True)[0])
        expected = Counter(found[found >= 0].tolist())
        assert dict(zip(feature[piece == i].tolist(), count[piece == i].tolist(), strict=True)) == expected


def test_an_artefact_made_before_negation_features_reads_as_without_them(screen: LearnedSafetyScreen) -> None:
    from app.chat.safety.features import Featurizer

    state = screen.model.featurizer.to_state()
    assert Featurizer.from_state({k: v for k, v in state.items() if k != "negation"}).negation is False
    assert Featurizer.from_state({**state, "negation": True}).negation is True
