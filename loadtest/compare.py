"""Side by side: this server (``python -m app``) against vLLM's own OpenAI server on the same model and the same load.

Both servers load the model folder our manifest resolves to, with the manifest's engine settings (dtype,
max_model_len, enforce_eager, max_num_seqs, prefix caching), the same seed and the same ``VLLM_CPU_KVCACHE_SPACE``.
They run one at a time, never both loaded at once. Each gets a warm-up, then the same concurrent streaming load:
identical prompts (the manifest's system prompt plus a user message), identical sampling, ``ignore_eos`` so both
generate exactly ``--max-tokens`` tokens. Prints one table with the ratio ours/vLLM and PASS/FAIL against the
yardsticks: output throughput ratio >= 0.95 and TTFT p50 ratio <= 1.10 (exit status 1 on FAIL).

    python -m loadtest.compare --model sweetiechat --concurrency 16 --requests 64 --max-tokens 64
    python -m loadtest.compare --sessions --turns 4 --json out.json   # multi-turn: ours keeps the history
    python -m loadtest.compare --only ours                            # one server, e.g. while profiling it

With ``--sessions`` each client conversation runs ``--turns`` turns. Ours gets ``X-Session-Id`` and only the new user
message (the server keeps the history); vLLM, which has no sessions, gets the whole history from the client, so both
see the same prompts and the difference is the cost (or gain) of server-side session memory.

For a fine-tuned model that writes ``[Strategy] reply`` (manifest ``strategy_mode: model``) ours strips the tag and
returns the strategy as a field; vLLM streams the tag as text, so its client strips it the same way, as any client
of plain vLLM must before it can show the reply. TTFT is then the time to the first visible reply text on both
servers; "first raw token" is the time to the first streamed content of any kind (the tag's first token on vLLM).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import httpx

from app.core.format import TagStripper
from app.core.strategies import StrategyCatalogue, load_catalogue
from app.engine.vllm_engine import cpu_scheduler_args, cuda_available
from loadtest.conversations import FOLLOW_UPS, OPENERS

if TYPE_CHECKING:
    from app.core.manifest import Manifest

Server = Literal["ours", "vllm"]
THROUGHPUT_TARGET = 0.95  # ours/vLLM output tokens/s, at least
TTFT_TARGET = 1.10  # ours/vLLM TTFT p50, at most


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
    only: Server | None = None
    json_path: Path | None = None
    log_dir: Path | None = None
    ready_timeout: float = 900.0


@dataclass
class RequestResult:
    started: float
    ttft: float | None = None
    """Time to the first visible reply text (after a strategy tag, for tag-writing models)."""
    first_token: float | None = None
    """Time to the first streamed content of any kind (a tag's first token included)."""
    gaps: list[float] = field(default_factory=list)
    tokens: int = 0
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
    tpot_mean_ms: float
    load_average: float
    sessions_kept: bool | None
    error_samples: list[str]


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def build_conversations(total_turns: int, turns: int, seed: int) -> list[list[str]]:
    """User messages, ``total_turns`` in all, in conversations of ``turns`` (an opener, then follow-ups)."""
    rng = random.Random(seed)
    conversations = []
    while total_turns > 0:
        length = min(turns, total_turns)
        conversations.append([rng.choice(OPENERS), *rng.sample(FOLLOW_UPS, length - 1)])
        total_turns -= length
    return conversations


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

    def sampling(self, manifest_sampling: dict[str, Any]) -> dict[str, Any]:
        return {
            "max_tokens": self.config.max_tokens,
            "ignore_eos": True,
            "temperature": manifest_sampling["temperature"],
            "top_p": manifest_sampling["top_p"],
            "repetition_penalty": manifest_sampling["repetition_penalty"],  # vLLM extension; ours: manifest default
            "stream": True,
            "stream_options": {"include_usage": True},
        }

    async def conversation(self, turns: list[str], sampling: dict[str, Any], results: list[RequestResult]) -> None:
        """One conversation; with sessions ours sends only the new message, vLLM the whole history."""
        session_id = f"bench-{uuid.uuid4().hex}" if self.config.sessions and self.server == "ours" else None
        history: list[dict[str, str]] = []
        for index, message in enumerate(turns):
            user = {"role": "user", "content": message}
            if session_id is not None:
                messages = [*self.system, user] if index == 0 else [user]
            else:
                messages = [*self.system, *history, user]
            result = await self.one({**sampling, "model": self.model, "messages": messages}, session_id)
            results.append(result)
            if result.error:
                return  # the rest of this conversation would not see the same history on both servers
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
        result.tokens = result.tokens or chunks
        if result.error is None and result.tokens != self.config.max_tokens:
            result.error = f"{result.tokens} completion tokens, expected {self.config.max_tokens} (ignore_eos)"
        return result

    async def load(self, conversations: list[list[str]], sampling: dict[str, Any]) -> tuple[list[RequestResult], float]:
        """Run conversations on ``concurrency`` streams; return the results and the wall time."""
        queue: asyncio.Queue[list[str]] = asyncio.Queue()
        for turns in conversations:
            queue.put_nowait(turns)
        results: list[RequestResult] = []

        async def worker() -> None:
            while not queue.empty():
                await self.conversation(queue.get_nowait(), sampling, results)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(self.config.concurrency)))
        return results, time.perf_counter() - started


