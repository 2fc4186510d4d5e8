"""Strategy-enhanced role-play: generate ServeForEmo dialogues from scenarios with three LLM roles and a judge.

For each scenario and sample, over any OpenAI-compatible endpoints (official ``openai`` AsyncOpenAI client):

1. the Seeker plays the profile and reveals the problem gradually; it ends the chat by writing ``[END]``
   (honoured once ``min_turns`` is reached; ``max_turns`` ends it anyway);
2. the Strategy Counselor picks the supporter's next strategy through structured output (a JSON schema whose
   ``strategy`` is an enum of the catalogue's names, plus a short rationale). An answer that is not exactly that is
   asked again ``counselor_retries`` times; after that the dialogue ends there (kept if long enough). No default;
3. the Supporter writes a short reply using that strategy.

Every turn is checked as it is produced (``training.filters``: empty, role confusion, too long, repeated) and asked
again (``turn_retries``, new seed) on failure; if it still fails the dialogue is cut at its last good turn and kept
when it has ``min_turns`` turns. A reply the server framed or replaced because of its crisis screen (the SweetieChat
``safety`` extension, ``action != "none"``) is not training text: the dialogue is cut before the flagged turn.
With ``--judge_url``/``--judge_model`` an LLM judge scores each kept dialogue (``training.judge``: empathy,
coherence, role consistency, safety, and per supporter turn whether it used its labelled strategy); dialogues under
``--judge_min_score``/``--judge_min_adherence`` are dropped or, with ``--judge_action flag``, kept and flagged
(``meta.judge.flags``, e.g. ``adherence<0.75``). A judge answer that does not match the rubric is asked again
(``counselor_retries`` times); a judge that still fails (invalid answers, endpoint down or answering garbage) never
costs the dialogue: it is written with ``meta.judge.error`` (``invalid``, ``api_error:<kind>``, ``safety``) and
counted in the report's ``judge.failed``.

Scale: ``--samples_per_scenario N`` dialogues per scenario (id ``roleplay-<scenario>-n<sample>-s<seed>``);
``--shard i/n`` keeps the dialogues whose id hashes to shard ``i``, so ``n`` processes split one job list; each
role takes a list of base URLs (a fleet), and dialogues are spread over them round-robin (a dialogue stays on one
endpoint, so its prompt prefix stays cached there, and fails over to the next). Retries are the openai client's own
(``--max_retries``, ``--timeout``). Resume is keyed on the dialogue id: a re-run, or a run with another seed or more
samples into the same file, generates exactly the missing dialogues. Each dialogue stores its token usage and
latency in ``meta``; the report (``<out>.report.json``) sums them, with tokens/s and dialogues per hour, the
yield, cut and drop reasons, the strategy distribution and the judge's scores. Message text is never logged.

How to run::

    python -m training.roleplay --base_url http://127.0.0.1:8000/v1 --model sweetiechat \\
        --scenarios outputs/scenarios.jsonl --out outputs/roleplay.jsonl --judge_model sweetiechat
    python -m training.roleplay --config training/configs/roleplay.yaml --base_url http://gpu-0:8000/v1 \\
        http://gpu-1:8000/v1 --samples_per_scenario 2 --shard 0/4       # one of four generator processes
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from app.core.strategies import StrategyCatalogue, load_catalogue
from training.cli import parse_config
from training.filters import FilterLimits, turn_problem
from training.judge import JUDGE_VERSION, JudgeSummary, Verdict, judge_format, judge_messages, parse_verdict
from training.llm import (
    ApiStats,
    CallFailed,
    Clients,
    FatalApiError,
    Message,
    Reply,
    Role,
    Sampling,
    Usage,
    derive_seed,
)
from training.prompts import (
    PROMPTS_VERSION,
    DraftTurn,
    clean_reply,
    counselor_format,
    counselor_messages,
    parse_choice,
    seeker_messages,
    split_end_marker,
    strip_strategy_tag,
    supporter_messages,
)
from training.scenarios import DEFAULT_DIR, load_scenarios
from training.schema import Dialogue, Scenario, repair_jsonl_tail

__all__ = ["FatalApiError", "RoleplayConfig", "cli", "derive_seed", "main"]

logger = logging.getLogger(__name__)

ROLES = ("seeker", "counselor", "supporter")


def _help(text: str) -> dict[str, str]:
    return {"help": text}


def _urls(text: str) -> dict[str, str]:
    return _help(f"{text} One or more base URLs; dialogues are spread over them round-robin.")


@dataclass
class RoleplayConfig:
    """Settings for ``python -m training.roleplay``."""

    scenarios: str = field(default=str(DEFAULT_DIR), metadata=_help("Scenario YAML/JSONL file or folder."))
    out: str = field(default="outputs/roleplay.jsonl", metadata=_help("Output JSONL; appended, resumable."))
    report: str | None = field(default=None, metadata=_help("Report JSON path; default <out>.report.json."))
    limit: int | None = field(default=None, metadata=_help("Use only the first N scenarios."))
    samples_per_scenario: int = field(default=1, metadata=_help("Dialogues per scenario (different seeds)."))
    shard: str = field(default="0/1", metadata=_help("'i/n': generate only shard i of n (same flags everywhere)."))
    strategies: str | None = field(default=None, metadata=_help("Deployment strategy YAML (extend/replace)."))

    base_url: list[str] = field(default_factory=lambda: ["http://127.0.0.1:8000/v1"], metadata=_urls("Default."))
    model: str = field(default="sweetiechat", metadata=_help("Default model name."))
    api_key_env: str = field(
        default="OPENAI_API_KEY", metadata=_help("Environment variable holding the default API key ('EMPTY' if unset).")
    )
    seeker_base_url: list[str] | None = field(default=None, metadata=_urls("Seeker (default: --base_url)."))
    seeker_model: str | None = field(default=None, metadata=_help("Seeker model (default: --model)."))
    seeker_api_key_env: str | None = field(default=None, metadata=_help("Seeker API-key variable."))
    seeker_temperature: float = field(default=0.9, metadata=_help("Seeker sampling temperature."))
    seeker_top_p: float = field(default=0.95, metadata=_help("Seeker nucleus sampling."))
    seeker_max_tokens: int = field(default=96, metadata=_help("Seeker reply length cap (tokens)."))
    counselor_base_url: list[str] | None = field(default=None, metadata=_urls("Counselor (default: --base_url)."))
    counselor_model: str | None = field(default=None, metadata=_help("Counselor model (default: --model)."))
    counselor_api_key_env: str | None = field(default=None, metadata=_help("Counselor API-key variable."))
    counselor_temperature: float = field(default=0.3, metadata=_help("Counselor sampling temperature."))
    counselor_top_p: float = field(default=0.9, metadata=_help("Counselor nucleus sampling."))
    counselor_max_tokens: int = field(default=96, metadata=_help("Counselor JSON answer length cap (tokens)."))
    supporter_base_url: list[str] | None = field(default=None, metadata=_urls("Supporter (default: --base_url)."))
    supporter_model: str | None = field(default=None, metadata=_help("Supporter model (default: --model)."))
    supporter_api_key_env: str | None = field(default=None, metadata=_help("Supporter API-key variable."))
    supporter_temperature: float = field(default=0.7, metadata=_help("Supporter sampling temperature."))
    supporter_top_p: float = field(default=0.9, metadata=_help("Supporter nucleus sampling."))
    supporter_max_tokens: int = field(default=80, metadata=_help("Supporter reply length cap (tokens)."))

    judge_url: list[str] | None = field(default=None, metadata=_urls("Judge; set this or --judge_model to judge."))
    judge_model: str | None = field(default=None, metadata=_help("Judge model (default: --model when judging)."))
    judge_api_key_env: str | None = field(default=None, metadata=_help("Judge API-key variable."))
    judge_temperature: float = field(default=0.0, metadata=_help("Judge sampling temperature."))
    judge_max_tokens: int = field(default=160, metadata=_help("Judge JSON answer length cap (tokens)."))
    judge_min_score: int = field(default=2, metadata=_help("Each 1-5 score must reach this."))
    judge_min_adherence: float = field(
        default=0.0, metadata=_help("Share of supporter turns judged to use their strategy that must be reached.")
    )
    judge_action: Literal["drop", "flag"] = field(
        default="drop", metadata=_help("Below a threshold: drop the dialogue, or keep it with meta.judge.flags.")
    )

    max_turns: int = field(default=16, metadata=_help("Stop a dialogue after this many turns (both roles)."))
    min_turns: int = field(default=8, metadata=_help("Ignore [END] before, and drop dialogues shorter than, this."))
    max_seeker_words: int = field(default=80, metadata=_help("Longest seeker turn (words); longer ones re-asked."))
    max_supporter_words: int = field(default=60, metadata=_help("Longest supporter turn (words); longer re-asked."))
    turn_retries: int = field(default=2, metadata=_help("Re-asks of a seeker/supporter turn that fails a check."))
    counselor_retries: int = field(default=2, metadata=_help("Re-asks when the counselor's answer is not valid."))

    concurrency: int = field(default=8, metadata=_help("Dialogues generated at the same time."))
    max_retries: int = field(default=3, metadata=_help("Client retries on 429/5xx/timeouts/connection errors."))
    timeout: float = field(default=120.0, metadata=_help("Per-request timeout in seconds."))
    seed: int = field(default=0, metadata=_help("Base seed; per-dialogue and per-call seeds derive from it."))
    progress: bool = field(default=True, metadata=_help("Show a progress bar."))

    def check(self) -> None:
        """Raise ValueError naming the flag when settings contradict each other."""
        if not 2 <= self.min_turns <= self.max_turns:
            raise ValueError(f"--min_turns {self.min_turns} / --max_turns {self.max_turns}: need 2 <= min <= max")
        if self.concurrency < 1 or self.samples_per_scenario < 1:
            raise ValueError("--concurrency and --samples_per_scenario must be at least 1")
        if self.max_retries < 0 or self.counselor_retries < 0 or self.turn_retries < 0:
            raise ValueError("--max_retries, --counselor_retries and --turn_retries must not be negative")
        if not 1 <= self.judge_min_score <= 5 or not 0 <= self.judge_min_adherence <= 1:
            raise ValueError("--judge_min_score must be 1-5 and --judge_min_adherence 0-1")
        self.shard_index()

    def shard_index(self) -> tuple[int, int]:
        """(i, n) of ``--shard i/n``."""
        index, _, count = self.shard.partition("/")
        try:
            i, n = int(index), int(count)
        except ValueError:
            i, n = -1, 0
        if not 0 <= i < n:
            raise ValueError(f"--shard {self.shard!r}: expected i/n with 0 <= i < n, e.g. 0/4")
        return i, n

    @property
    def judging(self) -> bool:
        return self.judge_url is not None or self.judge_model is not None

    def role(self, name: str, clients: Clients, stats: ApiStats) -> Role:
        """Endpoints, model, key and sampling of one role (or the judge), with the defaults filled in."""
        values = asdict(self)
        urls = values["judge_url" if name == "judge" else f"{name}_base_url"] or self.base_url
        key_env = values[f"{name}_api_key_env"] or self.api_key_env
        top_p = 1.0 if name == "judge" else values[f"{name}_top_p"]
        return Role(
            name,
            urls,
            values[f"{name}_model"] or self.model,
            os.environ.get(key_env) or "EMPTY",
            Sampling(values[f"{name}_temperature"], top_p, values[f"{name}_max_tokens"]),
            clients,
            stats,
        )


def dialogue_id(scenario: Scenario, sample: int, seed: int) -> str:
    """Output id, the resume key: scenario, sample and base seed."""
    return f"roleplay-{scenario.id}-n{sample}-s{seed}"


@dataclass(frozen=True)
class Job:
    """One dialogue to generate."""

    scenario: Scenario
    sample: int
    id: str
    endpoint: int  # round-robin position: the dialogue's endpoint in each role's list


def plan_jobs(config: RoleplayConfig, scenarios: Sequence[Scenario], done: set[str]) -> tuple[list[Job], int, int]:
    """(pending jobs of this shard, jobs of this shard, of which already done)."""
    shard, shards = config.shard_index()
    ids = [
        (scenario, sample, dialogue_id(scenario, sample, config.seed))
        for scenario in scenarios
        for sample in range(config.samples_per_scenario)
    ]
    mine = [entry for entry in ids if derive_seed("shard", entry[2]) % shards == shard]
    pending = [(s, n, i) for s, n, i in mine if i not in done]
    return [Job(s, n, i, position) for position, (s, n, i) in enumerate(pending)], len(mine), len(mine) - len(pending)


@dataclass
class RunReport:
    """What one run did; written as JSON next to the output."""

    dialogues: int = 0
    skipped_existing: int = 0
    written: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    ends: Counter[str] = field(default_factory=Counter)
    too_short_after: Counter[str] = field(default_factory=Counter)
    reasks: Counter[str] = field(default_factory=Counter)
    counselor_invalid: int = 0
    counselor_no_choice: int = 0
    safety_flagged: Counter[str] = field(default_factory=Counter)
    strategies: Counter[str] = field(default_factory=Counter)
    turns_written: int = 0
    judge: JudgeSummary = field(default_factory=JudgeSummary)
    api: ApiStats = field(default_factory=ApiStats)
    wall_s: float = 0.0

    @property
    def finished(self) -> int:
        return self.written + sum(self.dropped.values()) + sum(self.failed.values())

    def summary(self) -> str:
        """One line for the console."""

        def counts(counter: Counter[str]) -> str:
            return ", ".join(f"{k}: {v}" for k, v in sorted(counter.items())) or "none"

        hours = self.wall_s / 3600
        rate = f"{self.written / hours:.0f} dialogues/hour" if hours else "n/a"
        return (
            f"{self.dialogues} dialogues, {self.skipped_existing} already done, {self.written} written, "
            f"{sum(self.dropped.values())} dropped ({counts(self.dropped)}), "
            f"{sum(self.failed.values())} failed ({counts(self.failed)}); ends: {counts(self.ends)}; "
            f"counselor re-asks {self.reasks['counselor:invalid']}, no choice {self.counselor_no_choice}; {rate}"
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, with throughput derived from the sums."""
        total = self.api.total()
        hours = self.wall_s / 3600
        finished = self.finished
        return {
            "dialogues": self.dialogues,
            "skipped_existing": self.skipped_existing,
            "finished": finished,
            "written": self.written,
            "yield": round(self.written / finished, 4) if finished else None,
            "dropped": dict(self.dropped.most_common()),
            "failed": dict(self.failed.most_common()),
            "ends": dict(self.ends.most_common()),
            "too_short_after": dict(self.too_short_after.most_common()),
            "cuts": {k.removeprefix("cut:"): v for k, v in self.ends.most_common() if k.startswith("cut:")},
            "reasks": dict(self.reasks.most_common()),
            "counselor_invalid_answers": self.counselor_invalid,
            "counselor_no_choice": self.counselor_no_choice,
            "safety_flagged": dict(self.safety_flagged.most_common()),
            "turns_written": self.turns_written,
            "avg_turns_per_dialogue": round(self.turns_written / self.written, 2) if self.written else None,
            "strategy_distribution": dict(self.strategies.most_common()),
            "judge": self.judge.as_dict(),
            "api": self.api.as_dict(),
            "wall_s": round(self.wall_s, 2),
            "throughput": {
                "completion_tokens_per_s": round(total.completion_tokens / self.wall_s, 2) if self.wall_s else None,
                "prompt_tokens_per_s": round(total.prompt_tokens / self.wall_s, 2) if self.wall_s else None,
                "dialogues_per_hour": round(self.written / hours, 1) if hours else None,
                "finished_dialogues_per_hour": round(finished / hours, 1) if hours else None,
                "utterances_per_hour": round(self.turns_written / hours, 1) if hours else None,
                "completion_tokens_per_written_dialogue": round(total.completion_tokens / self.written, 1)
                if self.written
                else None,
            },
            "prompts_version": PROMPTS_VERSION,
        }


