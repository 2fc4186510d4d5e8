"""Scenario and persona expansion: an LLM writes new scenarios for balanced slots of the taxonomy.

Run it as ``python -m training.scenarios expand`` (that command loads the library and the output written so far and
calls :func:`expand`). For each slot of :func:`training.taxonomy.plan` (category, problem type, emotion, intensity
and a seeker: age group, gender, region and culture, occupation, personality, communication style, wants) the LLM
writes the situation in the first person, as structured output (``response_format`` JSON schema, one string field).
Each answer is checked (valid JSON, 12-70 words, first person, on task), validated against the scenario schema and
compared with a kept library of every scenario so far (the seed scenarios, earlier runs and this one) by MinHash
over word 3-shingles: a near-duplicate (estimated Jaccard similarity >= ``--similarity``) is rejected. A rejected
slot is asked again with a new seed up to ``--attempts`` times; a slot that never passes is given up (counted) and
replaced by the next slot of the same category in the seed's extended plan (:func:`training.taxonomy.iter_plan`,
whose decks keep running, so the other dimensions stay balanced as far as possible). The run tops up like this until
``--count`` scenarios of this seed are in ``--out`` or the overall attempt budget (``--max_attempts``, default
2 x ``--attempts`` x the scenarios still to write) is spent; a shortfall is reported (summary line, stderr and the
report's ``shortfall``/``budget_exhausted``), never silent. Kept scenarios are appended to ``--out`` as they come
(JSONL, one Scenario per line), so an interrupted run resumes where it stopped; scenario ids encode the seed and the
slot (``work-x0-00042``; replacements have indices from ``--count`` on), so a run with another seed adds new
scenarios to the same file.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import re
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from training.llm import ApiStats, CallFailed, Clients, FatalApiError, Role, Sampling, derive_seed, json_schema_format
from training.schema import Scenario
from training.taxonomy import DEFAULT_TAXONOMY, Slot, Taxonomy, iter_plan, load_taxonomy

if TYPE_CHECKING:
    from datasketch import MinHash

logger = logging.getLogger(__name__)

EXPAND_PROMPT_VERSION = "expand-v2"
SEED_SCENARIOS = Path(__file__).resolve().parent / "assets" / "scenarios"
SITUATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"situation": {"type": "string", "minLength": 40, "maxLength": 420}},
    "required": ["situation"],
    "additionalProperties": False,
}


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class ExpandConfig:
    """Settings for ``python -m training.scenarios expand``."""

    taxonomy: str = field(default=str(DEFAULT_TAXONOMY), metadata=_help("Taxonomy YAML."))
    count: int = field(
        default=3700, metadata=_help("Scenarios of this seed to have in --out (kept ones are not redone; top-up).")
    )
    out: str = field(default="outputs/scenarios.jsonl", metadata=_help("Output JSONL of scenarios; appended."))
    report: str | None = field(default=None, metadata=_help("Report JSON path; default <out>.report.json."))
    library: list[str] = field(
        default_factory=lambda: [str(SEED_SCENARIOS)],
        metadata=_help("Scenario files/folders that new scenarios must not near-duplicate ('none' for none)."),
    )
    base_url: list[str] = field(
        default_factory=lambda: ["http://127.0.0.1:8000/v1"],
        metadata=_help("OpenAI-compatible base URL(s); several are used round-robin with failover."),
    )
    model: str = field(default="sweetiechat", metadata=_help("Model name."))
    api_key_env: str = field(default="OPENAI_API_KEY", metadata=_help("Variable holding the API key ('EMPTY')."))
    temperature: float = field(default=0.7, metadata=_help("Sampling temperature."))
    top_p: float = field(default=0.9, metadata=_help("Nucleus sampling."))
    max_tokens: int = field(default=160, metadata=_help("Answer length cap (tokens)."))
    attempts: int = field(default=4, metadata=_help("Tries per slot (new seed each) before it is given up."))
    max_attempts: int | None = field(
        default=None,
        metadata=_help("Overall answers budget of the run (default 2 x --attempts x scenarios still to write)."),
    )
    similarity: float = field(default=0.5, metadata=_help("Near-duplicate threshold (Jaccard of word 3-shingles)."))
    min_words: int = field(default=12, metadata=_help("Shortest accepted situation (words)."))
    max_words: int = field(default=70, metadata=_help("Longest accepted situation (words)."))
    concurrency: int = field(default=16, metadata=_help("Requests in flight."))
    max_retries: int = field(default=3, metadata=_help("Client retries on 429/5xx/timeouts/connection errors."))
    timeout: float = field(default=120.0, metadata=_help("Per-request timeout in seconds."))
    seed: int = field(default=0, metadata=_help("Plan and request seed."))
    progress: bool = field(default=True, metadata=_help("Show a progress bar."))

    def __post_init__(self) -> None:
        if self.count < 1 or self.attempts < 1 or self.concurrency < 1:
            raise ValueError("--count, --attempts and --concurrency must be at least 1")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError(f"--max_attempts {self.max_attempts}: must be at least 1")
        if not 0 < self.similarity <= 1:
            raise ValueError(f"--similarity {self.similarity}: must be in (0, 1]")
        if not 1 <= self.min_words <= self.max_words:
            raise ValueError(f"--min_words {self.min_words} / --max_words {self.max_words}: need 1 <= min <= max")


def scenario_id(slot: Slot, seed: int) -> str:
    """``work-x0-00042``: category, seed and slot index (unique per seed; ids must not contain underscores)."""
    return f"{slot.category.replace('_', '-')}-x{seed}-{slot.index:05d}"


DEFAULT_EXAMPLE = (
    "My manager moved my shifts to nights without asking, and now I barely see my kids. I have worked there nine "
    "years and I feel like I do not count."
)


def expand_messages(slot: Slot, example: str = DEFAULT_EXAMPLE) -> list[dict[str, str]]:
    """Messages asking for one slot's situation; ``example`` shows the form (a library scenario, which the
    near-duplicate check then keeps the model from copying)."""
    system = (
        "You write short scenario descriptions for an emotional-support chat dataset. Each one is what a person "
        "would tell a friend about their situation: in the first person (I, my), concrete and specific (who, what "
        "happened, since when), 1 to 3 sentences, 20 to 60 words. No names of real people, no advice, no happy "
        'ending. Answer as JSON: {"situation": "..."}\n'
        f"Example: {json.dumps({'situation': example}, ensure_ascii=False)}"
    )
    user = (
        f"Person: aged {slot.age_group}, {slot.gender}, {slot.occupation}, from {slot.culture}. "
        f"Personality: {slot.personality}.\n"
        f"Topic: {slot.category.replace('_', ' ')}, {slot.problem_type}.\n"
        f"Main feeling: {slot.emotion}, intensity {slot.intensity} of 5.\n"
        f"How they talk: {slot.communication_style}. Write the situation in that voice.\n"
        f"What they want from talking about it: {slot.wants}. Let the situation show why.\n"
        "Write this person's situation."
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


_FIRST_PERSON = re.compile(r"\b(?:i|i'm|i've|i'd|i'll|my|me|myself)\b")
_OFF_TASK = re.compile(r"\bas an ai\b|\blanguage model\b|\bseeker\b|\bsupporter\b|[\[\]{}<>]|\bsituation:", re.I)


def situation_problem(text: str, min_words: int, max_words: int) -> str | None:
    """Why a written situation is not usable (``too_short``, ``too_long``, ``not_first_person``, ``off_task``)."""
    words = text.split()
    if len(words) < min_words:
        return "too_short"
    if len(words) > max_words:
        return "too_long"
    if not _FIRST_PERSON.search(text.lower().replace("’", "'")):
        return "not_first_person"
    if _OFF_TASK.search(text):
        return "off_task"
    return None


def shingles(text: str, size: int = 3) -> set[str]:
    """Word n-grams of the lower-cased text (the words themselves when it is shorter than ``size``)."""
    words = re.findall(r"[a-z0-9']+", text.lower().replace("’", "'"))
    if len(words) < size:
        return set(words)
    return {" ".join(words[i : i + size]) for i in range(len(words) - size + 1)}


class NearDuplicates:
    """A kept library of texts with MinHash LSH lookup: is a new text a near-duplicate of one already kept?"""

    def __init__(self, threshold: float, num_perm: int = 128) -> None:
        from datasketch import MinHashLSH

        self.threshold = threshold
        self.num_perm = num_perm
        self.lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self.hashes: dict[str, MinHash] = {}

    def __len__(self) -> int:
        return len(self.hashes)

    def _hash(self, text: str) -> MinHash:
        from datasketch import MinHash

        minhash = MinHash(num_perm=self.num_perm, seed=1)
        minhash.update_batch([s.encode("utf-8") for s in sorted(shingles(text))])
        return minhash

    def match(self, text: str) -> str | None:
        """The key of a kept text at least ``threshold`` similar to ``text``, or None."""
        minhash = self._hash(text)
        for key in self.lsh.query(minhash):
            if self.hashes[key].jaccard(minhash) >= self.threshold:
                return str(key)
        return None

    def add(self, key: str, text: str) -> None:
        if key in self.hashes:
            return
        minhash = self._hash(text)
        self.lsh.insert(key, minhash)
        self.hashes[key] = minhash


@dataclass
class ExpandReport:
    """What one expansion run did."""

    planned: int = 0  # --count: scenarios of this seed wanted in the output
    already_done: int = 0
    written: int = 0
    failed_slots: int = 0  # slots given up after --attempts tries
    replanned: int = 0  # replacement slots planned for given-up ones
    attempts: int = 0
    budget: int = 0
    budget_exhausted: bool = False
    rejected: Counter[str] = field(default_factory=Counter)
    library: int = 0
    wall_s: float = 0.0
    api: ApiStats = field(default_factory=ApiStats)

    @property
    def shortfall(self) -> int:
        """Scenarios still missing from ``planned`` after this run."""
        return max(0, self.planned - self.already_done - self.written)

    def as_dict(self) -> dict[str, Any]:
        total = self.api.total()
        hours = self.wall_s / 3600 if self.wall_s else 0.0
        return {
            "planned": self.planned,
            "already_done": self.already_done,
            "written": self.written,
            "shortfall": self.shortfall,
            "failed_slots": self.failed_slots,
            "replanned": self.replanned,
            "attempts": self.attempts,
            "attempt_budget": self.budget,
            "budget_exhausted": self.budget_exhausted,
            "rejected": dict(self.rejected.most_common()),
            "library": self.library,
            "wall_s": round(self.wall_s, 2),
            "completion_tokens_per_s": round(total.completion_tokens / self.wall_s, 2) if self.wall_s else None,
            "scenarios_per_hour": round(self.written / hours, 1) if hours else None,
            "prompt_version": EXPAND_PROMPT_VERSION,
            "api": self.api.as_dict(),
        }

    def summary(self) -> str:
        rejected = ", ".join(f"{k}: {v}" for k, v in self.rejected.most_common()) or "none"
        return (
            f"{self.planned} requested, {self.already_done} already done, {self.written} written, "
            f"{self.failed_slots} slots given up, {self.replanned} replanned; "
            f"{self.attempts} of {self.budget} attempts, rejected: {rejected}"
        )

    def shortfall_message(self) -> str | None:
        """Why fewer than ``planned`` scenarios are in the output, or None when none are missing."""
        if not self.shortfall:
            return None
        why = f"the attempt budget of {self.budget} is spent" if self.budget_exhausted else "the run stopped early"
        return (
            f"short by {self.shortfall} of {self.planned} scenarios: {why} (raise --max_attempts, or run the same "
            "command again to top up)"
        )


class _Slots:
    """The slots to write: this seed's plan first, then replacements (same category) from the extended plan."""

    def __init__(self, taxonomy: Taxonomy, count: int, seed: int, done: set[str]) -> None:
        self.seed = seed
        self.done = done
        self.extended = iter_plan(taxonomy, seed)
        self.queue = deque(slot for slot in itertools.islice(self.extended, count) if self.id(slot) not in done)
        self.spare: dict[str, deque[Slot]] = {}

    def id(self, slot: Slot) -> str:
        return scenario_id(slot, self.seed)

    def next(self) -> Slot | None:
        return self.queue.popleft() if self.queue else None

    def replace(self, given_up: Slot) -> None:
        """Queue the next unused slot of the extended plan in the given-up slot's category."""
        spare = self.spare.setdefault(given_up.category, deque())
        while not spare:
            slot = next(self.extended)
            if self.id(slot) not in self.done:
                self.spare.setdefault(slot.category, deque()).append(slot)
        self.queue.append(spare.popleft())


