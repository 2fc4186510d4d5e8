"""Supervised fine-tuning with TRL: ServeForEmo dialogues -> a SweetieChat model that writes ``[Strategy] reply``.

How to run::

    python -m training.sft --config training/configs/cpu-smol.yaml                 # ESConv train subset, 2 CPU cores
    python -m training.sft --config training/configs/cpu-smol.yaml \\
        --data esconv:train outputs/roleplay.jsonl --data_weights 1 2 --max_steps 100
    python -m training.sft --config training/configs/cpu-smol.yaml --resume         # continue from the last checkpoint
    python -m training.sft --config training/configs/gpu-8b.yaml                     # one GPU, an HF id or a folder
    python -m training.sft --config training/configs/gpu-8b.yaml --load_in_4bit      # QLoRA (bitsandbytes, gpu extra)
    accelerate launch --config_file training/configs/accelerate/zero3.yaml --num_processes 8 \\
        -m training.sft --config training/configs/gpu-8b.yaml                      # several GPUs: DeepSpeed ZeRO-3
    tensorboard --logdir runs/sft-smol/runs                                          # loss and eval loss curves

``--config`` loads a YAML preset whose keys are the fields of :class:`SftConfig`; flags given on the command line
win over it. ``base_model`` is a local HF folder, an HF hub id (``Qwen/Qwen2.5-7B-Instruct``; with
``HF_HUB_OFFLINE=1`` only the local HF cache is used, and a model missing from it is an error), or
``manifest:<name>`` for the weights a model manifest serves (``manifest:sweetiechat`` is the embedded
SmolLM2-135M-Instruct, converted once by :mod:`app.materialize`; nothing is downloaded).

Each supporter turn becomes one prompt-completion example in the one conversation format (:mod:`training.sft_data`:
the prompt is token for token what the server sends the engine; the completion is ``[Strategy] reply`` and the
end-of-turn token). TRL's ``SFTTrainer`` trains on them with completion-only loss; ``method: lora`` trains a peft
LoRA adapter (QLoRA with ``load_in_4bit``), merged on export. ``data_weights`` mixes the sources; ``eval_data``
(e.g. ``esconv:valid-dev``, held-out role-play dialogues) gives an eval loss every ``eval_steps``, and the checkpoint
with the lowest eval loss is the one exported. Under ``accelerate launch`` every process trains; only the main
process writes the export and ``<output_dir>/train_summary.json`` (data counts, losses, speed, the sha256 of every
input file; never conversation text).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from training.cli import parse_config

MANIFEST_PREFIX = "manifest:"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
MODEL_FILES = ("*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.py")


@dataclass
class SftConfig:
    """Settings for ``python -m training.sft``."""

    data: list[str] = field(
        default_factory=list,
        metadata={"help": "ServeForEmo JSONL files and/or esconv:train, esconv:valid (ESConv from the shared folder)."},
    )
    data_weights: list[float] = field(
        default_factory=list,
        metadata={"help": "One weight per data source, multiplying its share (2: twice; 0.5: a half). Empty: all 1."},
    )
    eval_data: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Held-out sources for eval loss and the best checkpoint (esconv:valid-dev, ...). Empty: none."
        },
    )
    eval_max_examples: int | None = field(
        default=200, metadata={"help": "Seeded random subset of eval turns (None: all); eval runs at every eval_steps."}
    )
    strategies: str | None = field(default=None, metadata={"help": "Deployment strategy catalogue YAML."})
    base_model: str = field(
        default="manifest:sweetiechat",
        metadata={"help": "Local HF folder, HF hub id (HF_HUB_OFFLINE respected), or manifest:<name>."},
    )
    system_prompt_manifest: str = field(
        default="sweetiechat", metadata={"help": "Manifest (name under model_repo, or path) giving the system prompt."}
    )
    model_repo: str = field(default="model_repo", metadata={"help": "Folder of model manifests (read and export)."})
    output_dir: str = field(default="runs/sft", metadata={"help": "Checkpoints and train_summary.json go here."})
    run_name: str | None = field(
        default=None, metadata={"help": "Name of the run in the trackers and the summary (None: output_dir's name)."}
    )
    report_to: list[str] = field(
        default_factory=lambda: ["tensorboard"],
        metadata={"help": "Trackers (transformers names: tensorboard, wandb, trackio, ...; none: no tracker)."},
    )
    max_seq_length: int = field(default=512, metadata={"help": "Longest example in tokens; oldest turns are dropped."})
    max_examples: int | None = field(
        default=None, metadata={"help": "Train on a seeded random subset of this many mixed turns (None: all)."}
    )
    method: Literal["full", "lora"] = field(default="full", metadata={"help": "Full fine-tuning or a LoRA adapter."})
    load_in_4bit: bool = field(
        default=False, metadata={"help": "QLoRA: base weights in 4-bit NF4 (bitsandbytes, CUDA; method lora only)."}
    )
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
    per_device_eval_batch_size: int = field(default=8, metadata={"help": "Sequences per eval forward pass."})
    gradient_accumulation_steps: int = field(default=8, metadata={"help": "Forward passes per optimizer step."})
    max_steps: int = field(default=-1, metadata={"help": "Optimizer steps; -1 trains num_train_epochs instead."})
    num_train_epochs: float = field(default=1.0, metadata={"help": "Epochs when max_steps is -1."})
    group_by_length: bool = field(default=False, metadata={"help": "Batch similar lengths together (less padding)."})
    dtype: Literal["float32", "bfloat16", "float16"] = field(
        default="float32", metadata={"help": "dtype the weights are loaded and trained in."}
    )
    bf16: bool = field(
        default=False,
        metadata={"help": "bf16 autocast (mixed precision) on CPU or GPU; off on a CPU without native bf16 (slower)."},
    )
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Recompute activations to save memory."})
    threads: int | None = field(default=None, metadata={"help": "torch CPU threads (None: torch's default)."})
    logging_steps: int = field(default=10, metadata={"help": "Log loss every N steps."})
    eval_steps: int = field(default=100, metadata={"help": "Eval loss every N steps (with eval_data)."})
    eval_on_start: bool = field(default=False, metadata={"help": "Also measure the eval loss before training."})
    save_steps: int = field(default=100, metadata={"help": "Checkpoint every N steps (a multiple of eval_steps)."})
    save_total_limit: int = field(default=2, metadata={"help": "Keep at most N checkpoints (the best one is kept)."})
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
            "per_device_eval_batch_size",
            "gradient_accumulation_steps",
            "logging_steps",
            "eval_steps",
            "save_steps",
            "save_total_limit",
            "export_max_model_len",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be at least 1 (got {getattr(self, name)})")
        for name in ("max_examples", "eval_max_examples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name}: must be at least 1, or None for all (got {value})")
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
        if self.load_in_4bit and self.method != "lora":
            raise ValueError("load_in_4bit: 4-bit base weights train only through an adapter; set method: lora")
        if self.data_weights and len(self.data_weights) != len(self.data):
            raise ValueError(
                f"data_weights: {len(self.data_weights)} weights for {len(self.data)} data sources; give one per source"
            )
        if any(weight < 0 for weight in self.data_weights):
            raise ValueError(f"data_weights: must be 0 or more (got {self.data_weights})")
        if self.eval_data and self.save_steps % self.eval_steps:
            raise ValueError(
                f"save_steps ({self.save_steps}) must be a multiple of eval_steps ({self.eval_steps}) so that the "
                "best checkpoint by eval loss is one that was saved"
            )
        if self.export_max_model_len < self.max_seq_length:
            raise ValueError(
                f"export_max_model_len ({self.export_max_model_len}) is below max_seq_length ({self.max_seq_length})"
            )


class SftError(Exception):
    """A setting or input cannot be used; the message says which and what to do."""


@dataclass(frozen=True)
class BaseModel:
    """Where the base weights come from: ``name_or_path`` for from_pretrained, and the local folder holding them."""

    spec: str
    name_or_path: str
    folder: Path


def _from_hub(spec: str) -> Path:
    """The local snapshot of hub model ``spec``: downloaded when online, from the HF cache only when offline."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    offline = constants.HF_HUB_OFFLINE
    try:
        return Path(snapshot_download(spec, allow_patterns=list(MODEL_FILES), local_files_only=offline))
    except LocalEntryNotFoundError:
        where = constants.HF_HUB_CACHE
        if offline:
            raise SftError(
                f"base_model {spec!r}: HF_HUB_OFFLINE is set and the model is not in the HF cache ({where}); "
                "download it where the hub is reachable (huggingface-cli download), or give a local folder"
            ) from None
        raise SftError(
            f"base_model {spec!r}: the hub cannot be reached and the model is not cached in {where}"
        ) from None
    except HfHubHTTPError as exc:
        raise SftError(f"base_model {spec!r}: the hub refused it ({exc}); check the id and your HF token") from None