class ServerRun:
    """One server process in its own process group, with its log in a file."""

    def __init__(self, name: Server, command: list[str], env: dict[str, str], ready_path: str, log: Path, port: int):
        self.name = name
        self.command = command
        self.env = env
        self.ready_url = f"http://127.0.0.1:{port}{ready_path}"
        self.root = f"http://127.0.0.1:{port}"
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float) -> float:
        """Start and wait until ready; return the load time in seconds."""
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
            time.sleep(1)
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


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_commands(
    config: CompareConfig, model_repo: Path, cache_dir: Path, manifest: Manifest, model_path: str
) -> dict[Server, tuple[list[str], str]]:
    """The two command lines (and readiness paths), with the same engine settings from the manifest."""
    engine = manifest.engine
    ours = [
        *(sys.executable, "-m", "app", "--model-repo", str(model_repo), "--model", config.model),
        *("--cache-dir", str(cache_dir), "--kv-cache-gb", str(config.kv_cache_gb), "--seed", str(config.seed)),
        *("--log-format", "json", "--host", "127.0.0.1"),
    ]
    vllm = [
        *(sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model_path),
        *("--served-model-name", manifest.name, "--dtype", engine.dtype),
        *("--max-model-len", str(engine.max_model_len), "--max-num-seqs", str(engine.max_num_seqs)),
        *("--tensor-parallel-size", str(engine.tensor_parallel_size), "--seed", str(config.seed)),
        *("--generation-config", "vllm"),  # no model-folder sampling defaults: ours applies none either
        "--enable-prefix-caching" if engine.enable_prefix_caching else "--no-enable-prefix-caching",
        *(["--enforce-eager"] if engine.enforce_eager else []),
        *("--host", "127.0.0.1"),
    ]
    if not cuda_available():  # the CPU scheduler settings our engine uses (see cpu_scheduler_args)
        batched = cpu_scheduler_args(engine.max_model_len)["max_num_batched_tokens"]
        vllm += ["--no-enable-chunked-prefill", "--max-num-batched-tokens", str(batched)]
    return {"ours": (ours, "/ready"), "vllm": (vllm, "/health")}


def summarize(
    server: str, results: list[RequestResult], wall: float, load_s: float, load_avg: float, sessions: bool
) -> Summary:
    ok = [r for r in results if r.error is None]
    tokens = sum(r.tokens for r in ok)
    tpots = [(r.finished - r.started - r.ttft) / (r.tokens - 1) for r in ok if r.ttft is not None and r.tokens > 1]
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
        itl_p50_ms=percentile([g * 1000 for r in ok for g in r.gaps], 50),
        tpot_mean_ms=1000 * sum(tpots) / len(tpots) if tpots else float("nan"),
        load_average=load_avg,
        sessions_kept=all(r.session_echoed for r in ok) if sessions else None,
        error_samples=sorted({r.error for r in results if r.error})[:5],
    )


