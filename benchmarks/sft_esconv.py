"""Fine-tune SmolLM2-135M-Instruct on ESConv (optionally plus role-play data) and compare it with the base model.

How to run (from the repository root; about 50 minutes of training with 2 threads on 2 idle CPU cores with
AVX512-BF16 (sft_esconv_2x.json) plus ~15 minutes of evaluation, much longer on a busy machine, and several times
longer on an AVX2-only CPU, which trains in float32)::

    mkdir -p outputs/sft_esconv
    nohup python benchmarks/sft_esconv.py > outputs/sft_esconv/run.log 2>&1 &          # ESConv only
    python benchmarks/sft_esconv.py --skip_train                                       # re-evaluate the export
    python benchmarks/sft_esconv.py --data esconv:train outputs/roleplay.jsonl --data_weights 1 4 \\
        --out_dir outputs/sft_esconv_rp --name sweetiechat-esconv-rp --results_name sft_esconv_roleplay

The weights decide the role-play share of the preset's 1,920 training turns: ESConv train has 10,191 supporter turns
and a 220-dialogue role-play run about 650, so ``1 1`` would leave ~6% role-play and ``1 4`` gives ~20%.

Steps:

1. ``python -m training.sft --config training/configs/cpu-smol.yaml`` (LoRA on a seeded 1,920-turn subset of the
   training data; eval loss on ESConv valid-dev every 40 steps, the best checkpoint merged on export) into
   ``<out_dir>/model_repo/<name>/`` (git-ignored: ESConv is CC BY-NC). With ``--strategy_planner``, then
   ``python -m training.strategy_planner --model_dir`` on the export (on ESConv train): the fine-tuned model
   serves with ``strategy_tag: planner``, the learned planner choosing the strategy whose tag is prefilled.
2. For the base (``model_repo/sweetiechat``: SmolLM2-135M-Instruct with the SweetieChat system prompt, strategy
   mode off) and then the fine-tuned model, one at a time: start the project server (``python -m app``), generate
   the sampled supporter turns of ESConv valid-test (the half of ESConv valid that training never looked at, not
   even to choose a checkpoint) from their true context twice (turns the server's crisis screen frames or replaces
   are counted and left out: they are not the model's reply), with the server's sentence limit off
   (``max_sentences: 0``: each model's own reply length) and on (the manifests' ``max_sentences``), stop the server.
3. Score them (:mod:`training.metrics`: library metrics, 95% intervals, majority and chance baselines beside every
   strategy figure), write ``<out_dir>/<setting>/comparison.{json,md,png}`` and the results file
   ``benchmarks/results/<results_name>.json`` (git SHA, date, machine, load, the command, the training summary with
   the sha256 of every input, every metric), and print the tables and the issue's targets. The targets are
   reported, never asserted: the exit status is 0 whether they are met or not.

With ``--judge_url``/``--judge_model`` an LLM judge also scores both models on ESConv's human-evaluation axes and
gives the tuned model's pairwise win rate against the base (sentence limit off).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # allow `python benchmarks/sft_esconv.py` without installing the package
    sys.path.insert(0, str(ROOT))

from app.chat.strategy_planner import PLANNER_FILE, StrategyPlanner  # noqa: E402
from app.core.manifest import load_manifest  # noqa: E402
from app.core.strategies import StrategyCatalogue, load_catalogue  # noqa: E402
from benchmarks.results_file import provenance, write_results  # noqa: E402
from tests.server_process import ServerProcess  # noqa: E402
from training.cli import parse_config  # noqa: E402
from training.evaluate import (  # noqa: E402
    EvalConfig,
    Generated,
    ModelRun,
    ModelSpec,
    judge_runs,
    result_of,
    run_model,
    write_comparison,
)
from training.sft import SftConfig  # noqa: E402
from training.sft_data import Target, load_dialogues, sample_targets, targets_of  # noqa: E402

SETTINGS = {"limit_off": 0, "limit_on": None}  # max_sentences sent with every request (None: the manifest's)


@dataclass
class BenchConfig:
    """Settings for ``benchmarks/sft_esconv.py``."""

    out_dir: str = field(default="outputs/sft_esconv", metadata={"help": "Where everything is written."})
    results_name: str = field(default="sft_esconv", metadata={"help": "benchmarks/results/<results_name>.json."})
    name: str = field(default="sweetiechat-esconv", metadata={"help": "Served name of the fine-tuned model."})
    preset: str = field(default="training/configs/cpu-smol.yaml", metadata={"help": "SFT preset."})
    data: list[str] = field(default_factory=list, metadata={"help": "Training sources (empty: the preset's)."})
    data_weights: list[float] = field(default_factory=list, metadata={"help": "One weight per --data source."})
    max_steps: int | None = field(default=None, metadata={"help": "Override the preset's max_steps."})
    max_examples: int | None = field(default=None, metadata={"help": "Override the preset's max_examples."})
    skip_train: bool = field(default=False, metadata={"help": "Evaluate an existing export in out_dir."})
    checkpoint: str | None = field(
        default=None,
        metadata={"help": "Evaluate this checkpoint of an unfinished run instead of training (exported first)."},
    )
    eval_data: str = field(default="esconv:valid-test", metadata={"help": "Held-out turns to generate."})
    eval_turns: int = field(default=600, metadata={"help": "Sampled supporter turns of eval_data."})
    concurrency: int = field(default=16, metadata={"help": "Requests in flight per model."})
    max_tokens: int = field(default=200, metadata={"help": "Completion limit per reply (above the manifests' 96)."})
    kv_cache_gb: float = field(default=1.0, metadata={"help": "Server CPU KV cache (GiB)."})
    safety_screen: str = field(
        default="lexical",
        metadata={"help": "The servers' crisis screen (lexical, learned); turns it frames or replaces are left out."},
    )
    seed: int = field(default=0, metadata={"help": "Training seed, turn subset and bootstrap seed."})
    resamples: int = field(default=1000, metadata={"help": "Bootstrap resamples of the 95% intervals."})
    models: list[str] = field(
        default_factory=lambda: ["base", "fine-tuned"],
        metadata={"help": "Models to generate now (base, fine-tuned); the other's saved generations are reused."},
    )
    reuse: bool = field(
        default=False, metadata={"help": "Reuse saved generations (<out_dir>/generations/) of the same turns."}
    )
    strategy_planner: bool = field(
        default=False,
        metadata={
            "help": "Train the learned Strategy Planner into the export first (python -m training.strategy_planner): "
            "the fine-tuned model then serves with strategy_tag: planner."
        },
    )
    judge_url: str | None = field(default=None, metadata={"help": "Optional LLM judge endpoint (OpenAI /v1 URL)."})
    judge_model: str | None = field(default=None, metadata={"help": "Judge model at judge_url."})


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
    if config.data:
        command += ["--data", *config.data]
    if config.data_weights:
        command += ["--data_weights", *map(str, config.data_weights)]
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


def _generations(out_dir: Path, label: str, setting: str) -> Path:
    return out_dir / "generations" / f"{label}.{setting}.jsonl"


def save_run(run: ModelRun, path: Path) -> None:
    """One line per turn (None: failed), then a last line with the failures and the seconds (git-ignored output)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for g in run.outputs:
            row = None
            if g is not None:
                row = [g.target.dialogue.id, g.target.index, g.strategy, g.reply, g.finish_reason, g.safety_action]
            handle.write(json.dumps(row) + "\n")
        handle.write(json.dumps({"served": run.served, "failures": run.failures, "seconds": run.seconds}) + "\n")


