"""Side by side: this server (``python -m app``) against vLLM's own OpenAI server on the same model and the same load.

Three variants, one server loaded at a time, interleaved A/B/B/A (``ours, vllm-defaults, vllm-ours``, then the same in
reverse, ...) for ``--repeats`` rounds, so that drift in the machine's load hits every variant alike:

- ``ours``: ``python -m app`` at its shipped defaults: the manifest's engine settings and sampling, the session store
  as configured (in-process unless ``SWEETIE_REDIS_URL`` or ``--redis-url``; the results say which).
- ``vllm-defaults``: ``python -m vllm.entrypoints.openai.api_server`` at ITS defaults, as a user runs ``vllm serve
  <folder>``: compiled mode, its chunked prefill, its sampling defaults (the client sends no ``top_p`` or
  ``repetition_penalty``), ``--max-model-len`` only when the model's full context would not fit the KV cache. What a
  user compares.
- ``vllm-ours``: the same vLLM server given our engine settings (dtype, max_model_len, enforce_eager, max_num_seqs,
  prefix caching; on CPU our fix that keeps seeded requests alive under chunked prefill,
  ``app.engine.cpu_seeded_chunks``) and our sampling sent explicitly: the API layer's own cost.

The client sends ``ours`` and ``vllm-defaults`` the same body (temperature from the manifest, a seed per request,
``ignore_eos``, ``max_tokens``): each server applies its own defaults to the rest. Every request asks for the usage
block (``stream_options.include_usage``), and the prompt tokens of every request must be equal across variants (the
comparison stops, loudly, when they are not). Each variant gets a warm-up, then the same concurrent streaming load;
``ignore_eos`` makes every reply exactly ``--max-tokens`` tokens (and turns our sentence budget off).

Reported per variant: the median and spread (min/max over the repeats) of output tokens/s, TTFT p50, ITL p50/p99, and
the server start time (process start to ready) of every run, with whether vLLM's compile cache (``VLLM_CACHE_ROOT``,
default ``~/.cache/vllm``) was warm. Ratios ours/peer for both peers; PASS/FAIL against the targets (output tokens/s
>= 0.95x and TTFT p50 <= 1.10x against ``vllm-defaults``, no errors); exit status 1 on FAIL, 2 when prompt tokens
differ. The results go to ``benchmarks/results/compare.json`` (git SHA, date, machine, load average, the command).

    python -m loadtest.compare --model sweetiechat --concurrency 16 --requests 64 --max-tokens 64 --repeats 3
    python -m loadtest.compare --sessions --turns 4 --json out.json   # multi-turn: ours keeps the history
    python -m loadtest.compare --only ours                            # one server, e.g. while profiling it

With ``--sessions`` each client conversation runs ``--turns`` turns. Ours gets ``X-Session-Id`` and only the new user
message (the server keeps the history); vLLM, which has no sessions, gets the whole history from the client. Replies
differ between variants, so only first turns are compared for equal prompt tokens there.

For a fine-tuned model that writes ``[Strategy] reply`` (manifest ``strategy_mode: model``) ours strips the tag and
returns the strategy as a field; vLLM streams the tag as text, so its client strips it the same way, as any client
of plain vLLM must before it can show the reply. TTFT is then the time to the first visible reply text on both
servers; "first raw token" is the time to the first streamed content of any kind (the tag's first token on vLLM).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import httpx

from app.core.format import TagStripper
from app.core.strategies import StrategyCatalogue, load_catalogue
from app.engine.cpu_seeded_chunks import ENV as SEEDED_CHUNKS_ENV
from app.engine.vllm_engine import cpu_dtype, cuda_available, model_folder_dtype
from loadtest.conversations import FOLLOW_UPS, OPENERS
from loadtest.ports import free_port

if TYPE_CHECKING:
    from app.core.manifest import Manifest

Server = Literal["ours", "vllm"]
Variant = Literal["ours", "vllm-defaults", "vllm-ours"]
VARIANTS: tuple[Variant, ...] = ("ours", "vllm-defaults", "vllm-ours")
PEERS: tuple[Variant, ...] = ("vllm-defaults", "vllm-ours")
TARGET_PEER: Variant = "vllm-defaults"  # the targets hold against what a user compares
THROUGHPUT_TARGET = 0.95  # ours/vLLM output tokens/s, at least
TTFT_TARGET = 1.10  # ours/vLLM TTFT p50, at most
REPO_ROOT = Path(__file__).resolve().parent.parent
# Per-run metrics summarised over the repeats (median, min, max), and the ones that get a ratio ours/peer.
SPREAD_METRICS = (
    "output_tokens_per_s",
    "requests_per_s",
    "ttft_p50_ms",
    "ttft_p99_ms",
    "first_token_p50_ms",
    "itl_p50_ms",
    "itl_p99_ms",
    "tpot_mean_ms",
    "start_s",
    "load_average",
)
RATIO_METRICS = ("output_tokens_per_s", "ttft_p50_ms", "itl_p50_ms", "itl_p99_ms")


def server_of(variant: Variant) -> Server:
    return "ours" if variant == "ours" else "vllm"


@dataclass
class CompareConfig:
    model: str = "sweetiechat"
    model_repo: Path | None = None
    cache_dir: Path | None = None
    concurrency: int = 16
    requests: int = 64
    max_tokens: int = 64
    warmup: int | None = None  # default: one request per concurrent stream
    sessions: bool = False
    turns: int = 4
    kv_cache_gb: int = 2
    seed: int = 0
    repeats: int = 3
    only: list[str] | None = None  # variant names; "vllm" means both peers
    redis_url: str | None = None
    json_path: Path | None = None
    results_name: str | None = "compare"
    log_dir: Path | None = None
    ready_timeout: float = 900.0

    def variants(self) -> list[Variant]:
        """The variants to run, in the A/B order of the first round."""
        if not self.only:
            return list(VARIANTS)
        wanted = {v for name in self.only for v in (PEERS if name == "vllm" else (name,))}
        return [v for v in VARIANTS if v in wanted]


@dataclass
class RequestResult:
    started: float
    key: str = ""
    """Which request of the load this is (conversation and turn): the same key on every variant."""
    ttft: float | None = None
    """Time to the first visible reply text (after a strategy tag, for tag-writing models)."""
    first_token: float | None = None
    """Time to the first streamed content of any kind (a tag's first token included)."""
    gaps: list[float] = field(default_factory=list)
    tokens: int = 0
    prompt_tokens: int | None = None
    finished: float = 0.0
    error: str | None = None
    reply: str = ""
    session_echoed: bool = False


@dataclass
class Summary:
    server: str
    load_s: float
    requests: int
    errors: int
    wall_s: float
    requests_per_s: float
    output_tokens_per_s: float
    ttft_p50_ms: float
    ttft_p99_ms: float
    first_token_p50_ms: float
    itl_p50_ms: float
    itl_p99_ms: float
    tpot_mean_ms: float
    load_average: float
    sessions_kept: bool | None
    error_samples: list[str]
    prompt_tokens_total: int = 0


@dataclass
class RunRecord:
    """One server start and its measured load (one cell of the A/B/B/A schedule)."""

    variant: str
    round: int
    position: int
    start_s: float
    compiled: bool
    compile_cache_warm: bool | None
    """Whether vLLM's compile cache already held entries before this start (None for eager mode)."""
    summary: Summary | None
    error: str | None = None
    prompt_tokens: dict[str, int] = field(default_factory=dict)


class PromptTokenMismatch(RuntimeError):
    """Two variants saw different prompts for the same request: the comparison is not fair."""


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def schedule(variants: Sequence[str], repeats: int) -> list[tuple[int, str]]:
    """(round, variant) in run order: A/B/B/A/A/B...: every other round reversed, so that neither a slow drift in
    the machine's load nor a warm cache favours one variant; one server at a time."""
    order: list[tuple[int, str]] = []
    for round_ in range(repeats):
        names = list(variants) if round_ % 2 == 0 else list(reversed(variants))
        order += [(round_, name) for name in names]
    return order


def spread(values: Iterable[float | None]) -> dict[str, float | int | None]:
    """Median, min and max of the finite values (None for each when there are none), and how many there were."""
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(finite), "min": min(finite), "max": max(finite), "n": len(finite)}


