"""SFT config: YAML presets through training.cli, command-line overrides, clear errors for bad values."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from training.cli import parse_config
from training.sft import SftConfig, SftError, main, resolve_base_model

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
    assert not config.base_model.startswith("manifest:")  # a 7-8B instruct folder, not the embedded 135M model


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
        ("- a\n- b\n", "expected a mapping"),
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
