"""SFT data: ServeForEmo dialogues -> prompt-completion examples in the one conversation format.

Each supporter turn that follows a seeker turn becomes one example (a supporter greeting that opens a dialogue is
context only: a served turn always answers a user):

- prompt: exactly what the server sends the engine for that turn, ``template_ids(chat_messages(context,
  system_prompt=...))``: the SweetieChat system prompt, every earlier turn (seeker -> ``user``, supporter ->
  ``assistant`` WITHOUT its tag, as visible text; :mod:`app.core.format`), and the assistant header;
- completion: the tokens of ``[Strategy] reply`` and the template's end-of-turn token (``<|im_end|>`` in ChatML),
  as the template renders them after that prompt; whatever the template puts after the end-of-turn token (a
  newline) is not part of the example.

TRL's ``SFTTrainer`` trains on them as a tokenized prompt-completion dataset (:func:`to_dataset`: ``input_ids`` and
``completion_mask``) with ``completion_only_loss``: the loss covers the completion only. When the rendering is longer
than ``max_seq_length``, whole oldest turns are dropped (as the server trims history) until it fits; a target that
does not fit even with its own seeker turn alone is skipped and counted.

Sources (:func:`load_sources`): ServeForEmo JSONL files, or ESConv from the shared folder on the fly (never copied
into the repository): ``esconv:train``, ``esconv:valid``, ``esconv:all``, and the two halves of ESConv valid,
``esconv:valid-dev`` (for eval loss and checkpoint choice) and ``esconv:valid-test`` (for the final evaluation),
split by a hash of the dialogue id so that choosing a checkpoint never looks at the test turns. Mixing
(:func:`mix_targets`): a source's weight multiplies its share of the training turns (2: each turn twice; 0.5: a
seeded half).

This module imports no torch/transformers: the tokenizer is passed in.
"""

from __future__ import annotations

import hashlib
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

ESCONV_PREFIX = "esconv:"
ESCONV_HALVES = {"valid-dev": 0, "valid-test": 1}
# End-of-turn tokens of common chat templates; the tokenizer's eos token is always included.
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>")


class SftDataError(ValueError):
    """Training data cannot be loaded or rendered; the message names the file or template problem."""


class SftTokenizer(ChatTokenizer, Protocol):
    """The part of an HF tokenizer used here."""

    eos_token_id: Any

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


@dataclass(frozen=True)
class Source:
    """The dialogues of one data spec and the files they were read from (hashed into the run summary)."""

    spec: str
    dialogues: list[Dialogue]
    files: tuple[Path, ...]


@dataclass
class PromptCompletion:
    """One target as token ids: the served prompt and the completion ``[Strategy] reply<end-of-turn>``."""

    prompt_ids: list[int]
    completion_ids: list[int]
    dialogue_id: str
    turn: int
    dropped_turns: int = 0

    @property
    def input_ids(self) -> list[int]:
        return self.prompt_ids + self.completion_ids

    def row(self) -> dict[str, list[int]]:
        """TRL's tokenized prompt-completion form: the loss covers the positions where completion_mask is 1."""
        return {
            "input_ids": self.input_ids,
            "completion_mask": [0] * len(self.prompt_ids) + [1] * len(self.completion_ids),
        }


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


def _esconv_half(dialogue: Dialogue) -> int:
    return hashlib.sha256(dialogue.id.encode()).digest()[0] % 2


def _load_esconv(spec: str, catalogue: StrategyCatalogue) -> Source:
    from training.esconv import SPLITS, EsconvError, default_esconv_dir, import_esconv

    name = spec.removeprefix(ESCONV_PREFIX)
    split = "valid" if name in ESCONV_HALVES else name
    try:
        found, _ = import_esconv(split=split, catalogue=catalogue)
    except EsconvError as exc:
        valid = ", ".join(ESCONV_PREFIX + s for s in (*SPLITS, "all", *ESCONV_HALVES))
        raise SftDataError(f"data {spec!r}: {exc} (ESConv sources: {valid})") from None
    if name in ESCONV_HALVES:
        found = [d for d in found if _esconv_half(d) == ESCONV_HALVES[name]]
    folder = default_esconv_dir()
    files = tuple(folder / f"{s}.jsonl" for s in (SPLITS if split == "all" else (split,)))
    return Source(spec, found, files)


