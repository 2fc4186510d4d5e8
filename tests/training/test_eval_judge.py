"""training.evaluate against a scripted OpenAI-compatible endpoint: failed turns are counted, screened turns left
out, and the LLM judge (ESConv's axes, JSON-schema rubric, pairwise win rate with a seeded order) scores the rest."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.training.fake_llm_server import ScriptedLLM, serve
from training.eval_judge import (
    AXES,
    pairwise_schema,
    parse_pairwise,
    parse_rubric,
    response_format,
    rubric_schema,
)
from training.evaluate import EvalConfig, main

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "training" / "assets" / "samples.jsonl"
TUNED_REPLY = "[Question] What happened after that?"
BASE_REPLY = "I am so sorry to hear that. " * 5


@dataclass
class JudgedLLM(ScriptedLLM):
    """Two served models (``tuned`` writes a tagged question, ``base`` a long untagged reply) and a judge that
    prefers the question on every axis, whichever position it is shown in."""

    off_schema_every: int = 0

    def role_of(self, system: str) -> str:
        return "esconv_judge" if "strict judge of emotional-support" in system else "model"

    def answer(self, body: dict[str, Any], role: str) -> tuple[str, dict[str, Any]]:
        safe = {"level": "none", "categories": [], "action": "none"}
        user = body["messages"][-1]["content"]
        if role == "model":
            if len(user) % 5 == 0:  # the scripted crisis screen: about one seeker turn in five
                return "Please reach out to a crisis line.", {"level": "high", "categories": [], "action": "replace"}
            return (TUNED_REPLY if body["model"] == "tuned" else BASE_REPLY), safe
        judged = len(self.requests_for("esconv_judge"))
        if self.off_schema_every and judged % self.off_schema_every == 0:
            return "Both replies are fine.", safe
        if "Reply A:" in user:
            tuned_first = user.index("What happened after that") < user.index("Reply B:")
            return json.dumps(dict.fromkeys(AXES, "A" if tuned_first else "B")), safe
        return json.dumps(dict.fromkeys(AXES, 5 if "What happened" in user.split("next reply:")[-1] else 2)), safe


def test_schemas_follow_esconvs_axes() -> None:
    rubric = rubric_schema()
    assert list(rubric["properties"]) == ["fluency", "identification", "comforting", "suggestion", "overall"]
    assert rubric["required"] == list(AXES) and rubric["additionalProperties"] is False
    assert rubric["properties"]["comforting"] == {"type": "integer", "minimum": 1, "maximum": 5}
    assert pairwise_schema()["properties"]["overall"] == {"type": "string", "enum": ["A", "B", "tie"]}
    form = response_format("esconv_rubric", rubric)
    assert form == {"type": "json_schema", "json_schema": {"name": "esconv_rubric", "schema": rubric, "strict": True}}
    good = dict.fromkeys(AXES, 3)
    assert parse_rubric(json.dumps(good)) == good
    for bad in ({**good, "fluency": 6}, {**good, "fluency": True}, {**good, "extra": 1}, dict.fromkeys(AXES[:4], 3)):
        assert parse_rubric(json.dumps(bad)) is None
    assert parse_rubric("not json") is None and parse_rubric("[1]") is None
    assert parse_pairwise(json.dumps(dict.fromkeys(AXES, "tie"))) == dict.fromkeys(AXES, "tie")
    assert parse_pairwise(json.dumps(dict.fromkeys(AXES, "C"))) is None


@pytest.mark.slow  # ~10 s: a real HTTP endpoint, ~100 requests
def test_evaluation_counts_failures_and_screened_turns_and_judges_the_rest(tmp_path: Path) -> None:
    llm = JudgedLLM(off_schema_every=7)
    with serve(llm) as url:
        llm.fail_next.extend([500, 503])  # the first two requests fail; with no retries, two turns are lost
        config = EvalConfig(
            models=[f"base={url}@base", f"tuned={url}@tuned"],  # pairwise: every model against the first
            data=[str(SAMPLES)],
            max_turns=24,
            retries=0,
            concurrency=1,
            resamples=100,
            judge="both",
            judge_url=url,
            judge_model="judge",
            out_dir=str(tmp_path),
        )
        base, tuned = main(config)
        judge_requests = llm.requests_for("esconv_judge")
    assert base["failures"] == {"500": 1, "503": 1} and base["errors"] == 2 and tuned["errors"] == 0
    screened = tuned["safety_screened"].get("replace", 0)
    assert screened > 0 and base["safety_screened"] == {"replace": screened}
    assert base["metrics"]["turns"] == 24 - 2 - screened and tuned["metrics"]["turns"] == 24 - screened
    assert tuned["metrics"]["valid_tag_rate"] == 1.0 and tuned["metrics"]["strategy_accuracy"] is not None
    assert base["metrics"]["strategy_accuracy"] is None  # untagged: not scored on strategy, not scored 0

    # Every judge request asks for the JSON schema, strictly.
    forms = {json.dumps(r["response_format"], sort_keys=True) for r in judge_requests}
    assert forms == {
        json.dumps(response_format("esconv_rubric", rubric_schema()), sort_keys=True),
        json.dumps(response_format("esconv_pairwise", pairwise_schema()), sort_keys=True),
    }
    assert all(r["temperature"] == 0 for r in judge_requests)
    rubric_tuned, rubric_base = tuned["judge"]["rubric"], base["judge"]["rubric"]
    assert rubric_tuned["mean"]["overall"] == 5 and rubric_base["mean"]["overall"] == 2
    pairwise = tuned["judge"]["pairwise"]
    assert (pairwise["first"], pairwise["second"]) == ("tuned", "base") and "pairwise" not in base["judge"]
    # The judge always picks the question, shown first or second: a win rate of 1 means the order was undone.
    pair_requests = [r for r in judge_requests if "Reply A:" in r["messages"][-1]["content"]]
    first_is_tuned = ["What happened" in r["messages"][-1]["content"].split("Reply B:")[0] for r in pair_requests]
    assert any(first_is_tuned) and not all(first_is_tuned)
    assert pairwise["win_rate"] == dict.fromkeys(AXES, 1.0)
    failed = sum(rubric_tuned["failed"].values()) + sum(rubric_base["failed"].values())
    failed += sum(pairwise["failed"].values())
    assert failed == len(judge_requests) // 7 and set(pairwise["failed"]) <= {"off_schema"}
    assert pairwise["judged"] + sum(pairwise["failed"].values()) == 24 - 2 - screened
    table = (tmp_path / "comparison.md").read_text()
    assert "majority / chance" in table and "n/a (no tags)" in table and "win rate" in table
    assert json.loads((tmp_path / "tuned.json").read_text())["judge"]["pairwise"]["win_rate"]["overall"] == 1.0
