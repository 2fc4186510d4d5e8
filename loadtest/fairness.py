"""Fair admission under a greedy tenant: the polite tenant's TTFT and errors, with per-tenant fairness on and off.

    python -m loadtest.fairness                      # embedded sweetiechat; writes benchmarks/results/fairness.json
    python -m loadtest.fairness --duration 30 --polite-rate 0.5 --max-inflight 4 --no-results

Two tenants (two API keys) share one server. The greedy tenant sends 5x the polite tenant's requests (Poisson
arrivals, open loop: it keeps sending whatever the server answers, as a misbehaving integration does); every request
streams a reply of exactly ``--max-tokens`` tokens (``ignore_eos``). The same seeded arrival schedule runs twice, each
time against a fresh server: ``SWEETIE_FAIR_ADMISSION=true`` (per-tenant stream and queue caps, a round-robin queue
across tenants) and ``false`` (one first-come pool). The pool is kept small (``--max-inflight``, ``--max-queued``)
so that the greedy tenant alone overloads it, which is the situation fairness is for. Reported per run and tenant:
requests, errors (429s and others, by code), TTFT p50/p99 of the successful requests, and output tokens/s.

The server runs with the lexical safety screen: the benchmark measures admission, so every request must generate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from loadtest.compare import ServerRun, percentile
from loadtest.ports import free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
KEYS = {"greedy": "sk-fairness-greedy", "polite": "sk-fairness-polite"}
MESSAGE = "I had a long day at work today and I feel drained."


@dataclass
class FairnessConfig:
    model: str = "sweetiechat"
    model_repo: Path | None = None
    cache_dir: Path | None = None
    duration: float = 60.0
    """Seconds of arrivals per run."""
    polite_rate: float = 0.6
    """The polite tenant's requests per second; the greedy tenant sends ``greedy_factor`` times as many."""
    greedy_factor: float = 5.0
    max_tokens: int = 64
    max_inflight: int = 8
    max_queued: int = 16
    queue_timeout: float = 30.0
    kv_cache_gb: int = 2
    seed: int = 0
    modes: list[str] = field(default_factory=lambda: ["on", "off"])
    """Fair admission on, off, or both (in this order)."""
    results: bool = True
    """Write benchmarks/results/fairness.json."""
    log_dir: Path | None = None
    ready_timeout: float = 900.0


@dataclass
class Result:
    tenant: str
    started: float
    ttft: float | None = None
    tokens: int = 0
    error: str | None = None


@dataclass
class TenantSummary:
    requests: int
    errors: int
    error_rate: float
    error_codes: dict[str, int]
    ttft_p50_ms: float
    ttft_p99_ms: float
    output_tokens_per_s: float


def schedule(rate: float, duration: float, rng: random.Random) -> list[float]:
    """Poisson arrival times (seconds from the start) at ``rate`` per second over ``duration`` seconds."""
    times: list[float] = []
    t = 0.0
    while True:
        t += rng.expovariate(rate)
        if t > duration:
            return times
        times.append(t)


async def one(http: httpx.AsyncClient, url: str, tenant: str, body: dict[str, Any]) -> Result:
    """One streamed request; TTFT is the time to the first content."""
    result = Result(tenant, time.perf_counter())
    done = False
    try:
        headers = {"Authorization": f"Bearer {KEYS[tenant]}"}
        async with http.stream("POST", url, json=body, headers=headers) as response:
            if response.status_code != 200:
                error = json.loads(await response.aread()).get("error", {})
                result.error = f"{response.status_code} {error.get('code')}"
                return result
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    done = True
                    break
                event = json.loads(payload)
                if "error" in event:
                    result.error = f"in-band {event['error'].get('code')}"
                    break
                if event.get("usage"):
                    result.tokens = int(event["usage"]["completion_tokens"])
                content = any((c.get("delta") or {}).get("content") for c in event.get("choices") or [])
                if content and result.ttft is None:
                    result.ttft = time.perf_counter() - result.started
    except (httpx.HTTPError, json.JSONDecodeError) as exc:
        result.error = type(exc).__name__
    if result.error is None and not done:
        result.error = "no [DONE]"
    return result


async def drive(root: str, config: FairnessConfig, model: str) -> tuple[list[Result], float]:
    """Warm up, then run both tenants' schedules at once; return every result and the wall time."""
    rng = random.Random(config.seed)
    arrivals = {
        "polite": schedule(config.polite_rate, config.duration, rng),
        "greedy": schedule(config.polite_rate * config.greedy_factor, config.duration, rng),
    }
    url = f"{root}/v1/chat/completions"
    body = {
        "model": model,
        "messages": [{"role": "user", "content": MESSAGE}],
        "max_tokens": config.max_tokens,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=httpx.Timeout(600, connect=10), limits=limits) as http:
        for tenant in ("polite", "greedy"):  # the first requests of a fresh engine are slow: not measured
            await one(http, url, tenant, body)
        started = time.perf_counter()

        async def tenant_load(tenant: str) -> list[Result]:
            tasks = []
            for at in arrivals[tenant]:
                delay = started + at - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(http, url, tenant, body)))
            return list(await asyncio.gather(*tasks))

        loads = await asyncio.gather(tenant_load("polite"), tenant_load("greedy"))
        return [r for load in loads for r in load], time.perf_counter() - started