def aggregate(runs: Sequence[RunRecord]) -> dict[str, dict[str, Any]]:
    """Per variant: the spread of every SPREAD_METRICS value over its runs, plus errors and failed starts."""
    out: dict[str, dict[str, Any]] = {}
    for variant in dict.fromkeys(r.variant for r in runs):
        mine = [r for r in runs if r.variant == variant]
        measured = [r for r in mine if r.summary is not None]
        metrics: dict[str, Any] = {}
        for name in SPREAD_METRICS:
            if name == "start_s":
                metrics[name] = spread(r.start_s for r in mine if r.start_s > 0)
            else:
                metrics[name] = spread(cast(float, getattr(r.summary, name)) for r in measured)
        metrics["runs"] = len(mine)
        metrics["failed_runs"] = len(mine) - len(measured)
        metrics["errors"] = sum(r.summary.errors for r in measured if r.summary is not None)
        out[variant] = metrics
    return out


def ratio(ours: float | None, peer: float | None) -> float | None:
    if ours is None or peer is None or peer == 0:
        return None
    return ours / peer


def ratios(summary: dict[str, dict[str, Any]], peer: str) -> dict[str, float | None]:
    """ours/peer of the medians of RATIO_METRICS; empty when either side did not run."""
    if "ours" not in summary or peer not in summary:
        return {}
    return {name: ratio(summary["ours"][name]["median"], summary[peer][name]["median"]) for name in RATIO_METRICS}


