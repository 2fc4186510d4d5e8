"""The ServeForEmo dialogue record and its JSON-lines files.

One dialogue per line::

    {"id": "roleplay-work-003-n0-s0", "source": "roleplay",
     "scenario": {"id": "work-003", "category": "work", "problem_type": "job crisis", "emotion": "anxiety",
                  "intensity": 4, "situation": "...",
                  "seeker": {"age_group": "25-34", "gender": "woman", "culture": "Lagos, Nigeria",
                             "occupation": "nurse", "personality": "...", "communication_style": "terse (...)",
                             "wants": "..."}},
     "turns": [{"role": "seeker", "content": "..."},
               {"role": "supporter", "content": "...", "strategy": "Question", "rationale": "..."}, ...],
     "generator": {"models": {"seeker": "m", "counselor": "m", "supporter": "m"}, "prompts_version": "roleplay-v2",
                   "seed": 0, "created": "2025-01-01T00:00:00Z"},
     "meta": {}}

Role-play records fill ``meta``: ``sample``, ``end`` (``seeker_end``, ``max_turns`` or ``cut:<reason>``), ``usage`` per
role (calls, prompt/completion tokens, seconds), ``latency_s`` and ``judge`` (scores, per-turn strategy verdicts).
The seeker's ``gender``, ``culture`` and ``communication_style`` are optional (expanded scenarios always have them).

Rules beyond the field types: every supporter turn carries a strategy from the catalogue (seeker turns none);
roles alternate, optionally after one supporter greeting; unknown fields are rejected. Errors name the line and the
field: ``file.jsonl:12: turns.3.strategy: 'Foo' is not a known strategy (valid: ...)``.

How to run (validates files; ``python -m training.data validate`` does the same with a summary)::

    python -m training.schema training/assets/samples.jsonl
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from app.core.strategies import StrategyCatalogue, load_catalogue

Role = Literal["seeker", "supporter"]
AgeGroup = Literal["13-17", "18-24", "25-34", "35-44", "45-54", "55-64", "65+"]
AGE_GROUPS: tuple[str, ...] = ("13-17", "18-24", "25-34", "35-44", "45-54", "55-64", "65+")

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_\-]*$")]
Identifier = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$", max_length=200)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SeekerProfile(_Strict):
    """Who the help seeker is (role-play persona)."""

    age_group: AgeGroup
    gender: Text | None = None
    culture: Text | None = Field(default=None, description="Region and culture, e.g. 'Lagos, Nigeria'.")
    occupation: Text
    personality: Text
    communication_style: Text | None = Field(
        default=None, description="How they write: terse, rambling, guarded, angry, joking, ..."
    )
    wants: Text = Field(description="What the seeker wants from the conversation, e.g. 'to vent', 'a plan'.")


class Scenario(_Strict):
    """The situation a dialogue is about."""

    id: Identifier | None = Field(default=None, description="Seed scenario id; dialogues of one scenario share it.")
    category: Slug = Field(description="Broad area, e.g. work, family, grief, positive.")
    problem_type: Text = Field(description="Finer label, e.g. 'job crisis' (ESConv's problem types fit here).")
    emotion: Text = Field(description="Main emotion, e.g. anxiety, sadness, pride.")
    intensity: int | None = Field(default=None, ge=1, le=5, description="Emotion intensity, 1 (mild) to 5.")
    situation: Text
    seeker: SeekerProfile | None = None


class Turn(_Strict):
    """One utterance; consecutive same-speaker messages are merged into one turn."""

    role: Role
    content: Text
    strategy: str | None = Field(default=None, validate_default=True)
    rationale: Text | None = Field(default=None, description="The strategy counselor's one-line reason.")

    @field_validator("strategy")
    @classmethod
    def _strategy_fits_role(cls, value: str | None, info: ValidationInfo) -> str | None:
        role = info.data.get("role")
        if role == "seeker" and value is not None:
            raise PydanticCustomError(
                "seeker_strategy", "seeker turns carry no strategy (got {value})", {"value": repr(value)}
            )
        if role == "supporter":
            catalogue = _catalogue_from(info)
            if value is None:
                raise PydanticCustomError(
                    "missing_strategy",
                    "supporter turns need a strategy (valid: {valid})",
                    {"valid": ", ".join(catalogue.names)},
                )
            if value not in catalogue:
                raise PydanticCustomError(
                    "unknown_strategy",
                    "{value} is not a known strategy (valid: {valid})",
                    {"value": repr(value), "valid": ", ".join(catalogue.names)},
                )
        return value

    @field_validator("rationale")
    @classmethod
    def _rationale_on_supporter_only(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("role") == "seeker" and value is not None:
            raise PydanticCustomError("seeker_rationale", "seeker turns carry no rationale")
        return value


class GeneratorInfo(_Strict):
    """How a generated dialogue was made."""

    models: dict[str, Text] = Field(description="Model per role, e.g. {'seeker': ..., 'supporter': ...}.")
    prompts_version: Text
    seed: int | None = None
    created: datetime


class Dialogue(_Strict):
    """One ServeForEmo dialogue."""

    id: Identifier
    source: Slug = Field(description="Where it came from: roleplay, esconv, sample, ...")
    scenario: Scenario
    turns: list[Turn] = Field(min_length=2)
    generator: GeneratorInfo | None = None
    meta: dict[str, JsonValue] = Field(default_factory=dict, description="Source-specific extras.")

    @model_validator(mode="after")
    def _roles_alternate(self) -> Dialogue:
        # An optional supporter greeting, then seeker, supporter, seeker, ...
        start = 1 if self.turns[0].role == "supporter" else 0
        for index in range(start, len(self.turns)):
            expected = "seeker" if (index - start) % 2 == 0 else "supporter"
            actual = self.turns[index].role
            if actual != expected:
                raise PydanticCustomError(
                    "roles_alternate",
                    "turns.{index}.role: expected {expected}, got {actual} (seeker and supporter alternate, "
                    "after an optional supporter greeting; merge consecutive messages of one speaker)",
                    {"index": index, "expected": repr(expected), "actual": repr(actual)},
                )
        if not any(turn.role == "seeker" for turn in self.turns):
            raise PydanticCustomError("no_seeker", "turns: a dialogue needs at least one seeker turn")
        return self

    def to_json(self) -> str:
        """One JSONL line (no trailing newline); None fields are left out."""
        return self.model_dump_json(exclude_none=True)


def _catalogue_from(info: ValidationInfo) -> StrategyCatalogue:
    context = info.context
    catalogue = context.get("catalogue") if isinstance(context, dict) else None
    return catalogue if isinstance(catalogue, StrategyCatalogue) else _default_catalogue()


_DEFAULT: list[StrategyCatalogue] = []


def _default_catalogue() -> StrategyCatalogue:
    if not _DEFAULT:
        _DEFAULT.append(load_catalogue())
    return _DEFAULT[0]


class DatasetError(ValueError):
    """A JSONL file holds invalid records. ``errors`` lists every problem as ``file:line: field: message``."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(errors[0] + more)