def load_sources(specs: Sequence[str], catalogue: StrategyCatalogue | None = None) -> list[Source]:
    """One :class:`Source` per spec (JSONL path or ``esconv:<split>``); dialogue ids must be unique across them."""
    catalogue = catalogue or load_catalogue()
    sources: list[Source] = []
    seen: dict[str, str] = {}
    for spec in specs:
        if spec.startswith(ESCONV_PREFIX):
            source = _load_esconv(spec, catalogue)
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
            source = Source(spec, found, (path,))
        for dialogue in source.dialogues:
            if dialogue.id in seen:
                raise SftDataError(f"data {spec!r}: dialogue id {dialogue.id!r} is also in {seen[dialogue.id]!r}")
            seen[dialogue.id] = spec
        sources.append(source)
    return sources


def load_dialogues(specs: Sequence[str], catalogue: StrategyCatalogue | None = None) -> list[Dialogue]:
    """Dialogues of every source, in order (see :func:`load_sources`)."""
    return [dialogue for source in load_sources(specs, catalogue) for dialogue in source.dialogues]


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


def mix_targets(groups: Sequence[Sequence[Target]], weights: Sequence[float], seed: int) -> list[Target]:
    """Targets of every group with its weight applied, shuffled: weight 2 repeats each target, 0.5 keeps a seeded
    half, 1.5 keeps all plus a seeded half again. The order is deterministic given ``seed``."""
    if len(groups) != len(weights):
        raise SftDataError(f"{len(weights)} data weights for {len(groups)} data sources; give one weight per source")
    rng = random.Random(seed)
    mixed: list[Target] = []
    for group, weight in zip(groups, weights, strict=True):
        if weight < 0:
            raise SftDataError(f"data weight {weight}: must be 0 or more")
        whole, fraction = divmod(weight, 1.0)
        mixed.extend(list(group) * int(whole))
        mixed.extend(rng.sample(list(group), round(fraction * len(group))))
    rng.shuffle(mixed)
    return mixed


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


def build_prompt_completion(
    tokenizer: SftTokenizer,
    target: Target,
    system_prompt: str | None,
    max_seq_length: int,
    end_ids: set[int],
) -> PromptCompletion | None:
    """The example for one target, or None when it cannot fit in ``max_seq_length`` tokens."""
    messages = chat_messages(context_messages(target), system_prompt=system_prompt)
    answer = {"role": "assistant", "content": tagged_reply(target.strategy, target.reply)}
    dropped = 0
    while True:
        prompt = template_ids(tokenizer, messages, generation_prompt=True)
        full = template_ids(tokenizer, [*messages, answer], generation_prompt=False)
        if full[: len(prompt)] != prompt:
            raise SftDataError(
                "the chat template does not render a conversation as its generation prompt followed by the reply; "
                "the reply tokens cannot be isolated for the loss (use a template without history rewriting)"
            )
        rendered = full[len(prompt) :]
        end = next((i for i, token in enumerate(rendered) if token in end_ids), None)
        if end is None:
            raise SftDataError(
                "the chat template does not close the assistant turn with an end-of-turn token "
                f"(looked for the eos token and {', '.join(END_OF_TURN_TOKENS)}); the model would never learn to stop"
            )
        completion = rendered[: end + 1]
        if len(prompt) + len(completion) <= max_seq_length:
            return PromptCompletion(prompt, completion, target.dialogue.id, target.index, dropped)
        before = len(messages)
        if not _drop_oldest_turn(messages):
            return None
        dropped += before - len(messages)


def build_examples(
    tokenizer: SftTokenizer,
    targets: Sequence[Target],
    system_prompt: str | None,
    max_seq_length: int,
) -> tuple[list[PromptCompletion], BuildStats]:
    """Examples for ``targets`` (in the same order, minus the ones that do not fit) and what happened."""
    end_ids = end_of_turn_ids(tokenizer)
    stats = BuildStats()
    examples = []
    for target in targets:
        stats.targets += 1
        example = build_prompt_completion(tokenizer, target, system_prompt, max_seq_length, end_ids)
        if example is None:
            stats.skipped_too_long += 1
            continue
        examples.append(example)
        stats.examples += 1
        stats.truncated_context += example.dropped_turns > 0
        stats.tokens += len(example.prompt_ids) + len(example.completion_ids)
        stats.target_tokens += len(example.completion_ids)
        stats.strategies[target.strategy] += 1
    return examples, stats


def to_dataset(examples: Sequence[PromptCompletion]) -> Any:
    """A ``datasets.Dataset`` of TRL's tokenized prompt-completion rows (``input_ids``, ``completion_mask``)."""
    from datasets import Dataset

    return Dataset.from_list([example.row() for example in examples])