def resolve_base_model(spec: str, model_repo: Path) -> BaseModel:
    """The base model for ``base_model``: a local folder, an HF hub id, or ``manifest:<name>`` (app.materialize)."""
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
        return BaseModel(spec, str(folder), folder)
    folder = Path(spec)
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise SftError(f"base_model {spec!r}: {folder} has no config.json, so it is not an HF model folder")
        return BaseModel(spec, str(folder), folder)
    if HUB_ID.match(spec) and not spec.startswith((".", "/")):
        snapshot = _from_hub(spec)
        return BaseModel(spec, str(snapshot), snapshot)
    raise SftError(
        f"base_model {spec!r}: no such folder, and not an HF hub id (org/name); give a local HF model folder, "
        "a hub id, or manifest:<name>"
    )


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def input_hashes(paths: Sequence[Path]) -> dict[str, str]:
    """``{path: sha256}`` for every file (folders: every model file in them, recursively), sorted by path."""
    files: set[Path] = set()
    for path in paths:
        if path.is_dir():
            files.update(p for pattern in MODEL_FILES for p in path.rglob(pattern) if p.is_file())
        elif path.is_file():
            files.add(path)
    return {str(p): sha256_file(p) for p in sorted(files)}


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


def _lora_config(config: SftConfig) -> Any:
    from peft import LoraConfig

    modules = config.lora_target_modules
    targets: str | list[str] = modules
    if modules != "all-linear":
        targets = [name.strip() for name in modules.split(",") if name.strip()]
    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )


