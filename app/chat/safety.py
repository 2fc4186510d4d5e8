"""Crisis safety layer: screen each user message for risk and decide how to frame the reply.

Two parts, used by the chat service for every user turn:

* :class:`SafetyScreen` (a protocol) turns a message into a :class:`SafetyResult`: a :class:`RiskLevel`
  (``none`` | ``elevated`` | ``high``) and the categories seen (``suicide``, ``self_harm``,
  ``harm_to_others``, ``abuse``). :class:`LexicalSafetyScreen` is the default implementation: precompiled
  English and Simplified-Chinese patterns with rules for negation, third person, fiction/news, hypotheticals,
  past tense and idioms. It takes well under a millisecond per message.
* :class:`SafetyPolicy` (loaded from ``safety_policy.yaml`` next to this file, or any YAML with the same shape)
  maps a result to a :class:`SafetyDecision`: leave the reply alone, frame it with a short warm message and
  locale-specific crisis resources, or replace it. The decision is split into a leading piece and a trailing
  piece so a streaming server can send the leading piece before the model's first token.

Levels, as used here and in ``benchmarks/safety/labelled.jsonl``:

* ``high``: the user says, in the first person and about now or the future, that they want, intend or plan to
  die, hurt themselves or hurt someone, has the means ready, is doing it, or is being abused or threatened now.
* ``elevated``: passive wishes to be dead, hopelessness or feeling a burden, urges or intrusive thoughts,
  concern about someone else, or a past episode that is not described as resolved.
* ``none``: everything else, including idioms ("this exam is killing me", "累死了"), negations ("I would never
  kill myself", "我不会自杀"), fiction and news, and past episodes the user says are behind them.

Limits, stated plainly: this is a lexical first line of defence, not a clinical assessment. It matches words
and short phrases; it does not understand meaning. It misses sarcasm and irony, coded or emerging slang
(beyond a few entries such as "unalive" and "kms"), euphemisms it has no pattern for, misspellings and
creative spellings beyond those in its patterns, risk spread across several turns (it sees one message at a
time), and every language other than English and Simplified Chinese (Traditional characters are mostly not
matched). Its negation, third-person and past-tense rules are heuristics over a few words of context and will
sometimes be wrong in both directions. When unsure it leans towards flagging: the cost of a gentle resource line
is small, the cost of a miss is not. Pair it with a model-based classifier and human review for anything beyond a
first screen. Message text is never logged or stored by this module. More in docs/safety.md; measured by
benchmarks/safety_bench.py.
"""

from __future__ import annotations

import importlib
import re
import unicodedata
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from enum import StrEnum
from functools import cached_property, lru_cache
from itertools import compress
from pathlib import Path
from types import ModuleType
from typing import Literal, Protocol, runtime_checkable

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "CATEGORIES",
    "DEFAULT_POLICY_PATH",
    "Category",
    "LexicalSafetyScreen",
    "PolicyAction",
    "RiskLevel",
    "SafetyDecision",
    "SafetyPolicy",
    "SafetyResult",
    "SafetyScreen",
    "apply_policy",
    "detect_language",
    "normalize_text",
]


class RiskLevel(StrEnum):
    """How much risk a message shows; ordered ``none`` < ``elevated`` < ``high``."""

    NONE = "none"
    ELEVATED = "elevated"
    HIGH = "high"

    @property
    def rank(self) -> int:
        """0, 1 or 2, for comparisons."""
        return _LEVEL_RANK[self]


_LEVEL_RANK = {RiskLevel.NONE: 0, RiskLevel.ELEVATED: 1, RiskLevel.HIGH: 2}


def _min_level(a: RiskLevel, b: RiskLevel) -> RiskLevel:
    return a if a.rank <= b.rank else b


class Category(StrEnum):
    """What kind of risk a message shows."""

    SUICIDE = "suicide"
    SELF_HARM = "self_harm"
    HARM_TO_OTHERS = "harm_to_others"
    ABUSE = "abuse"


CATEGORIES: tuple[str, ...] = tuple(c.value for c in Category)
"""All categories, in the order results list them."""


@dataclass(frozen=True)
class SafetyResult:
    """The outcome of screening one message. Holds no message text."""

    level: RiskLevel = RiskLevel.NONE
    categories: tuple[str, ...] = ()
    language: str | None = None
    """Language the screen detected from the script ("en" or "zh"); None when the screen does not say."""

    @property
    def flagged(self) -> bool:
        """True when the level is above ``none``."""
        return self.level is not RiskLevel.NONE

    def to_dict(self) -> dict[str, object]:
        """The API extension object: ``{"level": ..., "categories": [...]}``."""
        return {"level": self.level.value, "categories": list(self.categories)}


@runtime_checkable
class SafetyScreen(Protocol):
    """Anything that can screen a user message. Implementations must not log or keep the text."""

    def screen(self, text: str) -> SafetyResult:
        """Screen one user message."""
        ...


# --------------------------------------------------------------------------------------------------------------
# Text normalisation and language detection
# --------------------------------------------------------------------------------------------------------------

_QUOTES = str.maketrans(
    {"\u2018": "'", "\u2019": "'", "\u201b": "'", "\u2032": "'", "`": "'", "\u201c": '"', "\u201d": '"'}
)
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
_LATIN = re.compile(r"[a-z]")


def normalize_text(text: str) -> str:
    """NFKC (full-width forms to ASCII), casefold, straight quotes, single spaces."""
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text).translate(_QUOTES)
    return " ".join(text.casefold().replace("`", "'").split())


def detect_language(text: str) -> str:
    """Return "zh" when Han characters carry the message (one weighs as much as three Latin letters), else "en"."""
    if text.isascii():
        return "en"
    han = len(_HAN.findall(text))
    if not han:
        return "en"
    latin = len(_LATIN.findall(text.casefold()))
    return "zh" if han * 3 >= latin else "en"


# --------------------------------------------------------------------------------------------------------------
# Fast patterns
# --------------------------------------------------------------------------------------------------------------


def _split_alternatives(pattern: str) -> list[str]:
    """Split a regex at its top-level ``|`` (outside groups and character classes)."""
    parts: list[str] = []
    buf: list[str] = []
    depth = 0
    in_class = False
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            buf.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "|" and depth == 0:
            parts.append("".join(buf))
            buf = []
            i += 1
            continue
        buf.append(c)
        i += 1
    parts.append("".join(buf))
    return parts


def _is_word(c: str) -> bool:
    return c == "_" or (c.isascii() and c.isalnum())


def _anchors(pattern: str) -> tuple[str, ...]:
    """Literal strings of which at least one occurs in every match of ``pattern``; () when none is known.

    Derived from CPython's regex parser (``re._parser``, private); if that is unavailable or changes shape, the
    result is () and the pattern simply always runs.
    """
    try:
        constants = importlib.import_module("re._constants")
        parser = importlib.import_module("re._parser")
        found = _sequence_anchor(list(parser.parse(pattern)), constants)
    except Exception:  # any parser difference only disables the shortcut
        return ()
    if not found or any(len(a) < 2 and a.isascii() for a in found):
        return ()
    return found


def _sequence_anchor(items: list[tuple[object, object]], c: ModuleType) -> tuple[str, ...] | None:
    candidates: list[tuple[str, ...]] = []
    run: list[str] = []
    for op, av in items:
        if op is c.LITERAL and isinstance(av, int):
            run.append(chr(av))
            continue
        if run:
            candidates.append(("".join(run),))
            run = []
        sub: tuple[str, ...] | None = None
        if op is c.SUBPATTERN and isinstance(av, tuple):
            sub = _sequence_anchor(list(av[-1]), c)
        elif op is c.BRANCH and isinstance(av, tuple):
            alternatives = [_sequence_anchor(list(branch), c) for branch in av[1]]
            if alternatives and all(alternatives):
                sub = tuple(dict.fromkeys(a for alt in alternatives if alt for a in alt))
        elif op in (c.MAX_REPEAT, c.MIN_REPEAT) and isinstance(av, tuple) and av[0] >= 1:
            sub = _sequence_anchor(list(av[2]), c)
        if sub:
            candidates.append(sub)
    if run:
        candidates.append(("".join(run),))
    if not candidates:
        return None
    return max(candidates, key=lambda cand: (min(len(a) for a in cand), -len(cand)))


