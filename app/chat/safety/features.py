"""Text features for the learned risk screen: TF-IDF over character 1-4-grams and word 1-2-grams.

Shared by the runtime (:mod:`app.chat.safety.classifier`) and the training script (``training/safety_classifier.py``),
so both see exactly the same features. Character n-grams work for Chinese (no word segmentation needed) and for
slang, typos and emoji; word n-grams add the English phrase level.

Character and word n-grams alike are identified by a 64-bit polynomial hash of their code points, computed with
numpy over the whole text at once (word n-grams from prefix hashes of the text, so no n-gram is built as a Python
string); each vocabulary is the sorted array of the hashes seen at least ``min_df`` times in training, looked up
through a table in front of it (:class:`HashIndex`: mostly one array read per n-gram, a binary search for the few
that collide). (Two different n-grams share a hash with probability about 2^-64 per pair.) A long message is scored
whole and in pieces in one pass (one lookup per n-gram, one small matrix product for all the rows), which keeps a
3,000-character window around a millisecond on one core (``benchmarks/safety_latency.py``); the artefact holds
hashes and weights only, never an n-gram's text. Optionally (``Featurizer.negation``, off in the shipped artefact),
an English word in a negation's scope hashes as a different word (:func:`negated`). Weights are scikit-learn's
``TfidfVectorizer(sublinear_tf=True)`` scheme: ``(1 + ln tf) * idf`` with ``idf = ln((1 + n) / (1 + df)) + 1``,
L2-normalised per block (character, word), blocks side by side.

Nothing here logs or keeps text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from app.chat.safety.text import normalize_text

MAX_CHARS = 3000
"""Only the last this-many characters of a message, or of a window of messages, are screened."""
CHUNK_CHARS = 200
"""A message longer than this is also screened in pieces of about this size (see :func:`piece_starts`)."""
CHAR_NGRAMS = (1, 4)
WORD_NGRAMS = (1, 2)

_MULT = np.uint64(0x9E3779B97F4A7C15)
_ONE = np.uint64(1)
_MULT_INV = np.uint64(pow(0x9E3779B97F4A7C15, -1, 2**64))
_SALTS = tuple(np.uint64((0x5BD1E995 * (n + 1) + 0x27D4EB2F165667C5 * n) % 2**64) for n in range(9))
_WORD_SALTS = (np.uint64(0xC2B2AE3D27D4EB4F), np.uint64(0x165667B19E3779F9))
_PAIR = np.uint64(0xFF51AFD7ED558CCD)
_NEGATED = np.uint64(0xD6E8FEB86659FD93)
NEGATION_CUES = (
    "not", "no", "never", "nobody", "nothing", "nowhere", "neither", "nor", "without", "cannot",
    "dont", "cant", "wont", "didnt", "isnt", "wasnt", "arent", "doesnt", "havent", "hasnt", "wouldnt", "couldnt",
    "shouldnt", "aint", "nah",
)  # fmt: skip
"""English words that open a negation scope (besides every word ending in ``n't``)."""
NEGATION_SCOPE = 4
"""A negation covers at most this many words after its cue, within the clause."""
_CLAUSE_END = np.array([ord(c) for c in '.,;:!?\n()"。，！？；…'], dtype=np.uint32)
_CLAUSE_WORDS = ("but", "though", "although", "yet")
LOAD = 0.3
"""At most this share of a :class:`HashIndex` table's slots hold a key."""
_SENTENCE_END = re.compile(r"[.!?;。！？；…]+\s*")

FloatArray = npt.NDArray[np.float32]
IndexArray = npt.NDArray[np.int64]
HashArray = npt.NDArray[np.uint64]
Counts = tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]
"""(piece, feature index, count) triples."""


def prepare(text: str, max_chars: int = MAX_CHARS) -> str:
    """The normalised last ``max_chars`` characters of ``text`` (cut before normalising, so 100 KB stays cheap)."""
    if len(text) > 2 * max_chars:
        text = text[-2 * max_chars :]
    return normalize_text(text)[-max_chars:]


def join_window(context: Sequence[str], text: str, max_chars: int = MAX_CHARS) -> str:
    """The recent context messages and the latest one, oldest first and newest last, about ``max_chars`` long.

    Stops adding older messages once the window is long enough; :func:`prepare` then keeps the exact tail.
    """
    parts = [text]
    total = len(text)
    for message in reversed(context):
        if total >= max_chars:
            break
        parts.append(message)
        total += len(message) + 1
    return " ".join(reversed(parts))