def _quantization_config(config: SftConfig) -> Any:
    """bitsandbytes NF4 with double quantisation, computing in the training dtype (QLoRA)."""
    import torch

    if not torch.cuda.is_available():
        raise SftError("load_in_4bit: QLoRA needs a CUDA GPU (bitsandbytes); train without it on CPU")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise SftError("load_in_4bit: bitsandbytes is not installed; pip install '.[gpu]'") from None
    from transformers import BitsAndBytesConfig

    compute = torch.bfloat16 if config.bf16 or config.dtype == "bfloat16" else torch.float16
    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=compute
    )


def cpu_precision(config: SftConfig, *, cuda: bool, flags: set[str] | None = None) -> tuple[SftConfig, str | None]:
    """The config with 16-bit compute that this CPU would only emulate turned off, and a line saying so (None when
    nothing changed). Emulated bf16 is several times slower than float32 (``app/core/cpu.py``); a GPU is untouched."""
    from app.core.cpu import cpu_flags, native_on_cpu

    if cuda:
        return config, None
    flags = cpu_flags() if flags is None else flags  # read /proc/cpuinfo once
    changes: dict[str, Any] = {}
    if config.bf16 and not native_on_cpu("bfloat16", flags):
        changes["bf16"] = False
    if config.dtype != "float32" and not native_on_cpu(config.dtype, flags):
        changes["dtype"] = "float32"
    if not changes:
        return config, None
    said = ", ".join(f"{name}: {getattr(config, name)} -> {value}" for name, value in changes.items())
    note = f"this CPU has no native 16-bit instructions for it (no avx512_bf16/amx): training in float32 ({said})"
    return dataclasses.replace(config, **changes), note


def trl_config(config: SftConfig, *, has_eval: bool, cuda: bool, resuming: bool = False) -> Any:
    """TRL's ``SFTConfig``: every field of :class:`SftConfig` with the same name passes through as it is."""
    from trl import SFTConfig

    explicit: dict[str, Any] = {
        "run_name": config.run_name or Path(config.output_dir).name,
        "max_length": config.max_seq_length,  # examples are built to fit; TRL's truncation never cuts one
        "completion_only_loss": True,
        "packing": False,
        "model_init_kwargs": {"dtype": config.dtype},
        "use_cpu": not cuda,  # bf16 autocast on CPU needs it said explicitly
        "gradient_checkpointing_kwargs": {"use_reentrant": False} if config.gradient_checkpointing else None,
        "train_sampling_strategy": "group_by_length" if config.group_by_length else "random",
        "save_strategy": "steps",
        "eval_strategy": "steps" if has_eval else "no",
        "eval_steps": config.eval_steps if has_eval else None,
        "eval_on_start": config.eval_on_start and has_eval and not resuming,  # the checkpoint's log has it
        "load_best_model_at_end": has_eval,
        "metric_for_best_model": "eval_loss" if has_eval else None,
        "greater_is_better": False if has_eval else None,
        "data_seed": config.seed,
        "include_num_input_tokens_seen": "non_padding",
        "dataloader_num_workers": 0,
        "dataloader_pin_memory": cuda,
    }
    names = {f.name for f in dataclasses.fields(SFTConfig)}
    shared = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name in names}
    return SFTConfig(**{**shared, **explicit})


