"""One prepared run of every GPU training path of ``training.sft`` on a tiny model, for a lent GPU machine.

How to run (on a CUDA machine, from the repository root; the device tool's machine cannot reach a hub, so the
packages its image lacks travel as wheels, see README "GPU paths")::

    python benchmarks/gpu_sft_paths.py                       # every path, one process per visible GPU
    python benchmarks/gpu_sft_paths.py --paths lora qlora    # some of them

Each path trains the ``gpu-8b`` preset's settings (bf16, LoRA on all linear layers, gradient checkpointing, eval loss
and best checkpoint, TensorBoard) on a tiny random Llama built in code (no real weights can reach such a machine),
from the bundled sample dialogues split into train and held-out eval dialogues:

- ``lora``: ``python -m training.sft`` on one GPU;
- ``qlora``: the same with ``--load_in_4bit`` (bitsandbytes NF4 base weights);
- ``ddp_qlora``, ``zero2``, ``zero3``, ``fsdp``: ``accelerate launch`` with the matching config in
  ``training/configs/accelerate/`` and ``--num_processes`` processes (default: one per visible GPU; one GPU runs
  each launcher, its distributed backend and the main-process-only export, with a world of one).

Then each export is reloaded on the GPU and asked for a few greedy tokens. Every path is run even when one fails; the
results file ``benchmarks/results/<results_name>.json`` records per path the exit status, wall time, steps, losses,
eval losses, best checkpoint, processes, peak GPU memory, what was exported, and the log's tail when it failed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # allow `python benchmarks/gpu_sft_paths.py` without installing the package
    sys.path.insert(0, str(ROOT))

from benchmarks.results_file import provenance, write_results  # noqa: E402
from training.cli import parse_config  # noqa: E402

ACCELERATE_CONFIGS = ROOT / "training" / "configs" / "accelerate"
LAUNCHED = {"ddp_qlora": "ddp.yaml", "zero2": "zero2.yaml", "zero3": "zero3.yaml", "fsdp": "fsdp.yaml"}
PATHS = ("lora", "qlora", *LAUNCHED)
EXTRA_FLAGS = {
    "qlora": ["--load_in_4bit"],
    "ddp_qlora": ["--load_in_4bit"],
    "fsdp": ["--gradient_checkpointing", "false"],  # FSDP checkpoints activations itself (fsdp.yaml)
}
ERROR_LINE = re.compile(r"^(\[rank\d+\]: )?\w*(Error|Exception): ")
"""A raised exception's last line (a launcher's log tail shows only its own traceback)."""
PACKAGES = ("torch", "transformers", "trl", "accelerate", "peft", "datasets", "bitsandbytes", "deepspeed")


@dataclass
class GpuPathsConfig:
    """Settings for ``benchmarks/gpu_sft_paths.py``."""

    paths: list[str] = field(default_factory=lambda: list(PATHS), metadata={"help": f"Any of {', '.join(PATHS)}."})
    num_processes: int | None = field(
        default=None, metadata={"help": "Processes per accelerate launch (None: one per visible GPU)."}
    )
    max_steps: int = field(default=30, metadata={"help": "Optimizer steps per path."})
    eval_dialogues: int = field(default=6, metadata={"help": "Sample dialogues held out for the eval loss."})
    timeout_s: int = field(default=240, metadata={"help": "Wall-clock limit per path."})
    work_dir: str = field(default="outputs/gpu_sft_paths", metadata={"help": "Runs, exports and logs (wiped first)."})
    results_name: str = field(default="gpu_sft_paths", metadata={"help": "benchmarks/results/<name>.json"})

    def __post_init__(self) -> None:
        unknown = sorted(set(self.paths) - set(PATHS))
        if unknown:
            raise ValueError(f"paths: {unknown} unknown (valid: {', '.join(PATHS)})")
        if self.max_steps < 10:
            raise ValueError(f"max_steps: at least 10, so that the eval loss is measured (got {self.max_steps})")


def split_samples(samples: Path, eval_dialogues: int, out: Path) -> tuple[Path, Path]:
    """The sample dialogues as a train file and a file of the last ``eval_dialogues`` held out for eval loss."""
    lines = [line for line in samples.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not 0 < eval_dialogues < len(lines):
        raise ValueError(f"eval_dialogues: between 1 and {len(lines) - 1} (got {eval_dialogues})")
    out.mkdir(parents=True, exist_ok=True)
    train, held_out = out / "train.jsonl", out / "eval.jsonl"
    train.write_text("\n".join(lines[:-eval_dialogues]) + "\n", encoding="utf-8")
    held_out.write_text("\n".join(lines[-eval_dialogues:]) + "\n", encoding="utf-8")
    return train, held_out


def sft_command(
    path: str, *, base: Path, train: Path, held_out: Path, work: Path, steps: int, processes: int
) -> list[str]:
    """The command line of one path: ``python -m training.sft`` or ``accelerate launch`` of it."""
    launcher = [sys.executable, "-m"]
    if path in LAUNCHED:
        launcher = [
            sys.executable, "-m", "accelerate.commands.launch",
            "--config_file", str(ACCELERATE_CONFIGS / LAUNCHED[path]), "--num_processes", str(processes), "-m",
        ]  # fmt: skip
    every = max(steps // 3, 1)
    return [
        *launcher, "training.sft",
        "--config", str(ROOT / "training" / "configs" / "gpu-8b.yaml"),
        "--base_model", str(base), "--data", str(train), "--eval_data", str(held_out), "--eval_max_examples", "32",
        "--max_steps", str(steps), "--eval_steps", str(every), "--save_steps", str(every),
        "--logging_steps", str(every),
        "--per_device_train_batch_size", "8", "--gradient_accumulation_steps", "1", "--max_seq_length", "512",
        "--output_dir", str(work / "runs" / path), "--run_name", f"gpu-{path}", "--report_to", "tensorboard",
        "--model_repo", str(work / "model_repo"), "--export_name", f"tiny-{path}", "--export_max_model_len", "1024",
        *EXTRA_FLAGS.get(path, []),
    ]  # fmt: skip


def reply_tokens(folder: Path) -> dict[str, Any]:
    """Reload an export on the GPU and generate 8 greedy tokens: the merged weights load and run."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16).to("cuda")
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "I failed my exam."}], add_generation_prompt=True, return_tensors="pt"
    )["input_ids"].to("cuda")
    generated = model.generate(ids, max_new_tokens=8, do_sample=False)
    return {
        "reply_tokens": int(generated.shape[-1] - ids.shape[-1]),
        "dtype": str(next(model.parameters()).dtype),
        "lora_weights_left": any("lora" in name for name, _ in model.named_parameters()),
    }


