"""Export a trained model into ``model_repo/<name>/``, ready for ``python -m app --model <name>``.

The folder holds the weights (safetensors), config, tokenizer with its chat template, and a ``model.yaml`` with
``source: .``, ``strategy_mode: model`` (the model writes ``[Strategy] reply``; the server parses the tag), the
SweetieChat system prompt, and the sampling defaults and engine arguments of a reference manifest (by default
``sweetiechat``: short replies) with the exported dtype, context length and eager mode. A ``.gitignore`` written into
the folder keeps everything but ``model.yaml`` out of git. The folder is written next to its final place and renamed
into it, so a reader never sees half an export.

``training.sft`` calls :func:`export_model` at the end of a run. To export a checkpoint by hand (a full model, or a
LoRA adapter, which is merged into its base)::

    python -m training.export --checkpoint runs/sft-smol/checkpoint-400 --name sweetiechat-sft
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from app.core.manifest import MANIFEST_FILE, Manifest, ManifestError, find_manifest, load_manifest
from training.cli import parse_config

GITIGNORE = "# Written by training.export: weights and tokenizer stay out of git; model.yaml may be committed.\n*\n"
GITIGNORE += f"!{MANIFEST_FILE}\n!.gitignore\n"


class ExportError(Exception):
    """The model cannot be exported; the message says why."""


def build_manifest(
    name: str,
    *,
    system_prompt: str,
    reference: Manifest | None,
    description: str,
    dtype: str,
    max_model_len: int,
    enforce_eager: bool,
) -> Manifest:
    """The manifest of an exported model: served from its own folder, strategy tags parsed by the server."""
    values: dict[str, Any] = {"name": name, "description": description, "source": ".", "system_prompt": system_prompt}
    values["strategy_mode"] = "model"
    if reference is not None:
        values["sampling"] = reference.sampling.model_dump()
        values["engine"] = reference.engine.model_dump()
    values["engine"] = {
        **values.get("engine", {}),
        "dtype": dtype,
        "max_model_len": max_model_len,
        "enforce_eager": enforce_eager,
    }
    try:
        return Manifest.model_validate(values)
    except ValueError as exc:
        raise ExportError(f"the exported manifest would be invalid: {exc}") from None


def write_manifest(folder: Path, manifest: Manifest) -> Path:
    """Write ``model.yaml`` and check that the server's loader reads it back unchanged."""
    path = folder / MANIFEST_FILE
    header = "# Exported by training.export; weights live next to this file (git-ignored).\n"
    body = yaml.safe_dump(manifest.model_dump(mode="json"), sort_keys=False, width=120, allow_unicode=True)
    path.write_text(header + body, encoding="utf-8")
    loaded = load_manifest(path)
    if loaded.model_dump() != manifest.model_dump():
        raise ExportError(f"{path}: the written manifest does not read back unchanged")
    return path