def load_run(path: Path, spec: ModelSpec, targets: list[Target]) -> ModelRun | None:
    """A run saved by :func:`save_run` for exactly these targets, or None."""
    if not path.is_file():
        return None
    *rows, tail = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    if len(rows) != len(targets):
        return None
    outputs: list[Generated | None] = []
    for row, target in zip(rows, targets, strict=True):
        if row is not None and (row[0], row[1]) != (target.dialogue.id, target.index):
            return None
        outputs.append(None if row is None else Generated(target, *row[2:6]))
    return ModelRun(spec, tail["served"], outputs, Counter(tail["failures"]), tail["seconds"])


def from_checkpoint(config: BenchConfig, out_dir: Path) -> dict[str, Any]:
    """Export ``config.checkpoint`` (a LoRA adapter is merged) and a training record from its trainer state: for a
    run that could not finish. The record says so (``partial``)."""
    from training.sft import input_hashes, resolve_base_model
    from training.sft_data import load_sources

    checkpoint = Path(config.checkpoint or "")
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    command = [
        sys.executable, "-m", "training.export", "--checkpoint", str(checkpoint), "--name", config.name,
        "--model_repo", str(out_dir / "model_repo"),
        "--system_prompt_manifest", str(ROOT / "model_repo" / "sweetiechat"),
    ]  # fmt: skip
    print("$ " + " ".join(command[1:]), flush=True)
    subprocess.run(command, cwd=ROOT, check=True)
    preset = parse_config(SftConfig, ["--config", config.preset, *(["--data", *config.data] if config.data else [])])
    history = state["log_history"]
    files = [f for source in load_sources([*preset.data, *preset.eval_data]) for f in source.files]
    base = resolve_base_model(f"manifest:{ROOT / 'model_repo' / 'sweetiechat'}", ROOT / "model_repo").folder
    sweetiechat = ROOT / "model_repo" / "sweetiechat" / "model.yaml"
    return {
        "partial": True,
        "checkpoint": str(checkpoint),
        "config": dataclasses.asdict(preset),
        "preset": config.preset,
        "run_name": preset.run_name,
        "global_step": state["global_step"],
        "max_steps": state["max_steps"],
        "num_input_tokens_seen": state.get("num_input_tokens_seen"),
        "loss_history": [{"step": e["step"], "loss": e["loss"]} for e in history if "loss" in e],
        "eval_history": [{"step": e["step"], "eval_loss": e["eval_loss"]} for e in history if "eval_loss" in e],
        "best_checkpoint": state.get("best_model_checkpoint"),
        "best_eval_loss": state.get("best_metric"),
        "inputs_sha256": input_hashes([*files, Path(config.preset), sweetiechat, base]),
    }