class _Pattern:
    """A regex searched as separate top-level alternatives, each free of a leading ``\\b`` and run only when one
    of its anchor strings occurs in the text.

    CPython's ``re`` skips quickly to candidate positions only when a pattern starts with a literal or a plain
    set of first characters; a leading ``\\b``, a top-level alternation or an optional first group makes it try
    every position. So each alternative is compiled on its own, its leading word boundary is checked by hand
    (ASCII word characters, so "我想kill myself" still matches), and each distinct anchor is looked up once per
    text with a C-level substring search. This keeps a 1,000-character message well under a millisecond.
    """

    __slots__ = ("always", "anchor_parts", "anchors", "parts")

    def __init__(self, pattern: str | list[str], *, anchored: bool = True) -> None:
        """``anchored=False`` for patterns only ever searched in short windows, where anchor look-ups cost more
        than they save."""
        alternatives = _split_alternatives(pattern) if isinstance(pattern, str) else pattern
        parts: list[tuple[re.Pattern[str], bool, tuple[str, ...]]] = []
        by_anchor: dict[str, list[int]] = {}
        always: list[int] = []
        for alt in alternatives:
            boundary = alt.startswith("\\b")
            anchors = _anchors(alt) if anchored else ()
            for anchor in anchors:
                by_anchor.setdefault(anchor, []).append(len(parts))
            if not anchors:
                always.append(len(parts))
            parts.append((re.compile(alt[2:] if boundary else alt), boundary, anchors))
        self.parts = tuple(parts)
        self.anchors = tuple(by_anchor)
        self.anchor_parts = tuple(frozenset(v) for v in by_anchor.values())
        self.always = frozenset(always)

    def active(self, text: str) -> list[int]:
        """Indices of the alternatives that can match ``text``, in order."""
        return sorted(self.always.union(*compress(self.anchor_parts, [a in text for a in self.anchors])))

    def finditer(self, text: str) -> Iterator[re.Match[str]]:
        """Non-overlapping matches of each alternative in turn (not sorted by position)."""
        for index in self.active(text):
            rx, boundary, _ = self.parts[index]
            yield from _matches(rx, boundary, text)

    def search(self, text: str) -> bool:
        """True when any alternative matches."""
        return next(self.finditer(text), None) is not None


def _matches(
    rx: re.Pattern[str], boundary: bool, text: str, pos: int = 0, endpos: int | None = None
) -> Iterator[re.Match[str]]:
    """Non-overlapping matches of ``rx`` in ``text[pos:endpos]``; with ``boundary``, only those at a word start."""
    end_at = len(text) if endpos is None else endpos
    while (m := rx.search(text, pos, end_at)) is not None:
        start, end = m.span()
        if boundary and start and _is_word(text[start - 1]) == _is_word(text[start]):
            pos = start + 1
            continue
        yield m
        pos = end if end > start else start + 1


class _CompiledRules:
    """One language's rules as a single :class:`_Pattern` whose alternatives remember their rule."""

    def __init__(self, rules: tuple[_Rule, ...]) -> None:
        ordered = sorted(rules, key=lambda r: -r.level.rank)  # high first, so pruning in matches() bites early
        alternatives: list[str] = []
        owners: list[_Rule] = []
        for rule in ordered:
            for alt in rule.alternatives:
                alternatives.append(alt)
                owners.append(rule)
        self.pattern = _Pattern(alternatives)
        self.owners = tuple(owners)

    def matches(
        self, text: str, bounds: list[tuple[int, int]], starts: list[int], best: dict[Category, RiskLevel]
    ) -> Iterator[tuple[_Rule, re.Match[str], int]]:
        """(rule, match, clause index) for matches inside the clauses of ``bounds``.

        An alternative runs only over the clauses where its anchors occur, and not at all when its rule cannot
        raise ``best`` (which the caller updates between matches): a match never scores above its rule's level.
        """
        clauses_of: dict[str, set[int]] = {}
        for index in self.pattern.active(text):
            rule = self.owners[index]
            current = best.get(rule.category)
            if current is not None and current.rank >= rule.level.rank:
                continue
            rx, boundary, anchors = self.pattern.parts[index]
            if anchors:
                found: set[int] = set()
                for anchor in anchors:
                    if anchor not in clauses_of:
                        clauses_of[anchor] = _clauses_with(anchor, text, starts)
                    found |= clauses_of[anchor]
                targets: Iterable[int] = sorted(found)
            else:
                targets = range(len(bounds))
            for clause in targets:
                start, end = bounds[clause]
                for match in _matches(rx, boundary, text, start, end):
                    yield rule, match, clause


def _clauses_with(anchor: str, text: str, starts: list[int]) -> set[int]:
    """Indices of the clauses in which ``anchor`` occurs."""
    found = set()
    pos = text.find(anchor)
    while pos >= 0:
        found.add(bisect_right(starts, pos) - 1)
        pos = text.find(anchor, pos + 1)
    return found


# --------------------------------------------------------------------------------------------------------------
# Rules
# --------------------------------------------------------------------------------------------------------------

Person = Literal["first", "third", "unknown"]
# How a rule decides whose risk it is:
#   "subject": nearest subject word before the match (perpetrator or person at risk), unless the match's own
#              `who` group (myself/herself/his ...) says it; falls back to the rule's default person.
#   "victim":  the match's `who` group names the victim (me -> first person); an agent (he, my dad ...) must
#              appear before the match in the clause.
PersonMode = Literal["subject", "victim"]


@dataclass(frozen=True)
class _Rule:
    category: Category
    level: RiskLevel
    alternatives: tuple[str, ...]
    lang: str
    mode: PersonMode = "subject"
    default_person: Person = "first"
    negatable: bool = True
    past: bool = False
    needs_cue: bool = False
    not_followed_by: re.Pattern[str] | None = None


def _rule(
    category: Category,
    level: RiskLevel,
    pattern: str,
    lang: str,
    *,
    mode: PersonMode = "subject",
    default_person: Person = "first",
    negatable: bool = True,
    past: bool = False,
    needs_cue: bool = False,
    not_followed_by: str | None = None,
) -> _Rule:
    return _Rule(
        category=category,
        level=level,
        alternatives=tuple(_split_alternatives(pattern)),
        lang=lang,
        mode=mode,
        default_person=default_person,
        negatable=negatable,
        past=past,
        needs_cue=needs_cue,
        not_followed_by=re.compile(not_followed_by) if not_followed_by else None,
    )


S, SH, HO, AB = Category.SUICIDE, Category.SELF_HARM, Category.HARM_TO_OTHERS, Category.ABUSE
HIGH, ELEV = RiskLevel.HIGH, RiskLevel.ELEVATED

_REFLEXIVE = r"(?P<who>myself|my ?self|herself|himself|themselves|themself|yourself)"
_POSSESSIVE = r"(?P<who>my|his|her|their|your)"
_INTENT_EN = (
    r"(?:wants?\s+to|wanted\s+to|wanna|going\s+to|gonna|gon\s+na|about\s+to|will|'ll|plan(?:ning)?\s+(?:to|on)"
    r"|intend\s+to|ready\s+to|decided\s+to|need\s+to|have\s+to|gotta)"
)
_VIOLENT_EN = r"(?:kill|murder|stab|shoot|strangle|poison|beat|hurt|attack|choke|slit|burn)"
_PEOPLE_EN = (
    r"(?:mom|mum|mother|dad|father|brother|sister|wife|husband|boyfriend|girlfriend|bf|gf|ex|ex-[a-z]+|partner"
    r"|boss|manager|teacher|roommate|flatmate|neighbou?r|son|daughter|kids?|baby|family|friends?|classmates?"
    r"|coworkers?|colleagues?|stepdad|stepfather|stepmom|stepmother|uncle|aunt|cousin|grandma|grandpa|parents"
    r"|landlord|bully|bullies)"
)
_TARGET_EN = (
    rf"(?:him|her|them|everyone|everybody|someone|somebody|people|(?:my|his|her|their|our)\s+{_PEOPLE_EN}(?:'s)?"
    r"|the\s+(?:guy|man|woman|girl|boy|kid|kids|teacher|bully|bitch|bastard|people|family)"
    r"|that\s+(?:guy|man|woman|girl|boy|bitch|bastard|asshole|person|kid))"
)
_AGENT_EN = _Pattern(
    r"\b(?:he|she|they|he's|she's|they're|husband|wife|partner|boyfriend|girlfriend|bf|gf|dad|daddy|father"
    r"|mom|mum|mother|mommy|stepdad|stepfather|stepmom|stepmother|step-dad|step-mom|uncle|aunt|brother|sister"
    r"|parents?|grandpa|grandfather|grandma|cousin|coach|teacher|boss|ex|fianc[eé]e?|spouse|man|guy|someone"
    r"|somebody|people|kids|classmates?|bully|bullies|priest)\b",
    anchored=False,
)