def raised_errors(log: str) -> list[str]:
    """The exceptions a log shows raised, each once, without the ``[rankN]:`` prefix."""
    return sorted({line.split("]: ")[-1] for line in log.splitlines() if ERROR_LINE.search(line)})


def run_path(path: str, command: list[str], work: Path, timeout_s: int) -> dict[str, Any]:
    """Run one path and gather what it left: summary, export, TensorBoard events; the log's tail when it failed."""
    log = work / "logs" / f"{path}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with log.open("w", encoding="utf-8") as handle:
        try:
            done = subprocess.run(command, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, timeout=timeout_s)
            rc = done.returncode
        except subprocess.TimeoutExpired:
            rc = 124
    row: dict[str, Any] = {"rc": rc, "wall_s": round(time.perf_counter() - started, 1)}
    summary_file = work / "runs" / path / "train_summary.json"
    if summary_file.is_file():
        summary = json.loads(summary_file.read_text())
        keep = (
            "processes", "global_step", "train_loss", "loss_history", "eval_history", "best_checkpoint",
            "best_eval_loss", "trainable_parameters", "tokens_per_second", "peak_gpu_memory_mib", "exported_to",
        )  # fmt: skip
        row.update({key: summary.get(key) for key in keep})
    row["tensorboard_event_files"] = len(list((work / "runs" / path).rglob("events.out.tfevents.*")))
    export = work / "model_repo" / f"tiny-{path}"
    if rc == 0 and export.is_dir():
        row["exported_files"] = sorted(p.name for p in export.iterdir())
        try:
            row["reload"] = reply_tokens(export)
        except Exception as exc:  # recorded in the results; the other paths still run
            row["reload"] = {"error": f"{type(exc).__name__}: {exc}"}
    if rc != 0:
        text = log.read_text(encoding="utf-8", errors="replace")
        row["errors"] = raised_errors(text)
        row["log_tail"] = text[-2500:]
    return row


def versions() -> dict[str, str | None]:
    """Versions of the packages the paths go through (None: not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def main(config: GpuPathsConfig) -> dict[str, Any]:
    import torch

    from tests.tiny_model import build_tiny_llama

    started = provenance()
    if os.environ.get("GIT_SHA"):  # a copied tree (the device tool's) may carry a stale .git: the caller knows better
        started.update(git_sha=os.environ["GIT_SHA"], git_dirty=None)
    if not torch.cuda.is_available():
        raise SystemExit("error: no CUDA GPU visible; this check is for a GPU machine")
    processes = config.num_processes or torch.cuda.device_count()
    work = ROOT / config.work_dir
    shutil.rmtree(work, ignore_errors=True)
    base = build_tiny_llama(work / "tiny-base")
    train, held_out = split_samples(ROOT / "training" / "assets" / "samples.jsonl", config.eval_dialogues, work)
    (work / "model_repo" / "sweetiechat").mkdir(parents=True)
    shutil.copy(ROOT / "model_repo" / "sweetiechat" / "model.yaml", work / "model_repo" / "sweetiechat")
    results: dict[str, Any] = {
        "gpu": {"name": torch.cuda.get_device_name(), "count": torch.cuda.device_count(), "cuda": torch.version.cuda},
        "packages": versions(),
        "num_processes": processes,
        "max_steps": config.max_steps,
        "paths": {},
    }
    for path in config.paths:
        command = sft_command(
            path, base=base, train=train, held_out=held_out, work=work, steps=config.max_steps, processes=processes
        )
        row = run_path(path, command, work, config.timeout_s)
        row["command"] = " ".join(Path(part).name if part == sys.executable else part for part in command)
        results["paths"][path] = row
        print(
            f"{path}: rc {row['rc']} in {row['wall_s']} s, step {row.get('global_step')}, "
            f"best eval loss {row.get('best_eval_loss')}, peak {row.get('peak_gpu_memory_mib')} MiB",
            flush=True,
        )
        write_results(config.results_name, started, results)  # after every path: a killed run keeps what it did
    return results


if __name__ == "__main__":
    main(parse_config(GpuPathsConfig, prog="python benchmarks/gpu_sft_paths.py", description=__doc__.splitlines()[0]))
