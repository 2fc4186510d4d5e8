"""The shipped seed data: scenarios and sample dialogues are valid, diverse and in the SweetieChat style."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from training.filters import FilterLimits, dialogue_problem
from training.scenarios import DEFAULT_DIR, ScenarioError, load_scenarios
from training.schema import read_jsonl, word_count

SAMPLES = Path(__file__).resolve().parents[2] / "training" / "assets" / "samples.jsonl"
ESCONV_PROBLEMS = {
    "job crisis",
    "ongoing depression",
    "breakup with partner",
    "problems with friends",
    "academic pressure",
    "sleep problems",
    "conflict with parents",
    "issues with children",
    "appearance anxiety",
    "alcohol abuse",
    "procrastination",
    "school bullying",
    "issues with parents",
}
OPEN_DOMAIN = {"work", "study", "family", "romance", "friendship", "health", "grief", "money", "loneliness",
               "identity", "life_changes", "everyday", "positive"}  # fmt: skip


def test_scenarios_are_many_diverse_and_complete() -> None:
    scenarios = load_scenarios()
    assert len(scenarios) >= 150
    categories = Counter(s.category for s in scenarios)
    assert len(categories) >= 12 and set(categories) >= OPEN_DOMAIN
    assert min(categories.values()) >= 8
    assert {s.problem_type for s in scenarios} >= ESCONV_PROBLEMS
    assert all(s.seeker is not None and s.intensity is not None for s in scenarios)
    profiles = [s.seeker for s in scenarios if s.seeker]
    assert len({p.age_group for p in profiles}) == 7
    assert len({p.occupation for p in profiles}) >= 120
    assert len({s.situation for s in scenarios}) == len(scenarios)


def test_scenario_errors_name_file_entry_and_field(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("category: work\nscenarios:\n  - id: a-1\n    problem_type: x\n")
    with pytest.raises(ScenarioError, match=r"a\.yaml:3: scenarios\.0\.emotion: Field required"):
        load_scenarios(tmp_path)
    good = (DEFAULT_DIR / "work.yaml").read_text()
    lines = good.splitlines()
    wrong = next(i for i, line in enumerate(lines) if "age_group:" in line and i > 20)
    lines[wrong] = lines[wrong].replace("age_group:", "agegroup:")  # a misspelt field names its own line
    (tmp_path / "a.yaml").write_text("\n".join(lines) + "\n")
    with pytest.raises(ScenarioError, match=rf"a\.yaml:{wrong + 1}: scenarios\.\d+\.seeker\.agegroup: Extra inputs"):
        load_scenarios(tmp_path)
    (tmp_path / "a.yaml").write_text((DEFAULT_DIR / "work.yaml").read_text())
    (tmp_path / "b.yaml").write_text((DEFAULT_DIR / "work.yaml").read_text())
    with pytest.raises(ScenarioError, match="duplicate id 'work-001'"):
        load_scenarios(tmp_path)


def test_samples_are_valid_varied_and_concise() -> None:
    samples = read_jsonl(SAMPLES)
    assert len(samples) >= 30
    assert len({d.scenario.category for d in samples}) >= 12
    scenario_ids = {s.id for s in load_scenarios()}
    strategies: Counter[str] = Counter()
    for dialogue in samples:
        assert dialogue.source == "sample" and dialogue.scenario.id in scenario_ids
        assert 8 <= len(dialogue.turns) <= 16, dialogue.id
        assert dialogue_problem(dialogue.turns, FilterLimits(min_turns=8)) is None, dialogue.id
        supporter = [t for t in dialogue.turns if t.role == "supporter"]
        assert len({t.strategy for t in supporter}) >= 4, dialogue.id
        for turn in supporter:
            assert word_count(turn.content) < 40, (dialogue.id, turn.content)
            assert "sorry to hear" not in turn.content.lower()
            strategies[turn.strategy or ""] += 1
    assert set(strategies) == set(
        ["Question", "Restatement or Paraphrasing", "Reflection of feelings", "Self-disclosure",
         "Affirmation and Reassurance", "Providing Suggestions", "Information", "Others"]
    )  # fmt: skip