_EN_RULES: tuple[_Rule, ...] = (
    # ---- suicide: explicit, first person -> high
    _rule(S, HIGH, rf"\b(?:kill(?:ing|ed|s)?|off(?:ing)?|unalive)\s+{_REFLEXIVE}\b", "en"),
    _rule(S, HIGH, rf"\bend(?:ing|ed)?\s+{_POSSESSIVE}\s+(?:own\s+)?li(?:fe|ves)\b", "en"),
    _rule(S, HIGH, rf"\b(?:tak(?:e|ing)|took)\s+{_POSSESSIVE}\s+own\s+li(?:fe|ves)\b", "en"),
    _rule(S, HIGH, r"\bend(?:ing)?\s+it\s+all\b", "en"),
    _rule(
        S,
        HIGH,
        r"\b(?:going\s+to|gonna|will|'ll|want\s+to|about\s+to|ready\s+to|decided\s+to|i'm|i\s+am)\s+"
        r"(?:just\s+)?end(?:ing)?\s+it\s*(?:$|[,.!]|tonight|today|now|tomorrow|soon|this\s+week)",
        "en",
    ),
    _rule(
        S,
        HIGH,
        r"\b(?:commit(?:ting)?|consider(?:ing)?|contemplat(?:e|ing)|plan(?:ning)?|think(?:ing)?\s+(?:about|of)|attempt(?:ing)?"
        r"|obsess(?:ing)?\s+(?:about|over))\s+(?:my\s+)?suicide\b",
        "en",
    ),
    _rule(S, HIGH, r"\b(?:attempted|tried)\s+suicide\b|\boverdosed\b", "en", past=True),
    _rule(S, HIGH, r"\bsuicidal\b", "en", default_person="first"),
    _rule(S, ELEV, r"\bsuicides?\b", "en", default_person="unknown"),
    _rule(
        S,
        HIGH,
        r"\bsuicide\s+(?:note|letter|plan)s?\b|\b(?:goodbye|farewell)\s+(?:letter|note)s?\b",
        "en",
        default_person="unknown",
    ),
    _rule(
        S,
        HIGH,
        r"\b(?:wants?\s+to|wanted\s+to|wanna|gonna|going\s+to|ready\s+to|deserve\s+to|need\s+to|just\s+want\s+to"
        r"|long\s+to|would\s+like\s+to|'d\s+like\s+to)\s+(?:just\s+)?die\b",
        "en",
    ),
    _rule(
        S,
        HIGH,
        r"\b(?:don'?t|do\s+not|doesn'?t|does\s+not|no\s+longer)\s+want\s+to\s+(?:live|be\s+alive|exist|keep\s+living)\b",
        "en",
        negatable=False,
    ),
    _rule(S, HIGH, r"\b(?:overdos(?:e|ing)|od(?:'?ing)?\s+on)\b", "en", default_person="unknown"),
    _rule(
        S,
        HIGH,
        r"\b(?:take|taking|swallow(?:ing)?|down(?:ing)?)\s+(?:them\s+)?all\s+(?:of\s+)?(?:them|the|my|at\s+once|tonight)"
        r"|\b(?:sav|stockpil|hoard|collect)(?:e|ed|ing)\s+(?:up\s+)?(?:my\s+|all\s+my\s+)?(?:sleeping\s+)?"
        r"(?:pills|meds|medication|antidepressants|tablets|painkillers)"
        r"|\b(?:pills|meds|tablets)\b[^.!?]{0,20}\bready\b|\bwhole\s+bottle\s+of\s+(?:pills|meds|tablets|sleeping)",
        "en",
    ),
    _rule(
        S,
        HIGH,
        r"\bjump(?:ing|ed)?\s+(?:off|from|in\s+front\s+of)\s+(?:the\s+|a\s+|my\s+|this\s+|that\s+)?(?:[a-z]+\s+)?"
        r"(?:bridge|roof|building|balcony|cliff|tower|window|ledge|train|overpass|car\s+park|parking\s+garage)\b",
        "en",
        not_followed_by=r"\s+(?:into|in)\s+(?:the\s+)?(?:lake|water|sea|pool|ocean|river)",
    ),
    _rule(
        S,
        HIGH,
        r"\b(?:going\s+to|gonna|about\s+to|want\s+to|will|'ll|thinking\s+(?:of|about)|ready\s+to)\s+jump(?:ing)?\b",
        "en",
        not_followed_by=r"\s+(?:in|into|on|onto|at|up|over|around|for|ship|rope|back|ahead|to|through|the\s+gun"
        r"|straight|right|out\s+of\s+(?:bed|my\s+skin)|start)",
    ),
    _rule(S, HIGH, rf"\bhang(?:ing|ed)?\s+{_REFLEXIVE}\b", "en"),
    _rule(S, HIGH, r"\bnoose\b", "en", default_person="unknown"),
    _rule(
        S,
        HIGH,
        r"\b(?:driv(?:e|ing)|crash(?:ing)?|steer(?:ing)?)\s+(?:my\s+car\s+|the\s+car\s+)?(?:into|off)\s+(?:a|the)\s+"
        r"(?:wall|tree|truck|lorry|river|cliff|bridge|road|oncoming|barrier)",
        "en",
    ),
    _rule(
        S,
        HIGH,
        rf"\b(?:us(?:e|ing)|turn(?:ing)?|point(?:ing)?)\s+(?:it|the\s+gun|a\s+gun|the\s+knife|the\s+blade)\s+on\s+"
        rf"{_REFLEXIVE}",
        "en",
    ),
    _rule(
        S,
        HIGH,
        r"\b(?:rope|pills|razor|blade|gun)\b",
        "en",
        needs_cue=True,  # the means plus a stated plan anywhere in the message (see _PLAN_EN)
    ),
    _rule(S, ELEV, r"\bkms\b", "en"),
    _rule(
        S,
        HIGH,
        r"\b(?:took|take|taking|swallow(?:ed|ing)?)\s+(?:like\s+)?(?:\d{2,}|a\s+(?:whole\s+)?bottle\s+of|all\s+(?:of\s+)?"
        r"(?:my|the))\s+(?:[a-z]+\s+)?(?:paracetamol|tylenol|acetaminophen|ibuprofen|aspirin|pills|tablets|meds"
        r"|antidepressants|painkillers)\b"
        r"|\bhow\s+many\s+(?:[a-z]+\s+){0,3}(?:would\s+it|does\s+it|would|do\s+i\s+need|to)\s+(?:take\s+)?(?:to\s+)?"
        r"(?:die|kill\s+(?:me|myself|someone)|overdose|od)\b"
        r"|\b(?:painless|easiest|quickest|fastest|best|surest)\s+way\s+to\s+(?:die|end\s+it|kill\s+(?:myself|yourself))\b"
        r"|\blethal\s+dose\b",
        "en",
    ),
    _rule(
        S,
        ELEV,
        r"\b(?:nobody|no\s+one|no-one)\s+would\s+(?:even\s+)?(?:care|notice|miss\s+me|cry)\b"
        r"|\b(?:think|thinking|thoughts?)\s+(?:a\s+lot\s+)?(?:about|of)\s+(?:death|dying|being\s+dead|not\s+being\s+here)\b",
        "en",
        negatable=False,
    ),
    # ---- suicide: passive or indirect -> elevated
    _rule(
        S,
        ELEV,
        r"\bwish\s+(?:that\s+)?i\s+(?:was|were|had\s+been)\s+(?:dead|never\s+born|gone|not\s+(?:here|alive|born))\b"
        r"|\bwish\s+i\s+(?:could\s+|would\s+)?(?:just\s+)?(?:disappear|vanish|stop\s+existing|not\s+exist|die\b|fall\s+asleep)"
        r"|\bwish\s+i\s+(?:had\s+)?never\s+(?:been\s+born|existed)",
        "en",
    ),
    _rule(
        S,
        ELEV,
        r"\b(?:hope|wish|want|pray)\b[^.!?]{0,25}\b(?:never|not|don'?t|won'?t)\s+wake\s+up\b"
        r"|\b(?:fall|fell|falling|go|went)\s+(?:to\s+)?a?sleep\s+and\s+(?:never|not|don'?t)\s+(?:wake|woke)\s+up\b"
        r"|\bnever\s+wake\s+up\s+again\b",
        "en",
        negatable=False,
    ),
    _rule(
        S,
        ELEV,
        r"\bbetter\s+off\s+(?:without\s+me|dead|if\s+i)\b"
        r"|\bif\s+i\s+(?:just\s+)?(?:wasn'?t|weren'?t|was\s+not|were\s+not)\s+(?:here|around|alive)\b"
        r"|\bif\s+i\s+(?:was|were|just)\s+(?:gone|dead|not\s+here)\b|\bwithout\s+me\s+around\b",
        "en",
        negatable=False,
    ),
    _rule(
        S,
        ELEV,
        r"\b(?:what'?s|what\s+is)\s+(?:even\s+)?the\s+point\s+(?:of|in)\s+(?:living|life|going\s+on|being\s+alive"
        r"|staying\s+alive|me\s+being\s+here)\b"
        r"|\b(?:tired|sick)\s+of\s+(?:living|life|being\s+alive|existing)\b"
        r"|\b(?:no|any|a)\s+(?:reason|point)\s+(?:to|in)\s+(?:live|living|keep\s+going|go\s+on|going\s+on|be\s+alive"
        r"|stay\s+alive|exist)\b"
        r"|\blife\s+(?:is|feels|seems)\s+(?:so\s+|completely\s+|totally\s+|just\s+)?(?:pointless|meaningless"
        r"|not\s+worth\s+living)\b|\b(?:not|isn'?t|ain'?t)\s+worth\s+living\b"
        r"|\bno\s+point\s+(?:anymore|any\s+more|in\s+anything|in\s+trying|in\s+going\s+on)\b",
        "en",
        negatable=False,
    ),
    _rule(
        S,
        ELEV,
        r"\b(?:a|such\s+a|just\s+a)\s+burden\s+(?:to|on|for)\b|\bi'?m\s+(?:just\s+|such\s+)?a\s+burden\b",
        "en",
        negatable=False,
    ),
    _rule(
        S,
        ELEV,
        r"\bwouldn'?t\s+mind\s+(?:if\s+(?:a|the|some)\s+[a-z]+\s+(?:hit|killed|ran\s+over)\s+me|dying|being\s+dead"
        r"|not\s+waking\s+up)|\bto\s+not\s+exist\b|\b(?:want|wish|like|rather)\s+(?:to\s+)?(?:not\s+exist|stop\s+"
        r"existing|disappear\s+forever)\b|\b(?:want|wanna|need)\s+to\s+disappear\b",
        "en",
        negatable=False,
    ),
    _rule(S, ELEV, r"\b(?:rather|sooner)\s+be\s+dead\b|\bdark\s+thoughts\b|\bno\s+way\s+out\b", "en"),
    _rule(
        S,
        ELEV,
        r"\b(?:can'?t|cannot)\s+(?:go\s+on|keep\s+going|do\s+this|take\s+(?:it|this)|keep\s+living)\s+any\s*more\b",
        "en",
        negatable=False,
    ),
    # ---- self-harm
    _rule(
        SH,
        HIGH,
        rf"\b(?:cut|cutting|burn(?:ed|t|ing)?|hurt(?:ing)?|harm(?:ing|ed)?|punish(?:ing|ed)?|starv(?:e|ing|ed)"
        rf"|scratch(?:ing|ed)?|stab(?:bing|bed)?|hit(?:ting)?|cuts|burns|hurts|harms)\s+{_REFLEXIVE}\b",
        "en",
        not_followed_by=r"\s*(?:shaving|cooking|chopping|on\s+(?:a|the|some|my)|by\s+accident|accidentally|while"
        r"|at\s+the\s+gym|at\s+work|playing|during|lifting|running|skiing|falling|in\s+the\s+kitchen"
        r"|with\s+(?:work|overtime|stress))",
    ),
    _rule(
        SH,
        HIGH,
        rf"\bcut(?:ting|s)?\s+{_POSSESSIVE}\s+(?:arms?|wrists?|legs?|thighs?|skin|stomach|hips?)\b",
        "en",
    ),
    _rule(
        SH,
        HIGH,
        r"\b(?:start(?:ed|ing)?|been|keep|kept|stop(?:ped)?|quit|go\s+back\s+to)\s+cutting\b(?!\s+(?:down|back|costs?"
        r"|class|classes|carbs|sugar|corners|hair|the|my\s+hair|onions|out|in|it\s+close|ties|people))"
        r"|\bcut(?:ting)?\s+again\b",
        "en",
    ),
    _rule(
        SH,
        HIGH,
        r"\bcut\s+(?:myself\s+)?(?:last\s+night|yesterday|today|tonight|this\s+morning|deep(?:er)?)\b"
        r"|\brelaps(?:e|ed|ing)\b[^.!?]{0,20}\b(?:cut|cutting|burned|burnt)\b",
        "en",
    ),
    _rule(
        SH,
        HIGH,
        r"\bself[\s-]?(?:harm(?:ing|ed|s)?|injur(?:y|e|ing|ed)|mutilat[a-z]*)\b",
        "en",
        default_person="unknown",
    ),
    _rule(
        SH,
        ELEV,
        r"\burges?\s+to\s+(?:cut|self[\s-]?harm|hurt\s+myself|burn\s+myself)\b",
        "en",
    ),
    _rule(
        SH,
        HIGH,
        r"\b(?:hit|hitting|bang|banging|punch|punching)\s+(?:my\s+head|myself|the\s+wall)\b[^.!?]{0,40}"
        r"\b(?:until|till|til)\s+(?:it|i)\s+(?:bleed|bruise)",
        "en",
    ),
    # ---- harm to others
    _rule(
        HO,
        HIGH,
        rf"\b{_INTENT_EN}\s+(?:[a-z]+\s+){{0,2}}?{_VIOLENT_EN}(?:s|ed|ing)?\s+{_TARGET_EN}\b",
        "en",
        not_followed_by=r"\s+with\s+kindness|\s+to\s+it\b|[^.!?]{0,25}\b(?:games?|match(?:es)?|finals?|races?|score"
        r"|points?|chess|tournament|league|rounds?|semis?|playoffs?|cup)\b",
    ),
    _rule(HO, HIGH, r"\bshoot\s+up\s+(?:my|the|a|our|this)\s+(?:school|class|office|workplace|church|mall)\b", "en"),
    _rule(
        HO,
        HIGH,
        rf"\b{_INTENT_EN}\s+(?:use|using)\s+(?:it|the\s+gun|a\s+gun|the\s+knife|a\s+knife|my\s+gun|his\s+gun)\s+on\s+"
        rf"{_TARGET_EN}",
        "en",
    ),
    _rule(
        HO,
        HIGH,
        r"\bbring(?:ing)?\s+(?:a|my|his|her|the)\s+(?:gun|knife|weapon|rifle|bomb)\s+to\s+(?:school|class|work)\b",
        "en",
    ),
    _rule(
        HO,
        ELEV,
        rf"\b(?:thoughts?|fantas[a-z]+|urges?|images?|dreams?)\s+(?:of|about)\s+(?:hurting|killing|harming|stabbing"
        rf"|attacking|shooting)\s+{_TARGET_EN}",
        "en",
    ),
    # ---- abuse (victim in the `who` group; needs an agent before it)
    _rule(
        AB,
        HIGH,
        r"\b(?:hits?|hitting|beats?|beating|beaten|punch(?:es|ed|ing)?|kick(?:s|ed|ing)?|slap(?:s|ped|ping)?"
        r"|chok(?:es|ed|ing|e)|strangl(?:es|ed|ing|e)|shov(?:es|ed|ing|e)|whip(?:s|ped)?|smack(?:s|ed)?|throttl(?:es|ed))"
        r"\s+(?P<who>me|us|her|him|them)\b",
        "en",
        mode="victim",
        not_followed_by=r"\s+(?:up\b|at\b|in\s+(?:a|the)\s+(?:game|race|match)|to\s+it|back\b|out\b)"
        r"|[^.!?]{0,30}\b(?:pillow|snowball|nerf|water\s+balloon|by\s+accident|accidentally|playing|play\s+fight)",
    ),
    _rule(
        AB,
        HIGH,
        r"\b(?:threaten(?:s|ed|ing)?\s+to|said\s+(?:he|she|they)(?:'d|\s+would|'ll|\s+will)"
        r"|swore\s+(?:he|she|they)(?:'d|\s+would))\s+(?:kill|hurt|murder|stab|shoot|beat)\s+(?P<who>me|us|her|him|them)\b",
        "en",
        mode="victim",
    ),
    _rule(
        AB,
        HIGH,
        r"\b(?:going\s+to|gonna|will|'ll|gon\s+na)\s+(?:kill|murder|hurt)\s+(?P<who>me|us)\b",
        "en",
        mode="victim",
        needs_cue=True,
    ),
    _rule(
        AB,
        HIGH,
        r"\b(?:rap(?:ed|es|ing|e)|molest(?:s|ed|ing)?|sexually\s+(?:assault|abus)(?:ed|es|ing)?|grop(?:es|ed|ing|e)"
        r"|abus(?:es|ed|ing|e)|assault(?:s|ed|ing)?)\s+(?P<who>me|us|her|him|them)\b",
        "en",
        mode="victim",
    ),
    _rule(
        AB,
        HIGH,
        r"\b(?:was|were|got|been|being|am|is|are|get|gets|getting)\s+(?:[a-z]+\s+)?(?:raped|molested|sexually\s+"
        r"(?:assaulted|abused)|abused|assaulted|trafficked|groomed|strangled|choked|beaten(?:\s+up)?)\b",
        "en",
        not_followed_by=r"\s+(?:in|at|on|\d|by\s+(?:a|one|two|\d))",
    ),
    _rule(
        AB,
        HIGH,
        r"\bforc(?:es|ed|ing|e)\s+(?P<who>me|her|him|them)\s+(?:to\s+(?:have\s+sex|do\s+(?:things|stuff|sexual)|sleep\s+with"
        r"|touch))"
        r"|\btouch(?:es|ed|ing)?\s+(?P<who2>me|her|him)\b[^.!?]{0,60}\b(?:not\s+to\s+tell|don'?t\s+tell|secret"
        r"|inappropriate|private|at\s+night|when\s+no\s?one)",
        "en",
        mode="victim",
    ),
    _rule(
        AB,
        ELEV,
        r"\b(?:domestic\s+(?:violence|abuse)|child\s+abuse|sexual\s+(?:abuse|assault)|marital\s+rape|incest"
        r"|abusive\s+(?:relationship|partner|husband|wife|boyfriend|girlfriend|home|parents?|family|household|ex))\b"
        r"|\b(?:is|was|being|are)\s+(?:so\s+|really\s+|very\s+)?abusive\b",
        "en",
        default_person="unknown",
    ),
    _rule(
        AB,
        ELEV,
        r"\b(?:controls?|controlling)\s+(?:all\s+)?(?:of\s+)?(?:my|our)\s+(?:money|finances|phone|life)\b"
        r"|\bwon'?t\s+let\s+me\s+(?:see|leave|go\s+out|talk\s+to|have|work|use|sleep|eat)\b"
        r"|\b(?:takes?|took)\s+(?:away\s+)?my\s+(?:phone|passport|keys|money)\b|\block(?:s|ed)?\s+me\s+(?:in|out)\b",
        "en",
        negatable=False,
    ),
    _rule(
        AB,
        ELEV,
        r"\b(?:afraid|scared|terrified|frightened)\s+(?:of|to\s+go\s+home\s+to)\s+(?:my\s+)?(?:partner|husband|wife"
        r"|boyfriend|girlfriend|dad|father|mom|mum|mother|stepdad|stepfather|parents?|ex)\b"
        r"|\b(?:scared|afraid|terrified)\s+to\s+go\s+home\b",
        "en",
    ),
)

