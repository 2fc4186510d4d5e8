"""Export: a servable model_repo/<name>/ folder (weights, tokenizer, model.yaml) with only model.yaml committable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from app.core.manifest import find_manifest, load_manifest
from tests.tiny_model import build_tiny_llama
from training.export import ExportError, export_model

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("base") / "tiny")


def load(folder: Path) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    return model, AutoTokenizer.from_pretrained(folder)


def export(model: Any, tokenizer: Any, repo: Path, name: str = "tiny-sft") -> Path:
    sweetie = load_manifest(REPO / "model_repo" / "sweetiechat" / "model.yaml")
    (repo / "sweetiechat").mkdir(parents=True, exist_ok=True)
    (repo / "sweetiechat" / "model.yaml").write_text((REPO / "model_repo" / "sweetiechat" / "model.yaml").read_text())
    assert sweetie.system_prompt
    return export_model(
        model, tokenizer, name=name, model_repo=repo, system_prompt=sweetie.system_prompt, max_model_len=1024
    )


def test_export_writes_a_servable_folder(tiny: Path, tmp_path: Path) -> None:
    model, tokenizer = load(tiny)
    repo = tmp_path / "model_repo"
    folder = export(model, tokenizer, repo)
    names = {p.name for p in folder.iterdir()}
    assert {"model.yaml", "model.safetensors", "config.json", "tokenizer.json", ".gitignore"} <= names
    assert "<|im_start|>" in (folder / "chat_template.jinja").read_text()

    manifest = find_manifest("tiny-sft", repo)  # what `python -m app --model tiny-sft --model-repo REPO` reads
    reference = load_manifest(REPO / "model_repo" / "sweetiechat" / "model.yaml")
    assert manifest.source == "." and manifest.strategy_mode == "model"
    assert manifest.system_prompt == reference.system_prompt
    assert manifest.sampling == reference.sampling and manifest.sampling.max_tokens < 256
    assert manifest.engine.dtype == "bfloat16" and manifest.engine.max_model_len == 1024

    import torch
    from safetensors.torch import load_file

    weights = load_file(folder / "model.safetensors")
    assert {tensor.dtype for tensor in weights.values()} == {torch.bfloat16}
    original = load(tiny)[0].state_dict()
    for name, tensor in weights.items():
        assert torch.equal(tensor, original[name].to(torch.bfloat16)), name


def test_only_the_manifest_is_committable(tiny: Path, tmp_path: Path) -> None:
    model, tokenizer = load(tiny)
    repo = tmp_path / "checkout" / "model_repo"
    export(model, tokenizer, repo)
    subprocess.run(["git", "init", "-q", str(tmp_path / "checkout")], check=True)
    status = subprocess.run(
        ["git", "-C", str(tmp_path / "checkout"), "status", "--porcelain", "--untracked-files=all"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    listed = sorted(line.split()[-1] for line in status.splitlines())
    assert listed == [
        "model_repo/sweetiechat/model.yaml",
        "model_repo/tiny-sft/.gitignore",
        "model_repo/tiny-sft/model.yaml",
    ]


def test_reexport_replaces_the_folder_and_leaves_no_staging(tiny: Path, tmp_path: Path) -> None:
    model, tokenizer = load(tiny)
    repo = tmp_path / "model_repo"
    folder = export(model, tokenizer, repo)
    (folder / "stale.txt").write_text("from an older export")
    export(model, tokenizer, repo)
    assert not (folder / "stale.txt").exists()
    assert sorted(p.name for p in repo.iterdir()) == ["sweetiechat", "tiny-sft"]


def test_bad_exports_are_refused(tiny: Path, tmp_path: Path) -> None:
    model, tokenizer = load(tiny)
    with pytest.raises(ExportError, match="must not contain '/'"):
        export(model, tokenizer, tmp_path, name="a/b")
    tokenizer.chat_template = None
    with pytest.raises(ExportError, match="no chat template"):
        export(model, tokenizer, tmp_path)


def test_export_cli_merges_a_lora_adapter(tiny: Path, tmp_path: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model

    model, tokenizer = load(tiny)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    for name, parameter in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=0.5)  # a non-zero adapter, so merging changes the weights
    adapter = tmp_path / "checkpoint-1"
    peft_model.save_pretrained(adapter)
    tokenizer.save_pretrained(adapter)
    merged = {k: v.clone() for k, v in peft_model.merge_and_unload().state_dict().items()}

    repo = tmp_path / "model_repo"
    (repo / "sweetiechat").mkdir(parents=True)
    (repo / "sweetiechat" / "model.yaml").write_text((REPO / "model_repo" / "sweetiechat" / "model.yaml").read_text())
    args = ["--checkpoint", str(adapter), "--name", "merged", "--model_repo", str(repo), "--dtype", "float32"]
    result = subprocess.run(
        [sys.executable, "-m", "training.export", *args], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    exported, _ = load(repo / "merged")
    assert not any("lora" in name for name in exported.state_dict())
    q_proj = "model.layers.0.self_attn.q_proj.weight"
    assert torch.allclose(exported.state_dict()[q_proj], merged[q_proj], atol=1e-6)
    assert not torch.allclose(exported.state_dict()[q_proj], load(tiny)[0].state_dict()[q_proj], atol=1e-3)
