"""End to end: SFT of the tiny random Llama on the bundled samples -> checkpoint -> resume -> export -> served by
the real server (``python -m app``) -> a reply through the official openai client, with its strategy tag parsed.

A random 2-layer model cannot learn to generalise in seconds, so it is trained to memorise a seeded subset of eight
supporter turns (100 full-batch steps at a high learning rate); asked for one of those turns through the server,
greedy decoding reproduces ``[Strategy] reply``, and the server (``strategy_mode: model``) moves the tag from the
content into ``message.strategy``. The request carries no system prompt: the server adds the exported manifest's,
which is the one the model was trained with.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from app.core.format import chat_messages
from app.core.strategies import load_catalogue
from tests.server_process import REPO_ROOT, ServerProcess
from training.evaluate import EvalConfig, ModelSpec, evaluate_model
from training.sft import SftConfig, SftError, main
from training.sft_data import context_messages, load_dialogues, mix_targets, targets_of

SAMPLES = REPO_ROOT / "training" / "assets" / "samples.jsonl"


@pytest.mark.slow
def test_sft_resume_export_and_serve(tiny_model_repo: Path, tmp_path: Path) -> None:
    repo = tmp_path / "model_repo"
    (repo / "sweetiechat").mkdir(parents=True)
    reference = (REPO_ROOT / "model_repo" / "sweetiechat" / "model.yaml").read_text()
    (repo / "sweetiechat" / "model.yaml").write_text(reference)
    run = tmp_path / "run"
    config = SftConfig(
        data=[str(SAMPLES)],
        base_model=str(tiny_model_repo / "tiny"),
        model_repo=str(repo),
        output_dir=str(run),
        max_seq_length=384,
        max_examples=8,
        per_device_train_batch_size=8,
        gradient_accumulation_steps=1,
        learning_rate=3e-3,
        lr_scheduler_type="constant",
        warmup_steps=0,
        max_steps=10,
        save_steps=10,
        logging_steps=5,
        seed=0,
        report_to=["none"],
        export_name=None,
        export_max_model_len=4096,  # the longest sample context is over 1,000 tokens of the tiny tokenizer
    )
    first = main(config)
    assert (run / "checkpoint-10").is_dir() and first["global_step"] == 10
    assert first["data"]["examples"] == 8 and first["steps_per_second"] > 0
    with pytest.raises(SftError, match="--resume"):
        main(config)  # refuses to overwrite a run silently

    second = main(dataclasses.replace(config, max_steps=100, resume=True, export_name="tiny-sft"))
    assert second["resumed_from"].endswith("checkpoint-10") and second["global_step"] == 100
    losses = [entry["loss"] for entry in second["loss_history"]]
    assert losses[-1] < 0.25 * first["loss_history"][0]["loss"]
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["exported_to"] == str(repo / "tiny-sft")
    assert "I keep doing sums" not in (run / "train_summary.json").read_text()  # no conversation text

    # A trained turn whose whole context fit in max_seq_length (so training saw exactly what the server renders).
    trained = mix_targets([targets_of(load_dialogues([str(SAMPLES)]))], [1.0], seed=0)[:8]
    target = min(trained, key=lambda t: t.index)
    assert target.index == 1

    import openai

    server = ServerProcess(
        ["--model-repo", str(repo), "--model", "tiny-sft", "--kv-cache-gb", "1"], tmp_path / "server.log"
    ).start()
    try:
        client = openai.OpenAI(base_url=server.base_url, api_key="none", max_retries=0, timeout=120)
        reply = client.chat.completions.create(
            model="tiny-sft",
            messages=chat_messages(context_messages(target), system_prompt=None),  # type: ignore[arg-type]
            temperature=0,
            max_tokens=32,
        )
        # The evaluation path (training.evaluate) against the same server, on the trained turns.
        evaluated = evaluate_model(
            ModelSpec("tiny", server.base_url, None),
            trained,
            EvalConfig(temperature=0, max_tokens=32, concurrency=4, out_dir=str(tmp_path / "eval")),
            load_catalogue(),
        )
    finally:
        server.stop()
    assert evaluated["served_model"] == "tiny-sft" and evaluated["errors"] == 0
    # every trained turn is accounted for: scored, or framed by the server's crisis screen (left out of the metrics;
    # which of these ordinary turns it frames is the screen's business, measured elsewhere)
    screened = sum(evaluated["safety_screened"].values())
    assert evaluated["metrics"]["turns"] + screened == 8 and evaluated["metrics"]["turns"] >= 4
    assert evaluated["metrics"]["strategy_accuracy"] > 0
    message = reply.choices[0].message
    assert isinstance(message.content, str) and reply.usage is not None and reply.usage.completion_tokens > 0
    strategy = (message.model_extra or {}).get("strategy") or getattr(message, "strategy", None)
    assert strategy in load_catalogue().names, f"no strategy parsed from {message.content[:40]!r}"
    assert strategy == target.strategy
    assert message.content.strip() and not message.content.lstrip().startswith("[")


@pytest.mark.slow
def test_eval_split_keeps_the_best_checkpoint_and_the_summary_hashes_every_input(
    tiny_model_repo: Path, tmp_path: Path
) -> None:
    """Eval loss before training and every 2 steps on held-out dialogues; the checkpoint with the lowest eval loss
    survives save_total_limit and is what final/ holds; TensorBoard gets the curves."""
    from safetensors.torch import load_file

    dialogues = SAMPLES.read_text().splitlines()
    train, held_out = tmp_path / "train.jsonl", tmp_path / "held_out.jsonl"
    train.write_text("\n".join(dialogues[:26]) + "\n")
    held_out.write_text("\n".join(dialogues[26:]) + "\n")
    repo = tmp_path / "model_repo"
    (repo / "sweetiechat").mkdir(parents=True)
    (repo / "sweetiechat" / "model.yaml").write_text(
        (REPO_ROOT / "model_repo" / "sweetiechat" / "model.yaml").read_text()
    )
    run = tmp_path / "run"
    config = SftConfig(
        data=[str(train)],
        eval_data=[str(held_out)],
        eval_max_examples=8,
        eval_on_start=True,
        base_model=str(tiny_model_repo / "tiny"),
        model_repo=str(repo),
        output_dir=str(run),
        run_name="tiny-eval",
        max_seq_length=384,
        max_examples=16,
        per_device_train_batch_size=8,
        gradient_accumulation_steps=1,
        learning_rate=3e-3,
        lr_scheduler_type="constant",
        warmup_steps=0,
        max_steps=6,
        eval_steps=2,
        save_steps=2,
        save_total_limit=1,
        logging_steps=2,
        export_name=None,
        export_max_model_len=4096,
    )
    summary = main(config)
    history = summary["eval_history"]
    assert [entry["step"] for entry in history] == [0, 2, 4, 6]
    best = min(history[1:], key=lambda entry: entry["eval_loss"])
    assert summary["best_checkpoint"] == str(run / f"checkpoint-{best['step']}")
    assert summary["best_eval_loss"] == pytest.approx(best["eval_loss"])
    assert Path(summary["best_checkpoint"]).is_dir()  # kept whatever save_total_limit says
    kept = load_file(str(Path(summary["best_checkpoint"]) / "model.safetensors"))
    final = load_file(str(run / "final" / "model.safetensors"))
    assert kept.keys() == final.keys() and all(kept[k].equal(final[k]) for k in kept)
    assert summary["eval_data"]["examples"] == 8 and summary["run_name"] == "tiny-eval"
    assert summary["mix"] == [
        {"source": str(train), "dialogues": 26, "turns": summary["mix"][0]["turns"], "weight": 1.0}
    ]
    import hashlib

    hashes = summary["inputs_sha256"]
    for path in (train, held_out, repo / "sweetiechat" / "model.yaml", tiny_model_repo / "tiny" / "model.safetensors"):
        assert hashes[str(path)] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert list((run / "runs").glob("*/events.out.tfevents.*"))  # TensorBoard, the default report_to
    with pytest.raises(SftError, match="shares 26 dialogue"):
        main(dataclasses.replace(config, output_dir=str(tmp_path / "other"), eval_data=[str(SAMPLES)]))
