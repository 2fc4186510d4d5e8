"""Session-key routing against round-robin through the smg gateway: prefix-cache hit share and TTFT per turn.

    python -m loadtest.gateway_bench                      # 2 replicas + smg; writes benchmarks/results/gateway.json
    python -m loadtest.gateway_bench --sessions 2 --turns 3 --no-results          # a smoke run
    python -m loadtest.gateway_bench --replica-urls http://10.0.0.5:8000 http://10.0.0.6:8000 --api-key sk-...

Two replicas of ``python -m app`` share one Redis (started here unless ``--replica-urls`` names running ones; Redis
must answer at ``--redis-url``). For each policy in turn (``--policies``: by default ``manual`` and
``consistent_hashing``, which route by the session id, and ``round_robin``), an smg gateway starts in front of them
(loadtest/smg_gateway.py: the recipe's flags) and ``--sessions`` sessions of ``--turns`` turns run through it with the
official ``openai`` client: streaming, the header ``X-Session-Id`` (the gateway routes on it) and the body field
``session_id`` (the replica reads it), and only the new user message each turn, since the server keeps the history.
Turn k of every session is sent at once (in a new order each turn) and turn k+1 when all of them have finished, so
that vLLM's prefix-cache counters (``vllm:prefix_cache_hits_total`` / ``vllm:prefix_cache_queries_total``, in
tokens, read from each replica's ``/metrics``) can be attributed to turns. Each run uses new session ids and request
seeds; a shared prefix (the system prompt, an opener) may be cached from an earlier run, on every replica alike.
vLLM caches whole KV blocks only (``engine.cpu_block_size`` in the manifest, 32 tokens by default; vLLM's own CPU
default is 128), so a turn hits at most the whole blocks of the conversation so far; the block size the replicas run
is read from ``vllm:cache_config_info`` and recorded.

With ``--repeats`` R > 1 the policies run R times in mirrored order (A B C, C B A, ...), each time on new sessions, and
every figure pools the repeats; each repeat's headline figures are kept beside it to show the spread.

Reported per policy: the prefix-cache hit share of turns 2..N and per turn, TTFT p50 per turn (time to the first
content delta, through the gateway), errors, and whether every session stayed on one replica (the gateway's
``x-smg-routed-worker-id`` response header). Targets (issue 16): with session routing, hit share of turns 2..N
>= 0.80 and TTFT p50 below round-robin's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
from prometheus_client.parser import text_string_to_metric_families

from loadtest.compare import ServerRun, percentile
from loadtest.conversations import FOLLOW_UPS, OPENERS
from loadtest.ports import free_port
from loadtest.smg_gateway import POLICIES, ROUTED_WORKER_HEADER, ROUTING_HEADER, SmgGateway, served_model

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH_KEY = "sk-gateway-bench-0123456789"  # the started replicas require it, as a production fleet requires keys
HITS = "vllm:prefix_cache_hits_total"
QUERIES = "vllm:prefix_cache_queries_total"
SESSION_POLICIES = ("manual", "consistent_hashing")
BASELINE = "round_robin"
TARGET_HIT_SHARE = 0.80


@dataclass
class GatewayBenchConfig:
    model: str = "sweetiechat"
    model_repo: Path | None = None
    cache_dir: Path | None = None
    kv_cache_gb: int = 2
    replicas: int = 2
    """Replicas to start (ignored with ``replica_urls``)."""
    replica_urls: list[str] = field(default_factory=list)
    """Running replicas to use instead of starting them (they must share one Redis)."""
    api_key: str | None = None
    """Bearer key for ``replica_urls`` that require one."""
    redis_url: str = "redis://127.0.0.1:6379/0"
    sessions: int = 16
    concurrency: int | None = None
    """Turns in flight at once (default: every session's turn k together). 1 measures TTFT as the prefix cache
    makes it, without queueing: on a 2-core machine two loaded replicas make TTFT a matter of CPU scheduling."""
    turns: int = 10
    max_tokens: int = 48
    policies: list[str] = field(default_factory=lambda: [*SESSION_POLICIES, BASELINE])
    repeats: int = 2
    """Runs per policy, in mirrored order (A B C C B A)."""
    seed: int = 0
    results: bool = True
    """Write benchmarks/results/<results_name>.json."""
    results_name: str = "gateway"
    log_dir: Path | None = None
    ready_timeout: float = 900.0


@dataclass
class TurnResult:
    session: int
    turn: int
    worker: str | None = None
    ttft: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: str | None = None


@dataclass
class Counters:
    hits: float
    queries: float


def prefix_cache_counters(metrics_text: str) -> Counters:
    """vLLM's prefix-cache counters (tokens) in one replica's ``/metrics``, summed over engines."""
    totals = {HITS: 0.0, QUERIES: 0.0}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name in totals:
                totals[sample.name] += sample.value
    return Counters(totals[HITS], totals[QUERIES])


def block_size(metrics_text: str) -> int | None:
    """The KV-cache block size (tokens) vLLM reports in ``vllm:cache_config_info``."""
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name.startswith("vllm:cache_config_info") and "block_size" in sample.labels:
                return int(sample.labels["block_size"])
    return None


def schedule(policies: Sequence[str], repeats: int) -> list[str]:
    """Each policy ``repeats`` times, every other round reversed, so that no policy always runs first or last."""
    order: list[str] = []
    for round_ in range(repeats):
        order += list(policies) if round_ % 2 == 0 else list(reversed(policies))
    return order


async def read_counters(http: httpx.AsyncClient, replicas: Sequence[str]) -> Counters:
    texts = await asyncio.gather(*(http.get(f"{url}/metrics") for url in replicas))
    counters = [prefix_cache_counters(response.raise_for_status().text) for response in texts]
    return Counters(sum(c.hits for c in counters), sum(c.queries for c in counters))


def conversations(sessions: int, turns: int, seed: int) -> list[list[str]]:
    """Per session: an opener, then distinct follow-ups (the seeker messages the other load tests send)."""
    rng = random.Random(seed)
    return [[rng.choice(OPENERS), *rng.sample(FOLLOW_UPS, turns - 1)] for _ in range(sessions)]


def request_seed(run: int, session: int, turn: int) -> int:
    return (run * 1_000_003 + session * 101 + turn) % (2**31)


async def one_turn(
    client: openai.AsyncOpenAI, model: str, session_id: str, text: str, max_tokens: int, seed: int
) -> TurnResult:
    """One streamed session turn; TTFT is the time to the first content delta."""
    result = TurnResult(session=-1, turn=-1)
    started = time.perf_counter()
    try:
        async with client.chat.completions.with_streaming_response.create(
            model=model,
            messages=[{"role": "user", "content": text}],
            max_tokens=max_tokens,
            seed=seed,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers={ROUTING_HEADER: session_id},
            extra_body={"session_id": session_id},
        ) as response:
            result.worker = response.headers.get(ROUTED_WORKER_HEADER)
            async for chunk in await response.parse():
                if result.ttft is None and any(choice.delta.content for choice in chunk.choices):
                    result.ttft = time.perf_counter() - started
                if chunk.usage is not None:
                    result.prompt_tokens = chunk.usage.prompt_tokens
                    result.completion_tokens = chunk.usage.completion_tokens
    except openai.APIStatusError as exc:
        code = exc.body.get("code") if isinstance(exc.body, dict) else None
        result.error = f"{exc.status_code} {code}"
    except openai.APIError as exc:  # an in-band error event, a dropped connection, a timeout
        result.error = type(exc).__name__
    if result.error is None and result.ttft is None:
        result.error = "no content"
    return result


async def drive(
    gateway: str, replicas: Sequence[str], model: str, api_key: str, config: GatewayBenchConfig, run: int
) -> tuple[list[TurnResult], list[Counters], float]:
    """Every session's turns in lockstep; per turn, the prefix-cache counter deltas summed over the replicas."""
    tag = secrets.token_hex(4)
    session_ids = [f"gwbench-{tag}-{i:03d}" for i in range(config.sessions)]
    scripts = conversations(config.sessions, config.turns, config.seed * 1000 + run)
    client = openai.AsyncOpenAI(base_url=f"{gateway}/v1", api_key=api_key, max_retries=0, timeout=600)
    # Each turn's requests go out in a new order: sent in the same order every turn, round-robin over 2 replicas
    # would keep every session on one replica whenever the session count is even.
    order = random.Random(config.seed * 7919 + run)
    results: list[TurnResult] = []
    deltas: list[Counters] = []
    gate = asyncio.Semaphore(config.concurrency or config.sessions)
    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=30) as http:
        for turn in range(1, config.turns + 1):
            before = await read_counters(http, replicas)
            sessions = order.sample(range(config.sessions), config.sessions)

            async def limited(i: int, turn: int = turn) -> TurnResult:
                async with gate:
                    text = scripts[i][turn - 1]
                    return await one_turn(
                        client, model, session_ids[i], text, config.max_tokens, request_seed(run, i, turn)
                    )

            batch = await asyncio.gather(*(limited(i) for i in sessions))
            await asyncio.sleep(0.5)  # vLLM records the last step's stats as it emits the last tokens
            after = await read_counters(http, replicas)
            deltas.append(Counters(after.hits - before.hits, after.queries - before.queries))
            for i, result in zip(sessions, batch, strict=True):
                result.session, result.turn = i, turn
            results.extend(batch)
        wall_s = time.perf_counter() - started
        headers = {"Authorization": f"Bearer {api_key}"}
        for sid in session_ids:  # leave Redis as it was; any replica serves the delete (they share Redis)
            await http.delete(f"{replicas[0]}/v1/sessions/{sid}", headers=headers)
    await client.close()
    return results, deltas, wall_s


