"""SFT examples: label masking on a real tokenizer (the in-code ChatML one), context, trimming, data sources."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.tiny_model import build_tokenizer
from training.schema import Dialogue, read_jsonl
from training.sft_data import (
    IGNORE_INDEX,
    SftDataError,
    Target,
    build_example,
    build_examples,
    context_messages,
    end_of_turn_ids,
    load_dialogues,
    sample_targets,
    targets_of,
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


def unmasked(example: Any) -> list[int]:
    return [label for label in example.labels if label != IGNORE_INDEX]


def test_only_the_tagged_reply_and_its_end_token_are_unmasked(tokenizer: Any) -> None:
    target = Target(GREETED, 4)
    example = build_example(tokenizer, target, SYSTEM, 4096, end_of_turn_ids(tokenizer))
    assert example is not None
    expected = tokenizer("[Reflection of feelings] That sounds hard.<|im_end|>", add_special_tokens=False)["input_ids"]
    assert unmasked(example) == expected
    # The unmasked tokens are one contiguous run, aligned with input_ids, followed only by the template's newline.
    positions = [i for i, label in enumerate(example.labels) if label != IGNORE_INDEX]
    assert positions == list(range(positions[0], positions[0] + len(expected)))
    assert [example.input_ids[i] for i in positions] == expected
    assert tokenizer.decode(example.input_ids[positions[-1] + 1 :]) == "\n"
    # Everything before is the context rendered with the generation prompt: system, then turns without tags.
    context = tokenizer.decode(example.input_ids[: positions[0]])
    assert context == (
        "<|im_start|>system\nYou are SweetieChat.<|im_end|>\n"
        "<|im_start|>assistant\nHi, how are you?<|im_end|>\n"
        "<|im_start|>user\nI feel sad today.<|im_end|>\n"
        "<|im_start|>assistant\nWhat happened?<|im_end|>\n"
        "<|im_start|>user\nMy exam went badly.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert len(example.labels) == len(example.input_ids)


def test_a_greeting_is_context_only_and_every_answer_is_a_target() -> None:
    assert [t.index for t in targets_of([GREETED])] == [2, 4]
    messages = context_messages(Target(GREETED, 2))
    assert [m.role for m in messages] == ["assistant", "user"]
    assert all("[" not in m.content for m in messages)


def test_long_context_drops_whole_oldest_turns_but_keeps_the_system_prompt(tokenizer: Any) -> None:
    target = Target(GREETED, 4)
    end_ids = end_of_turn_ids(tokenizer)
    full = build_example(tokenizer, target, SYSTEM, 4096, end_ids)
    assert full is not None
    # Room for the system prompt, the last seeker turn and the target, but not the rest.
    trimmed = build_example(tokenizer, target, SYSTEM, len(full.input_ids) - 1, end_ids)
    assert trimmed is not None and trimmed.dropped_turns > 0
    assert unmasked(trimmed) == unmasked(full)
    text = tokenizer.decode(trimmed.input_ids)
    assert text.startswith("<|im_start|>system\nYou are SweetieChat.<|im_end|>\n<|im_start|>user\n")
    assert "Hi, how are you?" not in text and "My exam went badly." in text
    assert build_example(tokenizer, target, SYSTEM, 10, end_ids) is None


def test_build_examples_on_the_bundled_samples_counts_what_it_skips(tokenizer: Any) -> None:
    dialogues = read_jsonl(SAMPLES)
    targets = sample_targets(targets_of(dialogues), 40, seed=0)
    assert targets == sample_targets(targets_of(dialogues), 40, seed=0)  # seeded
    assert targets != sample_targets(targets_of(dialogues), 40, seed=1)
    examples, stats = build_examples(tokenizer, targets, SYSTEM, 384)
    assert stats.targets == 40 and stats.examples == len(examples) == 40 - stats.skipped_too_long
    assert stats.truncated_context > 0  # 384 tokens is shorter than many full contexts
    assert all(len(e.input_ids) <= 384 for e in examples)
    for example in examples:
        reply = unmasked(example)
        assert tokenizer.decode(reply).startswith("[") and reply[-1] == tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert sum(stats.strategies.values()) == stats.examples
    assert stats.target_tokens == sum(e.target_tokens for e in examples)


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
