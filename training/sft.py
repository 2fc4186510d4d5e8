"""Supervised fine-tuning: ServeForEmo dialogues -> a SweetieChat model that writes ``[Strategy] reply``.

How to run::

    python -m training.sft --config training/configs/cpu-smol.yaml                 # ESConv train subset, 2 CPU cores
    python -m training.sft --config training/configs/cpu-smol.yaml \\
        --data training/assets/samples.jsonl outputs/roleplay.jsonl esconv:train --max_steps 100
    python -m training.sft --config training/configs/cpu-smol.yaml --resume         # continue from the last checkpoint
    python -m training.sft --config training/configs/gpu-8b.yaml --base_model /models/Llama-3.1-8B-Instruct

``--config`` loads a YAML preset whose keys are the fields of :class:`SftConfig`; flags given on the command line
win over it. ``base_model`` is an HF model folder, or ``manifest:<name>`` for the weights a model manifest serves
(``manifest:sweetiechat`` is the embedded SmolLM2-135M-Instruct, converted once by :mod:`app.materialize`).

Each supporter turn becomes one example (see :mod:`training.sft_data`): the SweetieChat system prompt (read from the
``system_prompt_manifest``), the dialogue so far, and the target ``[Strategy] reply``; the loss covers only the
target. Training uses the transformers ``Trainer`` (progress bar, checkpoints every ``save_steps``, resume, seed);
``method: lora`` trains a peft LoRA adapter and merges it on export. At the end the model is exported with
:func:`training.export.export_model` into ``<model_repo>/<export_name>/``, ready for ``python -m app --model NAME``.
``<output_dir>/train_summary.json`` records data counts and speed (never conversation text).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from training.cli import parse_config

MANIFEST_PREFIX = "manifest:"


@dataclass
class SftConfig:
    """Settings for ``python -m training.sft``."""

    data: list[str] = field(
        default_factory=list,
        metadata={"help": "ServeForEmo JSONL files and/or esconv:train, esconv:valid (ESConv from the shared folder)."},
    )
    strategies: str | None = field(default=None, metadata={"help": "Deployment strategy catalogue YAML."})
    base_model: str = field(
        default="manifest:sweetiechat",
        metadata={"help": "HF model folder, or manifest:<name> for the weights that manifest serves."},
    )
    system_prompt_manifest: str = field(
        default="sweetiechat", metadata={"help": "Manifest (name under model_repo, or path) giving the system prompt."}
    )
    model_repo: str = field(default="model_repo", metadata={"help": "Folder of model manifests (read and export)."})
    output_dir: str = field(default="runs/sft", metadata={"help": "Checkpoints and train_summary.json go here."})
    max_seq_length: int = field(default=512, metadata={"help": "Longest example in tokens; oldest turns are dropped."})
    max_examples: int | None = field(
        default=None, metadata={"help": "Train on a seeded random subset of this many supporter turns (None: all)."}
    )
    method: Literal["full", "lora"] = field(default="full", metadata={"help": "Full fine-tuning or a LoRA adapter."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha (scale = alpha / r)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    lora_target_modules: str = field(
        default="all-linear", metadata={"help": "'all-linear' or comma-separated module names, e.g. q_proj,v_proj."}
    )
    learning_rate: float = field(default=5e-5, metadata={"help": "Peak learning rate."})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "transformers scheduler name."})
    warmup_steps: float = field(default=0.05, metadata={"help": "Warmup: steps (>= 1) or a ratio of all steps."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    per_device_train_batch_size: int = field(default=1, metadata={"help": "Sequences per forward pass."})
    gradient_accumulation_steps: int = field(default=8, metadata={"help": "Forward passes per optimizer step."})
    max_steps: int = field(default=-1, metadata={"help": "Optimizer steps; -1 trains num_train_epochs instead."})
    num_train_epochs: float = field(default=1.0, metadata={"help": "Epochs when max_steps is -1."})
    group_by_length: bool = field(default=False, metadata={"help": "Batch similar lengths together (less padding)."})
    dtype: Literal["float32", "bfloat16", "float16"] = field(
        default="float32", metadata={"help": "dtype the weights are loaded and trained in."}
    )
    bf16: bool = field(default=False, metadata={"help": "bf16 autocast (mixed precision) on CPU or GPU."})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Recompute activations to save memory."})
    threads: int | None = field(default=None, metadata={"help": "torch CPU threads (None: torch's default)."})
    logging_steps: int = field(default=10, metadata={"help": "Log loss every N steps."})
    save_steps: int = field(default=100, metadata={"help": "Checkpoint every N steps."})
    save_total_limit: int = field(default=2, metadata={"help": "Keep at most N checkpoints."})
    seed: int = field(default=0, metadata={"help": "Seed for the data subset, shuffling and initialisation."})
    resume: bool = field(default=False, metadata={"help": "Continue from the last checkpoint in output_dir."})
    export_name: str | None = field(
        default="sweetiechat-sft", metadata={"help": "Export to <model_repo>/<export_name>/ at the end (None: skip)."}
    )
    export_dtype: Literal["bfloat16", "float16", "float32"] = field(
        default="bfloat16", metadata={"help": "dtype of the exported weights and of the served engine."}
    )
    export_max_model_len: int = field(default=2048, metadata={"help": "Served context length (manifest engine)."})
    export_enforce_eager: bool = field(default=True, metadata={"help": "Manifest engine: eager mode (fast load)."})

    def __post_init__(self) -> None:
        positive = (
            "max_seq_length",
            "lora_r",
            "lora_alpha",
            "per_device_train_batch_size",
            "gradient_accumulation_steps",
            "logging_steps",
            "save_steps",
            "save_total_limit",
            "export_max_model_len",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be at least 1 (got {getattr(self, name)})")
        if self.max_examples is not None and self.max_examples < 1:
            raise ValueError(f"max_examples: must be at least 1, or None for all (got {self.max_examples})")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads: must be at least 1 (got {self.threads})")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate: must be positive (got {self.learning_rate})")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"lora_dropout: must be in [0, 1) (got {self.lora_dropout})")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps: must be >= 0 (got {self.warmup_steps})")
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError(f"max_steps: must be positive, or -1 to train num_train_epochs (got {self.max_steps})")
        if self.max_steps == -1 and self.num_train_epochs <= 0:
            raise ValueError(f"num_train_epochs: must be positive when max_steps is -1 (got {self.num_train_epochs})")
        if self.method not in ("full", "lora"):
            raise ValueError(f"method: {self.method!r} is not valid (valid: 'full', 'lora')")
        if self.export_max_model_len < self.max_seq_length:
            raise ValueError(
                f"export_max_model_len ({self.export_max_model_len}) is below max_seq_length ({self.max_seq_length})"
            )


class SftError(Exception):
    """A setting or input cannot be used; the message says which and what to do."""


def resolve_base_model(spec: str, model_repo: Path) -> Path:
    """The HF folder for ``base_model``: a folder path, or ``manifest:<name>`` materialised via app.materialize."""
    if spec.startswith(MANIFEST_PREFIX):
        from app.core.manifest import ManifestError, find_manifest
        from app.materialize import ModelSourceError, default_cache_dir, resolve_source

        try:
            manifest = find_manifest(spec.removeprefix(MANIFEST_PREFIX), model_repo)
            resolved = resolve_source(manifest, default_cache_dir())
        except (ManifestError, ModelSourceError) as exc:
            raise SftError(f"base_model {spec!r}: {exc}") from None
        folder = Path(resolved)
        if not folder.is_dir():
            raise SftError(f"base_model {spec!r}: the manifest points at {resolved!r}, which is not a local folder")
        return folder
    folder = Path(spec)
    if not folder.is_dir():
        raise SftError(
            f"base_model {spec!r}: no such folder; give a local HF model folder (nothing is downloaded) "
            "or manifest:<name>"
        )
    if not (folder / "config.json").is_file():
        raise SftError(f"base_model {spec!r}: {folder} has no config.json, so it is not an HF model folder")
    return folder


def _checkpoint_to_resume(config: SftConfig) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    output_dir = Path(config.output_dir)
    last = get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None
    if config.resume and last is None:
        raise SftError(f"--resume: no checkpoint-* folder in {output_dir} to resume from")
    if not config.resume and last is not None:
        raise SftError(
            f"output_dir {output_dir} already holds checkpoints ({Path(last).name}); pass --resume to continue, "
            "or choose another --output_dir"
        )
    return last


def main(config: SftConfig) -> dict[str, Any]:
    """Build the examples, train, export; returns the run summary (also written to train_summary.json)."""
    from app.core.strategies import load_catalogue
    from training.sft_data import build_examples, load_dialogues, sample_targets, targets_of

    if not config.data:
        raise SftError("data: no training data given; pass --data FILE.jsonl ... or esconv:train")
    model_repo = Path(config.model_repo)
    base = resolve_base_model(config.base_model, model_repo)
    from training.export import system_prompt_of

    system_prompt = system_prompt_of(config.system_prompt_manifest, model_repo)
    resume_from = _checkpoint_to_resume(config)
    dialogues = load_dialogues(config.data, load_catalogue(config.strategies))

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, Trainer, TrainingArguments
    from transformers.trainer_utils import set_seed

    if config.threads is not None:
        torch.set_num_threads(config.threads)
    set_seed(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(base)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    targets = sample_targets(targets_of(dialogues), config.max_examples, config.seed)
    examples, stats = build_examples(tokenizer, targets, system_prompt, config.max_seq_length)
    if not examples:
        raise SftError(f"no training examples fit in max_seq_length={config.max_seq_length} ({stats.as_dict()})")
    print(
        f"data: {len(dialogues)} dialogues -> {stats.examples} examples ({stats.tokens} tokens, "
        f"{stats.target_tokens} target tokens; {stats.truncated_context} with trimmed context, "
        f"{stats.skipped_too_long} too long)",
        file=sys.stderr,
    )

    model = AutoModelForCausalLM.from_pretrained(base, dtype=getattr(torch, config.dtype))
    if config.method == "lora":
        from peft import LoraConfig, get_peft_model

        modules = config.lora_target_modules
        targets_spec: str | list[str] = modules
        if modules != "all-linear":
            targets_spec = [name.strip() for name in modules.split(",") if name.strip()]
        lora = LoraConfig(
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=targets_spec,
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, lora)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)

    args = TrainingArguments(
        output_dir=config.output_dir,
        per_device_train_batch_size=config.per_device_train_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler_type,
        warmup_steps=config.warmup_steps,
        weight_decay=config.weight_decay,
        max_steps=config.max_steps,
        num_train_epochs=config.num_train_epochs,
        bf16=config.bf16,
        use_cpu=not torch.cuda.is_available(),  # bf16 autocast on CPU needs it said explicitly
        gradient_checkpointing=config.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if config.gradient_checkpointing else None,
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
        logging_steps=config.logging_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        seed=config.seed,
        data_seed=config.seed,
        report_to="none",
        include_num_input_tokens_seen="non_padding",
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
    )
    dataset = [{"input_ids": e.input_ids, "labels": e.labels} for e in examples]
    collator = DataCollatorForSeq2Seq(tokenizer, padding="longest", label_pad_token_id=-100)
    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator, processing_class=tokenizer)
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume_from)
    wall = time.perf_counter() - started
    trainer.save_model(str(Path(config.output_dir) / "final"))

    metrics = dict(result.metrics)
    runtime = float(metrics.get("train_runtime", wall)) or wall
    tokens_seen = float(trainer.state.num_input_tokens_seen or 0)
    summary: dict[str, Any] = {
        "config": dataclasses.asdict(config),
        "base_model_folder": str(base),
        "dialogues": len(dialogues),
        "data": stats.as_dict(),
        "trainable_parameters": trainable,
        "global_step": trainer.state.global_step,
        "train_loss": metrics.get("train_loss"),
        "train_runtime_s": runtime,
        "steps_per_second": metrics.get("train_steps_per_second"),
        "tokens_seen": tokens_seen,
        "tokens_per_second": tokens_seen / runtime if runtime else None,
        "resumed_from": resume_from,
        "loss_history": [
            {"step": entry["step"], "loss": entry["loss"]} for entry in trainer.state.log_history if "loss" in entry
        ],
    }
    if config.export_name:
        from training.export import export_model

        final = model.merge_and_unload() if config.method == "lora" else model
        folder = export_model(
            final,
            tokenizer,
            name=config.export_name,
            model_repo=model_repo,
            system_prompt=system_prompt,
            reference_manifest=config.system_prompt_manifest,
            description=f"{base.name} fine-tuned by training.sft ({config.method}) on {', '.join(config.data)}",
            dtype=config.export_dtype,
            max_model_len=config.export_max_model_len,
            enforce_eager=config.export_enforce_eager,
        )
        summary["exported_to"] = str(folder)
    summary_path = Path(config.output_dir) / "train_summary.json"
    summary_path.parent.mkdir(parents=True, exist_ok=True)
    summary_path.write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    print(
        f"trained {summary['global_step']} steps in {runtime:.0f} s "
        f"({summary['steps_per_second']} steps/s, {summary['tokens_per_second'] or 0:.0f} tokens/s); "
        f"summary: {summary_path}" + (f"; exported: {summary['exported_to']}" if config.export_name else ""),
        file=sys.stderr,
    )
    return summary


def cli(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    config = parse_config(
        SftConfig, argv, prog="python -m training.sft", description="Fine-tune a SweetieChat model on dialogues."
    )
    from training.export import ExportError
    from training.schema import DatasetError
    from training.sft_data import SftDataError

    try:
        main(config)
    except (SftError, SftDataError, DatasetError, ExportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(cli())
