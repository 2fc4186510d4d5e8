"""The pure parts of ``loadtest.compare``: run order, spread and ratio summary, the equal-prompt-tokens check."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from loadtest.compare import (
    VARIANTS,
    CompareConfig,
    PromptTokenMismatch,
    RequestResult,
    RunRecord,
    Summary,
    aggregate,
    check_prompt_tokens,
    comparable_prompt_tokens,
    kv_bytes_per_token,
    parse_args,
    peer_max_model_len,
    prompt_token_mismatches,
    ratios,
    request_body,
    request_seed,
    schedule,
    spread,
    verdict,
)


def summary(tok_s: float, ttft: float, itl: float = 50.0, errors: int = 0) -> Summary:
    return Summary(
        server="x",
        load_s=1.0,
        requests=64,
        errors=errors,
        wall_s=10.0,
        requests_per_s=6.4,
        output_tokens_per_s=tok_s,
        ttft_p50_ms=ttft,
        ttft_p99_ms=ttft * 2,
        first_token_p50_ms=ttft,
        itl_p50_ms=itl,
        itl_p99_ms=itl * 3,
        tpot_mean_ms=itl,
        load_average=2.0,
        sessions_kept=None,
        error_samples=[],
    )


def run(variant: str, round_: int, tok_s: float, ttft: float, prompts: dict[str, int] | None = None) -> RunRecord:
    return RunRecord(variant, round_, 0, 20.0, False, None, summary(tok_s, ttft), prompt_tokens=prompts or {})


def test_schedule_is_abba_with_every_variant_once_per_round() -> None:
    assert schedule(["A", "B"], 4) == [(0, "A"), (0, "B"), (1, "B"), (1, "A"), (2, "A"), (2, "B"), (3, "B"), (3, "A")]
    order = schedule(list(VARIANTS), 3)
    assert [v for _, v in order] == [
        "ours",
        "vllm-defaults",
        "vllm-ours",
        "vllm-ours",
        "vllm-defaults",
        "ours",
        "ours",
        "vllm-defaults",
        "vllm-ours",
    ]
    for round_ in range(3):
        assert sorted(v for r, v in order if r == round_) == sorted(VARIANTS)


def test_spread_takes_median_min_max_of_finite_values() -> None:
    assert spread([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3}
    assert spread([1.0, float("nan"), None, 4.0]) == {"median": 2.5, "min": 1.0, "max": 4.0, "n": 2}
    assert spread([]) == {"median": None, "min": None, "max": None, "n": 0}


def test_summary_ratios_and_verdict_use_the_medians() -> None:
    runs = [
        run("ours", 0, 100.0, 1000.0),
        run("vllm-defaults", 0, 200.0, 800.0),
        run("vllm-ours", 0, 100.0, 1000.0),
        run("vllm-ours", 1, 110.0, 950.0),
        run("vllm-defaults", 1, 190.0, 820.0),
        run("ours", 1, 104.0, 990.0),
        run("ours", 2, 500.0, 10.0),  # an outlier moves the max, not the median
        run("vllm-defaults", 2, 210.0, 780.0),
        run("vllm-ours", 2, 105.0, 970.0),
    ]
    summary_ = aggregate(runs)
    assert summary_["ours"]["output_tokens_per_s"] == {"median": 104.0, "min": 100.0, "max": 500.0, "n": 3}
    assert summary_["vllm-defaults"]["ttft_p50_ms"]["median"] == 800.0
    against_defaults = ratios(summary_, "vllm-defaults")
    assert against_defaults["output_tokens_per_s"] == pytest.approx(104 / 200)
    assert against_defaults["ttft_p50_ms"] == pytest.approx(990 / 800)
    assert ratios(summary_, "vllm-ours")["output_tokens_per_s"] == pytest.approx(104 / 105)

    result = verdict(summary_, "vllm-defaults")
    assert result is not None and not result["pass"]
    assert not result["checks"]["throughput_ratio"]["pass"] and not result["checks"]["ttft_p50_ratio"]["pass"]
    assert result["checks"]["no_errors"]["pass"]
    matched = verdict(summary_, "vllm-ours")
    assert matched is not None and matched["pass"]
    assert verdict(aggregate(runs[:1]), "vllm-defaults") is None  # the peer did not run


def test_verdict_fails_on_errors_and_failed_starts() -> None:
    failed_start = RunRecord("vllm-defaults", 1, 4, 0.0, True, False, None, error="exited with 1")
    runs = [run("ours", 0, 200.0, 800.0), run("vllm-defaults", 0, 200.0, 800.0), failed_start]
    result = verdict(aggregate(runs), "vllm-defaults")
    assert result is not None and result["checks"]["no_errors"]["value"] == 1 and not result["pass"]
    assert result["checks"]["throughput_ratio"]["pass"]  # 1.00x on the run that did happen
    assert aggregate(runs)["vllm-defaults"]["start_s"]["n"] == 1  # a failed start has no start time


def test_equal_prompt_tokens_pass_and_differences_fail_loudly() -> None:
    same = {"c0000t0": 60, "c0001t0": 58}
    check_prompt_tokens([run("ours", 0, 1, 1, same), run("vllm-defaults", 0, 1, 1, dict(same))])
    with pytest.raises(PromptTokenMismatch, match=r"c0001t0: ours#0 58 prompt tokens, vllm-defaults#0 59"):
        check_prompt_tokens([run("ours", 0, 1, 1, same), run("vllm-defaults", 0, 1, 1, {**same, "c0001t0": 59})])
    missing = prompt_token_mismatches(same, {"c0000t0": 60}, "a", "b")
    assert missing == ["c0001t0: a 58 prompt tokens, b None"]
    many = prompt_token_mismatches({f"k{i}": i for i in range(9)}, {}, "a", "b", limit=3)
    assert len(many) == 4 and many[-1] == "... 6 more"
    # a failed run (no summary) takes no part in the check
    check_prompt_tokens([run("ours", 0, 1, 1, same), RunRecord("vllm-ours", 0, 1, 0.0, False, None, None)])


def test_comparable_prompt_tokens_skip_errors_and_later_session_turns() -> None:
    results = [
        RequestResult(0.0, key="c0000t0", prompt_tokens=50),
        RequestResult(0.0, key="c0000t1", prompt_tokens=120),
        RequestResult(0.0, key="c0001t0", prompt_tokens=51, error="HTTP 500"),
    ]
    assert comparable_prompt_tokens(results, sessions=False) == {"c0000t0": 50, "c0000t1": 120}
    assert comparable_prompt_tokens(results, sessions=True) == {"c0000t0": 50}


def test_request_bodies_leave_each_servers_defaults_alone_except_vllm_ours() -> None:
    sampling = {"temperature": 0.7, "top_p": 0.9, "repetition_penalty": 1.1, "max_tokens": 96}
    ours = request_body("ours", sampling, 64)
    assert ours == request_body("vllm-defaults", sampling, 64)
    assert "top_p" not in ours and "repetition_penalty" not in ours
    assert ours["temperature"] == 0.7 and ours["ignore_eos"] and ours["stream_options"] == {"include_usage": True}
    matched = request_body("vllm-ours", sampling, 64)
    assert matched["top_p"] == 0.9 and matched["repetition_penalty"] == 1.1
    seeds = {request_seed(0, c, t) for c in range(64) for t in range(4)}
    assert len(seeds) == 256 and request_seed(0, 3, 1) == request_seed(0, 3, 1)


def test_peer_gets_max_model_len_only_when_its_full_context_would_not_fit(tmp_path: Path) -> None:
    config: dict[str, Any] = {
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "hidden_size": 576,
        "max_position_embeddings": 8192,
    }
    assert kv_bytes_per_token(config) == 2 * 30 * 3 * 64 * 2
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert peer_max_model_len(str(tmp_path), 2, 2048) is None  # 8192 x 23 KB = 180 MiB fits 2 GiB
    (tmp_path / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 131072}))
    assert peer_max_model_len(str(tmp_path), 2, 2048) == 2048
    assert peer_max_model_len(str(tmp_path / "missing"), 2, 2048) == 2048


def test_cli_keeps_only_and_sessions() -> None:
    config = parse_args(["--only", "ours", "--sessions", "--turns", "3", "--repeats", "2", "--no-results"])
    assert config.variants() == ["ours"] and config.sessions and config.repeats == 2 and config.results_name is None
    assert parse_args(["--only", "vllm"]).variants() == ["vllm-defaults", "vllm-ours"]
    assert CompareConfig().variants() == list(VARIANTS) and CompareConfig().results_name == "compare"
    with pytest.raises(SystemExit):
        parse_args(["--repeats", "0"])
    assert aggregate([run("ours", 0, math.nan, 1.0)])["ours"]["output_tokens_per_s"]["median"] is None