def share(hits: float, queries: float) -> float | None:
    return round(hits / queries, 4) if queries > 0 else None


def summarize_repeats(runs: Sequence[tuple[list[TurnResult], list[Counters], float]], turns: int) -> dict[str, Any]:
    """One policy's repeats pooled: results together, counter deltas summed turn by turn; each repeat's headline."""
    results = [result for run_results, _, _ in runs for result in run_results]
    deltas = [
        Counters(sum(run[1][t].hits for run in runs), sum(run[1][t].queries for run in runs)) for t in range(turns)
    ]
    pooled = summarize(results, deltas, turns, sum(wall for _, _, wall in runs))
    each = [summarize(r, d, turns, w) for r, d, w in runs]
    # Session numbers restart in every repeat (with new session ids): count stickiness per repeat.
    pooled["sessions_on_one_replica"] = sum(summary["sessions_on_one_replica"] for summary in each)
    pooled["sessions"] = sum(summary["sessions"] for summary in each)
    pooled["repeats"] = [
        {
            key: summary[key]
            for key in ("hit_share_turns_2_plus", "ttft_p50_ms_turns_2_plus", "errors", "first_turns_per_replica")
        }
        for summary in each
    ]
    return pooled


def summarize(results: list[TurnResult], deltas: list[Counters], turns: int, wall_s: float) -> dict[str, Any]:
    ok = [r for r in results if r.error is None]
    later = [r.ttft * 1000 for r in ok if r.turn >= 2 and r.ttft is not None]
    workers: dict[int, set[str | None]] = {}
    for r in ok:
        workers.setdefault(r.session, set()).add(r.worker)
    first = Counter(r.worker for r in ok if r.turn == 1)
    per_turn = []
    for turn in range(1, turns + 1):
        mine = [r for r in results if r.turn == turn]
        ttfts = [r.ttft * 1000 for r in mine if r.error is None and r.ttft is not None]
        prompts = [r.prompt_tokens for r in mine if r.prompt_tokens is not None]
        delta = deltas[turn - 1]
        per_turn.append(
            {
                "turn": turn,
                "hit_share": share(delta.hits, delta.queries),
                "ttft_p50_ms": round(percentile(ttfts, 50), 1),
                "prompt_tokens_mean": round(sum(prompts) / len(prompts), 1) if prompts else None,
                "errors": len(mine) - len(ttfts),
            }
        )
    return {
        "hit_share_turns_2_plus": share(sum(d.hits for d in deltas[1:]), sum(d.queries for d in deltas[1:])),
        "ttft_p50_ms_turns_2_plus": round(percentile(later, 50), 1),
        "ttft_p90_ms_turns_2_plus": round(percentile(later, 90), 1),
        "requests": len(results),
        "errors": len(results) - len(ok),
        "error_codes": dict(Counter(r.error for r in results if r.error)),
        "sessions_on_one_replica": sum(1 for seen in workers.values() if len(seen) == 1),
        "sessions": len(workers),
        "first_turns_per_replica": {str(worker): count for worker, count in sorted(first.items(), key=str)},
        "wall_s": round(wall_s, 1),
        "per_turn": per_turn,
    }


