"""The pattern compiler: regexes searched fast as anchored top-level alternatives, and the :class:`Rule` record.

The rule tables themselves are in :mod:`app.chat.safety.rules`; how a match is judged is in
:mod:`app.chat.safety.lexical`.
"""

from __future__ import annotations

import importlib
import re
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import compress
from types import ModuleType
from typing import Literal

from app.chat.safety.types import Category, RiskLevel

# --------------------------------------------------------------------------------------------------------------
# Fast patterns
# --------------------------------------------------------------------------------------------------------------


def split_alternatives(pattern: str) -> list[str]:
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


class Pattern:
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
        alternatives = split_alternatives(pattern) if isinstance(pattern, str) else pattern
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


class CompiledRules:
    """One language's rules as a single :class:`Pattern` whose alternatives remember their rule."""

    def __init__(self, rules: tuple[Rule, ...]) -> None:
        ordered = sorted(rules, key=lambda r: -r.level.rank)  # high first, so pruning in matches() bites early
        alternatives: list[str] = []
        owners: list[Rule] = []
        for rule in ordered:
            for alt in rule.alternatives:
                alternatives.append(alt)
                owners.append(rule)
        self.pattern = Pattern(alternatives)
        self.owners = tuple(owners)

    def matches(
        self, text: str, bounds: list[tuple[int, int]], starts: list[int], best: dict[Category, RiskLevel]
    ) -> Iterator[tuple[Rule, re.Match[str], int]]:
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
class Rule:
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
