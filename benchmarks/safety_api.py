"""The crisis screen measured through the public API, the way issue 12's reviewer measures the private set.

How to run (from the repository root):

    python benchmarks/safety_api.py                                   # starts `python -m app` (the README's default)
    python benchmarks/safety_api.py --sets dev3 --concurrency 8
    python benchmarks/safety_api.py --base_url http://host:8000/v1 --api_key KEY --sets regression

``safety_bench.py`` calls the screen in-process. Here every item is one stateless ``POST /v1/chat/completions`` sent
with the official ``openai`` client, as a new user would send it: the item's context as earlier user messages, its
text last, ``max_tokens`` 1 (a high-risk turn is replaced, so nothing is generated for it; the verdict does not
depend on the reply). The verdict is the response's ``safety`` extension (``level``, ``categories``), and from it
the same figures as ``safety_bench.py``, with the same bootstrap.

It also screens each item in this process with the gate's own function (``screen_conversation``: what the server
runs for the turn) on the shipped artefact, and reports how many verdicts agree: level, and level with categories,
with a table of (in-process, API) level pairs. Agreement on every item means the API path adds nothing and loses
nothing: the in-process figures of ``safety_bench.py`` are the API's. No item text is printed or written, so the
held-out sets can be run too (the final test set only once per shipped version, as with ``safety_bench.py``).

With ``--session true`` each item is a new session instead (``X-Session-Id``): its context is sent as earlier turns,
one message each, and the verdict is the last turn's, so the session's own rules apply (a high-risk turn is left out
of the context later turns are screened with, and holds the session at elevated or above for 3 turns). The
in-process side then replays the same turns through the gate's function. Each session is deleted afterwards.

Without ``--base_url`` the script starts the server itself (``python -m app`` on a free port, the embedded default
model, the learned screen; ``--server_args`` adds flags) and stops it at the end. Results go to
``benchmarks/results/<--out>.json`` with git SHA, date, machine and load.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # allow `python benchmarks/safety_api.py` without installing the package
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from openai.types.chat import ChatCompletionUserMessageParam  # noqa: E402

from app.chat.safety import RiskLevel, SafetyResult, SafetyScreen  # noqa: E402
from app.chat.safety.gate import screen_conversation  # noqa: E402
from app.core.messages import Message  # noqa: E402
from benchmarks.results_file import provenance, write_results  # noqa: E402
from benchmarks.safety_bench import Example, figures, file_sha256, print_set, read_sets, target_rows  # noqa: E402
from training.cli import parse_config  # noqa: E402

DEFAULT_SERVER = ["--model-repo", str(ROOT / "model_repo"), "--model", "sweetiechat"]
"""What ``python -m app`` serves when the script starts it: the README's embedded default."""


@dataclass
class ApiBenchConfig:
    """Command-line options."""

    sets: list[str] = field(
        default_factory=lambda: ["dev", "dev2", "dev3", "regression"],
        metadata={"help": "set names (benchmarks/safety/NAME.jsonl) or paths to .jsonl files"},
    )
    base_url: str | None = field(
        default=None, metadata={"help": "a running server's /v1 URL (default: start `python -m app` here)"}
    )
    api_key: str = field(default="sk-unused", metadata={"help": "the API key the server expects, if any"})
    model: str | None = field(default=None, metadata={"help": "model name (default: the server's first)"})
    server_args: list[str] = field(
        default_factory=list, metadata={"help": "extra `python -m app` flags when the script starts the server"}
    )
    concurrency: int = field(default=4, metadata={"help": "requests in flight at once"})
    stream: bool = field(default=False, metadata={"help": "read the verdict from the first SSE chunk instead"})
    session: bool = field(
        default=False,
        metadata={"help": "send each item as a new session: its context as earlier turns, its text as the last"},
    )
    compare: bool = field(default=True, metadata={"help": "also screen in-process and report agreement"})
    resamples: int = field(default=1000, metadata={"help": "bootstrap resamples per figure"})
    seed: int = field(default=0, metadata={"help": "bootstrap seed"})
    ready_timeout_s: float = field(default=900.0, metadata={"help": "how long a started server may take to load"})
    out: str | None = field(default="safety_api", metadata={"help": "results name under benchmarks/results/"})

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.resamples < 1:
            raise ValueError("concurrency, resamples: must be at least 1")
        if self.out in ("none", ""):
            self.out = None