# Chinese: no word boundaries, so patterns are written around short, specific phrases.
_NP = r"[^。!?;\n]"  # one character inside a sentence (after NFKC, full-width !?; are ASCII)
_ZH_DIE = (
    r"(?:死|去死|自杀|轻生|寻死|跳楼|跳河|跳江|跳海|跳桥|上吊|割喉|烧炭|服毒|喝农药|结束(?:自己的?|我的)?生命|一了百了)"
)
_ZH_RULES: tuple[_Rule, ...] = (
    # ---- suicide -> high
    _rule(
        S,
        HIGH,
        rf"(?:想|好想|很想|真想|只想|想要|要去|准备|打算|决定|计划|今晚就|明天就|马上就|现在就|就去)(?:{_NP}{{0,4}}?){_ZH_DIE}",
        "zh",
        not_followed_by=r"(?:你|您|我了|他了|她了|它|人了|了你)",
    ),
    _rule(
        S,
        HIGH,
        r"不想(?:再)?活(?:了|下去|着)|活不下去|不想再活|(?:怎么|如何|怎样)(?:去)?(?:死|自杀)",
        "zh",
        negatable=False,
    ),
    _rule(
        S,
        HIGH,
        rf"结束(?:自己的?|我的)?生命|一了百了|吃{_NP}{{0,2}}(?:一整瓶|整瓶|一瓶|所有的?|全部的?)(?:安眠)?药"
        rf"|(?:吞|喝)(?:了)?{_NP}{{0,2}}(?:一整瓶|整瓶|一瓶|所有的?|全部的?|很多|好多)(?:安眠)?药",
        "zh",
    ),
    _rule(S, HIGH, r"遗书|烧炭|上吊", "zh", default_person="unknown"),
    _rule(
        S,
        HIGH,
        rf"(?:安眠药|药片|农药|老鼠药|炭|绳子){_NP}{{0,10}}(?:攒|准备好|备好|买好|吃掉|全吃|都吃|一起吃|吞)",
        "zh",
    ),
    _rule(S, HIGH, rf"(?:楼|天台|桥|阳台|窗|顶楼){_NP}{{0,12}}跳下去|(?:想|要|就)跳下去", "zh"),
    _rule(S, ELEV, r"自杀|轻生|寻短见|跳楼", "zh", default_person="unknown"),
    # ---- suicide -> elevated
    _rule(
        S,
        ELEV,
        r"不(?:要|想)醒(?:来|过来)|永远(?:地)?睡下去|睡着了?就(?:再也)?(?:不要|别|不)醒",
        "zh",
        negatable=False,
    ),
    _rule(S, ELEV, rf"消失了?{_NP}{{0,8}}(?:更好|更开心|会好)|(?:想|希望)(?:自己)?(?:就这样)?消失", "zh"),
    _rule(
        S,
        ELEV,
        r"活着(?:到底|还)?有什么意(?:义|思)|活着(?:真|好|太|也)?没(?:有)?(?:意思|意义)|活着(?:好|真|太)?(?:累|痛苦)"
        r"|活得(?:好|真|太)?累|活够了|人生(?:没有|毫无)意义|撑不下去|撑不住了",
        "zh",
        negatable=False,
    ),
    _rule(
        S,
        ELEV,
        r"没(?:有)?(?:被)?(?:出生|生下来)|不该(?:被)?(?:出生|生下来)|(?:是|成了)[^。!?;\n]{0,8}负担"
        r"|拖累(?:了)?(?:大家|家人|所有人|你们)",
        "zh",
        negatable=False,
    ),
    _rule(
        S,
        ELEV,
        rf"没有我{_NP}{{0,10}}(?:更好|不会有什么不同|也一样|照样)|死了(?:也)?(?:挺好|算了|就好了|也好|倒好)|不如死了",
        "zh",
        negatable=False,
    ),
    _rule(S, ELEV, r"(?:做|干)傻事", "zh"),
    # ---- self-harm
    _rule(
        SH,
        HIGH,
        r"割腕|割(?:了)?手腕|自残|自伤|伤害自己|(?:划|割|烫|烧|刺)(?:伤)?自己|用刀划|拿刀划",
        "zh",
    ),
    _rule(SH, ELEV, rf"(?:手臂|手腕|胳膊|大腿)上?{_NP}{{0,8}}(?:刀痕|割痕|划痕|伤痕)", "zh"),
    # ---- harm to others
    _rule(
        HO,
        HIGH,
        r"(?:杀了|杀死|弄死|捅死|砍死|毒死|宰了|干掉|捅)(?:他|她|他们|她们|那个|这个|全家|所有人)"
        r"|把(?:他|她|他们|她们)(?:全家)?(?:都)?(?:给)?(?:杀|弄死|宰)|下毒",
        "zh",
    ),
    _rule(HO, ELEV, rf"(?:想|要)打人|伤害(?:别人|他人)|报复社会|带(?:着)?刀{_NP}{{0,10}}(?:学校|公司|报复)", "zh"),
    # ---- abuse
    _rule(
        AB,
        HIGH,
        r"(?:打|揍|踢|掐|扇|抽|殴打|虐待|家暴)(?P<who>我|她|他|孩子|我们)",
        "zh",
        mode="victim",
        not_followed_by=r"[^。!?;\n]{0,8}(?:电话|手机|微信|视频|主意)",
    ),
    _rule(
        AB,
        HIGH,
        r"被(?:[^。!?;\n,]{0,4})?(?:打|揍|家暴|虐待|强奸|性侵|猥亵|侵犯|殴打)",
        "zh",
        not_followed_by=r"(?:败|扰|动|开|断|通|湿|包|印|入|击|折|倒|乱|破|针|卡|上|下|回|电话|手机|中)",
    ),
    _rule(AB, HIGH, r"(?:强奸|性侵|猥亵|侵犯)(?:了)?(?P<who>我|她|他)", "zh", mode="victim"),
    _rule(
        AB,
        HIGH,
        rf"摸我{_NP}{{0,20}}(?:不要告诉|别告诉|不许告诉|不准告诉|秘密)|威胁{_NP}{{0,6}}(?:杀|打死|弄死|砍)",
        "zh",
    ),
    _rule(
        AB,
        HIGH,
        r"(?:打死|杀了|弄死|掐死|砍死)(?P<who>我)",
        "zh",
        mode="victim",
        needs_cue=True,
    ),
    _rule(AB, ELEV, r"家暴|家庭暴力|性侵|虐待", "zh", default_person="unknown"),
    _rule(AB, ELEV, r"控制我(?:所有的|的)?(?:钱|手机|自由)|不让我(?:见|出门|离开|工作|和)", "zh", negatable=False),
)

