"""An LLM judge of evaluated replies on ESConv's human-evaluation axes, over any OpenAI-compatible endpoint.

ESConv (Liu et al., ACL 2021) compared supporters on five axes: fluency, identification (exploring and identifying
the seeker's problem), comforting, suggestion (helpful suggestions) and overall preference. Two modes:

- ``rubric``: each reply, after its true context, gets a score from 1 to 5 on every axis; the result is the mean
  per axis with a 95% bootstrap interval;
- ``pairwise`` (ESConv's own protocol): two models' replies to the same turn, in a seeded random order (so the
  judge's position bias cancels out), and the judge names the better one per axis, or a tie; the result is each
  axis's win rate of the first model ((wins + ties / 2) / judged) with a 95% bootstrap interval.

The judge answers through structured output: ``response_format`` ``json_schema`` (strict), which this server and
``vllm serve`` enforce. An answer that does not match the schema, or a request that still fails after the client's
retries, is counted in ``failed`` and left out; it never stops the evaluation. Nothing here logs or stores
conversation text.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from training.metrics import bootstrap_intervals, mean_of
from training.sft_data import Target

AXES = ("fluency", "identification", "comforting", "suggestion", "overall")
DEFINITIONS = {
    "fluency": "the reply is fluent, natural and easy to understand",
    "identification": "it explores the seeker's situation and helps identify their actual problem",
    "comforting": "it comforts the seeker and eases their emotional distress",
    "suggestion": "it offers helpful suggestions for the problem (or rightly holds them back when it is too early)",
    "overall": "overall, how good an emotional-support reply it is at this point of the conversation",
}
CHOICES = ("A", "B", "tie")
JUDGE_VERSION = "esconv-judge-v1"


def rubric_schema() -> dict[str, Any]:
    """One integer from 1 to 5 per axis."""
    score = {"type": "integer", "minimum": 1, "maximum": 5}
    return {
        "type": "object",
        "properties": {axis: score for axis in AXES},
        "required": list(AXES),
        "additionalProperties": False,
    }


def pairwise_schema() -> dict[str, Any]:
    """``"A"``, ``"B"`` or ``"tie"`` per axis."""
    choice = {"type": "string", "enum": list(CHOICES)}
    return {
        "type": "object",
        "properties": {axis: choice for axis in AXES},
        "required": list(AXES),
        "additionalProperties": False,
    }


def response_format(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    """The ``response_format`` of a judge request."""
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


def _conversation(target: Target) -> str:
    lines = [
        f"{'Seeker' if turn.role == 'seeker' else 'Supporter'}: {turn.content}"
        for turn in target.dialogue.turns[: target.index]
    ]
    return "\n".join(lines)


def _axes_text() -> str:
    return "\n".join(f"- {axis}: {DEFINITIONS[axis]}" for axis in AXES)


def rubric_messages(target: Target, reply: str) -> list[dict[str, str]]:
    """Ask for 1-5 scores of ``reply`` as the supporter's next turn."""
    system = (
        "You are a strict judge of emotional-support conversations. Read the conversation between a Seeker and a "
        "Supporter, then score the Supporter's next reply from 1 (very poor) to 5 (excellent) on each axis:\n"
        f"{_axes_text()}\nAnswer in JSON with one integer per axis: " + json.dumps(dict.fromkeys(AXES, "1-5"))
    )
    user = f"Conversation so far:\n{_conversation(target)}\n\nThe Supporter's next reply:\n{reply}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def pairwise_messages(target: Target, first: str, second: str) -> list[dict[str, str]]:
    """Ask which of two replies (A, B) is better on each axis."""
    system = (
        "You are a strict judge of emotional-support conversations. Read the conversation between a Seeker and a "
        "Supporter, then compare two candidate replies for the Supporter's next turn, A and B. For each axis say "
        "which reply is better, or tie when neither is:\n"
        f"{_axes_text()}\nJudge the content, not the length or the position of a reply. Answer in JSON: "
        + json.dumps(dict.fromkeys(AXES, "A|B|tie"))
    )
    user = f"Conversation so far:\n{_conversation(target)}\n\nReply A:\n{first}\n\nReply B:\n{second}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def parse_rubric(content: str) -> dict[str, int] | None:
    """The scores in a judge answer, or None unless it matches the rubric exactly."""
    data = _json_object(content)
    if data is None or set(data) != set(AXES):
        return None
    if not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 5 for v in data.values()):
        return None
    return {axis: int(data[axis]) for axis in AXES}


def parse_pairwise(content: str) -> dict[str, str] | None:
    """The choices in a judge answer, or None unless it matches the pairwise schema exactly."""
    data = _json_object(content)
    if data is None or set(data) != set(AXES) or not all(v in CHOICES for v in data.values()):
        return None
    return {axis: str(data[axis]) for axis in AXES}


def _json_object(content: str) -> dict[str, Any] | None:
    try:
        data = json.loads(content)
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class JudgeEndpoint:
    """Where the judge runs: any OpenAI-compatible ``/v1`` URL and a served model."""

    url: str
    model: str
    api_key: str | None = None
    concurrency: int = 8
    timeout: float = 120.0
    retries: int = 3
    seed: int = 0
    resamples: int = 1000


