"""The scenario taxonomy, the balanced plan of scenario slots drawn from it, and the coverage table.

``training/assets/taxonomy.yaml`` lists categories (each with problem types, and optionally its own age groups,
emotions and wants) and seeker attributes: age group (teenagers to 65+), gender, region and culture, occupation per
age group, personality, communication style (terse, rambling, guarded, angry, joking, ...) and what the seeker wants.

:func:`plan` turns it into ``count`` slots, one per scenario to write. Categories take turns (each round in a fresh
seeded order), problem types take turns within their category, and every attribute is drawn from its own shuffled
deck that is refilled only when empty: each value is used equally often (within one count) over the whole plan,
occupations within their age group. The plan depends only on the taxonomy, ``count`` and ``seed``.

:func:`coverage` and :func:`format_coverage` count scenarios per value of each dimension, for the table printed
after an expansion (``python -m training.scenarios coverage FILE`` prints it for any scenario file).
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from training.schema import AgeGroup, Scenario, SeekerProfile, Slug, Text
from training.yamlfile import error_lines, load_yaml

DEFAULT_TAXONOMY = Path(__file__).resolve().parent / "assets" / "taxonomy.yaml"

Values = Annotated[list[Text], Field(min_length=1)]
T = TypeVar("T")


class TaxonomyError(ValueError):
    """A taxonomy file is malformed; the message names the file, the line and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _no_repeats(values: list[T] | None) -> list[T] | None:
    repeated = sorted({str(v) for v in values or () if (values or []).count(v) > 1})
    if repeated:
        raise ValueError(f"repeated value(s) {repeated}")
    return values


class CategorySpec(_Strict):
    """One category: its problem types and optional overrides of the global lists."""

    problem_types: Values
    age_groups: list[AgeGroup] | None = Field(default=None, min_length=1)
    emotions: Values | None = None
    wants: Values | None = None

    _unique = field_validator("problem_types", "age_groups", "emotions", "wants")(_no_repeats)


class SeekerSpec(_Strict):
    """Seeker attributes; every list is used in balance."""

    age_groups: Annotated[list[AgeGroup], Field(min_length=1)]
    genders: Values
    cultures: Values
    occupations: dict[AgeGroup, Values]
    personalities: Values
    communication_styles: Values
    wants: Values

    _unique = field_validator("age_groups", "genders", "cultures", "personalities", "communication_styles", "wants")(
        _no_repeats
    )

    @field_validator("occupations")
    @classmethod
    def _every_age_has_occupations(cls, value: dict[str, list[str]], info: ValidationInfo) -> dict[str, list[str]]:
        missing = [age for age in info.data.get("age_groups", ()) if age not in value]
        if missing:
            raise ValueError(f"no occupations for age group(s) {missing}")
        for occupations in value.values():
            _no_repeats(occupations)
        return value


class Taxonomy(_Strict):
    """Categories x problem types x seeker attributes."""

    version: int = 1
    emotions: Values
    intensities: Annotated[list[Annotated[int, Field(ge=1, le=5)]], Field(min_length=1)] = [1, 2, 3, 4, 5]
    seeker: SeekerSpec
    categories: Annotated[dict[Slug, CategorySpec], Field(min_length=1)]

    _unique = field_validator("emotions", "intensities")(_no_repeats)

    @field_validator("categories")
    @classmethod
    def _category_ages_are_known(cls, value: dict[str, CategorySpec], info: ValidationInfo) -> dict[str, CategorySpec]:
        seeker = info.data.get("seeker")
        known = set(seeker.age_groups) if isinstance(seeker, SeekerSpec) else set()
        for name, spec in value.items():
            unknown = sorted(set(spec.age_groups or ()) - known)
            if unknown and known:
                raise ValueError(f"{name}.age_groups: {unknown} not in seeker.age_groups")
        return value

    def combinations(self) -> int:
        """How many distinct slots the taxonomy allows (before the LLM writes anything)."""
        seeker = self.seeker
        total = 0
        for spec in self.categories.values():
            ages = spec.age_groups or seeker.age_groups
            per_age = sum(len(seeker.occupations[age]) for age in ages)
            total += (
                len(spec.problem_types)
                * per_age
                * len(spec.emotions or self.emotions)
                * len(spec.wants or seeker.wants)
                * len(self.intensities)
                * len(seeker.genders)
                * len(seeker.cultures)
                * len(seeker.personalities)
                * len(seeker.communication_styles)
            )
        return total