def _fix_config(folder: Path) -> None:
    """Keep the flat ``rope_theta`` key that older readers look for (as app.materialize does)."""
    path = folder / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    rope = config.get("rope_parameters") or {}
    if "rope_theta" in rope and "rope_theta" not in config:
        config["rope_theta"] = rope["rope_theta"]
        path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def export_model(
    model: Any,
    tokenizer: Any,
    *,
    name: str,
    model_repo: Path,
    system_prompt: str,
    reference_manifest: str | None = "sweetiechat",
    description: str = "",
    dtype: str = "bfloat16",
    max_model_len: int = 2048,
    enforce_eager: bool = False,
) -> Path:
    """Write ``model`` (a plain transformers model: merge LoRA first) and ``tokenizer`` to ``model_repo/name``."""
    import torch

    reference = None
    if reference_manifest is not None:
        try:
            reference = find_manifest(reference_manifest, model_repo)
        except ManifestError as exc:
            raise ExportError(f"reference manifest: {exc}") from None
    if "/" in name or name.startswith("."):
        raise ExportError(f"name {name!r}: must not contain '/' or start with '.' (it is a folder under model_repo)")
    manifest = build_manifest(
        name,
        system_prompt=system_prompt,
        reference=reference,
        description=description,
        dtype=dtype,
        max_model_len=max_model_len,
        enforce_eager=enforce_eager,
    )
    if getattr(tokenizer, "chat_template", None) is None:
        raise ExportError("the tokenizer has no chat template; the server could not render conversations")
    target = model_repo / name
    model_repo.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".export-{name}-", dir=model_repo))
    try:
        model.to(getattr(torch, dtype)).save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        _fix_config(staging)
        staging.chmod(0o755)  # mkdtemp makes it private; a server may run as another user
        for path in staging.iterdir():
            path.chmod(0o644)
        if not any(staging.glob("*.safetensors")):
            raise ExportError(f"saving the model wrote no safetensors file into {staging}")
        (staging / ".gitignore").write_text(GITIGNORE, encoding="utf-8")
        write_manifest(staging, manifest)
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".old-{name}-", dir=model_repo))
            target.rename(old / name)
            staging.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def load_trained(checkpoint: Path, dtype: str = "float32") -> tuple[Any, Any]:
    """Model and tokenizer from a training checkpoint: a full model, or a LoRA adapter merged into its base."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (checkpoint / "config.json").is_file() and not (checkpoint / "adapter_config.json").is_file():
        raise ExportError(f"--checkpoint {checkpoint}: neither a model (config.json) nor a LoRA adapter folder")
    torch_dtype = getattr(torch, dtype)
    if (checkpoint / "adapter_config.json").is_file():
        from peft import AutoPeftModelForCausalLM

        model = AutoPeftModelForCausalLM.from_pretrained(checkpoint, dtype=torch_dtype).merge_and_unload()
    else:
        model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch_dtype)
    return model, AutoTokenizer.from_pretrained(checkpoint)


@dataclass
class ExportConfig:
    """Settings for ``python -m training.export``."""

    checkpoint: str = field(default="", metadata={"help": "Checkpoint folder (full model or LoRA adapter)."})
    name: str = field(default="sweetiechat-sft", metadata={"help": "Served model name and folder under model_repo."})
    model_repo: str = field(default="model_repo", metadata={"help": "Folder of model manifests."})
    system_prompt_manifest: str = field(
        default="sweetiechat", metadata={"help": "Manifest whose system prompt, sampling and engine are reused."}
    )
    dtype: Literal["bfloat16", "float16", "float32"] = field(
        default="bfloat16", metadata={"help": "Exported weights dtype."}
    )
    max_model_len: int = field(default=2048, metadata={"help": "Served context length."})
    enforce_eager: bool = field(
        default=False, metadata={"help": "Manifest engine: eager mode (faster start, slower serving)."}
    )


def system_prompt_of(manifest_ref: str, model_repo: Path) -> str:
    """The system prompt of a manifest (name under ``model_repo`` or path)."""
    try:
        manifest = find_manifest(manifest_ref, model_repo)
    except ManifestError as exc:
        raise ExportError(f"system_prompt_manifest {manifest_ref!r}: {exc}") from None
    if not manifest.system_prompt:
        raise ExportError(f"system_prompt_manifest {manifest_ref!r}: the manifest has no system_prompt")
    return manifest.system_prompt


def cli(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""

    config = parse_config(ExportConfig, argv, prog="python -m training.export", description="Export a checkpoint.")
    if not config.checkpoint:
        print("error: --checkpoint is required (a folder written by training.sft)", file=sys.stderr)
        return 2
    model_repo = Path(config.model_repo)
    try:
        prompt = system_prompt_of(config.system_prompt_manifest, model_repo)
        model, tokenizer = load_trained(Path(config.checkpoint))
        folder = export_model(
            model,
            tokenizer,
            name=config.name,
            model_repo=model_repo,
            system_prompt=prompt,
            reference_manifest=config.system_prompt_manifest,
            description=f"exported from {config.checkpoint} by training.export",
            dtype=config.dtype,
            max_model_len=config.max_model_len,
            enforce_eager=config.enforce_eager,
        )
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(cli())
