"""An LLM judge for role-played dialogues: a JSON-schema rubric, thresholds, and a summary for the run report.

The judge reads the whole dialogue (numbered turns, each supporter turn with its labelled strategy and that
strategy's definition in the instructions) and answers through structured output: four 1-5 scores (``empathy``,
``coherence``, ``role_consistency``, ``safety``) and, for each supporter turn in order, whether it really used its
labelled strategy (an array of booleans exactly as long as the number of supporter turns). :meth:`Verdict.problems`
turns thresholds into reasons (``empathy<2``, ``adherence<0.5``); role-play drops or flags on them and stores the
verdict in the dialogue's ``meta.judge``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from app.core.strategies import StrategyCatalogue
from training.prompts import DraftTurn, Message

JUDGE_VERSION = "judge-v1"
SCORES = ("empathy", "coherence", "role_consistency", "safety")


def judge_schema(supporter_turns: int) -> dict[str, Any]:
    """The rubric as a JSON schema; ``strategy_used`` has one boolean per supporter turn."""
    score = {"type": "integer", "minimum": 1, "maximum": 5}
    return {
        "type": "object",
        "properties": {
            **{name: score for name in SCORES},
            "strategy_used": {
                "type": "array",
                "items": {"type": "boolean"},
                "minItems": supporter_turns,
                "maxItems": supporter_turns,
            },
        },
        "required": [*SCORES, "strategy_used"],
        "additionalProperties": False,
    }


def judge_format(supporter_turns: int) -> dict[str, Any]:
    """The ``response_format`` of a judge request."""
    schema = judge_schema(supporter_turns)
    return {"type": "json_schema", "json_schema": {"name": "dialogue_rubric", "schema": schema, "strict": True}}


def judge_messages(turns: Sequence[DraftTurn], catalogue: StrategyCatalogue) -> list[Message]:
    """Messages asking the judge to score ``turns``."""
    labelled = {t.strategy for t in turns}
    definitions = "\n".join(f"- {s.name}: {s.definition}" for s in catalogue.strategies if s.name in labelled)
    lines, checked = [], []
    for number, turn in enumerate(turns, start=1):
        if turn.role == "supporter":
            checked.append(str(number))
            lines.append(f"{number}. Supporter [{turn.strategy}]: {turn.content}")
        else:
            lines.append(f"{number}. Seeker: {turn.content}")
    system = (
        "You are a strict judge of emotional-support conversations between a Seeker (a person with a problem) and a "
        "Supporter. Score the whole conversation from 1 (very poor) to 5 (excellent):\n"
        "- empathy: the supporter understands and validates the seeker's feelings, about their actual details;\n"
        "- coherence: every turn follows sensibly from the one before;\n"
        "- role_consistency: the seeker stays a person seeking help, the supporter stays a supporter, nobody speaks "
        "as an AI or as the other role;\n"
        "- safety: no harmful, dismissive or risky content (5 = fully safe).\n"
        "Then, for each supporter turn in order, say whether it really uses the strategy in its brackets "
        "(true or false).\n"
        f"Strategies used:\n{definitions}\n"
        'Answer in JSON: {"empathy": 1-5, "coherence": 1-5, "role_consistency": 1-5, "safety": 1-5, '
        '"strategy_used": [true/false, one per supporter turn]}'
    )
    user = "Conversation:\n" + "\n".join(lines) + f"\n\nSupporter turns to check, in order: {', '.join(checked)}."
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


@dataclass(frozen=True)
class Verdict:
    """The judge's scores of one dialogue."""

    scores: dict[str, int]
    strategy_used: tuple[bool, ...]

    @property
    def adherence(self) -> float | None:
        """Share of supporter turns judged to use their labelled strategy (None without supporter turns)."""
        return sum(self.strategy_used) / len(self.strategy_used) if self.strategy_used else None

    def problems(self, min_score: int, min_adherence: float) -> list[str]:
        """Why the dialogue misses the thresholds, e.g. ``["empathy<2"]``; empty when it passes."""
        found = [f"{name}<{min_score}" for name in SCORES if self.scores[name] < min_score]
        adherence = self.adherence
        if adherence is not None and adherence < min_adherence:
            found.append(f"adherence<{min_adherence:g}")
        return found

    def as_dict(self) -> dict[str, Any]:
        adherence = self.adherence
        return {
            **self.scores,
            "strategy_used": list(self.strategy_used),
            "adherence": None if adherence is None else round(adherence, 3),
        }


def parse_verdict(content: str, supporter_turns: int) -> Verdict | None:
    """The verdict in the judge's JSON answer, or None unless it matches the rubric exactly."""
    try:
        data = json.loads(content)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    scores = {name: data.get(name) for name in SCORES}
    if not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 5 for v in scores.values()):
        return None
    used = data.get("strategy_used")
    if not isinstance(used, list) or len(used) != supporter_turns or not all(isinstance(u, bool) for u in used):
        return None
    return Verdict({name: int(value) for name, value in scores.items() if isinstance(value, int)}, tuple(used))


@dataclass
class JudgeSummary:
    """Judge results over a run, for the report."""

    judged: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    dropped: int = 0
    flagged: int = 0
    problems: Counter[str] = field(default_factory=Counter)
    scores: dict[str, Counter[int]] = field(default_factory=lambda: {name: Counter() for name in SCORES})
    checked: Counter[str] = field(default_factory=Counter)
    used: Counter[str] = field(default_factory=Counter)

    def add(self, verdict: Verdict, turns: Sequence[DraftTurn], problems: Sequence[str]) -> None:
        self.judged += 1
        for name in SCORES:
            self.scores[name][verdict.scores[name]] += 1
        strategies = [t.strategy or "?" for t in turns if t.role == "supporter"]
        for strategy, used in zip(strategies, verdict.strategy_used, strict=True):
            self.checked[strategy] += 1
            self.used[strategy] += used
        self.problems.update(problems)

    def as_dict(self) -> dict[str, Any]:
        def mean(counts: Counter[int]) -> float | None:
            total = sum(counts.values())
            return round(sum(k * v for k, v in counts.items()) / total, 3) if total else None

        checked = sum(self.checked.values())
        return {
            "judged": self.judged,
            "failed": dict(self.failed.most_common()),
            "dropped": self.dropped,
            "flagged": self.flagged,
            "below_threshold": dict(self.problems.most_common()),
            "mean": {name: mean(counts) for name, counts in self.scores.items()},
            "histogram": {name: {str(k): counts[k] for k in range(1, 6)} for name, counts in self.scores.items()},
            "strategy_adherence": round(sum(self.used.values()) / checked, 3) if checked else None,
            "strategy_adherence_by_strategy": {
                name: round(self.used[name] / count, 3) for name, count in sorted(self.checked.items())
            },
            "prompt_version": JUDGE_VERSION,
        }
