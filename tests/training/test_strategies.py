"""The strategy catalogue: ESConv's eight by default, loose name matching, deployment overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core.strategies import CatalogueError, load_catalogue

ESCONV = [
    "Question",
    "Restatement or Paraphrasing",
    "Reflection of feelings",
    "Self-disclosure",
    "Affirmation and Reassurance",
    "Providing Suggestions",
    "Information",
    "Others",
]


def test_default_catalogue_is_esconv_with_definitions_and_examples() -> None:
    catalogue = load_catalogue()
    assert catalogue.names == ESCONV
    for strategy in catalogue.strategies:
        assert len(strategy.definition) > 30 and strategy.example
    described = catalogue.describe()
    assert described.count("\n") == 7
    assert described.startswith("- Question: ")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Question", "Question"),
        ("[question]", "Question"),
        ("  QUESTION.  ", "Question"),
        ("**Question**", "Question"),
        ("Reflection", "Reflection of feelings"),
        ("reflection_of_feelings", "Reflection of feelings"),
        ("Suggestion", "Providing Suggestions"),
        ("[Providing Suggestions]", "Providing Suggestions"),
        ("Restatement", "Restatement or Paraphrasing"),
        ("Restatement/Paraphrasing", "Restatement or Paraphrasing"),
        ("Affirmation", "Affirmation and Reassurance"),
        ("affirmation & reassurance", "Affirmation and Reassurance"),
        ("self disclosure", "Self-disclosure"),
        ("(Self-Disclosure)", "Self-disclosure"),
        ("info", "Information"),
        ("other", "Others"),
        ("Humour", None),
        ("", None),
        ("question everything", None),
    ],
)
def test_canonical_accepts_loose_spellings(text: str, expected: str | None) -> None:
    assert load_catalogue().canonical(text) == expected


def test_get_returns_the_strategy_or_none() -> None:
    catalogue = load_catalogue()
    found = catalogue.get("[reflection]")
    assert found is not None and found.name == "Reflection of feelings"
    assert catalogue.get("Telepathy") is None


def test_extend_adds_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "deploy.yaml"
    path.write_text(
        "strategies:\n"
        "  - name: Humour\n    aliases: [joke]\n    definition: Lighten the mood kindly.\n    example: Ha.\n"
        "  - name: Question\n    definition: Ask one short question, deployment wording.\n"
    )
    catalogue = load_catalogue(path)
    assert catalogue.names == [*ESCONV, "Humour"]
    assert catalogue.canonical("[joke]") == "Humour"
    question = catalogue.get("Question")
    assert question is not None and question.definition.endswith("deployment wording.")


def test_replace_uses_only_the_given_strategies(tmp_path: Path) -> None:
    path = tmp_path / "deploy.yaml"
    path.write_text("mode: replace\nstrategies:\n  - name: Listen\n    definition: Just listen.\n")
    catalogue = load_catalogue(path)
    assert catalogue.names == ["Listen"]
    assert catalogue.canonical("question") is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mode: merge\nstrategies: []\n", "mode: 'merge' is not valid"),
        ("strategies:\n  - name: X\n", "strategies.0.definition: a non-empty string is required for 'X'"),
        ("strategies:\n  - name: X\n    definition: d\n    colour: red\n", "unknown field(s) ['colour']"),
        ("mode: replace\nstrategies: []\n", "the catalogue has no strategies"),
        ("- just a list\n", "expected a mapping"),
        ("strategies: [", "not valid YAML"),
    ],
)
def test_bad_override_files_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "deploy.yaml"
    path.write_text(text)
    with pytest.raises(CatalogueError, match=r"deploy\.yaml") as caught:
        load_catalogue(path)
    assert message in str(caught.value)


def test_missing_override_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match=r"nope\.yaml: strategy catalogue file not found"):
        load_catalogue(tmp_path / "nope.yaml")
