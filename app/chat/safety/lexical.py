"""The default screen, :class:`LexicalSafetyScreen`, and how it assesses each rule match in its context."""

from __future__ import annotations

import re
from collections.abc import Sequence

from app.chat.safety.cues import (
    AGENT_EN,
    AGENT_ZH,
    CLAUSE_SPLIT,
    FIRST_EN,
    IDIOMS_EN,
    IDIOMS_ZH,
    NEG_EN,
    NEG_ZH,
    PAST_EN,
    PAST_ZH,
    POST_NEG_EN,
    PREFIX_WINDOW,
    RECENT_EN,
    RECENT_ZH,
    SUBJ_ZH,
    THIRD_EN,
    THOUGHT_EN,
    THOUGHT_ZH,
    TOKEN_EN,
    URGE_EN,
    ZH_GENERIC,
    ZH_OBJECT_MARKERS,
    MessageContext,
)
from app.chat.safety.patterns import CompiledRules, Pattern, Person, Rule
from app.chat.safety.rules import EN_RULES, ZH_RULES
from app.chat.safety.text import HAN, LATIN, detect_language, normalize_text
from app.chat.safety.types import Category, RiskLevel, SafetyResult, min_level


class LexicalSafetyScreen:
    """Default :class:`SafetyScreen`: precompiled English and Simplified-Chinese patterns plus context rules.

    Stateless and thread-safe; all patterns are compiled once, at import. Typical messages take tens of
    microseconds, 1,000-character ones a few hundred (see ``benchmarks/safety_bench.py``).
    """

    def __init__(self) -> None:
        self._rules: tuple[tuple[CompiledRules, Pattern, re.Pattern[str]], ...] = (
            (CompiledRules(EN_RULES), IDIOMS_EN, LATIN),
            (CompiledRules(ZH_RULES), IDIOMS_ZH, HAN),
        )

    def screen(self, text: str, context: Sequence[str] = ()) -> SafetyResult:
        """Screen one user message; never logs or keeps ``text``. Patterns judge one message: ``context`` is
        accepted for the protocol and not used."""
        norm = normalize_text(text)
        language = detect_language(norm)
        if not norm:
            return SafetyResult(language=language)
        bounds = _clause_bounds(norm)
        starts = [start for start, _ in bounds]
        ctx = MessageContext(norm)
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
    seps = sorted(m.span() for m in CLAUSE_SPLIT.finditer(norm))
    bounds = []
    pos = 0
    for sep_start, sep_end in seps:
        if sep_start >= pos:
            bounds.append((pos, sep_start))
            pos = sep_end
    bounds.append((pos, len(norm)))
    return bounds


def _blank(norm: str, idioms: Pattern) -> str:
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


def _negated(rule: Rule, prefix: str, suffix: str, tokens: list[str]) -> bool:
    """A negator between the nearest subject and the match ("I would never ...", "我不会..."), or after it.

    ``tokens`` are the English words of ``prefix`` (unused for Chinese).
    """
    if rule.lang == "en":
        start = max(len(tokens) - 4, 0)
        for i in range(len(tokens) - 1, start - 1, -1):
            if tokens[i] in FIRST_EN or tokens[i] in THIRD_EN:
                start = i + 1
                break
        window = tokens[start:]
        return any(w in NEG_EN or w.endswith("n't") for w in window) or POST_NEG_EN.match(suffix) is not None
    cut = max(prefix.rfind("我"), prefix.rfind(","))
    tail = (prefix[cut + 1 :] if cut >= 0 else prefix)[-3:]
    return tail.endswith(("不", "没", "别")) or NEG_ZH.search(tail) is not None


def _person_from_word(word: str) -> Person:
    return "first" if word in {"myself", "my self", "my", "me", "us", "我", "我们"} else "third"


def _subject_person(rule: Rule, prefix: str, tokens: list[str]) -> Person:
    """Whose risk: the nearest subject word before the match.

    Rules about a topic rather than an act ("suicide", "家暴") only look right next to the match (3 English words,
    6 Chinese characters within the clause), so "I watched a documentary about suicide" is not read as the user's
    own risk while "我已经写好遗书了" is.
    """
    if rule.lang == "en":
        if rule.default_person == "unknown":
            tokens = tokens[-3:]
        for token in reversed(tokens):
            if token in FIRST_EN:
                return "first"
            if token in THIRD_EN:
                return "third"
        return rule.default_person
    if rule.default_person == "unknown":
        prefix = prefix[-6:].rsplit(",", 1)[-1]
    for found in reversed(list(SUBJ_ZH.finditer(prefix))):
        if found.start() and prefix[found.start() - 1] in ZH_OBJECT_MARKERS:
            continue  # "在他饭里", "给她": an object, not the subject
        return "first" if found.group("first") else "third"
    return rule.default_person


def _assess(rule: Rule, match: re.Match[str], text: str, start: int, end: int, ctx: MessageContext) -> RiskLevel:
    """The level one match contributes, after negation, person, tense and context rules.

    ``text[start:end]`` is the clause that holds the match.
    """
    prefix = text[max(start, match.start() - PREFIX_WINDOW) : match.start()]
    suffix = text[match.end() : min(end, match.end() + PREFIX_WINDOW)]
    if rule.not_followed_by is not None and rule.not_followed_by.match(suffix):
        return RiskLevel.NONE
    tokens = TOKEN_EN.findall(prefix) if rule.lang == "en" else []
    if rule.negatable and _negated(rule, prefix, suffix, tokens):
        return RiskLevel.NONE
    if rule.needs_cue and not (ctx.plan if rule.category is Category.SUICIDE else ctx.danger):
        return RiskLevel.NONE

    found = match.groupdict()
    who = found.get("who") or found.get("who2")
    if rule.mode == "victim":
        agent = AGENT_EN if rule.lang == "en" else AGENT_ZH
        if not agent.search(prefix):
            return RiskLevel.NONE
        person: Person = _person_from_word(who) if who else "first"
    elif who:
        person = _person_from_word(who)
    elif rule.lang == "zh" and ZH_GENERIC.match(suffix):
        person = "unknown"  # "割腕的人": people in general, not the speaker
    else:
        person = _subject_person(rule, prefix, tokens)

    level = rule.level
    if person != "first":
        level = min_level(level, RiskLevel.ELEVATED)
    if rule.category is Category.HARM_TO_OTHERS:
        if (THOUGHT_EN if rule.lang == "en" else THOUGHT_ZH).search(prefix):
            level = min_level(level, RiskLevel.ELEVATED)
    elif rule.category is Category.SELF_HARM and (URGE_EN if rule.lang == "en" else THOUGHT_ZH).search(prefix):
        level = min_level(level, RiskLevel.ELEVATED)
    media, hypothetical, laughter = ctx.clause_cues(text, start, end)
    if hypothetical or (laughter and rule.category is not Category.ABUSE):
        level = min_level(level, RiskLevel.ELEVATED)

    clause = text[max(start, match.start() - PREFIX_WINDOW) : min(end, match.end() + PREFIX_WINDOW)]
    if rule.lang == "en":
        past = rule.past or (PAST_EN.search(clause) and not RECENT_EN.search(clause))
    else:  # Chinese time words come before the verb; "过" marks a past experience
        past = rule.past or ((PAST_ZH.search(clause) or suffix.startswith("过")) and not RECENT_ZH.search(prefix))
    if past:
        level = RiskLevel.NONE if ctx.resolved else min_level(level, RiskLevel.ELEVATED)
    if media and person != "first":
        level = RiskLevel.NONE
    return level