def verdict(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Each session-routing policy against the targets: hit share of turns 2..N, TTFT p50 below round-robin's."""
    baseline = runs.get(BASELINE)
    out: dict[str, Any] = {}
    for policy in (p for p in runs if p in SESSION_POLICIES):
        hit = runs[policy]["hit_share_turns_2_plus"]
        ttft = runs[policy]["ttft_p50_ms_turns_2_plus"]
        base_ttft = baseline["ttft_p50_ms_turns_2_plus"] if baseline else None
        out[policy] = {
            "hit_share_target_met": hit is not None and hit >= TARGET_HIT_SHARE,
            "ttft_below_round_robin": None if base_ttft is None else bool(ttft < base_ttft),
        }
    return out


def start_replicas(config: GatewayBenchConfig, log_dir: Path) -> list[ServerRun]:
    """``config.replicas`` servers sharing ``config.redis_url``, started side by side; each must reach /ready."""
    model_repo = (config.model_repo or REPO_ROOT / "model_repo").resolve()
    env = {
        **os.environ,
        "SWEETIE_REDIS_URL": config.redis_url,
        "SWEETIE_API_KEYS": f"{BENCH_KEY}:bench",
        # The benchmark measures routing: every turn must generate (the lexical screen never replaces a reply to
        # these seeker messages; the learned one costs each turn the same on every policy either way).
        "SWEETIE_SAFETY_SCREEN": "lexical",
    }
    servers = []
    for index in range(config.replicas):
        port = free_port()
        command = [
            *(sys.executable, "-m", "app", "--model-repo", str(model_repo), "--model", config.model),
            *("--kv-cache-gb", str(config.kv_cache_gb), "--seed", str(config.seed), "--log-format", "json"),
            *("--host", "127.0.0.1", "--port", str(port)),
            *(["--cache-dir", str(config.cache_dir)] if config.cache_dir else []),
        ]
        servers.append(ServerRun(f"replica-{index}", command, env, "/ready", log_dir / f"replica-{index}.log", port))
    print(f"starting {len(servers)} replicas ...", flush=True)
    with ThreadPoolExecutor(len(servers)) as pool:
        loads = list(pool.map(lambda server: server.start(config.ready_timeout), servers))
    print("replicas ready in " + ", ".join(f"{s:.0f} s" for s in loads), flush=True)
    return servers


def warm_up(replicas: Sequence[str], model: str, api_key: str) -> None:
    """One stateless request per replica, directly: a fresh engine's first requests are slow, and not measured."""
    for url in replicas:
        response = httpx.post(
            f"{url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {api_key}"},
            json={"model": model, "messages": [{"role": "user", "content": OPENERS[0]}], "max_tokens": 8},
            timeout=300,
        )
        response.raise_for_status()


