"""Fine-tune SmolLM2-135M-Instruct on ESConv and compare it with the base model on ESConv valid.

How to run (from the repository root; ~25-35 minutes on 2 shared CPU cores, so in the background)::

    mkdir -p outputs/sft_esconv
    nohup python benchmarks/sft_esconv.py > outputs/sft_esconv/run.log 2>&1 &
    python benchmarks/sft_esconv.py --skip_train      # re-evaluate an existing export
    python benchmarks/sft_esconv.py --max_steps 60 --eval_turns 60   # a quicker, weaker run

Steps:

1. ``python -m training.sft --config training/configs/cpu-smol.yaml`` (LoRA on a seeded 960-turn subset of ESConv
   train, merged on export), exporting to ``<out_dir>/model_repo/<name>/`` (git-ignored: ESConv is CC BY-NC).
2. For the base (``model_repo/sweetiechat``: SmolLM2-135M-Instruct with the SweetieChat system prompt, strategy
   mode off) and then the fine-tuned model, one at a time: start the project server (``python -m app``), generate
   every sampled supporter turn of ESConv valid from its true context (:mod:`training.evaluate`), stop the server.
3. Write ``comparison.{json,md,png}`` and ``benchmark.json`` (training speed, checks) to ``<out_dir>``, print the
   table and the checks: the fine-tuned model tags >= 90% of turns, beats chance strategy accuracy (1/8) by at least
   5 points, writes shorter replies than the base and has a higher Distinct-2. Exit status 1 if a check fails.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # allow `python benchmarks/sft_esconv.py` without installing the package
    sys.path.insert(0, str(ROOT))

from app.core.strategies import load_catalogue  # noqa: E402
from tests.server_process import ServerProcess  # noqa: E402
from training.cli import parse_config  # noqa: E402
from training.evaluate import EvalConfig, ModelSpec, evaluate_model, write_comparison  # noqa: E402
from training.sft_data import load_dialogues, sample_targets, targets_of  # noqa: E402

CHANCE = 1 / 8


@dataclass
class BenchConfig:
    """Settings for ``benchmarks/sft_esconv.py``."""

    out_dir: str = field(default="outputs/sft_esconv", metadata={"help": "Where everything is written."})
    name: str = field(default="sweetiechat-esconv", metadata={"help": "Served name of the fine-tuned model."})
    preset: str = field(default="training/configs/cpu-smol.yaml", metadata={"help": "SFT preset."})
    max_steps: int | None = field(default=None, metadata={"help": "Override the preset's max_steps."})
    max_examples: int | None = field(default=None, metadata={"help": "Override the preset's max_examples."})
    skip_train: bool = field(default=False, metadata={"help": "Evaluate an existing export in out_dir."})
    eval_turns: int = field(default=150, metadata={"help": "Sampled supporter turns of ESConv valid."})
    concurrency: int = field(default=16, metadata={"help": "Requests in flight per model."})
    max_tokens: int = field(default=200, metadata={"help": "Completion limit per reply (above the manifests' 96)."})
    kv_cache_gb: float = field(default=1.0, metadata={"help": "Server CPU KV cache (GiB)."})
    seed: int = field(default=0, metadata={"help": "Turn subset and request seed."})


def train(config: BenchConfig, out_dir: Path) -> dict[str, Any]:
    """Run training.sft as a subprocess (its own memory), exporting into out_dir/model_repo."""
    run_dir = out_dir / "run"
    command = [
        sys.executable,
        "-m",
        "training.sft",
        "--config",
        config.preset,
        "--output_dir",
        str(run_dir),
        "--model_repo",
        str(out_dir / "model_repo"),
        "--base_model",
        "manifest:" + str(ROOT / "model_repo" / "sweetiechat"),
        "--system_prompt_manifest",
        str(ROOT / "model_repo" / "sweetiechat"),
        "--export_name",
        config.name,
        "--seed",
        str(config.seed),
    ]
    if config.max_steps is not None:
        command += ["--max_steps", str(config.max_steps)]
    if config.max_examples is not None:
        command += ["--max_examples", str(config.max_examples)]
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)  # a benchmark run starts fresh
    print("$ " + " ".join(command[1:]), flush=True)
    subprocess.run(command, cwd=ROOT, check=True)
    summary: dict[str, Any] = json.loads((run_dir / "train_summary.json").read_text())
    return summary


def evaluate(
    label: str, repo: Path, model: str, config: BenchConfig, eval_config: EvalConfig, out_dir: Path
) -> dict[str, Any]:
    """Serve ``model`` from ``repo`` with the project server, evaluate it, stop the server."""
    catalogue = load_catalogue()
    targets = sample_targets(targets_of(load_dialogues(["esconv:valid"], catalogue)), config.eval_turns, config.seed)
    server = ServerProcess(
        ["--model-repo", str(repo), "--model", model, "--kv-cache-gb", str(config.kv_cache_gb)],
        out_dir / f"server-{label}.log",
    )
    started = time.perf_counter()
    server.start(timeout=900)
    print(f"{label}: server ready in {time.perf_counter() - started:.0f} s at {server.base_url}", flush=True)
    try:
        result = evaluate_model(ModelSpec(label, server.base_url, model), targets, eval_config, catalogue)
    finally:
        server.stop()
    (out_dir / f"{label}.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def checks(base: dict[str, Any], tuned: dict[str, Any]) -> dict[str, bool]:
    """What the fine-tuned model must show against the base."""
    b, t = base["metrics"], tuned["metrics"]
    return {
        "valid strategy tag on >= 90% of turns": t["valid_tag_rate"] >= 0.9,
        "strategy accuracy >= chance (12.5%) + 5 points": t["strategy_accuracy"] >= CHANCE + 0.05,
        "shorter replies than the base (avg words)": t["avg_words"] < b["avg_words"],
        "fewer replies over 60 words than the base": t["over_60_words"] <= b["over_60_words"],
        "less formulaic than the base (higher Distinct-2)": t["distinct2"] > b["distinct2"],
    }


def main(config: BenchConfig) -> int:
    out_dir = ROOT / config.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    summary_path = out_dir / "run" / "train_summary.json"
    if config.skip_train:
        if not summary_path.is_file():
            print(f"error: --skip_train but {summary_path} does not exist; run without it first", file=sys.stderr)
            return 2
        summary = json.loads(summary_path.read_text())
    else:
        summary = train(config, out_dir)
    eval_config = EvalConfig(
        data=["esconv:valid"],
        max_turns=config.eval_turns,
        seed=config.seed,
        concurrency=config.concurrency,
        max_tokens=config.max_tokens,
        max_sentences=0,  # the models' own reply length: the server's sentence limit off for both
        out_dir=str(out_dir),
    )
    base = evaluate("base", ROOT / "model_repo", "sweetiechat", config, eval_config, out_dir)
    tuned = evaluate("fine-tuned", out_dir / "model_repo", config.name, config, eval_config, out_dir)
    table = write_comparison([base, tuned], out_dir)
    results = checks(base, tuned)
    training = {
        "examples": summary["data"]["examples"],
        "tokens_seen": summary["tokens_seen"],
        "steps": summary["global_step"],
        "train_runtime_s": summary["train_runtime_s"],
        "steps_per_second": summary["steps_per_second"],
        "tokens_per_second": summary["tokens_per_second"],
        "train_loss": summary["train_loss"],
        "method": summary["config"]["method"],
    }
    total_s = round(time.perf_counter() - started)
    report = {"training": training, "checks": results, "total_s": total_s}
    (out_dir / "benchmark.json").write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"\ntraining: {training['method']}, {training['steps']} steps over {training['examples']} ESConv train turns, "
        f"{training['train_runtime_s'] / 60:.1f} min ({training['steps_per_second']:.3f} steps/s, "
        f"{training['tokens_per_second']:.0f} tokens/s), final train loss {training['train_loss']:.3f}\n"
    )
    print(table)
    for name, ok in results.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    print(f"\nwritten to {out_dir} (total {total_s / 60:.1f} min)")
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    sys.exit(main(parse_config(BenchConfig, None, prog="python benchmarks/sft_esconv.py")))
