"""``python -m training.safety_cascade``: two artefacts trained apart become one cascade artefact the runtime reads,
scoring as its parts did (within the compression), with thresholds chosen by cross-validation."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import pytest

from app.chat.safety.classifier import LearnedSafetyScreen, level_ranks
from training.safety_cascade import CascadeConfig, cli
from training.safety_cascade import main as cascade
from training.safety_classifier import SafetyClassifierConfig
from training.safety_classifier import main as train

TEXTS = [
    "i can't stop thinking about ending it",
    "i have the pills counted out on my desk",
    "我不想活了",
    "see you at lunch tomorrow",
    "this exam is going to kill me lol",
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A logistic-regression run and a hidden-layer run on the same small corpus, each with its --oof_out."""
    root = tmp_path_factory.mktemp("cascade")
    common = dict(limit=300, folds=3, category_c=[4.0], compare_lexical=False, max_iter=500, esconv=False)
    train(SafetyClassifierConfig(out=root / "d" / "rc.joblib", oof_out=root / "d.npz", **common))  # type: ignore[arg-type]
    train(
        SafetyClassifierConfig(
            out=root / "m" / "rc.joblib", oof_out=root / "m.npz", level_model="mlp", hidden=8, min_df=3,
            ordinary_weight=[1.0], **common,  # type: ignore[arg-type]
        )
    )  # fmt: skip
    return {"root": root, "d": root / "d" / "rc.joblib", "m": root / "m" / "rc.joblib"}


@pytest.mark.slow
def test_the_cascade_artefact_scores_as_its_parts_and_raises_only_what_the_first_flags(runs: dict[str, Path]) -> None:
    out = runs["root"] / "cascade" / "rc.joblib"
    report = cascade(
        CascadeConfig(
            first=runs["d"], first_oof=runs["root"] / "d.npz", second=runs["m"], second_oof=runs["root"] / "m.npz",
            out=out,
        )
    )  # fmt: skip
    data = joblib.load(out)
    assert data["level_model"]["coef"].dtype == np.float16 and data["second_level_model"]["w1"].dtype == np.int8
    assert out.stat().st_size < runs["d"].stat().st_size + runs["m"].stat().st_size
    thresholds = report["chosen"]["thresholds"]
    assert 0.5 <= thresholds["second_high"] <= 0.99 and report["cascade"]["cv"]["cost"] == report["chosen"]["cv_cost"]
    card = (out.parent / "DATA_CARD.md").read_text(encoding="utf-8")
    assert "second level model (`python -m training.safety_cascade`" in card and "int8" in card

    combined = LearnedSafetyScreen.load(out).model
    first, second = LearnedSafetyScreen.load(runs["d"]).model, LearnedSafetyScreen.load(runs["m"]).model
    assert combined.second is not None and combined.thresholds.second_high == thresholds["second_high"]
    flagged_seen = unflagged_seen = False
    for text in TEXTS:
        np.testing.assert_allclose(combined.probabilities(text)[0], first.probabilities(text)[0], atol=5e-3)
        np.testing.assert_allclose(combined.second.probabilities(text)[0], second.probabilities(text)[0], atol=2e-2)
        rows, _ = combined.rows(text)
        flagged = bool(level_ranks(rows, combined.thresholds).any())
        expected = second.probabilities(text)[0][2] if flagged else 0.0
        assert rows[0, 3] == pytest.approx(expected, abs=2e-2)  # the second model is scored only when flagged
        flagged_seen |= flagged
        unflagged_seen |= not flagged
    assert flagged_seen and unflagged_seen


@pytest.mark.slow
def test_out_of_fold_files_of_other_items_are_refused_with_the_file_named(runs: dict[str, Path]) -> None:
    other = runs["root"] / "other.npz"
    np.savez(other, **{**dict(np.load(runs["root"] / "d.npz")), "ids": np.array(["another item"] * 3)})
    args = ["--first", str(runs["d"]), "--first_oof", str(other), "--second", str(runs["m"]),
            "--second_oof", str(runs["root"] / "m.npz"), "--out", str(runs["root"] / "x" / "rc.joblib")]  # fmt: skip
    with pytest.raises(SystemExit, match=r"other\.npz: its items differ"):
        cli(args)
    assert not (runs["root"] / "x" / "rc.joblib").exists()
    with pytest.raises(SystemExit, match=r"missing\.npz: out-of-fold file not found"):
        cli([*args[:2], "--first_oof", str(runs["root"] / "missing.npz"), *args[4:]])