def generate(
    label: str,
    repo: Path,
    model: str,
    targets: list[Target],
    config: BenchConfig,
    eval_config: EvalConfig,
    catalogue: StrategyCatalogue,
    out_dir: Path,
) -> dict[str, ModelRun]:
    """Serve ``model`` from ``repo`` with the project server, generate every target once per setting, stop it.

    A model not in ``config.models``, or with ``config.reuse``, is read back from its saved generations instead."""
    saved = {s: load_run(_generations(out_dir, label, s), ModelSpec(label, "saved", model), targets) for s in SETTINGS}
    if (label not in config.models or config.reuse) and all(saved.values()):
        print(f"{label}: reusing the generations saved in {out_dir / 'generations'}", flush=True)
        return {setting: run for setting, run in saved.items() if run is not None}
    if label not in config.models:
        raise SystemExit(f"error: {label} is not in --models and has no saved generations of these turns")
    server = ServerProcess(
        ["--model-repo", str(repo), "--model", model, "--kv-cache-gb", str(config.kv_cache_gb)],
        out_dir / f"server-{label}.log",
        env={"SWEETIE_SAFETY_SCREEN": config.safety_screen},
    )
    started = time.perf_counter()
    server.start(timeout=1800)
    print(f"{label}: server ready in {time.perf_counter() - started:.0f} s at {server.base_url}", flush=True)
    runs = {}
    try:
        for setting, max_sentences in SETTINGS.items():
            settings = dataclasses.replace(eval_config, max_sentences=max_sentences)
            runs[setting] = run_model(ModelSpec(label, server.base_url, model), targets, settings, catalogue)
            save_run(runs[setting], _generations(out_dir, label, setting))
            print(f"{label} ({setting}): {runs[setting].seconds:.0f} s", flush=True)
    finally:
        server.stop()
    return runs


def targets_met(metrics: dict[str, Any]) -> dict[str, bool | None]:
    """The issue's targets for the fine-tuned model (None: not measurable, e.g. no strategy tags)."""
    accuracy, gain = metrics["strategy_accuracy"], metrics["intervals"].get("accuracy_minus_majority")
    return {
        "valid strategy tags >= 95%": metrics["valid_tag_rate"] >= 0.95,
        "strategy accuracy >= 30%": None if accuracy is None else accuracy >= 0.30,
        "strategy accuracy above the majority baseline by more than its interval": None
        if gain is None
        else gain[0] > 0,
        "average words <= 30": metrics["avg_words"] <= 30,
        "replies over 60 words <= 5%": metrics["over_60_words"] <= 0.05,
        "Distinct-2 >= 55%": metrics["distinct2"] >= 0.55,
    }


def _training_record(summary: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "run_name",
        "preset",
        "base_model",
        "data",
        "mix",
        "eval_data",
        "trainable_parameters",
        "global_step",
        "train_loss",
        "train_runtime_s",
        "steps_per_second",
        "tokens_seen",
        "tokens_per_second",
        "loss_history",
        "eval_history",
        "best_checkpoint",
        "best_eval_loss",
        "inputs_sha256",
    )
    if summary.get("partial"):
        return summary
    record = {key: summary.get(key) for key in keys}
    record["config"] = summary["config"]
    return record