def _prepare(config: SftConfig, tokenizer: Any, system_prompt: str, catalogue: Any) -> dict[str, Any]:
    """Train and eval examples and what went into them."""
    from training.sft_data import build_examples, load_sources, mix_targets, sample_targets, targets_of

    sources = load_sources(config.data, catalogue)
    weights = config.data_weights or [1.0] * len(sources)
    groups = [targets_of(source.dialogues) for source in sources]
    mixed = mix_targets(groups, weights, config.seed)
    targets = mixed if config.max_examples is None else mixed[: config.max_examples]
    train, stats = build_examples(tokenizer, targets, system_prompt, config.max_seq_length)
    if not train:
        raise SftError(f"no training examples fit in max_seq_length={config.max_seq_length} ({stats.as_dict()})")
    prepared: dict[str, Any] = {
        "sources": sources,
        "train": train,
        "stats": stats,
        "mix": [
            {"source": s.spec, "dialogues": len(s.dialogues), "turns": len(g), "weight": w}
            for s, g, w in zip(sources, groups, weights, strict=True)
        ],
        "eval": [],
        "eval_stats": None,
        "eval_sources": [],
    }
    if config.eval_data:
        eval_sources = load_sources(config.eval_data, catalogue)
        held_out = {d.id for s in eval_sources for d in s.dialogues}
        overlap = held_out & {d.id for s in sources for d in s.dialogues}
        if overlap:
            raise SftError(f"eval_data shares {len(overlap)} dialogue(s) with data (e.g. {sorted(overlap)[0]!r})")
        eval_targets = sample_targets(
            targets_of([d for s in eval_sources for d in s.dialogues]), config.eval_max_examples, config.seed
        )
        prepared["eval"], prepared["eval_stats"] = build_examples(
            tokenizer, eval_targets, system_prompt, config.max_seq_length
        )
        prepared["eval_sources"] = eval_sources
    return prepared