def format_validation_error(exc: ValidationError, where: str) -> list[str]:
    """One ``where: field.path: message`` line per pydantic error."""
    lines = []
    for error in exc.errors(include_url=False):
        loc = ".".join(str(part) for part in error["loc"])
        message = error["msg"]
        lines.append(f"{where}: {loc}: {message}" if loc else f"{where}: {message}")
    return lines


def validate_dialogue(record: object, catalogue: StrategyCatalogue | None = None) -> Dialogue:
    """Validate one decoded JSON object (raises pydantic's ValidationError)."""
    context = {"catalogue": catalogue} if catalogue is not None else None
    return Dialogue.model_validate(record, context=context)


def check_jsonl(path: str | Path, catalogue: StrategyCatalogue | None = None) -> tuple[list[Dialogue], list[str]]:
    """Every valid dialogue in ``path`` and every problem found (blank lines are skipped; ids must be unique)."""
    path = Path(path)
    dialogues: list[Dialogue] = []
    errors: list[str] = []
    first_seen: dict[str, int] = {}
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            where = f"{path}:{number}"
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                errors.append(f"{where}: not valid JSON: {exc.msg} (column {exc.colno})")
                continue
            try:
                dialogue = validate_dialogue(record, catalogue)
            except ValidationError as exc:
                errors.extend(format_validation_error(exc, where))
                continue
            if dialogue.id in first_seen:
                errors.append(f"{where}: id: duplicate id {dialogue.id!r} (first on line {first_seen[dialogue.id]})")
                continue
            first_seen[dialogue.id] = number
            dialogues.append(dialogue)
    return dialogues, errors


def read_jsonl(path: str | Path, catalogue: StrategyCatalogue | None = None) -> list[Dialogue]:
    """All dialogues in ``path``; raises DatasetError naming line and field of the first problem."""
    dialogues, errors = check_jsonl(path, catalogue)
    if errors:
        raise DatasetError(errors)
    return dialogues


def write_jsonl(path: str | Path, dialogues: Iterable[Dialogue]) -> int:
    """Write dialogues, one per line (creates parent folders, replaces the file); returns how many."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as handle:
        for dialogue in dialogues:
            handle.write(dialogue.to_json() + "\n")
            count += 1
    return count


def repair_jsonl_tail(path: str | Path) -> bool:
    """Cut an incomplete last line (a crash mid-write) off an append-only JSONL file; True if one was cut."""
    path = Path(path)
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return False
    path.write_bytes(data[: data.rfind(b"\n") + 1])
    return True


def word_count(text: str) -> int:
    """Words as whitespace-separated tokens (the unit of the stats table and the length filters)."""
    return len(re.findall(r"\S+", text))


if __name__ == "__main__":
    status = 0
    for name in sys.argv[1:]:
        found, problems = check_jsonl(name)
        for problem in problems:
            print(problem)
        print(f"{name}: {len(found)} valid dialogue(s), {len(problems)} problem(s)")
        status |= bool(problems)
    sys.exit(status)