def load_taxonomy(path: str | Path = DEFAULT_TAXONOMY) -> Taxonomy:
    """The taxonomy at ``path``; TaxonomyError naming file, line and field when it is wrong."""
    path = Path(path)
    try:
        raw, lines = load_yaml(path)
    except FileNotFoundError:
        raise TaxonomyError(f"{path}: taxonomy file not found") from None
    except yaml.YAMLError as exc:
        raise TaxonomyError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise TaxonomyError(f"{path}:1: expected a mapping with 'categories' and 'seeker'")
    try:
        return Taxonomy.model_validate(raw)
    except ValidationError as exc:
        raise TaxonomyError("\n".join(error_lines(exc.errors(include_url=False), path, lines))) from None


@dataclass(frozen=True)
class Slot:
    """One scenario to write: everything but the situation text, which the LLM writes."""

    index: int
    category: str
    problem_type: str
    emotion: str
    intensity: int
    age_group: str
    gender: str
    culture: str
    occupation: str
    personality: str
    communication_style: str
    wants: str

    def scenario(self, scenario_id: str, situation: str) -> Scenario:
        """The slot with its situation as a validated Scenario (raises pydantic's ValidationError)."""
        values = asdict(self)
        return Scenario.model_validate(
            {
                "id": scenario_id,
                "category": self.category,
                "problem_type": self.problem_type,
                "emotion": self.emotion,
                "intensity": self.intensity,
                "situation": situation,
                "seeker": {name: values[name] for name in SeekerProfile.model_fields if name in values},
            }
        )


