"""Strategy-enhanced role-play: generate ServeForEmo dialogues from seed scenarios with three LLM roles.

For each scenario, over any OpenAI-compatible endpoint (official ``openai`` AsyncOpenAI client):

1. the Seeker plays the profile and reveals the problem gradually; it ends the chat by writing ``[END]``
   (honoured once ``min_turns`` is reached; ``max_turns`` ends it anyway);
2. the Strategy Counselor reads the history and picks the supporter's next strategy with a one-line rationale
   (an unrecognisable pick is asked again ``counselor_retries`` times, then ``default_strategy`` is used);
3. the Supporter writes a short reply using that strategy.

Each role has its own endpoint, model, API-key variable and sampling (``--seeker_model`` ... ; unset values fall back
to ``--base_url``/``--model``/``--api_key_env``). Dialogues run concurrently (``--concurrency``); API calls are
retried with exponential backoff on 429, 5xx, timeouts and connection errors. Every call passes a ``seed`` derived
from ``--seed``, the scenario id, the turn and the attempt, so a deterministic endpoint gives the same dialogues.
Each finished dialogue that passes the quality filters (``training.filters``) is appended to ``--out`` at once;
re-running skips scenario ids already there. Counts of what was dropped and why are printed and written to the
report JSON (``<out>.report.json``). Message text is never logged.

How to run::

    python -m training.roleplay --base_url http://127.0.0.1:8000/v1 --model sweetiechat \\
        --out outputs/roleplay.jsonl --limit 20
    python -m training.roleplay --config training/configs/roleplay_smol.yaml   # YAML preset; flags still win
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import random
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from app.core.strategies import StrategyCatalogue, load_catalogue
from training.cli import parse_config
from training.filters import FilterLimits, dialogue_problem
from training.prompts import (
    PROMPTS_VERSION,
    DraftTurn,
    Message,
    clean_reply,
    counselor_messages,
    parse_counselor,
    seeker_messages,
    split_end_marker,
    strip_strategy_tag,
    supporter_messages,
)
from training.scenarios import DEFAULT_DIR, load_scenarios
from training.schema import Dialogue, Scenario

if TYPE_CHECKING:
    from openai import AsyncOpenAI

logger = logging.getLogger(__name__)

ROLES = ("seeker", "counselor", "supporter")


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class RoleplayConfig:
    """Settings for ``python -m training.roleplay``."""

    scenarios: str = field(default=str(DEFAULT_DIR), metadata=_help("Scenario YAML/JSONL file or folder."))
    out: str = field(default="outputs/roleplay.jsonl", metadata=_help("Output JSONL; appended, resumable."))
    report: str | None = field(default=None, metadata=_help("Report JSON path; default <out>.report.json."))
    limit: int | None = field(default=None, metadata=_help("Use only the first N scenarios."))
    strategies: str | None = field(default=None, metadata=_help("Deployment strategy YAML (extend/replace)."))

    base_url: str = field(default="http://127.0.0.1:8000/v1", metadata=_help("Default OpenAI-compatible base URL."))
    model: str = field(default="sweetiechat", metadata=_help("Default model name."))
    api_key_env: str = field(
        default="OPENAI_API_KEY", metadata=_help("Environment variable holding the default API key ('EMPTY' if unset).")
    )
    seeker_base_url: str | None = field(default=None, metadata=_help("Seeker endpoint (default: --base_url)."))
    seeker_model: str | None = field(default=None, metadata=_help("Seeker model (default: --model)."))
    seeker_api_key_env: str | None = field(default=None, metadata=_help("Seeker API-key variable."))
    seeker_temperature: float = field(default=0.9, metadata=_help("Seeker sampling temperature."))
    seeker_top_p: float = field(default=0.95, metadata=_help("Seeker nucleus sampling."))
    seeker_max_tokens: int = field(default=96, metadata=_help("Seeker reply length cap (tokens)."))
    counselor_base_url: str | None = field(default=None, metadata=_help("Counselor endpoint (default: --base_url)."))
    counselor_model: str | None = field(default=None, metadata=_help("Counselor model (default: --model)."))
    counselor_api_key_env: str | None = field(default=None, metadata=_help("Counselor API-key variable."))
    counselor_temperature: float = field(default=0.3, metadata=_help("Counselor sampling temperature."))
    counselor_top_p: float = field(default=0.9, metadata=_help("Counselor nucleus sampling."))
    counselor_max_tokens: int = field(default=64, metadata=_help("Counselor answer length cap (tokens)."))
    supporter_base_url: str | None = field(default=None, metadata=_help("Supporter endpoint (default: --base_url)."))
    supporter_model: str | None = field(default=None, metadata=_help("Supporter model (default: --model)."))
    supporter_api_key_env: str | None = field(default=None, metadata=_help("Supporter API-key variable."))
    supporter_temperature: float = field(default=0.7, metadata=_help("Supporter sampling temperature."))
    supporter_top_p: float = field(default=0.9, metadata=_help("Supporter nucleus sampling."))
    supporter_max_tokens: int = field(default=80, metadata=_help("Supporter reply length cap (tokens)."))

    max_turns: int = field(default=16, metadata=_help("Stop a dialogue after this many turns (both roles)."))
    min_turns: int = field(default=8, metadata=_help("Ignore [END] before, and drop dialogues shorter than, this."))
    max_seeker_words: int = field(default=80, metadata=_help("Drop dialogues with a longer seeker turn."))
    max_supporter_words: int = field(default=60, metadata=_help("Drop dialogues with a longer supporter turn."))
    counselor_retries: int = field(default=2, metadata=_help("Re-asks when the counselor's pick is not recognisable."))
    default_strategy: str = field(default="Reflection of feelings", metadata=_help("Strategy after failed re-asks."))
    empty_retries: int = field(default=2, metadata=_help("Re-asks when a seeker/supporter reply is empty."))

    concurrency: int = field(default=8, metadata=_help("Dialogues generated at the same time."))
    max_retries: int = field(default=5, metadata=_help("API retries on 429/5xx/timeouts/connection errors."))
    backoff_base: float = field(default=1.0, metadata=_help("First retry delay in seconds (doubles each retry)."))
    backoff_max: float = field(default=30.0, metadata=_help("Longest retry delay in seconds."))
    timeout: float = field(default=120.0, metadata=_help("Per-request timeout in seconds."))
    seed: int = field(default=0, metadata=_help("Base seed; per-scenario and per-call seeds derive from it."))
    progress: bool = field(default=True, metadata=_help("Show a progress bar."))

    def check(self) -> None:
        """Raise ValueError naming the flag when settings contradict each other."""
        if not 2 <= self.min_turns <= self.max_turns:
            raise ValueError(f"--min_turns {self.min_turns} / --max_turns {self.max_turns}: need 2 <= min <= max")
        if self.concurrency < 1:
            raise ValueError(f"--concurrency {self.concurrency}: must be at least 1")
        if self.max_retries < 0 or self.counselor_retries < 0 or self.empty_retries < 0:
            raise ValueError("--max_retries, --counselor_retries and --empty_retries must not be negative")

    def role(self, name: str) -> RoleSettings:
        """Endpoint, model, key and sampling of one role, with the defaults filled in."""
        values = asdict(self)
        key_env = values[f"{name}_api_key_env"] or self.api_key_env
        return RoleSettings(
            base_url=values[f"{name}_base_url"] or self.base_url,
            model=values[f"{name}_model"] or self.model,
            api_key=os.environ.get(key_env) or "EMPTY",
            temperature=values[f"{name}_temperature"],
            top_p=values[f"{name}_top_p"],
            max_tokens=values[f"{name}_max_tokens"],
        )


@dataclass(frozen=True)
class RoleSettings:
    """Resolved settings of one role."""

    base_url: str
    model: str
    api_key: str = field(repr=False)
    temperature: float
    top_p: float
    max_tokens: int


@dataclass
class RunReport:
    """What one run did; written as JSON next to the output."""

    scenarios: int = 0
    skipped_existing: int = 0
    written: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    api_calls: Counter[str] = field(default_factory=Counter)
    api_retries: int = 0
    counselor_reasks: int = 0
    counselor_defaulted: int = 0
    empty_reasks: int = 0

    def summary(self) -> str:
        """One line for the console."""

        def counts(counter: Counter[str]) -> str:
            return ", ".join(f"{k}: {v}" for k, v in sorted(counter.items())) or "none"

        return (
            f"{self.scenarios} scenarios, {self.skipped_existing} already done, {self.written} written, "
            f"{sum(self.dropped.values())} dropped ({counts(self.dropped)}), "
            f"{sum(self.failed.values())} failed ({counts(self.failed)}); "
            f"API retries {self.api_retries}, counselor re-asks {self.counselor_reasks}, "
            f"counselor defaults {self.counselor_defaulted}"
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        data = asdict(self)
        for name in ("dropped", "failed", "api_calls"):
            data[name] = dict(sorted(getattr(self, name).items()))
        return data


def derive_seed(*parts: object) -> int:
    """A stable 31-bit seed from any parts (same parts, same seed, on every machine and Python version)."""
    digest = hashlib.sha256("|".join(str(part) for part in parts).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def dialogue_id(scenario: Scenario, seed: int) -> str:
    """Output id: one dialogue per scenario and base seed."""
    return f"roleplay-{scenario.id}-s{seed}"


class FatalApiError(RuntimeError):
    """An API error that retrying cannot fix (bad key, unknown model): the whole run stops."""


class RolePlayer:
    """Plays the three roles for one scenario at a time, sharing clients and a report."""

    def __init__(
        self,
        config: RoleplayConfig,
        catalogue: StrategyCatalogue,
        clients: dict[str, AsyncOpenAI],
        report: RunReport,
    ) -> None:
        self.config = config
        self.catalogue = catalogue
        self.clients = clients
        self.settings = {role: config.role(role) for role in ROLES}
        self.report = report
        self.limits = FilterLimits(config.min_turns, config.max_seeker_words, config.max_supporter_words)
        self._jitter = random.Random()  # only spreads retry timing; never affects content
        default = catalogue.canonical(config.default_strategy)
        if default is None:
            raise ValueError(f"--default_strategy {config.default_strategy!r}: not one of {catalogue.names}")
        self.default_strategy = default

    async def _chat(self, role: str, messages: list[Message], seed: int) -> tuple[str, bool, str | None]:
        """(content, finished by length, server's strategy extension field if any); retries transient errors."""
        import openai

        settings = self.settings[role]
        for attempt in range(self.config.max_retries + 1):
            try:
                self.report.api_calls[role] += 1
                response = await self.clients[role].chat.completions.create(
                    model=settings.model,
                    messages=messages,  # type: ignore[arg-type]
                    temperature=settings.temperature,
                    top_p=settings.top_p,
                    max_tokens=settings.max_tokens,
                    seed=seed,
                    timeout=self.config.timeout,
                )
            except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError) as exc:
                raise FatalApiError(f"{role} endpoint {settings.base_url} model {settings.model!r}: {exc}") from exc
            except (openai.APIConnectionError, openai.APIStatusError) as exc:
                status = getattr(exc, "status_code", None)
                transient = status is None or status in (408, 409, 429) or status >= 500
                if not transient or attempt == self.config.max_retries:
                    raise
                self.report.api_retries += 1
                delay = min(self.config.backoff_max, self.config.backoff_base * 2**attempt)
                delay *= 0.5 + self._jitter.random() / 2
                retry_after = _retry_after(exc)
                if retry_after is not None:
                    delay = max(delay, min(retry_after, self.config.backoff_max))
                logger.info("%s call failed (%s); retry %d in %.2fs", role, type(exc).__name__, attempt + 1, delay)
                await asyncio.sleep(delay)
                continue
            if not response.choices:
                return "", False, None
            choice = response.choices[0]
            extra = (choice.message.model_extra or {}).get("strategy")
            content = choice.message.content or ""
            return content, choice.finish_reason == "length", extra if isinstance(extra, str) else None
        raise AssertionError("unreachable")

    async def _speak(self, role: str, messages: list[Message], seed: int, may_end: bool = False) -> str:
        """A cleaned seeker or supporter message; empty ones are re-asked with a new seed.

        For the seeker a bare end marker counts as empty unless ``may_end`` (the dialogue is long enough to end).
        """
        text = ""
        for attempt in range(self.config.empty_retries + 1):
            if attempt:
                self.report.empty_reasks += 1
            raw, truncated, _ = await self._chat(role, messages, derive_seed(seed, attempt))
            text = clean_reply(raw, role, truncated)
            if role == "supporter":
                text = strip_strategy_tag(text, self.catalogue)
                body, ended = text, False
            else:
                body, ended = split_end_marker(text)
            if body or (ended and may_end):
                return text
        return text

    async def _counsel(self, scenario: Scenario, turns: list[DraftTurn], seed: int) -> tuple[str, str | None]:
        messages = counselor_messages(scenario, turns, self.catalogue)
        for attempt in range(self.config.counselor_retries + 1):
            if attempt:
                self.report.counselor_reasks += 1
            raw, _, extra = await self._chat("counselor", messages, derive_seed(seed, attempt))
            strategy, rationale = parse_counselor(raw, self.catalogue)
            if strategy is None and extra:
                strategy = self.catalogue.canonical(extra)
            if strategy is not None:
                return strategy, rationale
        self.report.counselor_defaulted += 1
        return self.default_strategy, None

    async def play(self, scenario: Scenario) -> list[DraftTurn]:
        """The turns of one role-played conversation (unfiltered)."""
        config = self.config
        base = derive_seed(config.seed, scenario.id)
        turns: list[DraftTurn] = []
        while len(turns) < config.max_turns:
            index = len(turns)
            messages = seeker_messages(scenario, turns, config.min_turns)
            reply = await self._speak("seeker", messages, derive_seed(base, index), index >= config.min_turns)
            text, ended = split_end_marker(reply)
            if not text:
                if not ended:
                    turns.append(DraftTurn("seeker", ""))  # still empty after re-asks: dropped as empty_turn
                break  # a bare [END]: the seeker insists on leaving (too_short if it is early)
            turns.append(DraftTurn("seeker", text))
            # [END] with a message is honoured once the dialogue is long enough; earlier, the chat goes on.
            if (ended and len(turns) >= config.min_turns) or len(turns) >= config.max_turns:
                break
            strategy, rationale = await self._counsel(scenario, turns, derive_seed(base, index, "counselor"))
            messages = supporter_messages(turns, strategy, self.catalogue)
            reply = await self._speak("supporter", messages, derive_seed(base, index, "supporter"))
            turns.append(DraftTurn("supporter", reply, strategy, rationale))
        return turns

    def to_dialogue(self, scenario: Scenario, turns: list[DraftTurn]) -> Dialogue:
        """Validate finished turns as a ServeForEmo dialogue (raises pydantic's ValidationError)."""
        record = {
            "id": dialogue_id(scenario, self.config.seed),
            "source": "roleplay",
            "scenario": scenario,
            "turns": [asdict(turn) for turn in turns],
            "generator": {
                "models": {role: self.settings[role].model for role in ROLES},
                "prompts_version": PROMPTS_VERSION,
                "seed": self.config.seed,
                "created": datetime.now(UTC),
            },
        }
        return Dialogue.model_validate(record, context={"catalogue": self.catalogue})

    def accept(self, scenario: Scenario, turns: list[DraftTurn]) -> Dialogue | str:
        """The dialogue, or the reason it is dropped."""
        problem = dialogue_problem(turns, self.limits)
        if problem is not None:
            return problem
        try:
            return self.to_dialogue(scenario, turns)
        except ValidationError:
            return "invalid"