# ---- idioms, hyperbole and harmless uses: blanked out before the rules run
_IDIOMS_EN = _Pattern(
    r"\bshoot\s+(?:my|your|his|her|their|our)\s+shot\b|\b(?:is|are|was|were|it's|that's|you're|'s|'re)\s+(?:really\s+|literally\s+|totally\s+|absolutely\s+|just\s+"
    r"|so\s+|kinda\s+)?killing\s+me\b"
    r"|\bkill(?:ing|ed|s)?\s+it\b|\bkill(?:ed)?\s+for\s+(?:a|an|some|the)\b|\bdying\s+(?:to|for)\b"
    r"|\b(?:died|die|dying|dead)\s+(?:of|from|with)\s+(?:laughter|laughing|embarrassment|shame|boredom|cringe"
    r"|cuteness|jealousy)\b|\b(?:died|dying|die)\s+laughing\b|\bkilling\s+myself\s+(?:with|over|at|for|trying|working"
    r"|studying|laughing)\b|\bkill(?:ed|ing)?\s+(?:the|a)\s+(?:process|job|task|server|app|boss|zombie|enemy|monster)"
)
_IDIOMS_ZH = _Pattern(
    r"(?:累|笑|饿|热|冷|气|烦|困|吓|难|忙|急|闷|痛|疼|爱|美|帅|羡慕|尴尬|丢人|无聊|折磨|馋|撑|渴|晒|冻|吵|臭|香|甜|酸|辣"
    r"|紧张|后悔|郁闷|心疼|麻烦|懒|穷|丑|蠢|笨)(?:得|的)?(?:要)?死(?:我|人|你|他|她)?(?:了)?"
    r"|想死(?:你|您|你们|我|他|她|它|人)了?|(?:尴尬|丢人|丢脸|羞耻|社死)(?:得|到)?(?:我)?想死"
    r"|想[^。!?;\n]{0,3}得要死|得(?:要|半)死|杀毒|秒杀|杀青|杀出重围|自杀式袭击"
)