def summarize(results: list[Result], tenant: str, wall_s: float) -> TenantSummary:
    mine = [r for r in results if r.tenant == tenant]
    ok = [r for r in mine if r.error is None]
    ttfts = [r.ttft * 1000 for r in ok if r.ttft is not None]
    errors = len(mine) - len(ok)
    return TenantSummary(
        requests=len(mine),
        errors=errors,
        error_rate=round(errors / len(mine), 4) if mine else 0.0,
        error_codes=dict(Counter(r.error for r in mine if r.error)),
        ttft_p50_ms=round(percentile(ttfts, 50), 1),
        ttft_p99_ms=round(percentile(ttfts, 99), 1),
        output_tokens_per_s=round(sum(r.tokens for r in ok) / wall_s, 1),
    )


def run_mode(mode: str, config: FairnessConfig, model_repo: Path, log_dir: Path) -> dict[str, Any]:
    port = free_port()
    command = [
        *(sys.executable, "-m", "app", "--model-repo", str(model_repo), "--model", config.model),
        *("--kv-cache-gb", str(config.kv_cache_gb), "--seed", str(config.seed), "--log-format", "json"),
        *("--host", "127.0.0.1", "--port", str(port)),
        *(["--cache-dir", str(config.cache_dir)] if config.cache_dir else []),
    ]
    env = {
        **os.environ,
        "SWEETIE_API_KEYS": ",".join(f"{key}:{tenant}" for tenant, key in KEYS.items()),
        "SWEETIE_FAIR_ADMISSION": "true" if mode == "on" else "false",
        "SWEETIE_MAX_INFLIGHT": str(config.max_inflight),
        "SWEETIE_MAX_QUEUED": str(config.max_queued),
        "SWEETIE_QUEUE_TIMEOUT_S": str(config.queue_timeout),
        "SWEETIE_SAFETY_SCREEN": "lexical",
    }
    env.pop("SWEETIE_REDIS_URL", None)
    server = ServerRun("ours", command, env, "/ready", log_dir / f"fair-{mode}.log", port)
    print(f"fair admission {mode}: starting the server ...", flush=True)
    load_s = server.start(config.ready_timeout)
    try:
        results, wall_s = asyncio.run(drive(server.root, config, config.model))
    finally:
        server.stop()
    summary = {tenant: asdict(summarize(results, tenant, wall_s)) for tenant in ("polite", "greedy")}
    return {"server_load_s": round(load_s, 1), "wall_s": round(wall_s, 1), **summary}


def render(runs: dict[str, dict[str, Any]]) -> str:
    head = "| fair admission | tenant | requests | errors | error rate | TTFT p50 | TTFT p99 | output tok/s |"
    lines = [head, "|---|---|---:|---:|---:|---:|---:|---:|"]
    for mode, run in runs.items():
        for tenant in ("polite", "greedy"):
            s = run[tenant]
            lines.append(
                f"| {mode} | {tenant} | {s['requests']} | {s['errors']} | {s['error_rate']:.1%} "
                f"| {s['ttft_p50_ms']:.0f} ms | {s['ttft_p99_ms']:.0f} ms | {s['output_tokens_per_s']} |"
            )
    return "\n".join(lines)


def main(config: FairnessConfig) -> int:
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from benchmarks.results_file import provenance, write_results

    started = provenance()
    model_repo = (config.model_repo or REPO_ROOT / "model_repo").resolve()
    log_dir = config.log_dir or Path(tempfile.mkdtemp(prefix="sweetie-fairness-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    print(f"logs in {log_dir}", flush=True)
    runs = {mode: run_mode(mode, config, model_repo, log_dir) for mode in config.modes}
    print(render(runs))
    if config.results:
        settings = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()}
        write_results("fairness", started, {"config": settings, "runs": runs})
    return 0


def parse_args(argv: list[str] | None = None) -> FairnessConfig:
    parser = argparse.ArgumentParser(prog="python -m loadtest.fairness", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="sweetiechat", help="manifest name under the model repo")
    parser.add_argument("--model-repo", type=Path, help="folder of manifests (default: ./model_repo)")
    parser.add_argument("--cache-dir", type=Path, help="materialised-model cache (default: ~/.cache/sweetiechat)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of arrivals per run")
    parser.add_argument("--polite-rate", type=float, default=0.6, help="polite tenant's requests per second")
    parser.add_argument("--greedy-factor", type=float, default=5.0, help="greedy tenant's rate, times the polite's")
    parser.add_argument("--max-tokens", type=int, default=64, help="tokens per reply (ignore_eos: exactly this many)")
    parser.add_argument("--max-inflight", type=int, default=8, help="SWEETIE_MAX_INFLIGHT of the server")
    parser.add_argument("--max-queued", type=int, default=16, help="SWEETIE_MAX_QUEUED of the server")
    parser.add_argument("--queue-timeout", type=float, default=30.0, help="SWEETIE_QUEUE_TIMEOUT_S of the server")
    parser.add_argument("--kv-cache-gb", type=int, default=2, help="VLLM_CPU_KVCACHE_SPACE")
    parser.add_argument("--seed", type=int, default=0, help="arrival schedule and engine seed")
    parser.add_argument("--modes", nargs="+", choices=["on", "off"], default=["on", "off"], help="runs to make")
    parser.add_argument("--no-results", dest="results", action="store_false", help="do not write the results file")
    parser.add_argument("--log-dir", type=Path, help="server logs (default: a new temporary folder)")
    parser.add_argument("--ready-timeout", type=float, default=900.0, help="seconds to wait for each server")
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.polite_rate <= 0 or args.greedy_factor <= 0 or args.max_tokens < 1:
        parser.error("--duration, --polite-rate, --greedy-factor and --max-tokens must be positive")
    return FairnessConfig(**vars(args))


if __name__ == "__main__":
    sys.exit(main(parse_args()))