def piece_starts(norm: str, size: int = CHUNK_CHARS) -> list[int]:
    """Where the pieces of a prepared text start: consecutive pieces of at most about ``size`` characters, cut
    after sentence ends where possible (piece ``i`` is ``norm[starts[i]:starts[i + 1]]``).

    A long message is mostly narrative; TF-IDF over all of it dilutes one risky sentence, so the screen also judges
    pieces of about the length of the messages it was trained on.
    """
    starts = [0]
    last_end = 0  # the most recent sentence end inside the current piece
    for match in _SENTENCE_END.finditer(norm):
        end = match.end()
        if end - starts[-1] > size:
            cut = last_end if last_end > starts[-1] else starts[-1] + size
            while end - cut > size:  # a long stretch without a sentence end: cut it
                starts.append(cut)
                cut += size
            starts.append(cut)
        last_end = end
    while len(norm) - starts[-1] > size:
        cut = last_end if last_end > starts[-1] else starts[-1] + size
        starts.append(cut)
    return [start for i, start in enumerate(starts) if start < len(norm) and (i == 0 or start > starts[i - 1])]


def char_ngram_hashes(norm: str, ngrams: tuple[int, int] = CHAR_NGRAMS) -> HashArray:
    """The hash of every character n-gram of ``" " + norm + " "`` (n in ``ngrams``, inclusive), one per position."""
    codes = np.frombuffer(f" {norm} ".encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    low, high = ngrams
    out = []
    rolling = codes + _ONE
    for n in range(1, high + 1):
        if n > 1:
            rolling = rolling[:-1] * _MULT + codes[n - 1 :] + _ONE
        if n >= low and rolling.size:
            out.append((rolling + _SALTS[n]) * _MULT)
    return np.concatenate(out) if out else np.zeros(0, dtype=np.uint64)


def word_spans(norm: str) -> tuple[IndexArray, IndexArray]:
    """(starts, ends) of the Latin-script word tokens of a normalised text: runs of ``[a-z0-9]``, with an apostrophe
    inside a word when a letter follows it (``don't``, ``i'm``). Found with numpy, not a regex, for speed."""
    codes = np.frombuffer(norm.encode("utf-32-le"), dtype=np.uint32)
    if not codes.size:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    letter = (codes >= 97) & (codes <= 122)
    word = letter | ((codes >= 48) & (codes <= 57))
    inner = np.zeros_like(word)
    inner[1:-1] = (codes[1:-1] == 39) & word[:-2] & letter[2:]
    word |= inner
    edges = np.flatnonzero(np.diff(np.concatenate(([False], word, [False])).astype(np.int8)))
    return edges[0::2].astype(np.int64), edges[1::2].astype(np.int64)


def word_ngrams(norm: str, ngrams: tuple[int, int] = WORD_NGRAMS, negation: bool = False) -> list[str]:
    """Word n-grams (``"want"``, ``"want to"``) of a normalised text, as strings, for reading and tests: the
    features are their hashes (:func:`word_ngram_hashes`), in the same order. With ``negation``, a word in a
    negation's scope is written with a leading ``~`` (``"not ~suicidal"``)."""
    starts, ends = word_spans(norm)
    tokens = [norm[a:b] for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]
    if negation and tokens:
        scope = negated(norm, _token_hashes(norm)[0], starts, ends).tolist()
        tokens = ["~" + token if marked else token for token, marked in zip(tokens, scope, strict=True)]
    low, high = ngrams
    out: list[str] = []
    for n in range(low, high + 1):
        if n == 1:
            out.extend(tokens)
        else:
            out.extend(" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    return out


def _token_hashes(norm: str, negation: bool = False) -> tuple[HashArray, IndexArray]:
    """(hash, start) of every word token (:func:`word_spans`) of ``norm``, from prefix hashes of its code points.

    The hash of ``norm[a:b]`` is ``sum(c[j] * M^(b-1-j))`` (mod 2^64), computed as ``M^(b-1) * (S[b] - S[a])`` with
    ``S[i] = sum(c[j] * M^-j for j < i)``: a few cumulative numpy passes over the text, nothing per token.
    With ``negation``, a word in a negation's scope (:func:`negated`) gets another hash: a different feature.
    """
    starts, ends = word_spans(norm)
    if not starts.size:
        return np.zeros(0, dtype=np.uint64), starts
    end = int(ends[-1])
    codes = np.frombuffer(norm[:end].encode("utf-32-le"), dtype=np.uint32).astype(np.uint64) + _ONE
    powers = np.full(end, _MULT, dtype=np.uint64)
    powers[0] = _ONE
    powers = np.cumprod(powers, dtype=np.uint64)  # M^j
    inverse = np.full(end, _MULT_INV, dtype=np.uint64)
    inverse[0] = _ONE
    prefix = np.zeros(end + 1, dtype=np.uint64)
    prefix[1:] = np.cumsum(codes * np.cumprod(inverse, dtype=np.uint64), dtype=np.uint64)
    hashes = powers[ends - 1] * (prefix[ends] - prefix[starts])
    if negation:
        scope = negated(norm, hashes, starts, ends)
        hashes[scope] = hashes[scope] * _NEGATED + _NEGATED
    return hashes, starts


def negated(norm: str, hashes: HashArray, starts: IndexArray, ends: IndexArray) -> npt.NDArray[np.bool_]:
    """Which words are in a negation's scope: up to :data:`NEGATION_SCOPE` words after a cue (:data:`NEGATION_CUES`,
    or a word ending in ``n't``) in the same clause (a clause ends at punctuation or at a word like "but").

    "i'm not suicidal" and "i'm suicidal" then share no unigram for "suicidal", so a linear model can weigh the
    plain word as risk without the many denials that use it ("i'm not suicidal, just tired").
    """
    count = hashes.size
    codes = np.frombuffer(norm.encode("utf-32-le"), dtype=np.uint32)
    cue = np.isin(hashes, _CUE_HASHES)
    at = np.maximum(ends - 3, 0)  # a word of three or more characters ending in n't (don't, can't, isn't)
    padded = np.concatenate((codes, np.zeros(3, dtype=np.uint32)))
    cue |= (ends - starts >= 3) & (padded[at] == ord("n")) & (padded[at + 1] == ord("'")) & (padded[at + 2] == ord("t"))
    stops = np.concatenate(([0], np.cumsum(np.isin(codes, _CLAUSE_END))))  # clause-ending characters before i
    boundary = np.zeros(count, dtype=bool)  # a clause starts at this word
    boundary[1:] = stops[starts[1:]] > stops[ends[:-1]]
    boundary |= np.isin(hashes, _CLAUSE_HASHES)
    clause = np.cumsum(boundary)
    index = np.arange(count)
    last_cue = np.maximum.accumulate(np.where(cue, index, -1))
    safe = np.maximum(last_cue, 0)
    scope: npt.NDArray[np.bool_] = (
        (last_cue >= 0) & (last_cue < index) & (index - last_cue <= NEGATION_SCOPE) & (clause[safe] == clause)
    )
    return scope


_CUE_HASHES = np.concatenate([_token_hashes(word)[0] for word in NEGATION_CUES])
_CLAUSE_HASHES = np.concatenate([_token_hashes(word)[0] for word in _CLAUSE_WORDS])


def word_ngram_hashes(
    norm: str, ngrams: tuple[int, int] = WORD_NGRAMS, negation: bool = False
) -> tuple[HashArray, IndexArray]:
    """(hash, start of the first word) of every word n-gram of a normalised text; same words, same hash as the
    n-grams :func:`word_ngrams` lists (``n`` in ``ngrams``, at most 2; ``negation``: see :func:`negated`)."""
    tokens, starts = _token_hashes(norm, negation)
    low, high = ngrams
    if high > 2:
        raise ValueError("word n-grams of more than two words are not supported")
    out, where = [], []
    if low <= 1 and tokens.size:
        out.append((tokens + _WORD_SALTS[0]) * _MULT)
        where.append(starts)
    if high >= 2 and tokens.size > 1:
        out.append((tokens[:-1] * _PAIR + tokens[1:] + _WORD_SALTS[1]) * _MULT)
        where.append(starts[:-1])
    if not out:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)
    return np.concatenate(out), np.concatenate(where)


@dataclass(frozen=True)
class HashIndex:
    """Hash -> feature index for a vocabulary of n-gram hashes: a sorted array with a direct-mapped table in front.

    A binary search through the whole vocabulary for every n-gram of a long message was most of its screening time.
    The table gives each slot to the first key whose top bits (:func:`_home`) point there, so most lookups are one
    read: the slot holds the hash (found) or is empty (absent). Only a hash whose slot holds another key is looked up
    by binary search (it may be a key that lost its slot). The answer is exactly the binary search's.
    """

    keys: HashArray
    """The vocabulary: sorted, unique."""
    features: IndexArray
    """The feature index of each key."""
    slot_keys: HashArray
    slot_features: IndexArray
    """Per slot: the feature index of its key, or -1 when the slot is empty."""
    bits: int

    @classmethod
    def build(cls, keys: HashArray, features: IndexArray) -> HashIndex:
        """``keys`` (any order) and the feature index of each; ValueError when a hash appears twice."""
        order = np.argsort(keys)
        keys, features = keys[order], features[order].astype(np.int64)
        if keys.size > 1 and bool(np.any(keys[1:] == keys[:-1])):
            raise ValueError("two vocabulary entries share a hash; refit the vocabulary")
        bits = max(4, int(np.ceil(np.log2(max(keys.size, 1) / LOAD))))
        slots, first = np.unique(_home(keys, bits), return_index=True)
        slot_keys = np.zeros(1 << bits, dtype=np.uint64)
        slot_features = np.full(1 << bits, -1, dtype=np.int64)
        slot_keys[slots] = keys[first]
        slot_features[slots] = features[first]
        return cls(keys, features, slot_keys, slot_features, bits)

    def find(self, hashes: HashArray) -> IndexArray:
        """The feature index of each hash, -1 where it is not in the vocabulary."""
        home = _home(hashes, self.bits)
        found = np.take(self.slot_features, home)
        rest = np.flatnonzero((found >= 0) & (np.take(self.slot_keys, home) != hashes))
        if rest.size:
            pos = np.searchsorted(self.keys, hashes[rest])
            pos[pos >= self.keys.size] = 0
            found[rest] = np.where(self.keys[pos] == hashes[rest], self.features[pos], -1)
        return found


def _home(hashes: HashArray, bits: int) -> IndexArray:
    """A hash's first slot: its top ``bits`` bits (the hashes end with a multiply, so the top bits are mixed)."""
    return (hashes >> np.uint64(64 - bits)).astype(np.int64)


def _weights(counts: npt.NDArray[Any], idf: FloatArray) -> FloatArray:
    values: FloatArray = ((1.0 + np.log(counts.astype(np.float32))) * idf).astype(np.float32)
    norm = float(np.sqrt(np.dot(values, values)))
    return values / norm if norm > 0 else values


def piece_weights(counts: npt.NDArray[Any], idf: FloatArray, owner: IndexArray, pieces: int) -> FloatArray:
    """TF-IDF values for many pieces at once, L2-normalised within each piece (``owner``), as :meth:`Featurizer.
    transform` weighs one text."""
    values: FloatArray = ((1.0 + np.log(counts.astype(np.float32))) * idf).astype(np.float32)
    norms = np.sqrt(np.bincount(owner, weights=values * values, minlength=pieces)).astype(np.float32)
    norms[norms == 0] = 1.0
    return values / norms[owner]


@dataclass(frozen=True)
class Featurizer:
    """A fitted vocabulary: maps a normalised text to the indices and TF-IDF values of its known features.

    Feature ``i < len(char_keys)`` is the character n-gram whose hash is ``char_keys[i]``; the word n-gram whose hash
    is ``word_keys[j]`` is feature ``len(char_keys) + j``. Only hashes are kept, never an n-gram's text.
    """

    char_keys: HashArray
    char_idf: FloatArray
    word_keys: HashArray
    word_idf: FloatArray
    char_ngrams: tuple[int, int] = CHAR_NGRAMS
    word_ngrams: tuple[int, int] = WORD_NGRAMS
    negation: bool = False
    """English words in a negation's scope are their own features (:func:`negated`)."""

    @property
    def n_features(self) -> int:
        return int(self.char_keys.size + self.word_keys.size)

    @cached_property
    def index(self) -> HashIndex:
        """Both vocabularies in one table: a character n-gram's hash maps to its feature, a word n-gram's hash to
        its feature past the character block. Their hashes are salted apart, so a hash in both blocks would be a
        64-bit collision; it is refused (ValueError) rather than looked up as either."""
        keys = np.concatenate([self.char_keys, self.word_keys])
        return HashIndex.build(keys, np.arange(keys.size, dtype=np.int64))

    @cached_property
    def all_idf(self) -> FloatArray:
        """IDF of every feature, character block then word block."""
        return np.concatenate([self.char_idf, self.word_idf]).astype(np.float32)

    def transform(self, norm: str) -> tuple[IndexArray, FloatArray]:
        """(feature indices, TF-IDF values) of a text already passed through :func:`prepare`."""
        blocks = [char_ngram_hashes(norm, self.char_ngrams)] if self.char_keys.size else []
        if self.word_keys.size:  # (a block with no vocabulary, like the planner's character block, is not hashed)
            blocks.append(word_ngram_hashes(norm, self.word_ngrams, self.negation)[0])
        found = self.index.find(np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.uint64))
        indices, counts = np.unique(found[found >= 0], return_counts=True)
        split = int(np.searchsorted(indices, self.char_keys.size))  # each block is L2-normalised on its own
        idf = np.take(self.all_idf, indices)
        values = np.concatenate([_weights(counts[:split], idf[:split]), _weights(counts[split:], idf[split:])])
        return indices, values

    def piece_counts(self, norm: str, starts: Sequence[int]) -> Counts:
        """Raw counts of the known features of each piece of a prepared text, in one vectorised pass.

        Returns ``(piece, feature index, count)``, piece-major with ascending features (so the character block's
        come before the word block's). Piece ``i`` is ``norm[starts[i]:starts[i + 1]]``; an n-gram belongs to the
        piece it starts in (so a piece sees up to three characters, or a word, past its end), and word bigrams stay
        within a piece. Summed over the pieces, the character counts are exactly those of the whole text.
        """
        codes = np.frombuffer(f" {norm} ".encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
        bounds = np.asarray(starts, dtype=np.int64)
        # the piece of the n-gram starting at each position of " norm " (the leading space goes with piece 0)
        piece_at = np.maximum(np.searchsorted(bounds + 1, np.arange(codes.size), side="right") - 1, 0)
        hashes, pieces = [], []
        rolling = codes + _ONE
        low, high = self.char_ngrams
        for n in range(1, high + 1):
            if n > 1:
                rolling = rolling[:-1] * _MULT + codes[n - 1 :] + _ONE
            if n >= low and rolling.size:
                hashes.append((rolling + _SALTS[n]) * _MULT)
                pieces.append(piece_at[: rolling.size])
        tokens, token_starts = _token_hashes(norm, self.negation)
        if tokens.size:
            piece = np.searchsorted(bounds, token_starts, side="right") - 1
            if self.word_ngrams[0] <= 1:
                hashes.append((tokens + _WORD_SALTS[0]) * _MULT)
                pieces.append(piece)
            if self.word_ngrams[1] >= 2 and tokens.size > 1:
                same = piece[:-1] == piece[1:]  # bigrams stay within a piece
                hashes.append(((tokens[:-1] * _PAIR + tokens[1:] + _WORD_SALTS[1]) * _MULT)[same])
                pieces.append(piece[:-1][same])
        if not hashes:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
        return _count(self.index, np.concatenate(hashes), np.concatenate(pieces), self.n_features)

    def to_state(self) -> dict[str, Any]:
        """Plain arrays, for the artefact (no class of this module gets pickled, and no text)."""
        return {
            "char_keys": self.char_keys,
            "char_idf": self.char_idf,
            "word_keys": self.word_keys,
            "word_idf": self.word_idf,
            "char_ngrams": list(self.char_ngrams),
            "word_ngrams": list(self.word_ngrams),
            "negation": self.negation,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Featurizer:
        keys = {}
        for name in ("char_keys", "word_keys"):
            array = np.ascontiguousarray(state[name], dtype=np.uint64)
            if array.size > 1 and not bool(np.all(array[1:] > array[:-1])):
                raise ValueError(f"{name} must be sorted and unique")
            keys[name] = array
        return cls(
            char_keys=keys["char_keys"],
            char_idf=np.asarray(state["char_idf"], dtype=np.float32),
            word_keys=keys["word_keys"],
            word_idf=np.asarray(state["word_idf"], dtype=np.float32),
            char_ngrams=(int(state["char_ngrams"][0]), int(state["char_ngrams"][1])),
            word_ngrams=(int(state["word_ngrams"][0]), int(state["word_ngrams"][1])),
            negation=bool(state.get("negation", False)),  # artefacts made before negation features: off
        )


def _count(index: HashIndex, hashes: HashArray, piece: IndexArray, n_features: int) -> Counts:
    """(piece, feature index, count) of the hashes found in the vocabulary, piece-major with ascending features."""
    feature = index.find(hashes)
    hit = feature >= 0
    size = max(n_features, 1)
    key = piece[hit] * size + feature[hit]
    if key.size and (int(piece.max()) + 1) * size < 2**31:
        key = key.astype(np.int32)  # sorts about twice as fast
    key.sort()
    first = np.flatnonzero(np.concatenate(([True], key[1:] != key[:-1]))) if key.size else np.zeros(0, np.int64)
    counts = np.diff(np.append(first, key.size))
    unique = key[first].astype(np.int64)
    return unique // size, unique % size, counts