async def drive(
    server: Server, root: str, config: CompareConfig, manifest: Manifest
) -> tuple[list[RequestResult], float]:
    """Warm-up (single turns), then the measured load; the same messages for every server."""
    catalogue = load_catalogue() if manifest.strategy_mode == "model" else None
    client = Client(server, root, manifest.name, manifest.system_prompt, config, catalogue)
    sampling = client.sampling(manifest.sampling.model_dump())
    conversations = build_conversations(config.requests, config.turns if config.sessions else 1, config.seed + 1)
    warmup = build_conversations(config.warmup or config.concurrency, 1, config.seed + 2)
    try:
        await client.load(warmup, sampling)
        return await client.load(conversations, sampling)
    finally:
        await client.close()


def run_server(
    name: Server, command: list[str], ready: str, config: CompareConfig, log_dir: Path, manifest: Manifest
) -> Summary:
    port = free_port()
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": str(config.kv_cache_gb)}
    run = ServerRun(name, [*command, "--port", str(port)], env, ready, log_dir / f"{name}.log", port)
    print(f"[{name}] starting: {' '.join(run.command)}", flush=True)
    try:
        load_s = run.start(config.ready_timeout)
        print(f"[{name}] ready in {load_s:.0f} s; warm-up, then {config.requests} requests", flush=True)
        load_avg = os.getloadavg()[0]
        results, wall = asyncio.run(drive(name, run.root, config, manifest))
    finally:
        run.stop()
    return summarize(name, results, wall, load_s, load_avg, config.sessions and name == "ours")


ROWS: list[tuple[str, str, str]] = [
    # (label, Summary field, format)
    ("requests/s", "requests_per_s", "{:.2f}"),
    ("output tokens/s", "output_tokens_per_s", "{:.1f}"),
    ("TTFT p50 (ms)", "ttft_p50_ms", "{:.0f}"),
    ("TTFT p99 (ms)", "ttft_p99_ms", "{:.0f}"),
    ("first raw token p50 (ms)", "first_token_p50_ms", "{:.0f}"),
    ("ITL p50 (ms)", "itl_p50_ms", "{:.1f}"),
    ("TPOT mean (ms)", "tpot_mean_ms", "{:.1f}"),
    ("errors", "errors", "{:d}"),
    ("load time (s)", "load_s", "{:.0f}"),
    ("load average (1 min)", "load_average", "{:.2f}"),
]


def verdict(ours: Summary, vllm: Summary) -> dict[str, Any]:
    throughput = ours.output_tokens_per_s / vllm.output_tokens_per_s if vllm.output_tokens_per_s else float("nan")
    ttft = ours.ttft_p50_ms / vllm.ttft_p50_ms if vllm.ttft_p50_ms else float("nan")
    checks = {
        "throughput_ratio": {
            "value": throughput,
            "target": f">= {THROUGHPUT_TARGET}",
            "pass": throughput >= THROUGHPUT_TARGET,
        },
        "ttft_p50_ratio": {"value": ttft, "target": f"<= {TTFT_TARGET}", "pass": ttft <= TTFT_TARGET},
        "no_errors": {"value": ours.errors + vllm.errors, "target": "== 0", "pass": ours.errors + vllm.errors == 0},
    }
    return {"checks": checks, "pass": all(c["pass"] for c in checks.values())}


def render(summaries: dict[str, Summary], config: CompareConfig, model_path: str) -> str:
    mode = f"sessions on ({config.turns} turns)" if config.sessions else "sessions off"
    lines = [
        f"model {config.model} ({model_path})",
        f"{config.requests} requests x {config.max_tokens} tokens, concurrency {config.concurrency}, "
        f"warm-up {config.warmup or config.concurrency}, {mode}, ignore_eos, kv cache {config.kv_cache_gb} GiB",
        "",
        f"{'metric':<22}{'ours':>12}{'vLLM':>12}{'ours/vLLM':>12}",
    ]
    ours, vllm = summaries.get("ours"), summaries.get("vllm")
    for label, name, fmt in ROWS:
        cells = [fmt.format(getattr(s, name)) if s else "-" for s in (ours, vllm)]
        ratio = "-"
        if ours and vllm and name not in {"errors", "load_average"} and getattr(vllm, name):
            ratio = f"{getattr(ours, name) / getattr(vllm, name):.2f}"
        lines.append(f"{label:<22}{cells[0]:>12}{cells[1]:>12}{ratio:>12}")
    for summary in summaries.values():
        for sample in summary.error_samples:
            lines.append(f"  {summary.server} error: {sample}")
    if ours and config.sessions and not ours.sessions_kept:
        lines.append("  warning: ours did not echo session_id on every turn; was the history kept?")
    if ours and vllm:
        result = verdict(ours, vllm)
        lines.append("")
        for name, check in result["checks"].items():
            value = check["value"]
            shown = f"{value:.2f}" if isinstance(value, float) else str(value)
            lines.append(f"{name:<22}{shown:>12}  target {check['target']:<8} {'PASS' if check['pass'] else 'FAIL'}")
        lines.append(f"overall: {'PASS' if result['pass'] else 'FAIL'}")
    return "\n".join(lines)