def render(runs: dict[str, dict[str, Any]], turns: int) -> str:
    head = "| policy | hit share, turns 2+ | TTFT p50 turns 2+ | TTFT p90 turns 2+ | errors | sessions on one replica |"
    lines = [head, "|---|---:|---:|---:|---:|---:|"]
    for policy, run in runs.items():
        hit = run["hit_share_turns_2_plus"]
        lines.append(
            f"| {policy} | {'-' if hit is None else f'{hit:.1%}'} | {run['ttft_p50_ms_turns_2_plus']:.0f} ms "
            f"| {run['ttft_p90_ms_turns_2_plus']:.0f} ms | {run['errors']} "
            f"| {run['sessions_on_one_replica']}/{run['sessions']} |"
        )
    lines += ["", "| turn | " + " | ".join(f"{p}: hit share, TTFT p50" for p in runs) + " |"]
    lines.append("|---:|" + "---:|" * len(runs))
    for turn in range(turns):
        cells = []
        for run in runs.values():
            row = run["per_turn"][turn]
            hit = "-" if row["hit_share"] is None else f"{row['hit_share']:.0%}"
            cells.append(f"{hit}, {row['ttft_p50_ms']:.0f} ms")
        lines.append(f"| {turn + 1} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def check_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise SystemExit(
            f"error: no Redis at {url} ({type(exc).__name__}); start one with `redis-server --daemonize yes "
            "--bind 127.0.0.1 --port 6379 --save '' --appendonly no`, or pass --redis-url"
        ) from None
    finally:
        client.close()


