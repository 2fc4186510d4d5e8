"""SFT config: YAML presets through training.cli, command-line overrides, clear errors for bad values, the TRL
settings they become, base models from folders, manifests or the HF cache (offline), and input hashes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from training.cli import parse_config
from training.sft import (
    SftConfig,
    SftError,
    cpu_precision,
    input_hashes,
    main,
    resolve_base_model,
    sha256_file,
    trl_config,
)

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "training" / "configs"


def parse(*argv: str) -> SftConfig:
    return parse_config(SftConfig, list(argv))


def test_cpu_preset_and_command_line_overrides() -> None:
    preset = parse("--config", str(CONFIGS / "cpu-smol.yaml"))
    assert preset.base_model == "manifest:sweetiechat" and preset.data == ["esconv:train"]
    assert preset.max_steps > 0 and preset.export_name
    config = parse(
        "--config",
        str(CONFIGS / "cpu-smol.yaml"),
        "--learning_rate",
        "1e-3",
        "--max-steps",
        "7",
        "--data",
        "a.jsonl",
        "esconv:train",
        "--resume",
    )
    assert config.learning_rate == 1e-3 and config.max_steps == 7 and config.resume
    assert config.data == ["a.jsonl", "esconv:train"]
    assert config.max_seq_length == preset.max_seq_length  # untouched keys keep the preset's value


def test_gpu_preset_is_bf16_lora_with_gradient_checkpointing() -> None:
    config = parse("--config", str(CONFIGS / "gpu-8b.yaml"))
    assert config.method == "lora" and config.lora_r == 16
    assert config.dtype == "bfloat16" and config.bf16 and config.gradient_checkpointing
    assert config.export_dtype == "bfloat16"
    assert not config.base_model.startswith("manifest:")  # a 7-8B instruct model, not the embedded 135M model
    assert config.eval_data == ["esconv:valid-dev"] and config.save_steps % config.eval_steps == 0


def test_cpu_preset_evaluates_on_valid_dev_and_tracks_the_run() -> None:
    config = parse("--config", str(CONFIGS / "cpu-smol.yaml"))
    assert config.eval_data == ["esconv:valid-dev"] and config.eval_on_start  # never valid-test: the benchmark's
    assert config.report_to == ["tensorboard"] and config.run_name == "cpu-smol"
    assert config.save_steps % config.eval_steps == 0


def test_bf16_is_kept_only_where_the_cpu_computes_it_natively() -> None:
    """The CPU preset asks for bf16 autocast; a CPU without AVX512-BF16/AMX would emulate it, several times slower
    than float32, so it trains in float32 and says so."""
    preset = parse("--config", str(CONFIGS / "cpu-smol.yaml"))
    assert preset.bf16
    kept, note = cpu_precision(preset, cuda=False, flags={"avx2", "avx512f", "avx512_bf16"})
    assert kept == preset and note is None
    avx2_only, note = cpu_precision(preset, cuda=False, flags={"avx2", "fma"})
    assert not avx2_only.bf16 and avx2_only.dtype == "float32"
    assert note is not None and "float32" in note and "bf16: True -> False" in note
    gpu = parse("--config", str(CONFIGS / "gpu-8b.yaml"))
    assert cpu_precision(gpu, cuda=True, flags=set()) == (gpu, None)  # a GPU run is never touched
    on_cpu, note = cpu_precision(gpu, cuda=False, flags={"avx2"})
    assert on_cpu.dtype == "float32" and not on_cpu.bf16 and note is not None and "dtype: bfloat16" in note


def test_trl_settings_pass_the_same_named_fields_through() -> None:
    config = parse("--config", str(CONFIGS / "cpu-smol.yaml"))
    args = trl_config(config, has_eval=True, cuda=False)
    for name in ("learning_rate", "max_steps", "save_steps", "eval_steps", "seed", "bf16", "logging_steps"):
        assert getattr(args, name) == getattr(config, name), name
    assert args.gradient_checkpointing is False  # TRL's own default would be True
    assert args.completion_only_loss and args.max_length == config.max_seq_length and not args.packing
    assert args.eval_strategy == "steps" and args.load_best_model_at_end and args.metric_for_best_model == "eval_loss"
    assert args.report_to == ["tensorboard"] and args.run_name == "cpu-smol" and args.use_cpu
    quiet = trl_config(parse("--report_to", "none", "--output_dir", "runs/x"), has_eval=False, cuda=False)
    assert quiet.eval_strategy == "no" and not quiet.load_best_model_at_end and quiet.report_to == []
    assert quiet.run_name == "x"
    assert not trl_config(config, has_eval=True, cuda=False, resuming=True).eval_on_start  # the checkpoint has it


def test_yaml_numbers_without_a_dot_are_numbers(tmp_path: Path) -> None:
    preset = tmp_path / "p.yaml"
    preset.write_text("learning_rate: 5e-5\nmax_examples: 10\ndata: x.jsonl\nbf16: true\n")
    config = parse("--config", str(preset))
    assert config.learning_rate == 5e-5 and config.max_examples == 10 and config.data == ["x.jsonl"] and config.bf16


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("learning_rat: 1.0e-4\n", "unknown key(s) ['learning_rat']"),
        ("lora_r: many\n", "lora_r: expected an integer, got 'many'"),
        ("method: qlora\n", "method: 'qlora' is not valid"),
        ("bf16: yes please\n", "bf16: expected true or false"),
        ("max_steps: 0\n", "max_steps: must be positive"),
        ("data: [a, b]\ndata_weights: [1]\n", "data_weights: 1 weights for 2 data sources"),
        ("data: [a]\ndata_weights: [-1]\n", "data_weights: must be 0 or more"),
        ("eval_data: [e]\neval_steps: 30\nsave_steps: 40\n", "save_steps (40) must be a multiple of eval_steps (30)"),
        ("load_in_4bit: true\nmethod: full\n", "load_in_4bit: 4-bit base weights train only through an adapter"),
        ("- a\n- b\n", "must contain a YAML mapping"),
    ],
)
def test_bad_preset_values_name_the_key(
    tmp_path: Path, config_error: Callable[..., str], yaml_text: str, message: str
) -> None:
    preset = tmp_path / "bad.yaml"
    preset.write_text(yaml_text)
    assert message in config_error(SftConfig, "--config", str(preset))


def test_bad_command_line_values_are_clear(config_error: Callable[..., str]) -> None:
    assert "--max_steps" in config_error(SftConfig, "--max_steps", "ten")
    assert "invalid choice: 'qlora'" in config_error(SftConfig, "--method", "qlora")
    assert "learning_rate: must be positive" in config_error(SftConfig, "--learning_rate", "0")
    assert "bad.yaml: file not found" in config_error(SftConfig, "--config", "bad.yaml")


def test_missing_base_model_and_data_are_clear(tmp_path: Path) -> None:
    with pytest.raises(SftError, match="no such folder"):
        resolve_base_model(str(tmp_path / "missing"), REPO / "model_repo")
    with pytest.raises(SftError, match=r"no config\.json"):
        resolve_base_model(str(tmp_path), REPO / "model_repo")
    with pytest.raises(SftError, match="not found"):
        resolve_base_model("manifest:no-such-model", REPO / "model_repo")
    with pytest.raises(SftError, match="no training data"):
        main(SftConfig(base_model=str(tmp_path)))


def fake_hf_cache(root: Path, repo_id: str) -> Path:
    """An HF hub cache holding one snapshot of ``repo_id`` (what huggingface-cli download leaves behind)."""
    folder = root / ("models--" + repo_id.replace("/", "--"))
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("0" * 40)
    snapshot = folder / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    return snapshot


def test_hub_ids_resolve_from_the_cache_when_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    snapshot = fake_hf_cache(tmp_path, "org/tiny-instruct")
    base = resolve_base_model("org/tiny-instruct", REPO / "model_repo")
    assert base.folder == snapshot and base.name_or_path == str(snapshot) and base.spec == "org/tiny-instruct"
    with pytest.raises(SftError, match="HF_HUB_OFFLINE is set and the model is not in the HF cache"):
        resolve_base_model("org/not-downloaded", REPO / "model_repo")
    with pytest.raises(SftError, match="not an HF hub id"):
        resolve_base_model("org/name/extra", REPO / "model_repo")


def test_input_hashes_cover_files_and_model_folders(tmp_path: Path) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text("{}\n")
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"weights")
    (model / "notes.bin").write_bytes(b"not a model file")
    hashes = input_hashes([data, model, tmp_path / "missing.jsonl"])
    assert list(hashes) == sorted(map(str, [data, model / "config.json", model / "model.safetensors"]))
    import hashlib

    assert hashes[str(data)] == sha256_file(data) == hashlib.sha256(b"{}\n").hexdigest()