def main(config: CompareConfig) -> int:
    from app.config import Settings
    from app.core.manifest import find_manifest
    from app.materialize import resolve_source

    defaults = Settings()
    model_repo = (config.model_repo or defaults.model_repo).resolve()
    cache_dir = (config.cache_dir or defaults.cache_dir).resolve()
    manifest = find_manifest(config.model, model_repo)
    model_path = resolve_source(manifest, cache_dir)
    log_dir = config.log_dir or Path(tempfile.mkdtemp(prefix="sweetie-compare-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    print(f"logs in {log_dir}", flush=True)
    commands = server_commands(config, model_repo, cache_dir, manifest, model_path)
    summaries: dict[str, Summary] = {}
    for name, (command, ready) in commands.items():
        if config.only in (None, name):
            summaries[name] = run_server(name, command, ready, config, log_dir, manifest)
    print()
    print(render(summaries, config, model_path))
    report: dict[str, Any] = {"config": {k: str(v) for k, v in asdict(config).items()}, "model_path": model_path}
    report["results"] = {name: asdict(s) for name, s in summaries.items()}
    if "ours" in summaries and "vllm" in summaries:
        report["verdict"] = verdict(summaries["ours"], summaries["vllm"])
    if config.json_path:
        config.json_path.write_text(json.dumps(report, indent=2))
    return 0 if report.get("verdict", {"pass": True})["pass"] else 1


def parse_args(argv: list[str] | None = None) -> CompareConfig:
    parser = argparse.ArgumentParser(prog="python -m loadtest.compare", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="sweetiechat", help="manifest name under the model repo")
    parser.add_argument(
        "--model-repo", type=Path, help="folder of manifests (default: SWEETIE_MODEL_REPO or ./model_repo)"
    )
    parser.add_argument("--cache-dir", type=Path, help="materialised-model cache (default: ~/.cache/sweetiechat)")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent streams")
    parser.add_argument("--requests", type=int, default=64, help="measured requests (turns) per server")
    parser.add_argument("--max-tokens", type=int, default=64, help="tokens per reply (ignore_eos: exactly this many)")
    parser.add_argument("--warmup", type=int, help="warm-up conversations before measuring (default: concurrency)")
    parser.add_argument("--sessions", action="store_true", help="multi-turn; ours keeps the history by X-Session-Id")
    parser.add_argument("--turns", type=int, default=4, help="turns per conversation with --sessions")
    parser.add_argument("--kv-cache-gb", type=int, default=2, help="VLLM_CPU_KVCACHE_SPACE for both servers")
    parser.add_argument("--seed", type=int, default=0, help="engine seed for both servers")
    parser.add_argument("--only", choices=["ours", "vllm"], help="run one server only")
    parser.add_argument("--json", dest="json_path", type=Path, help="also write the results here")
    parser.add_argument("--log-dir", type=Path, help="server logs (default: a new temporary folder)")
    parser.add_argument("--ready-timeout", type=float, default=900.0, help="seconds to wait for each server")
    args = parser.parse_args(argv)
    if args.concurrency < 1 or args.requests < 1 or args.max_tokens < 1 or args.turns < 1:
        parser.error("--concurrency, --requests, --max-tokens and --turns must be at least 1")
    if args.sessions and args.turns > len(FOLLOW_UPS) + 1:
        parser.error(f"--turns is at most {len(FOLLOW_UPS) + 1}")
    return CompareConfig(**vars(args))


if __name__ == "__main__":
    sys.exit(main(parse_args()))
