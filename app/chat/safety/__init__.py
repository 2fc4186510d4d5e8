"""Crisis safety layer: screen each user message for risk and decide how to frame the reply.

Two parts, used by the chat service for every user turn:

* :class:`SafetyScreen` (a protocol) turns a message into a :class:`SafetyResult`: a :class:`RiskLevel`
  (``none`` | ``elevated`` | ``high``) and the categories seen (``suicide``, ``self_harm``,
  ``harm_to_others``, ``abuse``). :class:`LearnedSafetyScreen` (``classifier.py``) is the default: a
  classifier over character and word n-grams, trained by ``training/safety_classifier.py`` and shipped in
  ``model/`` with its data card. :class:`LexicalSafetyScreen` is the alternative: precompiled English and
  Simplified-Chinese patterns with rules for negation, third person, fiction/news, hypotheticals, past tense and
  idioms. Both take well under two milliseconds per message.
* :class:`SafetyPolicy` (loaded from ``safety_policy.yaml`` in this package, or any YAML with the same shape)
  maps a result to a :class:`SafetyDecision`: leave the reply alone, frame it with a short warm message and
  locale-specific crisis resources, or replace it. The decision is split into a leading piece and a trailing
  piece so a streaming server can send the leading piece before the model's first token.

Levels, as used here and in ``benchmarks/safety/*.jsonl``:

* ``high``: the user says, in the first person and about now or the future, that they want, intend or plan to
  die, hurt themselves or hurt someone, has the means ready, is doing it, or is being abused or threatened now.
* ``elevated``: passive wishes to be dead, hopelessness or feeling a burden, urges or intrusive thoughts,
  concern about someone else, or a past episode that is not described as resolved.
* ``none``: everything else, including idioms ("this exam is killing me", "累死了"), negations ("I would never
  kill myself", "我不会自杀"), fiction and news, and past episodes the user says are behind them.

Limits of the lexical screen, stated plainly: it is a first line of defence, not a clinical assessment. It matches words
and short phrases; it does not understand meaning. It misses sarcasm and irony, coded or emerging slang
(beyond a few entries such as "unalive" and "kms"), euphemisms it has no pattern for, misspellings and
creative spellings beyond those in its patterns, risk spread across several turns (it sees one message at a
time), and every language other than English and Simplified Chinese (Traditional characters are mostly not
matched). Its negation, third-person and past-tense rules are heuristics over a few words of context and will
sometimes be wrong in both directions. When unsure it leans towards flagging: the cost of a gentle resource line
is small, the cost of a miss is not. Pair it with a model-based classifier and human review for anything beyond a
first screen. Message text is never logged or stored by this package. More in docs/safety.md; measured by
benchmarks/safety_bench.py.

Layout, one concern per module; import from the package (``from app.chat.safety import ...``), which re-exports
the public names:

* ``types``: :class:`RiskLevel`, :class:`Category`, :data:`CATEGORIES`, :class:`SafetyResult`, :class:`SafetyScreen`.
* ``text``: :func:`normalize_text` and :func:`detect_language`.
* ``patterns``: the pattern compiler (fast anchored alternatives, rules compiled per language) and the rule record.
* ``rules``: the English and Simplified-Chinese rule tables.
* ``cues``: idioms blanked out before the rules run, and the context cues a match is judged by.
* ``lexical``: :class:`LexicalSafetyScreen` and its per-match assessment (negation, person, tense, context).
* ``policy``: :class:`SafetyPolicy`, :class:`SafetyDecision` and ``safety_policy.yaml``.
* ``classifier`` and ``features``: :class:`LearnedSafetyScreen` and its features.
* ``escalation``: where high-risk events go (a Redis stream, or log lines).
* ``gate``: :class:`SafetyGate`, the chat turn's one safety step (risk across the conversation, the policy's
  decision, escalation).
"""

from app.chat.safety.lexical import LexicalSafetyScreen
from app.chat.safety.policy import DEFAULT_POLICY_PATH, PolicyAction, SafetyDecision, SafetyPolicy
from app.chat.safety.text import detect_language, normalize_text
from app.chat.safety.types import CATEGORIES, Category, RiskLevel, SafetyResult, SafetyScreen

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
    "detect_language",
    "normalize_text",
]