# ---- context cues
_PREFIX_WINDOW = 120  # characters of context looked at on each side of a match, within its clause
_CLAUSE_SPLIT = _Pattern(r"[.!?;。\n][.!?;。\n]*|\bbut\b|但是|可是|不过")
_NEG_EN = frozenset(
    [
        "not",
        "never",
        "no",
        "neither",
        "nor",
        "don't",
        "dont",
        "won't",
        "wont",
        "wouldn't",
        "wouldnt",
        "isn't",
        "isnt",
        "aren't",
        "didn't",
        "didnt",
        "doesn't",
        "doesnt",
        "haven't",
        "hasn't",
        "shouldn't",
        "ain't",
    ]
)
_NEG_ZH = re.compile(r"不会|不要|不想|不是|不打算|并不|绝不|决不|才不|没有|没|从没|从来没|别|从未|未曾|不可能")
_POST_NEG_EN = re.compile(
    r"^\s*(?:has|have|had)?\s*never\s+(?:crossed|been|occurred)|^\s*(?:is|was)\s+(?:not|never)\s+(?:an\s+)?option"
    r"|^\s*isn'?t\s+an\s+option"
)
_TOKEN_EN = re.compile(r"[a-z']+")
_FIRST_EN = frozenset(["i", "i'm", "im", "i've", "ive", "i'll", "i'd", "me", "we", "we're", "us", "myself"])
_THIRD_EN = frozenset(
    [
        "he",
        "she",
        "they",
        "he's",
        "she's",
        "they're",
        "him",
        "her",
        "them",
        "himself",
        "herself",
        "themselves",
        "someone",
        "somebody",
        "anyone",
        "people",
        "friend",
        "friends",
        "friend's",
        "bf",
        "gf",
        "boyfriend",
        "girlfriend",
        "brother",
        "sister",
        "mom",
        "mum",
        "mother",
        "dad",
        "father",
        "son",
        "daughter",
        "kid",
        "kids",
        "child",
        "children",
        "roommate",
        "classmate",
        "coworker",
        "colleague",
        "partner",
        "husband",
        "wife",
        "cousin",
        "uncle",
        "aunt",
        "neighbour",
        "neighbor",
        "student",
        "patient",
        "client",
        "guy",
        "girl",
        "boy",
        "man",
        "woman",
        "character",
        "protagonist",
        "villain",
        "hero",
        "person",
        "teen",
        "teens",
        "teenager",
        "baby",
        "who",
    ]
)
_SUBJ_ZH = re.compile(
    r"(?P<third>他们|她们|他|她|朋友|同学|室友|闺蜜|哥们|兄弟|弟弟|妹妹|哥哥|姐姐|儿子|女儿|孩子|爸爸|妈妈|爸|妈|父亲|母亲"
    r"|老公|老婆|丈夫|妻子|男朋友|女朋友|男友|女友|同事|邻居|主角|角色|女主|男主|有人|别人|人家|老师|学生)"
    r"|(?P<first>我们|我|俺)"
)
_ZH_GENERIC = re.compile(r"的(?:人|行为|新闻|原因|视频|情况|案例|事件|问题)")
_ZH_OBJECT_MARKERS = frozenset("在给对把跟和让被向替帮为打骂叫找杀弄捅")
_AGENT_ZH = _Pattern(
    r"(?:他|她|爸|妈|父亲|母亲|老公|老婆|丈夫|妻子|男朋友|女朋友|男友|女友|继父|继母|后妈|叔|舅|伯|哥|姐|老师|教练|同学|他们"
    r"|家人)",
    anchored=False,
)
_PAST_EN = _Pattern(
    r"\b(?:used\s+to|years?\s+ago|months\s+ago|when\s+i\s+was|as\s+a\s+(?:kid|child|teen|teenager|little\s+girl"
    r"|little\s+boy)|growing\s+up|grew\s+up|in\s+(?:high|middle|primary|elementary)\s+school|in\s+college"
    r"|in\s+the\s+past|back\s+then|last\s+(?:year|month|summer|spring|autumn|fall|winter)|a\s+long\s+time\s+ago"
    r"|went\s+through|since\s+i\s+was)\b",
    anchored=False,
)
_RECENT_EN = _Pattern(
    r"\b(?:last\s+night|yesterday|today|tonight|this\s+(?:morning|afternoon|evening|week)|just\s+now|right\s+now"
    r"|an\s+hour\s+ago|again)\b",
    anchored=False,
)
_RESOLVED_EN = _Pattern(
    r"\b(?:i'?m|i\s+am)\s+(?:fine|ok|okay|good|better|safe|happy|doing\s+(?:fine|well|better|great|good|ok|okay)"
    r"|in\s+a\s+(?:better|good)\s+place)\b|\b(?:therapy|treatment|medication|counsell?ing)\s+(?:really\s+)?helped\b"
    r"|\bi'?ve\s+(?:healed|recovered|moved\s+on)\b|\brecovered\b|\bproud\s+of\s+myself\b|\b(?:years|months)\s+clean\b"
)
_RELAPSE_EN = _Pattern(r"\brelaps|\bscared\s+i'?ll\b|\bagain\b|\bback\s+there\b|\blately\b")
_PAST_ZH = _Pattern(
    r"(?:以前|小时候|曾经|去年|前年|那时候?|当年|年前|上学的时候|读书的时候|过去|从前|前男友|前女友|前夫|前妻)",
    anchored=False,
)
_RECENT_ZH = _Pattern(r"(?:刚刚|刚才|昨天|昨晚|今天|今晚|现在|正在)", anchored=False)
_RESOLVED_ZH = _Pattern(
    r"现在(?:已经)?(?:好了|好多了|没事了|很好|挺好)|已经好了|走出来了|康复了|痊愈|过得(?:很好|不错|挺好)"
)
_RELAPSE_ZH = _Pattern(r"又|最近|复发")
_MEDIA = _Pattern(
    r"\b(?:novel|novels|book|books|story|stories|movie|movies|film|films|documentary|documentaries|character"
    r"|characters|tv\s+show|a\s+show|the\s+show|series|episode|podcast|news|article|headline|song|lyrics|poem"
    r"|a\s+play|the\s+play"
    r"|fiction|essay|lecture|project|research|statistics|rates|studied|hamlet|romeo|juliet|villain|protagonist"
    r"|true\s+crime|prevention|awareness|psychology\s+class|health\s+class|ethics\s+class|literature\s+class"
    r"|history\s+class|video\s+game"
    r"|anime|manga)\b"
    r"|(?:小说|电影|电视剧|剧里|剧中|这部剧|纪录片|新闻|报道|角色|主角|女主|男主|剧情|故事|书里|课上|课堂|论文|研究|统计|预防"
    r"|游戏|综艺|动漫|漫画)",
    anchored=False,
)
_HYPOTHETICAL = _Pattern(
    r"\b(?:hypothetically|what\s+if|suppose|imagine|in\s+theory|if\s+someone|asking\s+for\s+a\s+friend)\b"
    r"|(?:假如|假设|如果有人)",
    anchored=False,
)
_LAUGHTER = _Pattern(
    r"\b(?:lol|lmao|lmfao|rofl|jk|just\s+kidding|ha(?:ha)+h?)\b|(?:😂|🤣|哈哈|hhh|开玩笑)", anchored=False
)
# Cues that turn "harm to others" into intrusive thoughts or fear of one's impulses, and self-harm into urges.
_THOUGHT_EN = _Pattern(
    r"\b(?:scared|afraid|worried|terrified|fear|thoughts?|thinking|fantas[a-z]+|urges?|intrusive|imagine|dreams?)\b",
    anchored=False,
)
_URGE_EN = _Pattern(r"\b(?:urges?|tempt(?:ed|ation)|scared|afraid|worried|terrified|fear|craving)\b", anchored=False)
_THOUGHT_ZH = _Pattern(r"(?:念头|想法|冲动|控制不住|怕自己|害怕|担心)", anchored=False)
_DANGER = _Pattern(
    r"\b(?:knife|gun|weapon|threat[a-z]*|hit(?:s|ting)?\s+me|beat(?:s|ing)?\s+me|chok[a-z]+|strangl[a-z]+|hiding"
    r"|locked\s+(?:myself|me)|police|bleed[a-z]*|bruise[a-z]*|if\s+i\s+(?:leave|tell|go\s+to\s+the\s+police))\b"
    r"|刀|枪|威胁|掐|打我|揍我|报警|躲|敢走|敢离开|敢告诉"
)
_PLAN_EN = _Pattern(
    r"\b(?:know\s+(?:exactly\s+)?(?:what|how)\s+i(?:'m|\s+am|'d|\s+would)?\s+(?:going\s+to\s+|gonna\s+)?do"
    r"|made\s+up\s+my\s+mind|this\s+is\s+goodbye|going\s+to\s+(?:use|do)\s+it)\b"
)


class _MessageContext:
    """Cues around the matches of one message, computed on first use and cached.

    Fiction/news, hypotheticals and laughter are read from the clause that holds a match; "resolved" (a past
    episode the user says is behind them) and the plan/danger cues are read from the whole message.
    """

    def __init__(self, norm: str) -> None:
        self._norm = norm
        self._clause_cues: dict[tuple[int, int], tuple[bool, bool, bool]] = {}

    def clause_cues(self, text: str, start: int, end: int) -> tuple[bool, bool, bool]:
        """(media, hypothetical, laughter) for the clause ``text[start:end]``."""
        key = (start, end)
        cues = self._clause_cues.get(key)
        if cues is None:
            clause = text[start:end]
            cues = (_MEDIA.search(clause), _HYPOTHETICAL.search(clause), _LAUGHTER.search(clause))
            self._clause_cues[key] = cues
        return cues

    @cached_property
    def danger(self) -> bool:
        """Weapons, violence or threats mentioned: turns "he'll kill me" from hyperbole into a threat."""
        return _DANGER.search(self._norm)

    @cached_property
    def plan(self) -> bool:
        """A stated plan ("I know what I'm going to do"): turns a mention of means into intent."""
        return _PLAN_EN.search(self._norm)

    @cached_property
    def resolved(self) -> bool:
        """The user says a past episode is behind them, with no sign of relapse."""
        norm = self._norm
        return (_RESOLVED_EN.search(norm) and not _RELAPSE_EN.search(norm)) or (
            _RESOLVED_ZH.search(norm) and not _RELAPSE_ZH.search(norm)
        )