def _retry_after(exc: Exception) -> float | None:
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def finished_scenario_ids(out: Path) -> set[str]:
    """Scenario ids already in the output; a torn last line (crash mid-write) is cut off first."""
    if not out.exists():
        return set()
    data = out.read_bytes()
    if data and not data.endswith(b"\n"):
        keep = data[: data.rfind(b"\n") + 1]
        logger.warning("%s: removing an incomplete last line left by an interrupted run", out)
        out.write_bytes(keep)
        data = keep
    done = set()
    for number, line in enumerate(data.decode("utf-8").splitlines(), start=1):
        if line.strip():
            try:
                done.add(json.loads(line)["scenario"]["id"])
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ValueError(f"{out}:{number}: not a ServeForEmo record; cannot resume into this file") from None
    return done


async def generate(config: RoleplayConfig) -> RunReport:
    """Run the role-play for every pending scenario; returns the report."""
    from openai import AsyncOpenAI

    config.check()
    catalogue = load_catalogue(config.strategies)
    scenarios = load_scenarios(config.scenarios)[: config.limit]
    out = Path(config.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = finished_scenario_ids(out)
    pending = [s for s in scenarios if s.id not in done]
    report = RunReport(scenarios=len(scenarios), skipped_existing=len(scenarios) - len(pending))
    clients: dict[tuple[str, str], AsyncOpenAI] = {}  # one client per endpoint and key, shared by roles
    try:
        by_role: dict[str, AsyncOpenAI] = {}
        for role in ROLES:
            settings = config.role(role)
            key = (settings.base_url, settings.api_key)
            if key not in clients:
                clients[key] = AsyncOpenAI(base_url=settings.base_url, api_key=settings.api_key, max_retries=0)
            by_role[role] = clients[key]
        await _play_all(RolePlayer(config, catalogue, by_role, report), pending, out)
    finally:
        for client in clients.values():
            await client.close()
    return report


async def _play_all(player: RolePlayer, pending: list[Scenario], out: Path) -> None:
    """Play scenarios concurrently (bounded), appending each accepted dialogue to ``out`` as soon as it is done."""
    from tqdm import tqdm

    report = player.report
    semaphore = asyncio.Semaphore(player.config.concurrency)
    bar = tqdm(total=len(pending), unit="dialogue", disable=not player.config.progress, desc="role-play")

    with out.open("a", encoding="utf-8") as sink:

        async def one(scenario: Scenario) -> None:
            async with semaphore:
                try:
                    turns = await player.play(scenario)
                except FatalApiError:
                    raise
                except Exception as exc:  # one failed scenario must not stop the run
                    report.failed[type(exc).__name__] += 1
                    logger.warning("scenario %s failed: %s", scenario.id, type(exc).__name__)
                    bar.update()
                    return
            result = player.accept(scenario, turns)
            if isinstance(result, str):
                report.dropped[result] += 1
                logger.info("scenario %s dropped: %s", scenario.id, result)
            else:
                sink.write(result.to_json() + "\n")
                sink.flush()
                report.written += 1
            bar.update()
            bar.set_postfix(written=report.written, dropped=sum(report.dropped.values()))

        try:
            async with asyncio.TaskGroup() as group:
                for scenario in pending:
                    group.create_task(one(scenario))
        except ExceptionGroup as errors:
            fatal = errors.subgroup(FatalApiError)
            if fatal is None:
                raise
            raise fatal.exceptions[0] from None
        finally:
            bar.close()


def main(config: RoleplayConfig) -> RunReport:
    """Generate, print the summary, write the report JSON."""
    report = asyncio.run(generate(config))
    path = Path(config.report) if config.report else Path(config.out).with_suffix(".report.json")
    path.write_text(json.dumps({**report.as_dict(), "config": asdict(config)}, indent=2) + "\n", encoding="utf-8")
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
