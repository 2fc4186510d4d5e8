"""Reply length of the embedded default model: the SweetieChat prompt alone vs the prompt plus the sentence limit.

How to run (from the repository root; ~5 minutes on 2 CPU cores)::

    python benchmarks/reply_length.py                    # starts the server on model_repo/sweetiechat itself
    python benchmarks/reply_length.py --url http://127.0.0.1:8000/v1 --turns 300

Both rows come from one server and one set of ESConv valid turns (true context up to each supporter turn), with the
manifest's sampling defaults (``max_tokens`` 96, temperature 0.7): ``prompt only`` sends ``max_sentences: 0`` (the
server's sentence limit off), ``prompt + limit`` sends nothing (the manifest's ``max_sentences``). The table is
training.evaluate's (length distribution, share over 60 words, share cut off by ``max_tokens``); ESConv's own replies
are the reference line under it. Results go to ``<out_dir>/`` (``comparison.{json,md,png}``) and to
``benchmarks/results/reply_length.json`` (git SHA, date, machine, load, the command, every metric with its 95%
interval).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # allow `python benchmarks/reply_length.py` without installing the package
    sys.path.insert(0, str(ROOT))

from app.core.strategies import load_catalogue  # noqa: E402
from benchmarks.results_file import provenance, write_results  # noqa: E402
from tests.server_process import ServerProcess  # noqa: E402
from training.cli import parse_config  # noqa: E402
from training.evaluate import EvalConfig, ModelSpec, evaluate_model, write_comparison  # noqa: E402
from training.sft_data import load_dialogues, sample_targets, targets_of  # noqa: E402


@dataclass
class BenchConfig:
    """Settings for ``benchmarks/reply_length.py``."""

    url: str | None = field(default=None, metadata={"help": "A running server's /v1 URL (None: start one)."})
    model: str = field(default="sweetiechat", metadata={"help": "Served model (a manifest under model_repo/)."})
    turns: int = field(default=150, metadata={"help": "Sampled supporter turns of ESConv valid."})
    concurrency: int = field(default=8, metadata={"help": "Requests in flight."})
    seed: int = field(default=0, metadata={"help": "Seed of the turn subset."})
    out_dir: str = field(default="outputs/reply_length", metadata={"help": "Where the comparison is written."})
    results_name: str = field(default="reply_length", metadata={"help": "benchmarks/results/<results_name>.json."})


def run(config: BenchConfig, base_url: str, out_dir: Path) -> list[dict[str, Any]]:
    catalogue = load_catalogue()
    targets = sample_targets(targets_of(load_dialogues(["esconv:valid"], catalogue)), config.turns, config.seed)
    common = EvalConfig(
        data=["esconv:valid"],
        max_turns=config.turns,
        seed=config.seed,
        concurrency=config.concurrency,
        out_dir=str(out_dir),
    )
    results = []
    for label, max_sentences in (("prompt only", 0), ("prompt + limit", None)):
        eval_config = dataclasses.replace(common, max_sentences=max_sentences)
        started = time.perf_counter()
        results.append(evaluate_model(ModelSpec(label, base_url, config.model), targets, eval_config, catalogue))
        print(f"{label}: {len(targets)} turns in {time.perf_counter() - started:.0f} s", flush=True)
    return results


def main(config: BenchConfig) -> int:
    started = provenance()
    out_dir = ROOT / config.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    if config.url is not None:
        results = run(config, config.url, out_dir)
    else:
        server = ServerProcess(
            ["--model-repo", str(ROOT / "model_repo"), "--model", config.model, "--kv-cache-gb", "1"],
            out_dir / "server.log",
        )
        server.start(timeout=900)
        try:
            results = run(config, server.base_url, out_dir)
        finally:
            server.stop()
    table = write_comparison(results, out_dir)
    print(table)
    for result in results:
        result["metrics"].pop("reply_words", None)
    write_results(config.results_name, started, {"model": config.model, "results": results, "table_markdown": table})
    print(f"written to {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_config(BenchConfig, None, prog="python benchmarks/reply_length.py")))
