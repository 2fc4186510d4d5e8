"""training.sft in two processes (torch.distributed on CPU, gloo): both train, only the main process exports and
writes the summary. The same contract holds under `accelerate launch` with the configs in training/configs/accelerate/
on GPUs (not run here: no GPU)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.server_process import REPO_ROOT

SAMPLES = REPO_ROOT / "training" / "assets" / "samples.jsonl"


@pytest.mark.slow
def test_two_processes_train_and_only_the_main_one_exports(tiny_model_repo: Path, tmp_path: Path) -> None:
    repo = tmp_path / "model_repo"
    (repo / "sweetiechat").mkdir(parents=True)
    (repo / "sweetiechat" / "model.yaml").write_text(
        (REPO_ROOT / "model_repo" / "sweetiechat" / "model.yaml").read_text()
    )
    run = tmp_path / "run"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "training.sft",
        "--data", str(SAMPLES), "--base_model", str(tiny_model_repo / "tiny"), "--model_repo", str(repo),
        "--output_dir", str(run), "--max_seq_length", "384", "--max_examples", "16",
        "--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "1", "--max_steps", "2",
        "--save_steps", "2", "--method", "lora", "--report_to", "none",
        "--export_name", "tiny-ddp", "--export_max_model_len", "4096",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count("summary: ") == 1  # one process reports, one writes
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["processes"] == 2 and summary["global_step"] == 2
    assert summary["tokens_seen"] > 2 * 1000  # both processes' batches counted
    assert summary["exported_to"] == str(repo / "tiny-ddp")
    assert sorted(p.name for p in repo.iterdir()) == ["sweetiechat", "tiny-ddp"]  # no half-written staging folders
    assert (repo / "tiny-ddp" / "model.yaml").is_file() and list((repo / "tiny-ddp").glob("*.safetensors"))