class LexicalSafetyScreen:
    """Default :class:`SafetyScreen`: precompiled English and Simplified-Chinese patterns plus context rules.

    Stateless and thread-safe; all patterns are compiled once, at import. Typical messages take tens of
    microseconds, 1,000-character ones a few hundred (see ``benchmarks/safety_bench.py``).
    """

    def __init__(self) -> None:
        self._rules: tuple[tuple[_CompiledRules, _Pattern, re.Pattern[str]], ...] = (
            (_CompiledRules(_EN_RULES), _IDIOMS_EN, _LATIN),
            (_CompiledRules(_ZH_RULES), _IDIOMS_ZH, _HAN),
        )

    def screen(self, text: str) -> SafetyResult:
        """Screen one user message; never logs or keeps ``text``."""
        norm = normalize_text(text)
        language = detect_language(norm)
        if not norm:
            return SafetyResult(language=language)
        bounds = _clause_bounds(norm)
        starts = [start for start, _ in bounds]
        ctx = _MessageContext(norm)
        best: dict[Category, RiskLevel] = {}
        for rules, idioms, script in self._rules:
            if script.search(norm) is None:
                continue
            view = _blank(norm, idioms)
            for rule, match, clause in rules.matches(view, bounds, starts, best):
                clause_start, clause_end = bounds[clause]
                level = _assess(rule, match, view, clause_start, clause_end, ctx)
                if level is not RiskLevel.NONE and (rule.category not in best or level.rank > best[rule.category].rank):
                    best[rule.category] = level
        if not best:
            return SafetyResult(language=language)
        level = max(best.values(), key=lambda lv: lv.rank)
        categories = tuple(c.value for c in Category if c in best)
        return SafetyResult(level=level, categories=categories, language=language)


def _clause_bounds(norm: str) -> list[tuple[int, int]]:
    """(start, end) of each clause: split at sentence punctuation, "but", 但是, 可是, 不过."""
    seps = sorted(m.span() for m in _CLAUSE_SPLIT.finditer(norm))
    bounds = []
    pos = 0
    for sep_start, sep_end in seps:
        if sep_start >= pos:
            bounds.append((pos, sep_start))
            pos = sep_end
    bounds.append((pos, len(norm)))
    return bounds


def _blank(norm: str, idioms: _Pattern) -> str:
    """``norm`` with idiom spans replaced by spaces (positions unchanged)."""
    spans = sorted(m.span() for m in idioms.finditer(norm))
    if not spans:
        return norm
    out = []
    pos = 0
    for start, end in spans:
        start = max(start, pos)
        if end <= start:
            continue
        out.append(norm[pos:start])
        out.append(" " * (end - start))
        pos = end
    out.append(norm[pos:])
    return "".join(out)


def _negated(rule: _Rule, prefix: str, suffix: str, tokens: list[str]) -> bool:
    """A negator between the nearest subject and the match ("I would never ...", "我不会..."), or after it.

    ``tokens`` are the English words of ``prefix`` (unused for Chinese).
    """
    if rule.lang == "en":
        start = max(len(tokens) - 4, 0)
        for i in range(len(tokens) - 1, start - 1, -1):
            if tokens[i] in _FIRST_EN or tokens[i] in _THIRD_EN:
                start = i + 1
                break
        window = tokens[start:]
        return any(w in _NEG_EN or w.endswith("n't") for w in window) or _POST_NEG_EN.match(suffix) is not None
    cut = max(prefix.rfind("我"), prefix.rfind(","))
    tail = (prefix[cut + 1 :] if cut >= 0 else prefix)[-3:]
    return tail.endswith(("不", "没", "别")) or _NEG_ZH.search(tail) is not None


def _person_from_word(word: str) -> Person:
    return "first" if word in {"myself", "my self", "my", "me", "us", "我", "我们"} else "third"


def _subject_person(rule: _Rule, prefix: str, tokens: list[str]) -> Person:
    """Whose risk: the nearest subject word before the match.

    Rules about a topic rather than an act ("suicide", "家暴") only look right next to the match (3 English words,
    6 Chinese characters within the clause), so "I watched a documentary about suicide" is not read as the user's
    own risk while "我已经写好遗书了" is.
    """
    if rule.lang == "en":
        if rule.default_person == "unknown":
            tokens = tokens[-3:]
        for token in reversed(tokens):
            if token in _FIRST_EN:
                return "first"
            if token in _THIRD_EN:
                return "third"
        return rule.default_person
    if rule.default_person == "unknown":
        prefix = prefix[-6:].rsplit(",", 1)[-1]
    for found in reversed(list(_SUBJ_ZH.finditer(prefix))):
        if found.start() and prefix[found.start() - 1] in _ZH_OBJECT_MARKERS:
            continue  # "在他饭里", "给她": an object, not the subject
        return "first" if found.group("first") else "third"
    return rule.default_person


def _assess(rule: _Rule, match: re.Match[str], text: str, start: int, end: int, ctx: _MessageContext) -> RiskLevel:
    """The level one match contributes, after negation, person, tense and context rules.

    ``text[start:end]`` is the clause that holds the match.
    """
    prefix = text[max(start, match.start() - _PREFIX_WINDOW) : match.start()]
    suffix = text[match.end() : min(end, match.end() + _PREFIX_WINDOW)]
    if rule.not_followed_by is not None and rule.not_followed_by.match(suffix):
        return RiskLevel.NONE
    tokens = _TOKEN_EN.findall(prefix) if rule.lang == "en" else []
    if rule.negatable and _negated(rule, prefix, suffix, tokens):
        return RiskLevel.NONE
    if rule.needs_cue and not (ctx.plan if rule.category is Category.SUICIDE else ctx.danger):
        return RiskLevel.NONE

    found = match.groupdict()
    who = found.get("who") or found.get("who2")
    if rule.mode == "victim":
        agent = _AGENT_EN if rule.lang == "en" else _AGENT_ZH
        if not agent.search(prefix):
            return RiskLevel.NONE
        person: Person = _person_from_word(who) if who else "first"
    elif who:
        person = _person_from_word(who)
    elif rule.lang == "zh" and _ZH_GENERIC.match(suffix):
        person = "unknown"  # "割腕的人": people in general, not the speaker
    else:
        person = _subject_person(rule, prefix, tokens)

    level = rule.level
    if person != "first":
        level = _min_level(level, RiskLevel.ELEVATED)
    if rule.category is Category.HARM_TO_OTHERS:
        if (_THOUGHT_EN if rule.lang == "en" else _THOUGHT_ZH).search(prefix):
            level = _min_level(level, RiskLevel.ELEVATED)
    elif rule.category is Category.SELF_HARM and (_URGE_EN if rule.lang == "en" else _THOUGHT_ZH).search(prefix):
        level = _min_level(level, RiskLevel.ELEVATED)
    media, hypothetical, laughter = ctx.clause_cues(text, start, end)
    if hypothetical or (laughter and rule.category is not Category.ABUSE):
        level = _min_level(level, RiskLevel.ELEVATED)

    clause = text[max(start, match.start() - _PREFIX_WINDOW) : min(end, match.end() + _PREFIX_WINDOW)]
    if rule.lang == "en":
        past = rule.past or (_PAST_EN.search(clause) and not _RECENT_EN.search(clause))
    else:  # Chinese time words come before the verb; "过" marks a past experience
        past = rule.past or ((_PAST_ZH.search(clause) or suffix.startswith("过")) and not _RECENT_ZH.search(prefix))
    if past:
        level = RiskLevel.NONE if ctx.resolved else _min_level(level, RiskLevel.ELEVATED)
    if media and person != "first":
        level = RiskLevel.NONE
    return level


# --------------------------------------------------------------------------------------------------------------
# Policy: what to do with a result
# --------------------------------------------------------------------------------------------------------------

PolicyAction = Literal["none", "frame", "replace"]
DEFAULT_POLICY_PATH = Path(__file__).with_name("safety_policy.yaml")


class CrisisResource(BaseModel):
    """One crisis line or service, as shown to the user."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="Service name as people know it, e.g. '988 Suicide & Crisis Lifeline'.")
    contact: str = Field(
        min_length=1, description="How to reach it, in the locale's language, e.g. 'call or text 988'."
    )
    categories: tuple[Category, ...] = Field(
        default=(), description="Categories it is specific to; empty means it fits every category."
    )


class LocaleResources(BaseModel):
    """Crisis resources for one locale (e.g. en-US) or one language with no region (e.g. en)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    emergency: str = Field(
        min_length=1, description="Emergency number phrase, e.g. '911' or 'your local emergency number'."
    )
    resources: tuple[CrisisResource, ...] = Field(min_length=1)


