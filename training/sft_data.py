"""SFT examples from ServeForEmo dialogues: one example per supporter turn, loss on the reply only.

Each supporter turn that follows a seeker turn becomes one example: the SweetieChat system prompt, then every
earlier turn (seeker -> ``user``, supporter -> ``assistant``), then the target ``[Strategy] reply`` as the next
assistant message, all rendered with the base model's own chat template, in the one conversation format that the
server uses too (:mod:`app.core.format`: earlier supporter turns WITHOUT tags, as their visible text). A supporter
greeting that opens a dialogue is context only (a served turn always answers a user).

Labels are -100 everywhere except the target: the tokens of ``[Strategy] reply`` and the template's end-of-turn
token (``<|im_end|>`` in ChatML); whatever the template puts after it (a newline) stays masked. When the rendering is
longer than ``max_seq_length``, whole oldest turns are dropped (as the server trims history) until it fits; a target
that does not fit even after its own seeker turn alone is skipped and counted.

Inputs (``load_dialogues``): ServeForEmo JSONL files, or ``esconv:train`` / ``esconv:valid`` / ``esconv:all`` to
import ESConv from the shared folder on the fly (never copied into the repository).

This module imports no torch/transformers: the tokenizer is passed in.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from app.core.format import chat_messages, tagged_reply
from app.core.messages import Message
from app.core.strategies import StrategyCatalogue, load_catalogue
from app.core.template import ChatTokenizer, template_ids
from training.schema import Dialogue, check_jsonl

IGNORE_INDEX = -100
ESCONV_PREFIX = "esconv:"
# End-of-turn tokens of common chat templates; the tokenizer's eos token is always included.
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>")


class SftDataError(ValueError):
    """Training data cannot be loaded or rendered; the message names the file or template problem."""


class SftTokenizer(ChatTokenizer, Protocol):
    """The part of an HF tokenizer used here."""

    eos_token_id: Any

    def convert_tokens_to_ids(self, tokens: Any) -> Any: ...

    def get_vocab(self) -> dict[str, int]: ...


@dataclass(frozen=True)
class Target:
    """One supporter turn to predict: ``dialogue.turns[index]`` from ``dialogue.turns[:index]``."""

    dialogue: Dialogue
    index: int

    @property
    def strategy(self) -> str:
        return self.dialogue.turns[self.index].strategy or ""

    @property
    def reply(self) -> str:
        return self.dialogue.turns[self.index].content


@dataclass
class Example:
    """Token ids and labels of one target (labels are IGNORE_INDEX outside ``[Strategy] reply<end>``)."""

    input_ids: list[int]
    labels: list[int]
    dialogue_id: str
    turn: int
    dropped_turns: int = 0

    @property
    def target_tokens(self) -> int:
        return sum(label != IGNORE_INDEX for label in self.labels)


@dataclass
class BuildStats:
    """What ``build_examples`` did; no conversation text."""

    targets: int = 0
    examples: int = 0
    skipped_too_long: int = 0
    truncated_context: int = 0
    tokens: int = 0
    target_tokens: int = 0
    strategies: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "targets": self.targets,
            "examples": self.examples,
            "skipped_too_long": self.skipped_too_long,
            "truncated_context": self.truncated_context,
            "tokens": self.tokens,
            "target_tokens": self.target_tokens,
            "strategies": dict(self.strategies.most_common()),
        }


def load_dialogues(specs: Sequence[str], catalogue: StrategyCatalogue | None = None) -> list[Dialogue]:
    """Dialogues from JSONL paths and ``esconv:<split>`` sources, in order; ids must be unique across sources."""
    from training.esconv import EsconvError, import_esconv

    catalogue = catalogue or load_catalogue()
    dialogues: list[Dialogue] = []
    seen: dict[str, str] = {}
    for spec in specs:
        if spec.startswith(ESCONV_PREFIX):
            try:
                found, _ = import_esconv(split=spec.removeprefix(ESCONV_PREFIX), catalogue=catalogue)
            except EsconvError as exc:
                raise SftDataError(f"data {spec!r}: {exc}") from None
        else:
            path = Path(spec)
            if not path.is_file():
                raise SftDataError(
                    f"data {spec!r}: file not found (give ServeForEmo JSONL paths, or esconv:train / esconv:valid)"
                )
            found, problems = check_jsonl(path, catalogue)
            if problems:
                more = f" (and {len(problems) - 1} more; run python -m training.data validate)"
                raise SftDataError(problems[0] + (more if len(problems) > 1 else ""))
        for dialogue in found:
            if dialogue.id in seen:
                raise SftDataError(f"data {spec!r}: dialogue id {dialogue.id!r} is also in {seen[dialogue.id]!r}")
            seen[dialogue.id] = spec
        dialogues.extend(found)
    return dialogues


def targets_of(dialogues: Sequence[Dialogue]) -> list[Target]:
    """Every supporter turn that answers a seeker turn, in order."""
    return [
        Target(dialogue, index)
        for dialogue in dialogues
        for index, turn in enumerate(dialogue.turns)
        if turn.role == "supporter" and index > 0 and dialogue.turns[index - 1].role == "seeker"
    ]


def sample_targets(targets: Sequence[Target], limit: int | None, seed: int) -> list[Target]:
    """A deterministic random subset of ``limit`` targets (all of them, shuffled, when limit is None)."""
    chosen = list(targets)
    random.Random(seed).shuffle(chosen)
    return chosen if limit is None else chosen[:limit]


def context_messages(target: Target) -> list[Message]:
    """The conversation before the target: seeker turns as ``user``, supporter turns as ``assistant``."""
    return [
        Message("user" if turn.role == "seeker" else "assistant", turn.content)
        for turn in target.dialogue.turns[: target.index]
    ]


def end_of_turn_ids(tokenizer: SftTokenizer) -> set[int]:
    """Token ids that close an assistant turn: the eos token and known end-of-turn tokens in the vocabulary."""
    vocab = tokenizer.get_vocab()
    ids = {vocab[token] for token in END_OF_TURN_TOKENS if token in vocab}
    eos = tokenizer.eos_token_id
    if isinstance(eos, int):
        ids.add(eos)
    elif isinstance(eos, list):
        ids.update(int(e) for e in eos)
    if not ids:
        raise SftDataError("the tokenizer has no eos token and none of the known end-of-turn tokens")
    return ids


def _drop_oldest_turn(messages: list[dict[str, str]]) -> bool:
    """Remove the oldest non-system message(s) so the first turn is a user message; False when none can go."""
    start = 1 if messages and messages[0]["role"] == "system" else 0
    if len(messages) - start <= 1:  # keep at least the seeker message the target answers
        return False
    del messages[start]
    while len(messages) - start > 1 and messages[start]["role"] != "user":
        del messages[start]
    return True


def build_example(
    tokenizer: SftTokenizer,
    target: Target,
    system_prompt: str | None,
    max_seq_length: int,
    end_ids: set[int],
) -> Example | None:
    """The example for one target, or None when it cannot fit in ``max_seq_length`` tokens."""
    messages = chat_messages(context_messages(target), system_prompt=system_prompt)
    answer = {"role": "assistant", "content": tagged_reply(target.strategy, target.reply)}
    dropped = 0
    while True:
        prefix = template_ids(tokenizer, messages, generation_prompt=True)
        full = template_ids(tokenizer, [*messages, answer], generation_prompt=False)
        if len(full) <= max_seq_length:
            break
        before = len(messages)
        if not _drop_oldest_turn(messages):
            return None
        dropped += before - len(messages)
    if full[: len(prefix)] != prefix:
        raise SftDataError(
            "the chat template does not render a conversation as its generation prompt followed by the reply; "
            "the reply tokens cannot be isolated for the loss mask (use a template without history rewriting)"
        )
    completion = full[len(prefix) :]
    end = next((i for i, token in enumerate(completion) if token in end_ids), None)
    if end is None:
        raise SftDataError(
            "the chat template does not close the assistant turn with an end-of-turn token "
            f"(looked for the eos token and {', '.join(END_OF_TURN_TOKENS)}); the model would never learn to stop"
        )
    keep = len(prefix) + end + 1
    labels = [IGNORE_INDEX] * len(prefix) + full[len(prefix) : keep] + [IGNORE_INDEX] * (len(full) - keep)
    return Example(full, labels, target.dialogue.id, target.index, dropped)


def build_examples(
    tokenizer: SftTokenizer,
    targets: Sequence[Target],
    system_prompt: str | None,
    max_seq_length: int,
) -> tuple[list[Example], BuildStats]:
    """Examples for ``targets`` (in the same order, minus the ones that do not fit) and what happened."""
    end_ids = end_of_turn_ids(tokenizer)
    stats = BuildStats()
    examples = []
    for target in targets:
        stats.targets += 1
        example = build_example(tokenizer, target, system_prompt, max_seq_length, end_ids)
        if example is None:
            stats.skipped_too_long += 1
            continue
        examples.append(example)
        stats.examples += 1
        stats.truncated_context += example.dropped_turns > 0
        stats.tokens += len(example.input_ids)
        stats.target_tokens += example.target_tokens
        stats.strategies[target.strategy] += 1
    return examples, stats
