"""benchmarks/gpu_sft_paths.py: every path's command is one that training.sft and accelerate accept as meant, and
the eval dialogues are held out of the train file. (The paths themselves need a GPU.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.gpu_sft_paths import PATHS, raised_errors, sft_command, split_samples
from tests.server_process import REPO_ROOT
from training.cli import parse_config
from training.sft import SftConfig

SAMPLES = REPO_ROOT / "training" / "assets" / "samples.jsonl"


def _ids(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


def test_eval_dialogues_are_held_out_of_training(tmp_path: Path) -> None:
    train, held_out = split_samples(SAMPLES, 6, tmp_path)
    assert len(_ids(held_out)) == 6
    assert not set(_ids(train)) & set(_ids(held_out))
    assert sorted(_ids(train) + _ids(held_out)) == sorted(_ids(SAMPLES))
    with pytest.raises(ValueError, match="eval_dialogues"):
        split_samples(SAMPLES, 0, tmp_path)


@pytest.mark.parametrize("path", PATHS)
def test_each_path_parses_into_the_settings_it_names(path: str, tmp_path: Path) -> None:
    command = sft_command(
        path, base=tmp_path / "base", train=SAMPLES, held_out=SAMPLES, work=tmp_path, steps=30, processes=2
    )
    module = command.index("training.sft")
    config = parse_config(SftConfig, command[module + 1 :])
    assert config.method == "lora" and config.bf16 and config.max_steps == 30
    assert config.eval_data == [str(SAMPLES)] and config.save_steps % config.eval_steps == 0
    assert config.load_in_4bit == ("qlora" in path)
    assert config.gradient_checkpointing == (path != "fsdp")  # FSDP checkpoints activations itself
    launcher = command[:module]
    if path in ("lora", "qlora"):
        assert launcher[1:] == ["-m"]
    else:
        assert "accelerate.commands.launch" in launcher
        config_file = Path(launcher[launcher.index("--config_file") + 1])
        assert config_file.is_file() and config_file.stem in path.replace("ddp_qlora", "ddp")
        assert launcher[launcher.index("--num_processes") + 1] == "2"


def test_a_failed_launch_records_the_raised_error_not_only_the_launcher_traceback() -> None:
    log = (
        "[rank0]:     return torch.embedding(weight, input)\n"
        "[rank0]: RuntimeError: aten.embedding.default got mixed torch.Tensor and DTensor\n"
        "torch.distributed.elastic.multiprocessing.errors.ChildFailedError:\n"
        "  traceback : To enable traceback see: https://pytorch.org/docs/stable/elastic/errors.html\n"
    )
    assert raised_errors(log) == ["RuntimeError: aten.embedding.default got mixed torch.Tensor and DTensor"]