def main(config: BenchConfig) -> int:
    started_info = provenance()
    out_dir = ROOT / config.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    catalogue = load_catalogue()
    targets = sample_targets(targets_of(load_dialogues([config.eval_data], catalogue)), config.eval_turns, config.seed)
    eval_config = EvalConfig(
        data=[config.eval_data],
        max_turns=config.eval_turns,
        seed=config.seed,
        concurrency=config.concurrency,
        max_tokens=config.max_tokens,
        resamples=config.resamples,
        out_dir=str(out_dir),
    )
    if "fine-tuned" not in config.models:  # the base only (e.g. while the fine-tuning runs elsewhere)
        generate("base", ROOT / "model_repo", "sweetiechat", targets, config, eval_config, catalogue, out_dir)
        print(f"base generations saved in {out_dir / 'generations'}; --models fine-tuned --reuse finishes the run")
        return 0
    summary_path = out_dir / "run" / "train_summary.json"
    if config.checkpoint:
        summary = from_checkpoint(config, out_dir)
    elif config.skip_train:
        if not summary_path.is_file():
            print(f"error: --skip_train but {summary_path} does not exist; run without it first", file=sys.stderr)
            return 2
        summary = json.loads(summary_path.read_text())
    else:
        summary = train(config, out_dir)
    export = out_dir / "model_repo" / config.name
    if config.strategy_planner:
        from training.strategy_planner import PlannerConfig
        from training.strategy_planner import main as train_planner

        train_planner(PlannerConfig(model_dir=export))
    strategy_tag = load_manifest(export / "model.yaml").strategy_tag
    planner_report = StrategyPlanner.load(export / PLANNER_FILE).report if strategy_tag == "planner" else None
    base = generate("base", ROOT / "model_repo", "sweetiechat", targets, config, eval_config, catalogue, out_dir)
    tuned = generate(
        "fine-tuned", out_dir / "model_repo", config.name, targets, config, eval_config, catalogue, out_dir
    )
    evaluation: dict[str, Any] = {}
    tables = []
    for setting, max_sentences in SETTINGS.items():
        settings = dataclasses.replace(eval_config, max_sentences=max_sentences)
        results = [result_of(runs[setting], settings, catalogue) for runs in (base, tuned)]
        if config.judge_url and config.judge_model and setting == "limit_off":
            judged = dataclasses.replace(
                settings, judge="both", judge_url=config.judge_url, judge_model=config.judge_model
            )
            verdicts = judge_runs([base[setting], tuned[setting]], judged)
            for result in results:
                result["judge"] = verdicts.get(result["label"], {})
        table = write_comparison(results, out_dir / setting)
        tables.append(f"### {setting} (max_sentences {max_sentences if max_sentences is not None else 'default'})")
        tables.append(table)
        evaluation[setting] = {
            "max_sentences": max_sentences,
            "models": {
                r["label"]: {k: v for k, v in r.items() if k not in ("predictions", "settings", "base_url")}
                for r in results
            },
            "targets_fine_tuned": targets_met(results[1]["metrics"]),
        }
        for r in evaluation[setting]["models"].values():
            r["metrics"] = {k: v for k, v in r["metrics"].items() if k != "reply_words"}
    total_s = round(time.perf_counter() - started)
    report: dict[str, Any] = {
        "training": _training_record(summary),
        "fine_tuned_strategy_tag": strategy_tag,
        "strategy_planner": planner_report,
        "evaluation": {
            "data": config.eval_data,
            "turns": len(targets),
            "max_tokens": config.max_tokens,
            "concurrency": config.concurrency,
            "settings": evaluation,
        },
        "tables_markdown": "\n".join(tables),
        "total_s": total_s,
    }
    write_results(config.results_name, started_info, report)
    training = report["training"]
    if training.get("partial"):
        print(
            f"\ntraining: UNFINISHED run, evaluated {training['checkpoint']} (step {training['global_step']} of "
            f"{training['max_steps']}); eval losses {training['eval_history']}\n"
        )
    else:
        best = training["best_eval_loss"]
        print(
            f"\ntraining: {training['config']['method']}, {training['global_step']} steps over "
            f"{training['data']['examples']} turns, {training['train_runtime_s'] / 60:.1f} min "
            f"({training['tokens_per_second']:.0f} tokens/s), final train loss {training['train_loss']:.3f}"
            + (f", best eval loss {best:.3f} ({training['best_checkpoint']})" if best is not None else "")
            + "\n"
        )
    print("\n".join(tables))
    for setting, found in evaluation.items():
        print(f"targets, fine-tuned, {setting} (reported, not asserted):")
        for name, ok in found["targets_fine_tuned"].items():
            print(f"  {'n/a ' if ok is None else 'MET ' if ok else 'MISS'}  {name}")
    print(f"\nwritten to {out_dir} (total {total_s / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_config(BenchConfig, None, prog="python benchmarks/sft_esconv.py")))
