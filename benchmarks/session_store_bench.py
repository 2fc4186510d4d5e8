"""Session-store cost per chat turn: Redis round trips and added latency, Redis vs in-process store.

Each turn does what the chat pipeline does around a generation: open (lock + read) -> commit (+ unlock), on one
session that grows to ``--turns`` turns (the store keeps ``--max-turns``). Round trips are counted on the client (every
command or pipeline is one ``send_packed_command`` on a counting connection class); server-side commands come from
``INFO commandstats`` deltas (commands run inside the Lua scripts count there too).

Run:
    python benchmarks/session_store_bench.py --redis-url redis://127.0.0.1:6379/15 --turns 500

Only keys under a fresh ``sweetiebench-<random>`` prefix are written, and they are deleted at the end. The numbers go
to ``benchmarks/results/session_store.json``.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # allow `python benchmarks/session_store_bench.py` without installing the package
    sys.path.insert(0, str(ROOT))

from benchmarks.results_file import provenance, write_results  # noqa: E402
from training.cli import parse_config  # noqa: E402


@dataclass(frozen=True)
class BenchConfig:
    redis_url: str = field(default="redis://127.0.0.1:6379/15", metadata={"help": "Redis to measure (DB written to)"})
    turns: int = field(default=500, metadata={"help": "measured turns"})
    max_turns: int = field(default=200, metadata={"help": "turns the store keeps"})
    user_chars: int = field(default=200, metadata={"help": "user message length"})
    reply_chars: int = field(default=400, metadata={"help": "reply length"})
    warmup: int = field(default=5, metadata={"help": "unmeasured turns first"})

    def __post_init__(self) -> None:
        if self.turns < 1:
            raise ValueError("--turns must be >= 1")


@dataclass
class Result:
    latencies_ms: list[float]
    per_op_ms: dict[str, list[float]]
    round_trips: float | None = None
    server_commands: dict[str, float] | None = None
    stored_messages: int = 0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


async def run_turns(store: Any, config: BenchConfig, on_turn_start: Any = None) -> Result:
    from app.core.messages import Message
    from app.sessions.base import TurnCommit

    tenant, session_id = "bench-tenant", f"bench-{uuid.uuid4().hex[:8]}"
    user_text = "I have been feeling overwhelmed at work lately. " * (config.user_chars // 48 + 1)
    reply_text = "That sounds exhausting; it makes sense you feel stretched thin. " * (config.reply_chars // 64 + 1)
    latencies: list[float] = []
    record = None
    for i in range(config.warmup + config.turns):
        if i == config.warmup and on_turn_start is not None:
            on_turn_start()
        start = time.perf_counter()
        lease = await store.open(tenant, session_id, wait_s=1.0, ttl_s=30.0)
        try:
            record = await store.commit(
                lease,
                TurnCommit(
                    messages=[Message("user", f"{i}: {user_text[: config.user_chars]}")],
                    reply=Message("assistant", reply_text[: config.reply_chars], strategy="Reflection of feelings"),
                    prompt_tokens=100,
                    completion_tokens=60,
                    expected_version=lease.version,
                ),
            )
        finally:
            await store.release(lease)
        if i >= config.warmup:
            latencies.append((time.perf_counter() - start) * 1000)
    return Result(latencies_ms=latencies, per_op_ms={}, stored_messages=len(record.messages) if record else 0)


def command_calls(client: Any) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


async def bench_redis(config: BenchConfig) -> Result:
    import redis
    from redis.asyncio import BlockingConnectionPool, Redis
    from redis.asyncio.connection import Connection

    from app.sessions.redis_store import RedisSessionStore

    class CountingConnection(Connection):
        sent = 0

        async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            type(self).sent += 1
            await super().send_packed_command(command, check_health)

    per_op: dict[str, list[float]] = defaultdict(list)
    measuring = False

    def on_op(op: str, seconds: float, ok: bool) -> None:
        if measuring:
            per_op[op].append(seconds * 1000)

    prefix = f"sweetiebench-{uuid.uuid4().hex[:8]}"
    pool = BlockingConnectionPool.from_url(
        config.redis_url,
        connection_class=CountingConnection,
        socket_connect_timeout=0.5,
        socket_timeout=0.5,
        decode_responses=True,
    )
    store = RedisSessionStore(Redis.from_pool(pool), key_prefix=prefix, max_turns=config.max_turns, on_op=on_op)
    admin = redis.Redis.from_url(config.redis_url, decode_responses=True)
    before: dict[str, int] = {}

    def start_measuring() -> None:
        nonlocal measuring, before
        measuring = True
        CountingConnection.sent = 0
        before = command_calls(admin)

    try:
        result = await run_turns(store, config, start_measuring)
        after = command_calls(admin)
        result.round_trips = CountingConnection.sent / config.turns
        deltas = {name: (after[name] - before.get(name, 0)) / config.turns for name in after}
        deltas["info"] = deltas.get("info", 0) - 1 / config.turns  # our own INFO between the snapshots
        result.server_commands = {name: value for name, value in sorted(deltas.items()) if value > 0.005}
        result.per_op_ms = dict(per_op)
        return result
    finally:
        keys = list(admin.scan_iter(match=f"{prefix}:*"))
        if keys:
            admin.delete(*keys)
        admin.close()
        await store.close()


async def bench_memory(config: BenchConfig) -> Result:
    from app.sessions.memory_store import MemorySessionStore

    per_op: dict[str, list[float]] = defaultdict(list)
    measuring = False

    def on_op(op: str, seconds: float, ok: bool) -> None:
        if measuring:
            per_op[op].append(seconds * 1000)

    def start_measuring() -> None:
        nonlocal measuring
        measuring = True

    store = MemorySessionStore(max_turns=config.max_turns, on_op=on_op)
    result = await run_turns(store, config, start_measuring)
    result.round_trips = 0
    result.per_op_ms = dict(per_op)
    await store.close()
    return result


def report(config: BenchConfig, redis_result: Result, memory_result: Result) -> None:
    def row(label: str, redis_value: str, memory_value: str) -> None:
        print(f"{label:<34}{redis_value:>14}{memory_value:>14}")

    print(
        f"session store, {config.turns} turns on one session (kept: {config.max_turns} turns), "
        f"user {config.user_chars} chars, reply {config.reply_chars} chars, turn = open (lock+read) + commit (+unlock)"
    )
    row("", "redis", "memory")
    row("round trips per turn", f"{redis_result.round_trips:.2f}", f"{memory_result.round_trips:.0f}")
    for name, values in (("redis", redis_result.latencies_ms), ("memory", memory_result.latencies_ms)):
        assert values, f"no {name} latencies"
    for q in (50, 99):
        row(
            f"added latency per turn p{q} (ms)",
            f"{percentile(redis_result.latencies_ms, q):.3f}",
            f"{percentile(memory_result.latencies_ms, q):.3f}",
        )
    row(
        "mean (ms)",
        f"{statistics.fmean(redis_result.latencies_ms):.3f}",
        f"{statistics.fmean(memory_result.latencies_ms):.3f}",
    )
    for op in ("open", "commit"):
        row(
            f"  {op} p50 (ms)",
            f"{percentile(redis_result.per_op_ms[op], 50):.3f}",
            f"{percentile(memory_result.per_op_ms[op], 50):.3f}",
        )
    row("stored messages at end", str(redis_result.stored_messages), str(memory_result.stored_messages))
    if redis_result.server_commands:
        shown = ", ".join(f"{name} {value:.2f}" for name, value in redis_result.server_commands.items())
        print(f"redis server commands per turn (INFO commandstats, incl. inside scripts): {shown}")


def summary(result: Result) -> dict[str, Any]:
    return {
        "round_trips_per_turn": result.round_trips,
        "added_latency_ms": {f"p{q}": round(percentile(result.latencies_ms, q), 3) for q in (50, 90, 99)},
        "mean_ms": round(statistics.fmean(result.latencies_ms), 3),
        "per_op_p50_ms": {op: round(percentile(v, 50), 3) for op, v in sorted(result.per_op_ms.items())},
        "stored_messages_at_end": result.stored_messages,
        "server_commands_per_turn": result.server_commands,
    }


def main(config: BenchConfig) -> None:
    started = provenance()
    redis_result = asyncio.run(bench_redis(config))
    memory_result = asyncio.run(bench_memory(config))
    report(config, redis_result, memory_result)
    load = {"turns": config.turns, "max_turns": config.max_turns, "user_chars": config.user_chars}
    load["reply_chars"] = config.reply_chars
    write_results(
        "session_store",
        started,
        {"load": load, "redis": summary(redis_result), "memory": summary(memory_result)},
    )


if __name__ == "__main__":
    main(parse_config(BenchConfig, None, __doc__.split("\n")[0], "python benchmarks/session_store_bench.py"))