def verdict(summary: dict[str, dict[str, Any]], peer: str = TARGET_PEER) -> dict[str, Any] | None:
    """PASS/FAIL of ours against ``peer`` on the medians: throughput >= 0.95x, TTFT p50 <= 1.10x, no errors."""
    if "ours" not in summary or peer not in summary:
        return None
    ratio_of = ratios(summary, peer)
    throughput, ttft = ratio_of["output_tokens_per_s"], ratio_of["ttft_p50_ms"]
    errors = sum(summary[v]["errors"] + summary[v]["failed_runs"] for v in ("ours", peer))
    checks = {
        "throughput_ratio": {
            "value": throughput,
            "target": f">= {THROUGHPUT_TARGET}",
            "pass": throughput is not None and throughput >= THROUGHPUT_TARGET,
        },
        "ttft_p50_ratio": {
            "value": ttft,
            "target": f"<= {TTFT_TARGET}",
            "pass": ttft is not None and ttft <= TTFT_TARGET,
        },
        "no_errors": {"value": errors, "target": "== 0", "pass": errors == 0},
    }
    return {"peer": peer, "checks": checks, "pass": all(c["pass"] for c in checks.values())}


def prompt_token_mismatches(
    reference: dict[str, int], other: dict[str, int], reference_name: str, other_name: str, limit: int = 5
) -> list[str]:
    """Requests whose prompt tokens differ between two runs (missing usage counts as a difference)."""
    problems = []
    for key in sorted(set(reference) | set(other)):
        mine, theirs = reference.get(key), other.get(key)
        if mine != theirs:
            problems.append(f"{key}: {reference_name} {mine} prompt tokens, {other_name} {theirs}")
    if len(problems) > limit:
        problems = [*problems[:limit], f"... {len(problems) - limit} more"]
    return problems


def check_prompt_tokens(runs: Sequence[RunRecord]) -> None:
    """Raise PromptTokenMismatch unless every measured run saw the same prompt tokens as the first one."""
    measured = [r for r in runs if r.summary is not None]
    if not measured:
        return
    first = measured[0]
    for run in measured[1:]:
        problems = prompt_token_mismatches(
            first.prompt_tokens, run.prompt_tokens, f"{first.variant}#{first.round}", f"{run.variant}#{run.round}"
        )
        if problems:
            raise PromptTokenMismatch("prompt tokens differ between variants:\n  " + "\n  ".join(problems))


def build_conversations(total_turns: int, turns: int, seed: int) -> list[list[str]]:
    """User messages, ``total_turns`` in all, in conversations of ``turns`` (an opener, then follow-ups)."""
    rng = random.Random(seed)
    conversations = []
    while total_turns > 0:
        length = min(turns, total_turns)
        conversations.append([rng.choice(OPENERS), *rng.sample(FOLLOW_UPS, length - 1)])
        total_turns -= length
    return conversations


def request_seed(base: int, conversation: int, turn: int) -> int:
    """The per-request ``seed``: the same for the same request on every variant, different across requests."""
    return (base * 1_000_003 + conversation * 101 + turn) % (2**31)