def _this_seed(ident: str, seed: int) -> bool:
    """Whether ``ident`` is a scenario id that ``expand`` gave a slot of this seed (see :func:`scenario_id`)."""
    return re.search(rf"-x{seed}-\d{{5,}}$", ident) is not None


def _situation(content: str) -> str | None:
    try:
        data = json.loads(content)
    except json.JSONDecodeError:
        return None
    value = data.get("situation") if isinstance(data, dict) else None
    return " ".join(value.split()) if isinstance(value, str) else None


async def expand(
    config: ExpandConfig, library: Sequence[Scenario], existing: Sequence[Scenario], taxonomy: Taxonomy | None = None
) -> ExpandReport:
    """Top ``config.out`` up to ``config.count`` scenarios of this seed; append kept scenarios as they come."""
    from tqdm import tqdm

    taxonomy = taxonomy or load_taxonomy(config.taxonomy)
    done = {ident for ident in (s.id for s in existing) if ident is not None and _this_seed(ident, config.seed)}
    slots = _Slots(taxonomy, config.count, config.seed, done)
    need = max(0, config.count - len(done))
    budget = config.max_attempts if config.max_attempts is not None else 2 * config.attempts * need
    report = ExpandReport(planned=config.count, already_done=min(len(done), config.count), library=len(library))
    report.budget = budget
    kept = NearDuplicates(config.similarity)
    kept.add("prompt-example", DEFAULT_EXAMPLE)
    for scenario in [*library, *existing]:
        kept.add(scenario.id or scenario.situation, scenario.situation)
    examples: dict[str, list[str]] = {}
    for scenario in library:  # examples in the prompt: the library's scenarios of the slot's category
        examples.setdefault(scenario.category, []).append(scenario.situation)
    clients = Clients(config.max_retries, config.timeout)
    role = Role(
        "writer",
        config.base_url,
        config.model,
        os.environ.get(config.api_key_env) or "EMPTY",
        Sampling(config.temperature, config.top_p, config.max_tokens),
        clients,
        report.api,
    )
    response_format = json_schema_format("scenario", SITUATION_SCHEMA)
    out = Path(config.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=need, unit="scenario", disable=not config.progress, desc="expand")
    began = time.perf_counter()
    active = 0  # slots being written now: written + active never exceeds need, so the run never overshoots

    async def write(slot: Slot, sink: Any) -> bool | None:
        """True when the slot's scenario is kept, False when the slot is given up, None when the budget ran out."""
        ident = scenario_id(slot, config.seed)
        same = examples.get(slot.category) or [DEFAULT_EXAMPLE]
        messages = expand_messages(slot, same[slot.index % len(same)])
        for attempt in range(config.attempts):
            if report.attempts >= budget:
                report.budget_exhausted = True
                return None
            report.attempts += 1
            try:
                reply = await role.chat(
                    messages,
                    derive_seed(config.seed, slot.index, attempt),
                    start=slot.index,
                    response_format=response_format,
                )
            except CallFailed as exc:
                report.rejected[f"api:{exc.kind}"] += 1
                continue
            if reply.safety_action != "none":
                report.rejected["safety"] += 1
                continue
            situation = _situation(reply.content)
            if situation is None:
                report.rejected["invalid_json"] += 1
                continue
            problem = situation_problem(situation, config.min_words, config.max_words)
            if problem is not None:
                report.rejected[problem] += 1
                continue
            try:
                scenario = slot.scenario(ident, situation)
            except ValidationError:
                report.rejected["invalid"] += 1
                continue
            if kept.match(situation) is not None:
                report.rejected["near_duplicate"] += 1
                continue
            kept.add(ident, situation)  # no await between the check and here: two tasks cannot both pass
            sink.write(scenario.model_dump_json(exclude_none=True) + "\n")
            sink.flush()
            return True
        return False

    async def worker(sink: Any) -> None:
        nonlocal active
        while report.written + active < need and not report.budget_exhausted:
            slot = slots.next()
            if slot is None:
                return
            active += 1
            try:
                kept_it = await write(slot, sink)
            finally:
                active -= 1
            if kept_it:
                report.written += 1
                bar.update()
            elif kept_it is False:
                report.failed_slots += 1
                if report.attempts >= budget:  # no attempt left for a replacement
                    report.budget_exhausted = True
                else:
                    report.replanned += 1
                    slots.replace(slot)

    try:
        with out.open("a", encoding="utf-8") as sink:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(config.concurrency, need)):
                    group.create_task(worker(sink))
    except ExceptionGroup as errors:
        fatal = errors.subgroup(FatalApiError)
        if fatal is None:
            raise
        raise fatal.exceptions[0] from None
    finally:
        bar.close()
        await clients.close()
        report.wall_s = time.perf_counter() - began
    return report