class LevelMessages(BaseModel):
    """Texts for one risk level; ``{resources}`` and ``{emergency}`` are filled in."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prefix: str = ""
    suffix: str = ""
    replacement: str = ""


class LanguageMessages(BaseModel):
    """Human-written messages for one language."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    elevated: LevelMessages
    high: LevelMessages
    resource_format: str = "{name} ({contact})"
    resource_separator: str = "; "


LevelName = Literal["elevated", "high"]


def _default_actions() -> dict[LevelName, PolicyAction]:
    return {"elevated": "frame", "high": "frame"}


class SafetyPolicy(BaseModel):
    """What the server does with a :class:`SafetyResult`; load with :meth:`from_yaml` or :meth:`default`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    actions: dict[LevelName, PolicyAction] = Field(
        default_factory=_default_actions,
        description="Per level: none (leave the reply), frame (add prefix/suffix) or replace (send our text only).",
    )
    default_language: str = Field(default="en", description="Message language when the locale's has none.")
    language_default_locales: dict[str, str] = Field(
        default_factory=dict, description="Region-less language -> locale whose resources to use (zh -> zh-CN)."
    )
    max_resources: int = Field(default=2, ge=1, le=5, description="How many resources one message lists.")
    messages: dict[str, LanguageMessages]
    locales: dict[str, LocaleResources]

    @field_validator("locales")
    @classmethod
    def _normalise_locale_keys(cls, value: dict[str, LocaleResources]) -> dict[str, LocaleResources]:
        return {_normalise_locale(k): v for k, v in value.items()}

    @model_validator(mode="after")
    def _check_consistency(self) -> SafetyPolicy:
        """Check that every message template can be filled and the fallbacks exist."""
        if self.default_language not in self.messages:
            raise ValueError(f"default_language {self.default_language!r} has no entry under messages")
        if self.default_language not in self.locales:
            raise ValueError(
                f"locales must contain the region-less default {self.default_language!r} (the international list)"
            )
        for lang, target in self.language_default_locales.items():
            if _normalise_locale(target) not in self.locales:
                raise ValueError(f"language_default_locales[{lang!r}] = {target!r} is not a key of locales")
        for lang, msgs in self.messages.items():
            for level_name in ("elevated", "high"):
                for part, template in getattr(msgs, level_name).model_dump().items():
                    try:
                        template.format(resources="", emergency="")
                    except (KeyError, IndexError, ValueError) as exc:
                        raise ValueError(
                            f"messages.{lang}.{level_name}.{part}: only {{resources}} and {{emergency}} may be used"
                            f" ({exc!r})"
                        ) from exc
            if self.actions.get("high") == "replace" and not msgs.high.replacement:
                raise ValueError(f"actions.high is 'replace' but messages.{lang}.high.replacement is empty")
            if self.actions.get("elevated") == "replace" and not msgs.elevated.replacement:
                raise ValueError(f"actions.elevated is 'replace' but messages.{lang}.elevated.replacement is empty")
        return self

    @classmethod
    def from_yaml(cls, path: str | Path) -> SafetyPolicy:
        """Load a policy file; a bad file raises ``ValueError`` naming the file."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ValueError(f"cannot read safety policy {path}: {exc}") from exc
        except yaml.YAMLError as exc:
            raise ValueError(f"safety policy {path} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError(f"safety policy {path} must be a YAML mapping")
        try:
            return cls.model_validate(data)
        except ValueError as exc:
            raise ValueError(f"invalid safety policy {path}: {exc}") from exc

    @classmethod
    def default(cls) -> SafetyPolicy:
        """The shipped policy, ``app/chat/safety_policy.yaml`` (loaded once)."""
        return _load_default_policy()

    def resolve_locale(self, locale: str | None, language: str | None = None) -> tuple[str, str]:
        """(resources locale key, message language) for a requested locale such as "en-GB", "zh_CN" or "zh".

        Order: for a region-less language, ``language_default_locales``; the exact locale; the language alone
        (its international list); ``default_language``. With no locale, ``language`` (detected) is used.
        """
        tag = _normalise_locale(locale or language or self.default_language)
        lang = tag.split("-", 1)[0]
        message_lang = lang if lang in self.messages else self.default_language
        if tag == lang and lang in self.language_default_locales:
            return _normalise_locale(self.language_default_locales[lang]), message_lang
        if tag in self.locales:
            return tag, message_lang
        if lang in self.locales:
            return lang, message_lang
        return self.default_language, message_lang

    def apply(self, result: SafetyResult, reply_text: str | None = None, locale: str | None = None) -> SafetyDecision:
        """Decide how to frame or replace a reply.

        ``reply_text`` may be None when streaming (the reply does not exist yet); when given, the decision's
        ``text`` holds the final reply. ``locale`` (e.g. "en-GB", "zh-CN", "zh") picks messages and resources;
        None uses the language the screen detected.
        """
        decision = self._decide(result, locale)
        if reply_text is None:
            return decision
        return replace(decision, text=decision.render(reply_text))

    def _decide(self, result: SafetyResult, locale: str | None) -> SafetyDecision:
        if not result.flagged:
            return SafetyDecision(action="none", level=result.level, categories=result.categories, locale="")
        level_name: Literal["elevated", "high"] = "high" if result.level is RiskLevel.HIGH else "elevated"
        action = self.actions.get(level_name, "frame")
        locale_key, lang = self.resolve_locale(locale, result.language)
        if action == "none":
            return SafetyDecision(action="none", level=result.level, categories=result.categories, locale=locale_key)
        msgs = self.messages[lang]
        texts: LevelMessages = getattr(msgs, level_name)
        where = self.locales[locale_key]
        fill = {"resources": self._resource_text(where, msgs, result.categories), "emergency": where.emergency}
        if action == "replace":
            return SafetyDecision(
                action="replace",
                level=result.level,
                categories=result.categories,
                locale=locale_key,
                replacement=texts.replacement.format(**fill).strip(),
            )
        return SafetyDecision(
            action="frame",
            level=result.level,
            categories=result.categories,
            locale=locale_key,
            prefix=texts.prefix.format(**fill).strip(),
            suffix=texts.suffix.format(**fill).strip(),
        )

    def _resource_text(self, where: LocaleResources, msgs: LanguageMessages, categories: tuple[str, ...]) -> str:
        wanted = set(categories)
        specific = [r for r in where.resources if r.categories and wanted & {c.value for c in r.categories}]
        general = [r for r in where.resources if not r.categories]
        chosen = (specific + general)[: self.max_resources]
        return msgs.resource_separator.join(msgs.resource_format.format(name=r.name, contact=r.contact) for r in chosen)


def _normalise_locale(tag: str) -> str:
    parts = tag.strip().replace("_", "-").split("-")
    if len(parts) == 1:
        return parts[0].lower()
    return f"{parts[0].lower()}-{parts[1].upper()}"


@lru_cache(maxsize=1)
def _load_default_policy() -> SafetyPolicy:
    return SafetyPolicy.from_yaml(DEFAULT_POLICY_PATH)


_SEPARATOR = "\n\n"


@dataclass(frozen=True)
class SafetyDecision:
    """How to deliver one reply.

    Non-streaming: ``decision.render(reply)``. Streaming: send ``leading`` before the model's first token (skip the
    model entirely when ``replaces_reply``), then the model's tokens, then ``trailing``;
    ``leading + reply + trailing == render(reply)``.
    """

    action: PolicyAction
    level: RiskLevel
    categories: tuple[str, ...]
    locale: str
    """Resources locale actually used ("" when nothing is added)."""
    prefix: str = ""
    suffix: str = ""
    replacement: str | None = None
    text: str | None = None
    """The full reply as the user should see it, when ``apply`` was given the reply text."""

    @property
    def replaces_reply(self) -> bool:
        """True when the model's reply must not be shown (the server may skip generating it)."""
        return self.action == "replace"

    @property
    def leading(self) -> str:
        """Text to emit before the reply, separator included ("" when there is none)."""
        if self.action == "replace":
            return self.replacement or ""
        return self.prefix + _SEPARATOR if self.prefix else ""

    @property
    def trailing(self) -> str:
        """Text to emit after the reply, separator included ("" when there is none)."""
        if self.action != "frame" or not self.suffix:
            return ""
        return _SEPARATOR + self.suffix

    def render(self, reply_text: str) -> str:
        """The full text the user sees for a non-streamed reply."""
        if self.action == "replace":
            return self.leading
        if self.action == "none":
            return reply_text
        return self.leading + reply_text + self.trailing

    def to_dict(self) -> dict[str, object]:
        """API extension object: the screen's level and categories plus what was done."""
        return {"level": self.level.value, "categories": list(self.categories), "action": self.action}


def apply_policy(
    result: SafetyResult,
    reply_text: str | None = None,
    locale: str | None = None,
    *,
    policy: SafetyPolicy | None = None,
) -> SafetyDecision:
    """Apply ``policy`` (default: the shipped YAML) to a screen result; see :meth:`SafetyPolicy.apply`."""
    return (policy or SafetyPolicy.default()).apply(result, reply_text, locale)