def request_body(variant: Variant, manifest_sampling: dict[str, Any], max_tokens: int) -> dict[str, Any]:
    """The sampling part of every request. ``ours`` and ``vllm-defaults`` get the same body, temperature only: each
    server applies its own defaults to the rest. ``vllm-ours`` gets our sampling (top_p, repetition_penalty)."""
    body: dict[str, Any] = {
        "max_tokens": max_tokens,
        "ignore_eos": True,
        "temperature": manifest_sampling["temperature"],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if variant == "vllm-ours":
        body["top_p"] = manifest_sampling["top_p"]
        body["repetition_penalty"] = manifest_sampling["repetition_penalty"]  # a vLLM extension
    return body


class Client:
    """Streams chat completions and times them; knows how each server wants sessions sent."""

    def __init__(
        self,
        server: Server,
        root: str,
        model: str,
        system_prompt: str | None,
        config: CompareConfig,
        catalogue: StrategyCatalogue | None = None,
    ):
        """``catalogue``: the model writes ``[Strategy] reply``. vLLM streams the tag as content, so its client strips
        it (as any client of plain vLLM must before showing the reply) and TTFT is the first visible reply text for
        both servers; ours strips the tag itself."""
        self.server = server
        self.catalogue = catalogue if server == "vllm" else None
        self.url = f"{root}/v1/chat/completions"
        self.model = model
        self.system = [{"role": "system", "content": system_prompt}] if system_prompt else []
        self.config = config
        limits = httpx.Limits(max_connections=config.concurrency + 4, max_keepalive_connections=config.concurrency + 4)
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(600, connect=10), limits=limits)

    async def close(self) -> None:
        await self.http.aclose()

    async def conversation(
        self, number: int, turns: list[str], sampling: dict[str, Any], results: list[RequestResult], seed: int
    ) -> None:
        """One conversation; with sessions ours sends only the new message, vLLM the whole history."""
        session_id = f"bench-{uuid.uuid4().hex}" if self.config.sessions and self.server == "ours" else None
        history: list[dict[str, str]] = []
        for index, message in enumerate(turns):
            user = {"role": "user", "content": message}
            if session_id is not None:
                messages = [*self.system, user] if index == 0 else [user]
            else:
                messages = [*self.system, *history, user]
            body = {**sampling, "model": self.model, "messages": messages, "seed": request_seed(seed, number, index)}
            result = await self.one(body, session_id)
            result.key = f"c{number:04d}t{index}"
            results.append(result)
            if result.error:
                return  # the rest of this conversation would not see the same history on every server
            history += [user, {"role": "assistant", "content": result.reply}]

    async def one(self, body: dict[str, Any], session_id: str | None) -> RequestResult:
        headers = {"X-Session-Id": session_id} if session_id else {}
        result = RequestResult(started=time.perf_counter())
        done = False
        last: float | None = None
        chunks = 0
        stripper = TagStripper(self.catalogue) if self.catalogue is not None else None
        try:
            async with self.http.stream("POST", self.url, json=body, headers=headers) as response:
                if response.status_code != 200:
                    text = (await response.aread()).decode(errors="replace")
                    result.error = f"HTTP {response.status_code}: {text[:200]}"
                    return result
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        done = True
                        break
                    now = time.perf_counter()
                    event = json.loads(payload)
                    if "error" in event:
                        result.error = f"in-band error: {str(event['error'])[:200]}"
                        break
                    if session_id is not None and event.get("session_id") == session_id:
                        result.session_echoed = True
                    if event.get("usage"):
                        result.tokens = int(event["usage"]["completion_tokens"])
                        result.prompt_tokens = int(event["usage"]["prompt_tokens"])
                    for choice in event.get("choices") or []:
                        content = (choice.get("delta") or {}).get("content")
                        if content:
                            result.reply += content
                            chunks += 1
                            if result.first_token is None:
                                result.first_token = now - result.started
                            visible = stripper.feed(content) if stripper is not None else content
                            if result.ttft is None and not visible:
                                continue  # still inside the strategy tag
                            if result.ttft is None:
                                result.ttft = now - result.started
                            elif last is not None:
                                result.gaps.append(now - last)
                            last = now
        except (httpx.HTTPError, json.JSONDecodeError) as exc:
            result.error = f"{type(exc).__name__}: {exc}"
        finally:
            result.finished = time.perf_counter()
        if result.error is None and not done:
            result.error = "stream ended without data: [DONE]"
        if result.error is None and result.prompt_tokens is None:
            result.error = "no usage block (stream_options.include_usage) in the stream"
        result.tokens = result.tokens or chunks
        if result.error is None and result.tokens != self.config.max_tokens:
            result.error = f"{result.tokens} completion tokens, expected {self.config.max_tokens} (ignore_eos)"
        return result

    async def load(
        self, conversations: list[list[str]], sampling: dict[str, Any], seed: int
    ) -> tuple[list[RequestResult], float]:
        """Run conversations on ``concurrency`` streams; return the results and the wall time."""
        queue: asyncio.Queue[tuple[int, list[str]]] = asyncio.Queue()
        for number, turns in enumerate(conversations):
            queue.put_nowait((number, turns))
        results: list[RequestResult] = []

        async def worker() -> None:
            while not queue.empty():
                number, turns = queue.get_nowait()
                await self.conversation(number, turns, sampling, results, seed)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(self.config.concurrency)))
        return results, time.perf_counter() - started