class _Cut(Exception):
    """A turn could not be produced: the dialogue ends at its last good turn (``drop_last``: and loses that)."""

    def __init__(self, reason: str, drop_last: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.drop_last = drop_last


@dataclass
class _Progress:
    """One dialogue in the making: its turns, seed, endpoint and what its calls cost."""

    job: Job
    base_seed: int
    turns: list[DraftTurn] = field(default_factory=list)
    usage: dict[str, Usage] = field(default_factory=dict)


class RolePlayer:
    """Plays the three roles (and the judge) for one dialogue at a time, sharing endpoints and a report."""

    def __init__(
        self,
        config: RoleplayConfig,
        catalogue: StrategyCatalogue,
        roles: Mapping[str, Role],
        report: RunReport,
    ) -> None:
        self.config = config
        self.catalogue = catalogue
        self.roles = roles
        self.report = report
        self.limits = FilterLimits(config.min_turns, config.max_seeker_words, config.max_supporter_words)
        self.counselor_format = counselor_format(catalogue)

    async def _call(
        self, now: _Progress, role: str, messages: list[Message], seed: int, response_format: Any = None
    ) -> Reply:
        try:
            reply = await self.roles[role].chat(messages, seed, start=now.job.endpoint, response_format=response_format)
        except CallFailed as exc:
            raise _Cut(f"api_error:{exc.kind}") from None
        now.usage.setdefault(role, Usage()).add(reply.usage)
        if reply.safety_action != "none":
            self.report.safety_flagged[role] += 1
            raise _Cut("safety", drop_last=True)  # the flagged text is the last turn of the history
        return reply

    async def _seeker(self, now: _Progress) -> tuple[str, bool]:
        """(message, ended): a checked seeker turn; ("", True) when it only says goodbye once allowed to."""
        turns, config = now.turns, self.config
        index = len(turns)
        messages = seeker_messages(now.job.scenario, turns, config.min_turns)
        problem = "empty_turn"
        for attempt in range(config.turn_retries + 1):
            if attempt:
                self.report.reasks[f"seeker:{problem}"] += 1
            reply = await self._call(now, "seeker", messages, derive_seed(now.base_seed, index, attempt))
            body, ended = split_end_marker(clean_reply(reply.content, "seeker", reply.truncated))
            if not body:
                if ended and index >= config.min_turns:
                    return "", True
                problem = "early_end" if ended else "empty_turn"
                continue
            found = turn_problem("seeker", body, self.limits, [t.content for t in turns])
            if found is None:
                return body, ended
            problem = found
        raise _Cut(problem)

    async def _counsel(self, now: _Progress) -> tuple[str, str]:
        """(strategy, rationale) from the structured counselor; ends the dialogue when no valid choice comes."""
        index = len(now.turns)
        messages = counselor_messages(now.job.scenario, now.turns, self.catalogue)
        for attempt in range(self.config.counselor_retries + 1):
            if attempt:
                self.report.reasks["counselor:invalid"] += 1
            seed = derive_seed(now.base_seed, index, "counselor", attempt)
            reply = await self._call(now, "counselor", messages, seed, self.counselor_format)
            choice = parse_choice(reply.content, self.catalogue)
            if choice is not None:
                return choice
            self.report.counselor_invalid += 1
        self.report.counselor_no_choice += 1
        raise _Cut("no_strategy")

    async def _supporter(self, now: _Progress, strategy: str) -> str:
        turns, config = now.turns, self.config
        index = len(turns)
        messages = supporter_messages(turns, strategy, self.catalogue)
        problem = "empty_turn"
        for attempt in range(config.turn_retries + 1):
            if attempt:
                self.report.reasks[f"supporter:{problem}"] += 1
            reply = await self._call(
                now, "supporter", messages, derive_seed(now.base_seed, index, "supporter", attempt)
            )
            text = strip_strategy_tag(clean_reply(reply.content, "supporter", reply.truncated), self.catalogue)
            found = turn_problem("supporter", text, self.limits, [t.content for t in turns])
            if found is None:
                return text
            problem = found
        raise _Cut(problem)

    async def play(self, job: Job) -> tuple[list[DraftTurn], str, dict[str, Usage]]:
        """(turns, how the dialogue ended, usage per role) of one role-played conversation."""
        config = self.config
        now = _Progress(job, derive_seed(config.seed, job.scenario.id, job.sample))
        turns = now.turns
        end = "max_turns"
        try:
            while len(turns) < config.max_turns:
                text, ended = await self._seeker(now)
                if text:
                    turns.append(DraftTurn("seeker", text))
                # [END] with a message is honoured once the dialogue is long enough; earlier, the chat goes on.
                if ended and (not text or len(turns) >= config.min_turns):
                    end = "seeker_end"
                    break
                if len(turns) >= config.max_turns:
                    break
                strategy, rationale = await self._counsel(now)
                reply = await self._supporter(now, strategy)
                turns.append(DraftTurn("supporter", reply, strategy, rationale))
        except _Cut as cut:
            end = f"cut:{cut.reason}"
            if cut.drop_last and turns:
                turns.pop()
        return turns, end, now.usage

    async def judge(self, job: Job, turns: list[DraftTurn], usage: dict[str, Usage]) -> Verdict | str:
        """The judge's verdict, or why there is none (``invalid``, ``safety``, ``api_error:...``)."""
        supporter_turns = sum(t.role == "supporter" for t in turns)
        messages = judge_messages(turns, self.catalogue)
        now = _Progress(job, derive_seed(self.config.seed, job.scenario.id, job.sample, "judge"), usage=usage)
        for attempt in range(self.config.counselor_retries + 1):
            if attempt:
                self.report.reasks["judge:invalid"] += 1
            try:
                seed = derive_seed(now.base_seed, attempt)
                reply = await self._call(now, "judge", messages, seed, judge_format(supporter_turns))
            except _Cut as cut:
                return cut.reason
            verdict = parse_verdict(reply.content, supporter_turns)
            if verdict is not None:
                return verdict
        return "invalid"

    def to_dialogue(self, job: Job, turns: list[DraftTurn], meta: dict[str, Any]) -> Dialogue:
        """Validate finished turns as a ServeForEmo dialogue (raises pydantic's ValidationError)."""
        models = {role: self.roles[role].model for role in ROLES}
        if "judge" in self.roles:
            models["judge"] = self.roles["judge"].model
        record = {
            "id": job.id,
            "source": "roleplay",
            "scenario": job.scenario,
            "turns": [asdict(turn) for turn in turns],
            "generator": {
                "models": models,
                "prompts_version": PROMPTS_VERSION,
                "seed": self.config.seed,
                "created": datetime.now(UTC),
            },
            "meta": meta,
        }
        return Dialogue.model_validate(record, context={"catalogue": self.catalogue})

    async def make(self, job: Job) -> Dialogue | str:
        """The finished dialogue, or the reason it is dropped."""
        config, report = self.config, self.report
        began = time.perf_counter()
        turns, end, usage = await self.play(job)
        report.ends[end] += 1
        if len(turns) < config.min_turns:
            report.too_short_after[end] += 1
            return "too_short"
        meta: dict[str, Any] = {"sample": job.sample, "end": end}
        try:
            self.to_dialogue(job, turns, meta)
        except ValidationError:
            return "invalid"
        if "judge" in self.roles:
            verdict = await self.judge(job, turns, usage)
            if isinstance(verdict, str):
                report.judge.failed[verdict] += 1
                meta["judge"] = {"error": verdict, "version": JUDGE_VERSION}
            else:
                problems = verdict.problems(config.judge_min_score, config.judge_min_adherence)
                report.judge.add(verdict, turns, problems)
                meta["judge"] = {**verdict.as_dict(), "version": JUDGE_VERSION}
                if problems and config.judge_action == "drop":
                    report.judge.dropped += 1
                    return "judge"
                if problems:
                    report.judge.flagged += 1
                    meta["judge"]["flags"] = problems
        meta["usage"] = {role: u.as_dict() for role, u in sorted(usage.items())}
        meta["latency_s"] = round(time.perf_counter() - began, 3)
        return self.to_dialogue(job, turns, meta)


def finished_ids(out: Path) -> set[str]:
    """Dialogue ids already in the output; a torn last line (crash mid-write) is cut off first."""
    if not out.exists():
        return set()
    if repair_jsonl_tail(out):
        logger.warning("%s: removed an incomplete last line left by an interrupted run", out)
    done = set()
    with out.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    done.add(str(json.loads(line)["id"]))
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise ValueError(
                        f"{out}:{number}: not a ServeForEmo record; cannot resume into this file"
                    ) from None
    return done


async def generate(config: RoleplayConfig) -> RunReport:
    """Run the role-play for every pending dialogue of this shard; returns the report."""
    config.check()
    catalogue = load_catalogue(config.strategies)
    scenarios = load_scenarios(config.scenarios)[: config.limit]
    out = Path(config.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    jobs, mine, done = plan_jobs(config, scenarios, finished_ids(out))
    report = RunReport(dialogues=mine, skipped_existing=done)
    clients = Clients(config.max_retries, config.timeout)
    roles = {role: config.role(role, clients, report.api) for role in ROLES}
    if config.judging:
        roles["judge"] = config.role("judge", clients, report.api)
    began = time.perf_counter()
    try:
        await _play_all(RolePlayer(config, catalogue, roles, report), jobs, out)
    finally:
        report.wall_s = time.perf_counter() - began
        await clients.close()
    return report


async def _play_all(player: RolePlayer, jobs: list[Job], out: Path) -> None:
    """Play dialogues concurrently (bounded), appending each accepted one to ``out`` as soon as it is done."""
    from tqdm import tqdm

    report = player.report
    semaphore = asyncio.Semaphore(player.config.concurrency)
    bar = tqdm(total=len(jobs), unit="dialogue", disable=not player.config.progress, desc="role-play")

    with out.open("a", encoding="utf-8") as sink:

        async def one(job: Job) -> None:
            async with semaphore:
                try:
                    result = await player.make(job)
                except FatalApiError:
                    raise
                except Exception as exc:  # one failed dialogue must not stop the run
                    report.failed[type(exc).__name__] += 1
                    logger.warning("dialogue %s failed: %s", job.id, type(exc).__name__)
                    bar.update()
                    return
            if isinstance(result, str):
                report.dropped[result] += 1
                logger.info("dialogue %s dropped: %s", job.id, result)
            else:
                sink.write(result.to_json() + "\n")  # one whole line per write: a crash leaves at most a torn tail
                sink.flush()
                report.written += 1
                report.turns_written += len(result.turns)
                report.strategies.update(t.strategy for t in result.turns if t.strategy)
            bar.update()
            bar.set_postfix(written=report.written, dropped=sum(report.dropped.values()))

        try:
            async with asyncio.TaskGroup() as group:
                for job in jobs:
                    group.create_task(one(job))
        except ExceptionGroup as errors:
            fatal = errors.subgroup(FatalApiError)
            if fatal is None:
                raise
            raise fatal.exceptions[0] from None
        finally:
            bar.close()


def write_report(config: RoleplayConfig, report: RunReport) -> Path:
    """The report JSON (default ``<out>.report.json``) with the config; returns its path."""
    path = Path(config.report) if config.report else Path(config.out).with_suffix(".report.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {**report.as_dict(), "config": asdict(config)}
    path.write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def main(config: RoleplayConfig) -> RunReport:
    """Generate, print the summary, write the report JSON."""
    report = asyncio.run(generate(config))
    path = write_report(config, report)
    print(f"role-play: {report.summary()}")
    print(f"report: {path}")
    return report


def cli(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    config = parse_config(
        RoleplayConfig, argv, description="Strategy-enhanced role-play generation.", prog="python -m training.roleplay"
    )
    try:
        main(config)
    except (ValueError, FatalApiError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(cli())