def request_messages(example: Example) -> list[ChatCompletionUserMessageParam]:
    """What a new user sends for an item: earlier messages first, each as a user message, the item's text last."""
    return [ChatCompletionUserMessageParam(role="user", content=text) for text in (*example.context, example.text)]


def verdict_of(safety: Any) -> SafetyResult:
    """A response's ``safety`` extension as a result; ValueError when it is missing or malformed."""
    if not isinstance(safety, dict) or safety.get("level") not in ("none", "elevated", "high"):
        raise ValueError(f"no valid 'safety' extension in the response: {safety!r}")
    return SafetyResult(RiskLevel(safety["level"]), tuple(safety.get("categories") or ()))


def in_process(screen: SafetyScreen, example: Example) -> SafetyResult:
    """The verdict the server's gate reaches for a stateless request carrying this item (no session, no hold)."""
    messages = [Message("user", text) for text in (*example.context, example.text)]
    result, _ = screen_conversation(screen, messages[:-1], messages[-1:], 0)
    if result is None:
        raise ValueError("an item with no text")
    return result


def in_process_session(screen: SafetyScreen, example: Example) -> SafetyResult:
    """The verdict the gate reaches on the item's last turn when its context came as earlier turns of one session:
    each turn screened against the stored ones, a flagged user message stored with its verdict, the high-risk hold
    carried from turn to turn (what ``Turn.commit`` stores)."""
    stored: list[Message] = []
    hold = 0
    result: SafetyResult | None = None
    for text in (*example.context, example.text):
        new = Message("user", text)
        result, hold = screen_conversation(screen, stored, [new], hold)
        verdict = result.to_dict() if result is not None and result.flagged else None
        stored += [replace(new, safety=verdict), Message("assistant", "")]
    if result is None:
        raise ValueError("an item with no text")
    return result


def agreement(local: Sequence[SafetyResult], api: Sequence[SafetyResult]) -> dict[str, Any]:
    """How many verdicts agree (level; level and categories) and the (in-process, API) level pairs that differ."""
    pairs = list(zip(local, api, strict=True))
    differ = Counter(f"{a.level.value}->{b.level.value}" for a, b in pairs if a.level is not b.level)
    return {
        "n": len(pairs),
        "same_level": sum(a.level is b.level for a, b in pairs),
        "same_level_and_categories": sum(
            a.level is b.level and set(a.categories) == set(b.categories) for a, b in pairs
        ),
        "level_differs": dict(sorted(differ.items())),
    }


async def screen_via_api(
    config: ApiBenchConfig, base_url: str, model: str, examples: Sequence[Example], label: str
) -> tuple[list[SafetyResult | None], list[str]]:
    """Each item through the API (one stateless request, or one session); the verdicts in item order (None where a
    request failed) and the errors."""
    from openai import AsyncOpenAI, OpenAIError
    from tqdm import tqdm

    client = AsyncOpenAI(base_url=base_url, api_key=config.api_key, max_retries=5, timeout=120)
    gate = asyncio.Semaphore(config.concurrency)
    verdicts: list[SafetyResult | None] = [None] * len(examples)
    errors: list[str] = []
    bar = tqdm(total=len(examples), desc=label, unit="req", file=sys.stderr)

    async def ask(messages: list[ChatCompletionUserMessageParam], headers: dict[str, str] | None) -> Any:
        """One request; its ``safety`` extension (from the first chunk that carries it, when streaming)."""
        if config.stream:
            stream = await client.chat.completions.create(
                model=model, messages=messages, max_tokens=1, temperature=0, stream=True, extra_headers=headers
            )
            safety = None
            async for chunk in stream:
                safety = safety or (chunk.model_extra or {}).get("safety")
            return safety
        reply = await client.chat.completions.create(
            model=model, messages=messages, max_tokens=1, temperature=0, extra_headers=headers
        )
        return (reply.model_extra or {}).get("safety")

    async def one(index: int, example: Example) -> None:
        async with gate:
            try:
                if config.session:  # a new session per item; the last turn's verdict is the item's
                    session = {"X-Session-Id": f"safety-bench-{uuid.uuid4().hex}"}
                    for message in request_messages(example):
                        safety = await ask([message], session)
                    await client.delete(f"/sessions/{session['X-Session-Id']}", cast_to=httpx.Response)
                else:
                    safety = await ask(request_messages(example), None)
                verdicts[index] = verdict_of(safety)
            except (OpenAIError, ValueError) as exc:  # the item number and the error, never the text
                errors.append(f"item {index}: {type(exc).__name__}: {str(exc)[:200]}")
            bar.update()

    try:
        await asyncio.gather(*(one(i, ex) for i, ex in enumerate(examples)))
    finally:
        bar.close()
        await client.close()
    return verdicts, errors