def main(config: GatewayBenchConfig) -> int:
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from benchmarks.results_file import provenance, write_results

    started = provenance()
    log_dir = config.log_dir or Path(tempfile.mkdtemp(prefix="sweetie-gateway-bench-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    print(f"logs in {log_dir}", flush=True)
    servers: list[ServerRun] = []
    if config.replica_urls:
        replicas, api_key = [u.rstrip("/") for u in config.replica_urls], config.api_key or "none"
    else:
        check_redis(config.redis_url)
        servers = start_replicas(config, log_dir)
        replicas, api_key = [s.root for s in servers], BENCH_KEY
    measured: dict[str, list[tuple[list[TurnResult], list[Counters], float]]] = {p: [] for p in config.policies}
    blocks: int | None = None
    try:
        models = {url: served_model(url) for url in replicas}
        model = next(iter(models.values()))
        warm_up(replicas, model, api_key)
        blocks = block_size(httpx.get(f"{replicas[0]}/metrics", timeout=30).raise_for_status().text)
        print(f"KV-cache block size: {blocks} tokens", flush=True)
        for run, policy in enumerate(schedule(config.policies, config.repeats)):
            print(f"{policy}: {config.sessions} sessions x {config.turns} turns through smg ...", flush=True)
            with SmgGateway(policy, models, log_dir / f"smg-{policy}-{run}.log") as gateway:
                measured[policy].append(asyncio.run(drive(gateway.root, replicas, model, api_key, config, run)))
    finally:
        for server in servers:
            server.stop()
    runs = {policy: summarize_repeats(done, config.turns) for policy, done in measured.items() if done}
    print(render(runs, config.turns))
    outcome = verdict(runs)
    for policy, checks in outcome.items():
        print(f"{policy}: " + ", ".join(f"{name} {'PASS' if ok else 'FAIL'}" for name, ok in checks.items()))
    if config.results:
        settings = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()}
        settings.pop("api_key", None)
        write_results(
            config.results_name,
            started,
            {"config": settings, "replicas": replicas, "block_size": blocks, "runs": runs, "verdict": outcome},
        )
    return 0 if all(v is not False for checks in outcome.values() for v in checks.values()) else 1


def parse_args(argv: list[str] | None = None) -> GatewayBenchConfig:
    parser = argparse.ArgumentParser(prog="python -m loadtest.gateway_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="sweetiechat", help="manifest name under the model repo")
    parser.add_argument("--model-repo", type=Path, help="folder of manifests (default: ./model_repo)")
    parser.add_argument("--cache-dir", type=Path, help="materialised-model cache (default: ~/.cache/sweetiechat)")
    parser.add_argument("--kv-cache-gb", type=int, default=2, help="VLLM_CPU_KVCACHE_SPACE of each replica")
    parser.add_argument("--replicas", type=int, default=2, help="replicas to start")
    parser.add_argument("--replica-urls", nargs="+", default=[], help="use these running replicas instead")
    parser.add_argument("--api-key", help="Bearer key for --replica-urls (default: none)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0", help="the replicas' shared session store")
    parser.add_argument("--sessions", type=int, default=16, help="concurrent sessions per policy")
    parser.add_argument("--turns", type=int, default=10, help=f"turns per session (2 to {len(FOLLOW_UPS) + 1})")
    parser.add_argument("--max-tokens", type=int, default=48, help="max_tokens per reply")
    parser.add_argument(
        "--policies", nargs="+", choices=list(POLICIES), default=[*SESSION_POLICIES, BASELINE], help="runs, in order"
    )
    parser.add_argument(
        "--concurrency", type=int, help="turns in flight at once (default: all sessions' turn k together)"
    )
    parser.add_argument("--repeats", type=int, default=2, help="runs per policy, in mirrored order")
    parser.add_argument("--seed", type=int, default=0, help="conversation scripts, request seeds, engine seed")
    parser.add_argument("--no-results", dest="results", action="store_false", help="do not write the results file")
    parser.add_argument("--results-name", default="gateway", help="benchmarks/results/<name>.json")
    parser.add_argument("--log-dir", type=Path, help="replica and gateway logs (default: a new temporary folder)")
    parser.add_argument("--ready-timeout", type=float, default=900.0, help="seconds to wait for each replica")
    args = parser.parse_args(argv)
    if not 2 <= args.turns <= len(FOLLOW_UPS) + 1:
        parser.error(f"--turns must be 2 to {len(FOLLOW_UPS) + 1}: turns 2+ are what is measured")
    if (
        min(
            args.sessions,
            args.max_tokens,
            args.replicas,
            args.repeats,
            1 if args.concurrency is None else args.concurrency,
        )
        < 1
    ):
        parser.error("--sessions, --max-tokens, --replicas, --repeats and --concurrency must be positive")
    return GatewayBenchConfig(**vars(args))


if __name__ == "__main__":
    sys.exit(main(parse_args()))