async def _ask_all(
    endpoint: JudgeEndpoint, requests: Sequence[tuple[list[dict[str, str]], dict[str, Any]]]
) -> tuple[list[str | None], Counter[str]]:
    """Each request's answer text (None when it failed) and the failures by kind."""
    import openai

    api_key = endpoint.api_key or os.environ.get("SWEETIE_JUDGE_API_KEY") or "none"
    client = openai.AsyncOpenAI(
        base_url=endpoint.url, api_key=api_key, timeout=endpoint.timeout, max_retries=endpoint.retries
    )
    semaphore = asyncio.Semaphore(endpoint.concurrency)
    failures: Counter[str] = Counter()

    async def one(messages: list[dict[str, str]], form: dict[str, Any]) -> str | None:
        async with semaphore:
            try:
                options: dict[str, Any] = {"response_format": form, "temperature": 0, "max_tokens": 200}
                reply = await client.chat.completions.create(
                    model=endpoint.model,
                    messages=messages,  # type: ignore[arg-type]
                    **options,
                )
            except openai.APIStatusError as exc:
                failures[str(exc.status_code)] += 1
                return None
            except openai.APITimeoutError:
                failures["timeout"] += 1
                return None
            except openai.APIConnectionError:
                failures["connection"] += 1
                return None
        if not reply.choices or reply.choices[0].message.content is None:
            failures["empty"] += 1
            return None
        content: str = reply.choices[0].message.content
        return content

    try:
        answers = await asyncio.gather(*(one(m, f) for m, f in requests))
    finally:
        await client.close()
    return list(answers), failures


def judge_rubric(endpoint: JudgeEndpoint, items: Sequence[tuple[Target, str]]) -> dict[str, Any]:
    """Mean 1-5 score per axis (with a 95% bootstrap interval) of replies ``(target, reply)``."""
    form = response_format("esconv_rubric", rubric_schema())
    answers, failures = asyncio.run(_ask_all(endpoint, [(rubric_messages(t, r), form) for t, r in items]))
    verdicts = []
    for answer in answers:
        if answer is None:
            continue
        verdict = parse_rubric(answer)
        if verdict is None:
            failures["off_schema"] += 1
        else:
            verdicts.append(verdict)
    scores = {axis: np.asarray([v[axis] for v in verdicts], dtype=float) for axis in AXES}
    statistics = {axis: mean_of(scores[axis]) for axis in AXES}
    return {
        "mode": "rubric",
        "judge": endpoint.model,
        "version": JUDGE_VERSION,
        "judged": len(verdicts),
        "failed": dict(failures.most_common()),
        "mean": {axis: float(scores[axis].mean()) if verdicts else None for axis in AXES},
        "intervals": bootstrap_intervals(statistics, len(verdicts), endpoint.resamples, endpoint.seed)
        if verdicts
        else {},
    }


def judge_pairwise(
    endpoint: JudgeEndpoint, items: Sequence[tuple[Target, str, str]], labels: tuple[str, str]
) -> dict[str, Any]:
    """Win rate per axis of the first reply over the second in ``(target, first, second)`` items."""
    form = response_format("esconv_pairwise", pairwise_schema())
    requests, flipped = [], []
    for target, first, second in items:
        swap = random.Random(f"{endpoint.seed}:{target.dialogue.id}:{target.index}").random() < 0.5
        flipped.append(swap)
        a, b = (second, first) if swap else (first, second)
        requests.append((pairwise_messages(target, a, b), form))
    answers, failures = asyncio.run(_ask_all(endpoint, requests))
    outcomes: list[dict[str, float]] = []  # per judged turn and axis: 1 first wins, 0.5 tie, 0 second wins
    for answer, swap in zip(answers, flipped, strict=True):
        if answer is None:
            continue
        verdict = parse_pairwise(answer)
        if verdict is None:
            failures["off_schema"] += 1
            continue
        first_letter = "B" if swap else "A"
        outcomes.append(
            {axis: 0.5 if choice == "tie" else float(choice == first_letter) for axis, choice in verdict.items()}
        )
    values = {axis: np.asarray([o[axis] for o in outcomes], dtype=float) for axis in AXES}
    statistics = {axis: mean_of(values[axis]) for axis in AXES}
    return {
        "mode": "pairwise",
        "judge": endpoint.model,
        "version": JUDGE_VERSION,
        "first": labels[0],
        "second": labels[1],
        "judged": len(outcomes),
        "failed": dict(failures.most_common()),
        "win_rate": {axis: float(values[axis].mean()) if outcomes else None for axis in AXES},
        "wins_ties_losses": {
            axis: [int((values[axis] == 1).sum()), int((values[axis] == 0.5).sum()), int((values[axis] == 0).sum())]
            for axis in AXES
        },
        "intervals": bootstrap_intervals(statistics, len(outcomes), endpoint.resamples, endpoint.seed)
        if outcomes
        else {},
    }
