"""The gateway benchmark's bookkeeping: run order, pooled repeats, and what it reads from vLLM's metrics."""

from __future__ import annotations

import pytest

from loadtest.gateway_bench import (
    Counters,
    TurnResult,
    block_size,
    parse_args,
    prefix_cache_counters,
    schedule,
    summarize_repeats,
)

METRICS = """\
# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig
# TYPE vllm:cache_config_info gauge
vllm:cache_config_info{block_size="32",enable_prefix_caching="True",engine="0"} 1.0
# HELP vllm:prefix_cache_queries_total Prefix cache queries, in terms of number of queried tokens.
# TYPE vllm:prefix_cache_queries_total counter
vllm:prefix_cache_queries_total{engine="0",model_name="sweetiechat"} 640.0
# HELP vllm:prefix_cache_hits_total Prefix cache hits, in terms of number of cached tokens.
# TYPE vllm:prefix_cache_hits_total counter
vllm:prefix_cache_hits_total{engine="0",model_name="sweetiechat"} 512.0
"""


def test_block_size_and_counters_come_from_vllms_metrics() -> None:
    assert block_size(METRICS) == 32
    assert block_size("# nothing here\n") is None
    assert prefix_cache_counters(METRICS) == Counters(hits=512.0, queries=640.0)


def test_policies_run_in_mirrored_order_so_none_is_always_first() -> None:
    assert schedule(["manual", "consistent_hashing", "round_robin"], 1) == [
        "manual",
        "consistent_hashing",
        "round_robin",
    ]
    order = schedule(["a", "b", "c"], 3)
    assert order == ["a", "b", "c", "c", "b", "a", "a", "b", "c"]


def turns(worker_of_session: dict[int, list[str]], ttft: float) -> list[TurnResult]:
    return [
        TurnResult(session=s, turn=t + 1, worker=w, ttft=ttft, prompt_tokens=100 * (t + 1))
        for s, workers in worker_of_session.items()
        for t, w in enumerate(workers)
    ]


def test_repeats_are_pooled_and_stickiness_is_counted_per_repeat() -> None:
    """Session 0 stays on replica A in repeat 1 and on B in repeat 2: sticky both times, though A and B differ."""
    first = turns({0: ["A", "A"], 1: ["B", "B"]}, ttft=0.1)
    second = turns({0: ["B", "B"], 1: ["A", "B"]}, ttft=0.3)
    deltas_1 = [Counters(0, 200), Counters(300, 400)]
    deltas_2 = [Counters(0, 200), Counters(100, 400)]
    pooled = summarize_repeats([(first, deltas_1, 10.0), (second, deltas_2, 12.0)], turns=2)
    assert pooled["sessions"] == 4 and pooled["sessions_on_one_replica"] == 3  # session 1 moved in repeat 2
    assert pooled["hit_share_turns_2_plus"] == 0.5  # (300 + 100) / (400 + 400)
    assert [r["hit_share_turns_2_plus"] for r in pooled["repeats"]] == [0.75, 0.25]
    assert pooled["ttft_p50_ms_turns_2_plus"] == 200.0  # the median of both repeats' turn-2 TTFTs together
    assert pooled["wall_s"] == 22.0


def test_cli_takes_a_concurrency_and_a_results_name_and_refuses_nonsense() -> None:
    config = parse_args(["--concurrency", "1", "--sessions", "6", "--results-name", "gateway_sequential"])
    assert (config.concurrency, config.sessions, config.results_name) == (1, 6, "gateway_sequential")
    assert parse_args([]).concurrency is None  # every session's turn k at once
    for bad in (["--concurrency", "0"], ["--repeats", "0"], ["--turns", "1"]):
        with pytest.raises(SystemExit):
            parse_args(bad)