class _Decks:
    """Shuffled decks of values, one per key, refilled (reshuffled) only when empty."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.decks: dict[str, list[Any]] = {}

    def draw(self, key: str, values: Sequence[T], allowed: Sequence[T] | None = None) -> T:
        """The next value of the deck ``key``; with ``allowed``, the next allowed one (others stay in the deck)."""
        deck = self.decks.setdefault(key, [])
        while True:
            for position in range(len(deck) - 1, -1, -1):
                if allowed is None or deck[position] in allowed:
                    value: T = deck.pop(position)
                    return value
            fresh = list(values)
            self.rng.shuffle(fresh)
            deck[:0] = fresh  # a new round goes under what is left of the old one


def plan(taxonomy: Taxonomy, count: int, seed: int = 0) -> list[Slot]:
    """``count`` slots balanced over the taxonomy (deterministic for a seed)."""
    return list(itertools.islice(iter_plan(taxonomy, seed), count))


def iter_plan(taxonomy: Taxonomy, seed: int = 0) -> Iterator[Slot]:
    """The endless plan of a seed: its first ``count`` slots are ``plan(taxonomy, count, seed)``, and the slots after
    them continue every deck (``expand`` takes replacements for given-up slots from there)."""
    rng = random.Random(seed)
    decks = _Decks(rng)
    seeker = taxonomy.seeker
    names = sorted(taxonomy.categories)
    order: list[str] = []
    for index in itertools.count():
        if not order:
            order = names[:]
            rng.shuffle(order)
        category = order.pop()
        spec = taxonomy.categories[category]
        age = decks.draw("age", seeker.age_groups, spec.age_groups)
        yield Slot(
            index=index,
            category=category,
            problem_type=decks.draw(f"problem:{category}", spec.problem_types),
            emotion=decks.draw(
                f"emotion:{category}" if spec.emotions else "emotion", spec.emotions or taxonomy.emotions
            ),
            intensity=decks.draw("intensity", taxonomy.intensities),
            age_group=age,
            gender=decks.draw("gender", seeker.genders),
            culture=decks.draw("culture", seeker.cultures),
            occupation=decks.draw(f"occupation:{age}", seeker.occupations[age]),
            personality=decks.draw("personality", seeker.personalities),
            communication_style=decks.draw("style", seeker.communication_styles),
            wants=decks.draw(f"wants:{category}" if spec.wants else "wants", spec.wants or seeker.wants),
        )


DIMENSIONS = (
    "category",
    "problem_type",
    "emotion",
    "intensity",
    "age_group",
    "gender",
    "culture",
    "occupation",
    "personality",
    "communication_style",
    "wants",
)
# Dimensions with many values get one summary line in the table instead of a row per value.
SUMMARISED = ("problem_type", "occupation", "emotion")


def _value(scenario: Scenario, dimension: str) -> str | None:
    if dimension in Scenario.model_fields:
        value = getattr(scenario, dimension)
    else:
        value = getattr(scenario.seeker, dimension, None) if scenario.seeker else None
    return None if value is None else str(value)


def coverage(scenarios: Sequence[Scenario]) -> dict[str, Counter[str]]:
    """Scenarios per value of each dimension (scenarios without a value are not counted)."""
    table: dict[str, Counter[str]] = {dimension: Counter() for dimension in DIMENSIONS}
    for scenario in scenarios:
        for dimension in DIMENSIONS:
            value = _value(scenario, dimension)
            if value is not None:
                table[dimension][value] += 1
    return table


def expected_values(taxonomy: Taxonomy) -> dict[str, set[str]]:
    """Every value the taxonomy offers, per dimension (to show values a set of scenarios never uses)."""
    seeker = taxonomy.seeker
    specs = taxonomy.categories.values()
    return {
        "category": set(taxonomy.categories),
        "problem_type": {p for spec in specs for p in spec.problem_types},
        "emotion": {e for spec in specs for e in (spec.emotions or taxonomy.emotions)},
        "intensity": {str(i) for i in taxonomy.intensities},
        "age_group": set(seeker.age_groups),
        "gender": set(seeker.genders),
        "culture": set(seeker.cultures),
        "occupation": {o for age in seeker.age_groups for o in seeker.occupations[age]},
        "personality": set(seeker.personalities),
        "communication_style": set(seeker.communication_styles),
        "wants": {w for spec in specs for w in (spec.wants or seeker.wants)},
    }


def coverage_summary(table: dict[str, Counter[str]], taxonomy: Taxonomy | None = None) -> dict[str, Any]:
    """Per dimension: values used, min and max count, and (with a taxonomy) the values never used."""
    expected = expected_values(taxonomy) if taxonomy else {}
    summary: dict[str, Any] = {}
    for dimension, counts in table.items():
        entry: dict[str, Any] = {"values": len(counts), "min": min(counts.values(), default=0)}
        entry["max"] = max(counts.values(), default=0)
        if dimension in expected:
            entry["missing"] = sorted(expected[dimension] - set(counts))
        entry["counts"] = dict(counts.most_common())
        summary[dimension] = entry
    return summary


def format_coverage(table: dict[str, Counter[str]], taxonomy: Taxonomy | None = None) -> str:
    """The coverage table: a row per value (a summary line for the long dimensions), share of all scenarios."""
    total = max((sum(counts.values()) for counts in table.values()), default=0) or 1
    summary = coverage_summary(table, taxonomy)
    lines = [f"{'dimension':<20} {'value':<46} {'count':>6} {'share':>6}"]
    for dimension, counts in table.items():
        entry = summary[dimension]
        missing = f", {len(entry['missing'])} never used" if entry.get("missing") else ""
        if dimension in SUMMARISED:
            lines.append(f"{dimension:<20} {entry['values']} values, {entry['min']}-{entry['max']} each{missing}")
            continue
        for value, count in sorted(counts.items()):
            label = value if len(value) <= 46 else value[:43] + "..."
            lines.append(f"{dimension:<20} {label:<46} {count:>6} {100 * count / total:5.1f}%")
        if missing:
            lines.append(f"{dimension:<20} never used: {', '.join(entry['missing'])}")
    return "\n".join(lines)