class ServerRun:
    """One server process in its own process group, with its log in a file."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], ready_path: str, log: Path, port: int):
        self.name = name
        self.command = command
        self.env = env
        self.ready_url = f"http://127.0.0.1:{port}{ready_path}"
        self.root = f"http://127.0.0.1:{port}"
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float) -> float:
        """Start and wait until ready; return the load time in seconds (process start to ready)."""
        started = time.perf_counter()
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
            )
        while time.perf_counter() - started < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; log: {self.log}\n{self.tail()}")
            try:
                if httpx.get(self.ready_url, timeout=2).status_code == 200:
                    return time.perf_counter() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f} s; log: {self.log}\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM the process group we created (vLLM spawns an engine-core child), SIGKILL after 60 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def compile_cache_dir() -> Path:
    """vLLM's torch.compile cache: ``$VLLM_CACHE_ROOT/torch_compile_cache`` (default root ``~/.cache/vllm``)."""
    root = os.environ.get("VLLM_CACHE_ROOT") or str(Path.home() / ".cache" / "vllm")
    return Path(root).expanduser() / "torch_compile_cache"


def compile_cache_entries() -> int:
    folder = compile_cache_dir()
    return sum(1 for _ in folder.iterdir()) if folder.is_dir() else 0


def kv_bytes_per_token(model_config: dict[str, Any], dtype_bytes: int = 2) -> int:
    """K and V bytes one token takes in the KV cache, from an HF ``config.json``."""
    text = model_config.get("text_config", model_config)
    heads = int(text["num_attention_heads"])
    kv_heads = int(text.get("num_key_value_heads") or heads)
    head_dim = int(text.get("head_dim") or int(text["hidden_size"]) // heads)
    return 2 * int(text["num_hidden_layers"]) * kv_heads * head_dim * dtype_bytes


def peer_max_model_len(model_path: str, kv_cache_gb: int, ours: int) -> int | None:
    """``--max-model-len`` for the peer at its defaults: None (vLLM's default, the model's full context) when one
    sequence of it fits the KV cache, else ours (vLLM refuses to start otherwise)."""
    try:
        model_config = json.loads((Path(model_path) / "config.json").read_text())
        context = int(model_config.get("text_config", model_config)["max_position_embeddings"])
        per_token = kv_bytes_per_token(model_config)
    except (OSError, KeyError, ValueError, TypeError):
        return ours
    return None if context * per_token <= kv_cache_gb * 2**30 else ours


def server_commands(
    config: CompareConfig, model_repo: Path, cache_dir: Path, manifest: Manifest, model_path: str
) -> dict[Variant, tuple[list[str], str]]:
    """The command line (and readiness path) of each variant."""
    engine = manifest.engine
    ours = [
        *(sys.executable, "-m", "app", "--model-repo", str(model_repo), "--model", config.model),
        *("--cache-dir", str(cache_dir), "--kv-cache-gb", str(config.kv_cache_gb), "--seed", str(config.seed)),
        *("--log-format", "json", "--host", "127.0.0.1"),
    ]
    peer = [
        *(sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model_path),
        *("--served-model-name", manifest.name, "--seed", str(config.seed)),
    ]
    defaults = [*peer, "--host", "127.0.0.1"]
    fit = peer_max_model_len(model_path, config.kv_cache_gb, engine.max_model_len)
    if fit is not None:
        defaults[-2:-2] = ["--max-model-len", str(fit)]
    matched = [
        *peer,
        *("--dtype", engine.dtype if cuda_available() else cpu_dtype(engine, model_folder_dtype(model_path))),
        *("--max-model-len", str(engine.max_model_len), "--max-num-seqs", str(engine.max_num_seqs)),
        *("--tensor-parallel-size", str(engine.tensor_parallel_size)),
        *("--generation-config", "vllm"),  # no model-folder sampling defaults: ours applies none either
        "--enable-prefix-caching" if engine.enable_prefix_caching else "--no-enable-prefix-caching",
        *(["--enforce-eager"] if engine.enforce_eager else []),
        *(["--block-size", str(engine.cpu_block_size)] if engine.cpu_block_size and not cuda_available() else []),
        *("--host", "127.0.0.1"),
    ]
    return {"ours": (ours, "/ready"), "vllm-defaults": (defaults, "/health"), "vllm-ours": (matched, "/health")}


def summarize(
    server: str, results: list[RequestResult], wall: float, load_s: float, load_avg: float, sessions: bool
) -> Summary:
    ok = [r for r in results if r.error is None]
    tokens = sum(r.tokens for r in ok)
    tpots = [(r.finished - r.started - r.ttft) / (r.tokens - 1) for r in ok if r.ttft is not None and r.tokens > 1]
    gaps_ms = [g * 1000 for r in ok for g in r.gaps]
    return Summary(
        server=server,
        load_s=load_s,
        requests=len(results),
        errors=len(results) - len(ok),
        wall_s=wall,
        requests_per_s=len(ok) / wall,
        output_tokens_per_s=tokens / wall,
        ttft_p50_ms=percentile([r.ttft * 1000 for r in ok if r.ttft is not None], 50),
        ttft_p99_ms=percentile([r.ttft * 1000 for r in ok if r.ttft is not None], 99),
        first_token_p50_ms=percentile([r.first_token * 1000 for r in ok if r.first_token is not None], 50),
        itl_p50_ms=percentile(gaps_ms, 50),
        itl_p99_ms=percentile(gaps_ms, 99),
        tpot_mean_ms=1000 * sum(tpots) / len(tpots) if tpots else float("nan"),
        load_average=load_avg,
        sessions_kept=all(r.session_echoed for r in ok) if sessions else None,
        error_samples=sorted({r.error for r in results if r.error})[:5],
        prompt_tokens_total=sum(r.prompt_tokens or 0 for r in ok),
    )


def comparable_prompt_tokens(results: list[RequestResult], sessions: bool) -> dict[str, int]:
    """Prompt tokens per request key; with sessions only first turns (later ones carry each server's replies)."""
    return {
        r.key: r.prompt_tokens
        for r in results
        if r.prompt_tokens is not None and r.error is None and (not sessions or r.key.endswith("t0"))
    }


async def drive(
    variant: Variant, root: str, config: CompareConfig, manifest: Manifest
) -> tuple[list[RequestResult], float]:
    """Warm-up (single turns), then the measured load; the same messages for every variant."""
    server = server_of(variant)
    catalogue = load_catalogue() if manifest.strategy_mode == "model" else None
    client = Client(server, root, manifest.name, manifest.system_prompt, config, catalogue)
    sampling = request_body(variant, manifest.sampling.model_dump(), config.max_tokens)
    conversations = build_conversations(config.requests, config.turns if config.sessions else 1, config.seed + 1)
    warmup = build_conversations(config.warmup or config.concurrency, 1, config.seed + 2)
    try:
        await client.load(warmup, sampling, config.seed + 2)
        return await client.load(conversations, sampling, config.seed + 1)
    finally:
        await client.close()


def run_variant(
    variant: Variant,
    round_: int,
    position: int,
    command: list[str],
    ready: str,
    config: CompareConfig,
    log_dir: Path,
    manifest: Manifest,
) -> RunRecord:
    port = free_port()
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": str(config.kv_cache_gb)}
    if variant == "ours" and config.redis_url:
        env["SWEETIE_REDIS_URL"] = config.redis_url
    env.pop(SEEDED_CHUNKS_ENV, None)
    if variant == "vllm-ours":  # our engine's CPU fix for seeded requests under chunked prefill (ours sets it itself)
        env[SEEDED_CHUNKS_ENV] = "1"
    log = log_dir / f"{position:02d}-{variant}-r{round_}.log"
    run = ServerRun(variant, [*command, "--port", str(port)], env, ready, log, port)
    compiled = "--enforce-eager" not in command if variant != "ours" else not manifest.engine.enforce_eager
    cache_warm = compile_cache_entries() > 0 if compiled else None
    record = RunRecord(variant, round_, position, 0.0, compiled, cache_warm, None)
    print(f"[{position}: {variant} round {round_}] starting: {' '.join(run.command)}", flush=True)
    try:
        record.start_s = run.start(config.ready_timeout)
        print(f"[{variant}] ready in {record.start_s:.1f} s; warm-up, then {config.requests} requests", flush=True)
        load_avg = os.getloadavg()[0]
        results, wall = asyncio.run(drive(variant, run.root, config, manifest))
        sessions = config.sessions and variant == "ours"
        record.summary = summarize(variant, results, wall, record.start_s, load_avg, sessions)
        record.prompt_tokens = comparable_prompt_tokens(results, config.sessions)
        s = record.summary
        print(
            f"[{variant}] {s.output_tokens_per_s:.1f} tok/s, TTFT p50 {s.ttft_p50_ms:.0f} ms, ITL p50 "
            f"{s.itl_p50_ms:.1f} ms, errors {s.errors}, load average {load_avg:.2f}",
            flush=True,
        )
    except RuntimeError as exc:
        record.error = str(exc)[:2000]
        print(f"[{variant}] FAILED: {exc}", flush=True)
    finally:
        run.stop()
    return record


def _fmt(value: float | int | None, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


ROWS: list[tuple[str, str, str]] = [
    # (label, metric, format)
    ("output tokens/s", "output_tokens_per_s", "{:.1f}"),
    ("requests/s", "requests_per_s", "{:.2f}"),
    ("TTFT p50 (ms)", "ttft_p50_ms", "{:.0f}"),
    ("TTFT p99 (ms)", "ttft_p99_ms", "{:.0f}"),
    ("first raw token p50", "first_token_p50_ms", "{:.0f}"),
    ("ITL p50 (ms)", "itl_p50_ms", "{:.1f}"),
    ("ITL p99 (ms)", "itl_p99_ms", "{:.1f}"),
    ("TPOT mean (ms)", "tpot_mean_ms", "{:.1f}"),
    ("start (s)", "start_s", "{:.0f}"),
    ("load average (1 min)", "load_average", "{:.2f}"),
]


def render(report: dict[str, Any]) -> str:
    config = report["config"]
    summary: dict[str, dict[str, Any]] = report["summary"]
    mode = f"sessions on ({config['turns']} turns)" if config["sessions"] else "sessions off (stateless)"
    lines = [
        f"model {config['model']} ({report['model_path']}); ours' session store: {report['session_store']}",
        f"{config['requests']} requests x {config['max_tokens']} tokens, concurrency {config['concurrency']}, "
        f"{mode}, ignore_eos, kv cache {config['kv_cache_gb']} GiB, {config['repeats']} rounds A/B/B/A",
        "cells: median [min-max] over the rounds",
        "",
    ]
    variants = list(summary)
    header = f"{'metric':<22}" + "".join(f"{v:>24}" for v in variants)
    peers = [p for p in PEERS if p in summary and "ours" in summary]
    header += "".join(f"{'ours/' + p:>20}" for p in peers)
    lines.append(header)
    for label, name, fmt in ROWS:
        cells = []
        for variant in variants:
            s = summary[variant][name]
            cells.append(f"{_fmt(s['median'], fmt)} [{_fmt(s['min'], fmt)}-{_fmt(s['max'], fmt)}]")
        row = f"{label:<22}" + "".join(f"{c:>24}" for c in cells)
        for peer in peers:
            value = ratio(summary["ours"][name]["median"], summary[peer][name]["median"])
            row += f"{_fmt(value, '{:.2f}') if name != 'load_average' else '-':>20}"
        lines.append(row)
    lines.append(f"{'errors':<22}" + "".join(f"{summary[v]['errors']:>24}" for v in variants))
    lines += ["", "runs in order:"]
    for run in report["runs"]:
        s = run["summary"]
        cache = {None: "eager", True: "compiled, cache warm", False: "compiled, cache cold"}[run["compile_cache_warm"]]
        if s is None:
            lines.append(
                f"  {run['position']:>2} {run['variant']:<14} round {run['round']}: FAILED {run['error'][:200]}"
            )
            continue
        lines.append(
            f"  {run['position']:>2} {run['variant']:<14} round {run['round']}: start {run['start_s']:.0f} s "
            f"({cache}), {s['output_tokens_per_s']:.1f} tok/s, TTFT p50 {s['ttft_p50_ms']:.0f} ms, "
            f"ITL p50/p99 {s['itl_p50_ms']:.1f}/{s['itl_p99_ms']:.1f} ms, errors {s['errors']}, "
            f"load {s['load_average']:.2f}"
        )
        lines += [f"       error: {sample}" for sample in s["error_samples"]]
    if report.get("prompt_tokens_check"):
        lines += ["", f"prompt tokens equal across variants: {report['prompt_tokens_check']}"]
    for name, result in (report.get("verdicts") or {}).items():
        if result is None:
            continue
        role = "target" if name == TARGET_PEER else "API-layer cost, informational"
        lines += ["", f"ours vs {name} ({role}):"]
        for check_name, check in result["checks"].items():
            value = check["value"]
            shown = f"{value:.2f}" if isinstance(value, float) else str(value)
            lines.append(
                f"  {check_name:<20}{shown:>10}  target {check['target']:<8} {'PASS' if check['pass'] else 'FAIL'}"
            )
        lines.append(f"  overall: {'PASS' if result['pass'] else 'FAIL'}")
    return "\n".join(lines)


def session_store(config: CompareConfig) -> str:
    url = config.redis_url or os.environ.get("SWEETIE_REDIS_URL")
    return "redis" if url else "memory"


def main(config: CompareConfig) -> int:
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from app.config import Settings
    from app.core.manifest import find_manifest
    from app.materialize import resolve_source
    from benchmarks.results_file import provenance, write_results

    started = provenance()
    defaults = Settings()
    model_repo = (config.model_repo or defaults.model_repo).resolve()
    cache_dir = (config.cache_dir or defaults.cache_dir).resolve()
    manifest = find_manifest(config.model, model_repo)
    model_path = resolve_source(manifest, cache_dir)
    log_dir = config.log_dir or Path(tempfile.mkdtemp(prefix="sweetie-compare-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    print(f"logs in {log_dir}", flush=True)
    commands = server_commands(config, model_repo, cache_dir, manifest, model_path)
    runs: list[RunRecord] = []
    prompt_check = "not checked (one variant)"
    mismatch: str | None = None
    for position, (round_, name) in enumerate(schedule(config.variants(), config.repeats)):
        variant = cast(Variant, name)
        command, ready = commands[variant]
        runs.append(run_variant(variant, round_, position, command, ready, config, log_dir, manifest))
        try:
            check_prompt_tokens(runs)
        except PromptTokenMismatch as exc:
            mismatch = str(exc)
            print(f"\n!!! {mismatch}\n!!! stopping: the variants did not see the same prompts", flush=True)
            break
    if len({r.variant for r in runs if r.summary is not None}) > 1:
        prompt_check = "FAILED: " + mismatch if mismatch else "yes (every request, every run)"
        if config.sessions and not mismatch:
            prompt_check = "yes (first turns of every conversation, every run)"
    summary = aggregate(runs)
    report: dict[str, Any] = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
        "model_path": model_path,
        "manifest": {
            "engine": manifest.engine.model_dump(),
            "sampling": manifest.sampling.model_dump(),
        },
        "session_store": session_store(config),
        "commands": {v: " ".join(c) for v, (c, _) in commands.items() if v in config.variants()},
        "compile_cache_dir": str(compile_cache_dir()),
        "schedule": [f"{variant}#{round_}" for round_, variant in schedule(config.variants(), config.repeats)],
        "summary": summary,
        "ratios": {peer: ratios(summary, peer) for peer in PEERS if peer in summary and "ours" in summary},
        "verdicts": {peer: verdict(summary, peer) for peer in PEERS},
        "prompt_tokens_check": prompt_check,
        "runs": [{**asdict(r), "prompt_tokens": len(r.prompt_tokens)} for r in runs],
    }
    print()
    print(render(report))
    if config.json_path:
        config.json_path.parent.mkdir(parents=True, exist_ok=True)
        config.json_path.write_text(json.dumps(report, indent=2))
    if config.results_name and "ours" in summary and TARGET_PEER in summary:
        write_results(config.results_name, started, report)
    if mismatch:
        return 2
    target = report["verdicts"][TARGET_PEER]
    return 0 if target is None or target["pass"] else 1


def parse_args(argv: list[str] | None = None) -> CompareConfig:
    parser = argparse.ArgumentParser(prog="python -m loadtest.compare", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--model", default="sweetiechat", help="manifest name under the model repo")
    parser.add_argument(
        "--model-repo", type=Path, help="folder of manifests (default: SWEETIE_MODEL_REPO or ./model_repo)"
    )
    parser.add_argument("--cache-dir", type=Path, help="materialised-model cache (default: ~/.cache/sweetiechat)")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent streams")
    parser.add_argument("--requests", type=int, default=64, help="measured requests (turns) per run")
    parser.add_argument("--max-tokens", type=int, default=64, help="tokens per reply (ignore_eos: exactly this many)")
    parser.add_argument("--warmup", type=int, help="warm-up conversations before measuring (default: concurrency)")
    parser.add_argument("--sessions", action="store_true", help="multi-turn; ours keeps the history by X-Session-Id")
    parser.add_argument("--turns", type=int, default=4, help="turns per conversation with --sessions")
    parser.add_argument("--kv-cache-gb", type=int, default=2, help="VLLM_CPU_KVCACHE_SPACE for every server")
    parser.add_argument("--seed", type=int, default=0, help="engine seed, and base of the per-request seeds")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of the A/B/B/A schedule (each variant once)")
    parser.add_argument(
        "--only",
        action="append",
        choices=[*VARIANTS, "vllm"],
        help="run only this variant (repeatable; 'vllm' = both vLLM variants)",
    )
    parser.add_argument("--redis-url", help="ours' session store (default: SWEETIE_REDIS_URL, else in-process)")
    parser.add_argument("--json", dest="json_path", type=Path, help="also write the report here")
    parser.add_argument(
        "--results-name",
        default="compare",
        help="benchmarks/results/<name>.json, written when ours and vllm-defaults both ran",
    )
    parser.add_argument("--no-results", dest="results_name", action="store_const", const=None, help="no results file")
    parser.add_argument("--log-dir", type=Path, help="server logs (default: a new temporary folder)")
    parser.add_argument("--ready-timeout", type=float, default=900.0, help="seconds to wait for each server")
    args = parser.parse_args(argv)
    if min(args.concurrency, args.requests, args.max_tokens, args.turns, args.repeats) < 1:
        parser.error("--concurrency, --requests, --max-tokens, --turns and --repeats must be at least 1")
    if args.sessions and args.turns > len(FOLLOW_UPS) + 1:
        parser.error(f"--turns is at most {len(FOLLOW_UPS) + 1}")
    return CompareConfig(**vars(args))


if __name__ == "__main__":
    sys.exit(main(parse_args()))
