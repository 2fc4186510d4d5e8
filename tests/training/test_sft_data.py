"""SFT examples on a real tokenizer (the in-code ChatML one): prompt and completion in the one format, what TRL
trains on, context trimming, data sources, mixing weights and the ESConv valid halves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.core.format import chat_messages
from app.core.template import template_ids
from tests.tiny_model import build_tokenizer
from training.schema import Dialogue, read_jsonl
from training.sft_data import (
    SftDataError,
    Target,
    build_examples,
    build_prompt_completion,
    context_messages,
    end_of_turn_ids,
    load_dialogues,
    load_sources,
    mix_targets,
    sample_targets,
    targets_of,
    to_dataset,
)

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "training" / "assets" / "samples.jsonl"
SYSTEM = "You are SweetieChat."


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from transformers import AutoTokenizer

    folder = tmp_path_factory.mktemp("tok")
    build_tokenizer(folder)
    return AutoTokenizer.from_pretrained(folder)


def dialogue(*turns: tuple[str, str, str | None]) -> Dialogue:
    return Dialogue.model_validate(
        {
            "id": "d1",
            "source": "sample",
            "scenario": {"category": "study", "problem_type": "exam", "emotion": "sadness", "situation": "exam"},
            "turns": [
                {"role": role, "content": content, **({"strategy": strategy} if strategy else {})}
                for role, content, strategy in turns
            ],
        }
    )


GREETED = dialogue(
    ("supporter", "Hi, how are you?", "Question"),
    ("seeker", "I feel sad today.", None),
    ("supporter", "What happened?", "Question"),
    ("seeker", "My exam went badly.", None),
    ("supporter", "That sounds hard.", "Reflection of feelings"),
)


def test_prompt_is_what_the_server_sends_and_completion_is_the_tagged_reply_and_its_end(tokenizer: Any) -> None:
    target = Target(GREETED, 4)
    example = build_prompt_completion(tokenizer, target, SYSTEM, 4096, end_of_turn_ids(tokenizer))
    assert example is not None
    # The prompt: the context through the chat template with the generation prompt, earlier replies without tags.
    assert example.prompt_ids == template_ids(tokenizer, chat_messages(context_messages(target), system_prompt=SYSTEM))
    assert tokenizer.decode(example.prompt_ids) == (
        "<|im_start|>system\nYou are SweetieChat.<|im_end|>\n"
        "<|im_start|>assistant\nHi, how are you?<|im_end|>\n"
        "<|im_start|>user\nI feel sad today.<|im_end|>\n"
        "<|im_start|>assistant\nWhat happened?<|im_end|>\n"
        "<|im_start|>user\nMy exam went badly.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    # The completion: "[Strategy] reply" and the end-of-turn token, nothing after it (the template's newline).
    expected = tokenizer("[Reflection of feelings] That sounds hard.<|im_end|>", add_special_tokens=False)["input_ids"]
    assert example.completion_ids == expected
    row = example.row()
    assert row["input_ids"] == example.prompt_ids + expected
    assert row["completion_mask"] == [0] * len(example.prompt_ids) + [1] * len(expected)


@pytest.mark.slow  # builds a tiny model for the trainer (a few seconds; more on a busy machine)
def test_trl_trains_on_the_completion_only(tokenizer: Any, tmp_path: Path) -> None:
    """What SFTTrainer makes of the rows: the same input ids, labels -100 on the prompt, the completion as is."""
    from trl import SFTConfig, SFTTrainer

    from tests.tiny_model import build_tiny_llama

    folder = build_tiny_llama(tmp_path / "tiny")
    examples, _ = build_examples(tokenizer, targets_of([GREETED]), SYSTEM, 4096)
    args = SFTConfig(
        output_dir=str(tmp_path / "run"), completion_only_loss=True, max_length=4096, report_to="none", use_cpu=True
    )
    trainer = SFTTrainer(model=str(folder), args=args, train_dataset=to_dataset(examples), processing_class=tokenizer)
    prepared = list(trainer.train_dataset)
    assert len(prepared) == len(examples) == 2
    for row, example in zip(prepared, examples, strict=True):
        assert row["input_ids"] == example.prompt_ids + example.completion_ids
        assert row["labels"] == [-100] * len(example.prompt_ids) + example.completion_ids


def test_a_greeting_is_context_only_and_every_answer_is_a_target() -> None:
    assert [t.index for t in targets_of([GREETED])] == [2, 4]
    messages = context_messages(Target(GREETED, 2))
    assert [m.role for m in messages] == ["assistant", "user"]
    assert all("[" not in m.content for m in messages)


def test_long_context_drops_whole_oldest_turns_but_keeps_the_system_prompt(tokenizer: Any) -> None:
    target = Target(GREETED, 4)
    end_ids = end_of_turn_ids(tokenizer)
    full = build_prompt_completion(tokenizer, target, SYSTEM, 4096, end_ids)
    assert full is not None
    length = len(full.input_ids)
    assert build_prompt_completion(tokenizer, target, SYSTEM, length, end_ids) == full  # exactly fits
    # Room for the system prompt, the last seeker turn and the target, but not the rest.
    trimmed = build_prompt_completion(tokenizer, target, SYSTEM, length - 1, end_ids)
    assert trimmed is not None and trimmed.dropped_turns > 0
    assert trimmed.completion_ids == full.completion_ids
    text = tokenizer.decode(trimmed.input_ids)
    assert text.startswith("<|im_start|>system\nYou are SweetieChat.<|im_end|>\n<|im_start|>user\n")
    assert "Hi, how are you?" not in text and "My exam went badly." in text
    assert build_prompt_completion(tokenizer, target, SYSTEM, 10, end_ids) is None


def test_build_examples_on_the_bundled_samples_counts_what_it_skips(tokenizer: Any) -> None:
    dialogues = read_jsonl(SAMPLES)
    targets = sample_targets(targets_of(dialogues), 40, seed=0)
    assert targets == sample_targets(targets_of(dialogues), 40, seed=0)  # seeded
    assert targets != sample_targets(targets_of(dialogues), 40, seed=1)
    examples, stats = build_examples(tokenizer, targets, SYSTEM, 384)
    assert stats.targets == 40 and stats.examples == len(examples) == 40 - stats.skipped_too_long
    assert stats.truncated_context > 0  # 384 tokens is shorter than many full contexts
    assert all(len(e.input_ids) <= 384 for e in examples)
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    for example in examples:
        completion = example.completion_ids
        assert tokenizer.decode(completion).startswith("[") and completion[-1] == end and end not in completion[:-1]
    assert sum(stats.strategies.values()) == stats.examples
    assert stats.target_tokens == sum(len(e.completion_ids) for e in examples)


def test_weights_multiply_each_sources_share() -> None:
    dialogues = read_jsonl(SAMPLES)
    first, second = targets_of(dialogues[:10]), targets_of(dialogues[10:])
    mixed = mix_targets([first, second], [2.0, 0.5], seed=0)
    assert mixed == mix_targets([first, second], [2.0, 0.5], seed=0)  # seeded
    counts = {id(t): 0 for t in first + second}
    for target in mixed:
        counts[id(target)] += 1
    assert all(counts[id(t)] == 2 for t in first)  # every turn of the first source twice
    assert sum(counts[id(t)] for t in second) == round(len(second) / 2)  # a seeded half of the second, once
    assert max(counts[id(t)] for t in second) == 1
    assert mix_targets([first, second], [1.0, 0.0], seed=0) != first  # shuffled
    assert sorted(map(id, mix_targets([first, second], [1.0, 0.0], seed=0))) == sorted(map(id, first))
    with pytest.raises(SftDataError, match="one weight per source"):
        mix_targets([first, second], [1.0], seed=0)


def test_missing_data_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SftDataError, match=r"nope\.jsonl.*file not found"):
        load_dialogues([str(tmp_path / "nope.jsonl")])
    with pytest.raises(SftDataError, match="esconv:test"):
        load_dialogues(["esconv:test"])


def test_invalid_records_name_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(SAMPLES.read_text().splitlines()[0].replace('"Question"', '"Hugging"', 1) + "\n")
    with pytest.raises(SftDataError, match=r"bad\.jsonl:1: turns\.1\.strategy"):
        load_dialogues([str(bad)])


def test_duplicate_ids_across_sources_are_rejected() -> None:
    with pytest.raises(SftDataError, match="also in"):
        load_dialogues([str(SAMPLES), str(SAMPLES)])


def test_esconv_shorthand_imports_from_the_shared_folder(esconv_dir: Path) -> None:
    dialogues = load_dialogues(["esconv:valid"])
    assert len(dialogues) == 195 and all(d.source == "esconv" for d in dialogues)
    assert len(targets_of(dialogues)) > 1000
    # valid-dev (eval loss, checkpoint choice) and valid-test (final evaluation) split valid by dialogue.
    dev, test = load_sources(["esconv:valid-dev", "esconv:valid-test"])
    dev_ids, test_ids = {d.id for d in dev.dialogues}, {d.id for d in test.dialogues}
    assert not dev_ids & test_ids and dev_ids | test_ids == {d.id for d in dialogues}
    assert 0.4 < len(dev_ids) / len(dialogues) < 0.6
    assert dev.files == (esconv_dir / "valid.jsonl",) == test.files
