"""Role-play at scale, measured: taxonomy -> expanded scenarios -> dialogues (structured counselor, judge) -> dataset.

Runs the whole generation pipeline against one OpenAI-compatible endpoint (this project's server, or a fleet) and
writes ``benchmarks/results/roleplay.json`` (:mod:`benchmarks.results_file`): yield, cut and drop reasons, strategy
distribution, judge scores, tokens/s, dialogues per hour, per-dialogue cost, and the scenario coverage. The
dialogues themselves stay under ``--out_dir`` (git-ignored ``outputs/``).

How to run (from the repository root; about an hour on 2 CPU cores with SmolLM2-135M, so in the background)::

    python -m app --port 8000 &                 # the project server (embedded SmolLM2-135M as "sweetiechat")
    mkdir -p outputs/roleplay_bench
    nohup python benchmarks/roleplay_bench.py --base_url http://127.0.0.1:8000/v1 \\
        --server "python -m app (sweetiechat, SmolLM2-135M, CPU)" > outputs/roleplay_bench/run.log 2>&1 &

Steps: ``python -m training.scenarios expand --count <scenarios>``, then ``python -m training.roleplay`` over the
first ``--dialogues`` expanded scenarios with the judge on the same endpoint (``--judge_action flag``: a 135M judge
scores every dialogue alike, so dropping on it would drop everything), then ``python -m training.data export-hf``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # allow `python benchmarks/roleplay_bench.py` without installing the package
    sys.path.insert(0, str(ROOT))

from benchmarks.results_file import provenance, write_results  # noqa: E402
from training.cli import parse_config  # noqa: E402


@dataclass
class BenchConfig:
    """Settings for ``benchmarks/roleplay_bench.py``."""

    base_url: list[str] = field(
        default_factory=lambda: ["http://127.0.0.1:8000/v1"], metadata={"help": "Endpoint(s) for every role."}
    )
    model: str = field(default="sweetiechat", metadata={"help": "Model for every role and the judge."})
    server: str = field(default="", metadata={"help": "What serves --base_url (recorded in the results)."})
    out_dir: str = field(default="outputs/roleplay_bench", metadata={"help": "Scenarios, dialogues, dataset."})
    scenarios: int = field(default=300, metadata={"help": "Scenarios to expand from the taxonomy."})
    dialogues: int = field(default=240, metadata={"help": "Dialogues to role-play (first N scenarios, 1 each)."})
    max_turns: int = field(default=8, metadata={"help": "Turns per dialogue at most."})
    min_turns: int = field(default=4, metadata={"help": "Turns per dialogue at least (else dropped)."})
    concurrency: int = field(default=24, metadata={"help": "Requests/dialogues in flight."})
    judge_action: Literal["drop", "flag"] = field(default="flag", metadata={"help": "Judge below threshold."})
    skip_expand: bool = field(
        default=False, metadata={"help": "Reuse <out_dir>/scenarios.jsonl and its report from an earlier run."}
    )
    seed: int = field(default=0, metadata={"help": "Expansion and role-play seed."})
    name: str = field(default="roleplay", metadata={"help": "Results file name under benchmarks/results/."})


def main(config: BenchConfig) -> dict[str, Any]:
    """Run the three steps; write and return the results."""
    from training.data import compute_stats
    from training.data import main as data_main
    from training.expand import ExpandConfig
    from training.roleplay import RoleplayConfig
    from training.roleplay import main as roleplay
    from training.scenarios import run_expand
    from training.schema import read_jsonl

    started = provenance()
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scenarios = out_dir / "scenarios.jsonl"
    expand = ExpandConfig(
        count=config.scenarios,
        out=str(scenarios),
        base_url=config.base_url,
        model=config.model,
        concurrency=config.concurrency,
        timeout=300,
        seed=config.seed,
        progress=False,
    )
    if not (config.skip_expand and scenarios.exists()):
        run_expand(expand)
    expand_report = json.loads(scenarios.with_suffix(".report.json").read_text())

    dialogues = out_dir / "roleplay.jsonl"
    roleplay_config = RoleplayConfig(
        scenarios=str(scenarios),
        out=str(dialogues),
        limit=config.dialogues,
        base_url=config.base_url,
        model=config.model,
        judge_model=config.model,
        judge_action=config.judge_action,
        max_turns=config.max_turns,
        min_turns=config.min_turns,
        concurrency=config.concurrency,
        seeker_max_tokens=64,
        supporter_max_tokens=64,
        timeout=300,
        seed=config.seed,
        progress=False,
    )
    report = roleplay(roleplay_config).as_dict()
    written = read_jsonl(dialogues)
    stats = compute_stats(written).as_dict()
    data_main(["export-hf", str(out_dir / "hf"), str(dialogues)])

    total = report["api"]["total"]
    finished = max(report["finished"], 1)
    per_written = max(report["written"], 1)
    dialogues_per_hour = report["throughput"]["dialogues_per_hour"] or 0.0
    results = {
        "setup": {
            "server": config.server,
            "base_url": config.base_url,
            "model": config.model,
            "bench": asdict(config),
            "roleplay_flags": {
                key: value
                for key, value in asdict(roleplay_config).items()
                if key not in ("scenarios", "out", "report", "strategies", "progress")
            },
        },
        "expand": {
            "requested": config.scenarios,
            "written": expand_report["written"],
            "failed_slots": expand_report["failed_slots"],
            "replanned": expand_report["replanned"],
            "shortfall": expand_report["shortfall"],
            "attempts": expand_report["attempts"],
            "attempt_budget": expand_report["attempt_budget"],
            "rejected": expand_report["rejected"],
            "wall_s": expand_report["wall_s"],
            "concurrency": expand_report["config"]["concurrency"],
            "scenarios_per_hour": expand_report["scenarios_per_hour"],
            "completion_tokens_per_s": expand_report["completion_tokens_per_s"],
            "coverage": {
                dimension: {key: entry[key] for key in ("values", "min", "max", "missing") if key in entry}
                for dimension, entry in expand_report["coverage"].items()
            },
            "taxonomy_combinations": expand_report["taxonomy_combinations"],
        },
        "roleplay": {key: value for key, value in report.items() if key != "config"},
        "dataset": {
            "dialogues": stats["dialogues"],
            "utterances": stats["utterances"],
            "avg_turns_per_dialogue": round(stats["avg_turns_per_dialogue"], 2),
            "avg_words_seeker": round(stats["avg_words_seeker"], 1),
            "avg_words_supporter": round(stats["avg_words_supporter"], 1),
            "categories": stats["categories"],
        },
        "cost_per_dialogue": {
            "calls_per_finished": round(total["calls"] / finished, 1),
            "prompt_tokens_per_finished": round(total["prompt_tokens"] / finished, 1),
            "completion_tokens_per_finished": round(total["completion_tokens"] / finished, 1),
            "prompt_tokens_per_written": round(total["prompt_tokens"] / per_written, 1),
            "completion_tokens_per_written": round(total["completion_tokens"] / per_written, 1),
        },
        "extrapolation_3700_here": {
            "how": "3,700 / measured written dialogues per hour, same server and settings (one CPU process)",
            "hours": round(3700 / dialogues_per_hour, 1) if dialogues_per_hour else None,
        },
    }
    write_results(config.name, started, results)
    return results


if __name__ == "__main__":
    main(parse_config(BenchConfig, description=__doc__.split("\n")[0], prog="python benchmarks/roleplay_bench.py"))