def main(config: SftConfig, preset: Path | None = None) -> dict[str, Any]:
    """Build the examples, train, export; returns the run summary (also written to train_summary.json on the main
    process; other processes of a distributed run return it without writing anything)."""
    from app.core.strategies import load_catalogue
    from training.export import system_prompt_of

    if not config.data:
        raise SftError("data: no training data given; pass --data FILE.jsonl ... or esconv:train")
    model_repo = Path(config.model_repo)
    system_prompt = system_prompt_of(config.system_prompt_manifest, model_repo)
    resume_from = _checkpoint_to_resume(config)
    catalogue = load_catalogue(config.strategies)

    import torch
    from accelerate import PartialState
    from transformers import AutoTokenizer
    from transformers.trainer_utils import set_seed
    from trl import SFTTrainer

    state = PartialState()
    config, precision_note = cpu_precision(config, cuda=torch.cuda.is_available())
    if precision_note and state.is_main_process:
        print(f"note: {precision_note}", file=sys.stderr)
    with state.main_process_first():  # one download of a hub model, one materialisation of a manifest's
        base = resolve_base_model(config.base_model, model_repo)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    set_seed(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(base.name_or_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    prepared = _prepare(config, tokenizer, system_prompt, catalogue)
    stats, eval_stats = prepared["stats"], prepared["eval_stats"]
    has_eval = bool(prepared["eval"])
    if state.is_main_process:
        print(
            f"data: {len(prepared['train'])} train examples from {', '.join(config.data)} ({stats.tokens} tokens, "
            f"{stats.target_tokens} completion tokens; {stats.truncated_context} with trimmed context, "
            f"{stats.skipped_too_long} too long)"
            + (f"; {len(prepared['eval'])} eval examples from {', '.join(config.eval_data)}" if has_eval else ""),
            file=sys.stderr,
        )

    from training.sft_data import to_dataset

    cuda = torch.cuda.is_available()
    args = trl_config(config, has_eval=has_eval, cuda=cuda, resuming=resume_from is not None)
    trainer = SFTTrainer(
        model=base.name_or_path,
        args=args,
        train_dataset=to_dataset(prepared["train"]),
        eval_dataset=to_dataset(prepared["eval"]) if has_eval else None,
        processing_class=tokenizer,
        peft_config=_lora_config(config) if config.method == "lora" else None,
        quantization_config=_quantization_config(config) if config.load_in_4bit else None,
    )
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume_from)
    wall = time.perf_counter() - started
    final = Path(config.output_dir) / "final"
    trainer.save_model(str(final))  # every process: FSDP / ZeRO-3 gather the full weights here

    metrics = dict(result.metrics)
    runtime = float(metrics.get("train_runtime", wall)) or wall
    tokens_seen = float(trainer.state.num_input_tokens_seen or 0)
    history = trainer.state.log_history
    summary: dict[str, Any] = {
        "config": dataclasses.asdict(config),
        "preset": str(preset) if preset else None,
        "run_name": args.run_name,
        "base_model": {"spec": base.spec, "folder": str(base.folder)},
        "processes": state.num_processes,
        "data": stats.as_dict(),
        "mix": prepared["mix"],
        "eval_data": eval_stats.as_dict() if eval_stats else None,
        "trainable_parameters": trainable,
        "global_step": trainer.state.global_step,
        "train_loss": metrics.get("train_loss"),
        "train_runtime_s": runtime,
        "steps_per_second": metrics.get("train_steps_per_second"),
        "tokens_seen": tokens_seen,
        "tokens_per_second": tokens_seen / runtime if runtime else None,
        "peak_gpu_memory_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else None,  # this process
        "resumed_from": resume_from,
        "loss_history": [{"step": e["step"], "loss": e["loss"]} for e in history if "loss" in e],
        "eval_history": [{"step": e["step"], "eval_loss": e["eval_loss"]} for e in history if "eval_loss" in e],
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "best_eval_loss": trainer.state.best_metric,
        "final": str(final),
    }
    if state.is_main_process:
        files = [f for s in (*prepared["sources"], *prepared["eval_sources"]) for f in s.files]
        for extra in (preset, config.strategies):
            if extra:
                files.append(Path(extra))
        from app.core.manifest import MANIFEST_FILE, find_manifest

        files.append(find_manifest(config.system_prompt_manifest, model_repo).folder / MANIFEST_FILE)
        summary["inputs_sha256"] = input_hashes([*files, base.folder])
        if config.export_name:
            from transformers.integrations import is_deepspeed_zero3_enabled, unset_hf_deepspeed_config

            from training.export import export_model, load_trained

            if is_deepspeed_zero3_enabled():  # else from_pretrained would partition the export's weights (ZeRO-3)
                unset_hf_deepspeed_config()
            model, saved_tokenizer = load_trained(final, dtype=config.export_dtype)  # LoRA merged into its base
            folder = export_model(
                model,
                saved_tokenizer,
                name=config.export_name,
                model_repo=model_repo,
                system_prompt=system_prompt,
                reference_manifest=config.system_prompt_manifest,
                description=f"{base.spec} fine-tuned by training.sft ({config.method}) on {', '.join(config.data)}",
                dtype=config.export_dtype,
                max_model_len=config.export_max_model_len,
                enforce_eager=config.export_enforce_eager,
            )
            summary["exported_to"] = str(folder)
        summary_path = Path(config.output_dir) / "train_summary.json"
        summary_path.parent.mkdir(parents=True, exist_ok=True)
        summary_path.write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
        best = f"; best eval loss {summary['best_eval_loss']:.4f}" if summary["best_eval_loss"] is not None else ""
        print(
            f"trained {summary['global_step']} steps in {runtime:.0f} s "
            f"({summary['steps_per_second']} steps/s, {summary['tokens_per_second'] or 0:.0f} tokens/s){best}; "
            f"summary: {summary_path}" + (f"; exported: {summary['exported_to']}" if config.export_name else ""),
            file=sys.stderr,
        )
    state.wait_for_everyone()
    return summary


def _preset_path(argv: Sequence[str] | None) -> Path | None:
    """The ``--config`` preset of ``argv`` (recorded and hashed in the summary)."""
    finder = argparse.ArgumentParser(add_help=False)
    finder.add_argument("--config", type=Path, default=None)
    found, _ = finder.parse_known_args(argv)
    preset: Path | None = found.config
    return preset


def cli(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    config = parse_config(
        SftConfig, argv, prog="python -m training.sft", description="Fine-tune a SweetieChat model on dialogues."
    )
    from training.export import ExportError
    from training.schema import DatasetError
    from training.sft_data import SftDataError

    try:
        main(config, _preset_path(argv))
    except (SftError, SftDataError, DatasetError, ExportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(cli())