def first_model(base_url: str, api_key: str) -> str:
    from openai import OpenAI

    with OpenAI(base_url=base_url, api_key=api_key) as client:
        models = client.models.list().data
    if not models:
        raise SystemExit(f"{base_url}: the server lists no models")
    return models[0].id


def measure(config: ApiBenchConfig, base_url: str) -> dict[str, Any]:
    """Every set through the API at ``base_url`` (and in-process): the results object."""
    model = config.model or first_model(base_url, config.api_key)
    screen: SafetyScreen | None = None
    artefact: str | None = None
    if config.compare:
        from app.chat.safety.classifier import DEFAULT_MODEL_PATH, LearnedSafetyScreen

        screen, artefact = LearnedSafetyScreen.load(DEFAULT_MODEL_PATH), file_sha256(DEFAULT_MODEL_PATH)
    sets: dict[str, Any] = {}
    all_targets: list[dict[str, Any]] = []
    failed = 0
    for name, path, examples in read_sets(config.sets, sets):
        started = time.perf_counter()
        verdicts, errors = asyncio.run(screen_via_api(config, base_url, model, examples, name))
        wall = time.perf_counter() - started
        answered = [(ex, v) for ex, v in zip(examples, verdicts, strict=True) if v is not None]
        kept = [ex for ex, _ in answered]
        got = [v for _, v in answered]
        report = figures(kept, got, resamples=config.resamples, seed=config.seed)
        targets = target_rows(name, report)
        print_set(f"{name} (through the API)", report, targets)
        entry: dict[str, Any] = {
            "file": str(path),
            "sha256": file_sha256(path),
            "requests": len(examples),
            "failed": len(errors),
            "errors": errors[:20],
            "wall_s": round(wall, 1),
            "requests_per_s": round(len(examples) / wall, 2) if wall else None,
            **report,
        }
        if screen is not None:
            local = in_process_session if config.session else in_process
            entry["agreement"] = agreement([local(screen, ex) for ex in kept], got)
            a = entry["agreement"]
            same = f"level {a['same_level']}/{a['n']}, level and categories {a['same_level_and_categories']}/{a['n']}"
            print(f"  agreement with the in-process screen: {same}; differing {a['level_differs']}")
        print(f"  {len(examples)} requests in {wall:.0f} s, {len(errors)} failed")
        for line in errors[:5]:
            print(f"    {line}")
        failed += len(errors)
        sets[name] = entry
        all_targets.extend(targets)
    met = sum(t["passed"] for t in all_targets)
    print(f"\ntargets: {met} of {len(all_targets)} met (reported, not asserted); {failed} requests failed")
    return {
        "base_url": base_url,
        "model": model,
        "stream": config.stream,
        "session": config.session,
        "concurrency": config.concurrency,
        "artefact_sha256_in_process": artefact,
        "resamples": config.resamples,
        "seed": config.seed,
        "sets": sets,
        "targets": all_targets,
        "failed_requests": failed,
    }


def main(config: ApiBenchConfig) -> int:
    """Measure, write the results; exit 1 when a request failed (the figures then leave items out)."""
    started = provenance()
    started["command"] = shlex.join(["python", *sys.argv])
    if config.base_url is not None:
        results = measure(config, config.base_url)
    else:
        from loadtest.compare import ServerRun
        from loadtest.ports import free_port

        port = free_port()
        command = [sys.executable, "-m", "app", *DEFAULT_SERVER, *config.server_args]
        command += ["--host", "127.0.0.1", "--port", str(port)]
        log = Path(tempfile.mkdtemp(prefix="safety-api-")) / "server.log"
        server = ServerRun("python -m app", command, dict(os.environ), "/ready", log, port)
        print(f"starting {shlex.join(command[1:])} (log: {log})", file=sys.stderr)
        try:
            load_s = server.start(config.ready_timeout_s)
            print(f"ready in {load_s:.0f} s", file=sys.stderr)
            results = measure(config, f"{server.root}/v1")
        finally:
            server.stop()
        results["server_command"] = shlex.join(["python", *command[1:]])
    if config.out is not None:
        write_results(config.out, started, results)
    return 1 if results["failed_requests"] else 0


if __name__ == "__main__":
    sys.exit(main(parse_config(ApiBenchConfig, None, __doc__.split("\n")[0], "python benchmarks/safety_api.py")))
