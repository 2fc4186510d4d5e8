"""Ordinary-chat false positives of the crisis-risk screens, on ESConv's VALID seeker messages.

ESConv (Liu et al., ACL 2021) is a set of real emotional-support conversations: job stress, breakups, loneliness in
the pandemic, rows with parents; very few crises. Every seeker turn of its valid split (consecutive seeker messages
merged, as ``training/esconv.py`` imports them; 2,210 turns in 195 dialogues) is screened, and the share judged
``high`` (which replaces the reply by default) and ``elevated`` is reported, for the learned and the lexical screen:

* ``alone``: each turn on its own, ``screen(text)``;
* ``context``: each turn with up to ``CONTEXT_MESSAGES`` earlier seeker turns of its dialogue, as a session screens it;
* ``session``: what a session shows, ``screen_conversation`` turn by turn, so a high verdict also holds the next
  turns at elevated (``HIGH_RISK_HOLD_TURNS``).

Each figure has a 95% bootstrap interval over dialogues (turns of one dialogue are not independent). Also reported:
how many of the flagged turns the lexical screen flags too or mention a risk word (``training.safety_data.
RISK_WORDS``): some ESConv turns are real disclosures, and a flag on those is not a false positive.

This is a measurement, never a tuning set: the classifier is trained on ESConv's train split only (and nothing here is
read by training), its thresholds are chosen by cross-validation, and this script prints no message text. ESConv is
CC BY-NC 4.0 and stays outside the repository (``../shared/data/esconv`` or ``$SWEETIE_ESCONV_DIR``); the results
file holds figures only.

How to run (from the repository root; under a minute)::

    python benchmarks/safety_ordinary.py                       # writes benchmarks/results/safety_ordinary.json
    python benchmarks/safety_ordinary.py --model /tmp/rc.joblib --out none
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # allow `python benchmarks/safety_ordinary.py` without installing the package
    sys.path.insert(0, str(ROOT))

from app.chat.safety import LexicalSafetyScreen, RiskLevel, SafetyResult, SafetyScreen  # noqa: E402
from app.chat.safety.gate import CONTEXT_MESSAGES, screen_conversation  # noqa: E402
from app.core.messages import Message  # noqa: E402
from benchmarks.results_file import provenance, write_results  # noqa: E402
from training.cli import parse_config  # noqa: E402
from training.esconv import EsconvError, default_esconv_dir, import_esconv  # noqa: E402
from training.safety_data import mentions_risk  # noqa: E402

TARGETS = {"high": 0.01, "elevated": 0.05}
"""Targets on the ``alone`` figures: share judged high at most 1%, elevated at most 5%."""
MODES = ("alone", "context", "session")


@dataclass
class OrdinaryConfig:
    """Command-line options."""

    esconv_dir: Path | None = field(
        default=None, metadata={"help": "ESConv folder; default $SWEETIE_ESCONV_DIR or ../shared/data/esconv"}
    )
    model: Path | None = field(default=None, metadata={"help": "learned screen's artefact (default: shipped)"})
    resamples: int = field(default=1000, metadata={"help": "bootstrap resamples (over dialogues)"})
    seed: int = field(default=0, metadata={"help": "bootstrap seed"})
    out: str = field(default="safety_ordinary", metadata={"help": "results name under benchmarks/results/; 'none'"})

    def __post_init__(self) -> None:
        if self.resamples < 1:
            raise ValueError("resamples: must be at least 1")


def load_dialogues(esconv_dir: Path | None) -> list[list[str]]:
    """The seeker turns of each ESConv valid dialogue, in order."""
    dialogues, _ = import_esconv(esconv_dir, split="valid")
    return [[turn.content for turn in d.turns if turn.role == "seeker"] for d in dialogues]


def screen_dialogues(screen: SafetyScreen, dialogues: Sequence[Sequence[str]]) -> dict[str, list[list[RiskLevel]]]:
    """Per mode, per dialogue, the level of each seeker turn."""
    out: dict[str, list[list[RiskLevel]]] = {mode: [] for mode in MODES}
    for turns in dialogues:
        out["alone"].append([screen.screen(text).level for text in turns])
        out["context"].append(
            [screen.screen(text, turns[max(0, i - CONTEXT_MESSAGES) : i]).level for i, text in enumerate(turns)]
        )
        earlier: list[Message] = []
        hold = 0
        levels = []
        for text in turns:
            result, hold = screen_conversation(screen, earlier, [Message(role="user", content=text)], hold)
            level = result.level if isinstance(result, SafetyResult) else RiskLevel.NONE
            levels.append(level)
            safety = result.to_dict() if result is not None else None
            earlier += [Message(role="user", content=text, safety=safety), Message(role="assistant", content="ok")]
        out["session"].append(levels)
    return out


def _share(hits: Sequence[Sequence[bool]], rng: np.random.Generator, resamples: int) -> dict[str, Any]:
    """Share of True over all turns, with a 95% bootstrap interval resampling dialogues."""
    per_dialogue = np.array([[sum(h), len(h)] for h in hits], dtype=np.float64)
    total = per_dialogue[:, 1].sum()
    value = float(per_dialogue[:, 0].sum() / total) if total else 0.0
    draws = rng.integers(0, len(per_dialogue), size=(resamples, len(per_dialogue)))
    sums = per_dialogue[draws].sum(axis=1)
    shares = sums[:, 0] / np.maximum(sums[:, 1], 1)
    low, high = np.percentile(shares, [2.5, 97.5])
    return {"value": round(value, 4), "count": int(per_dialogue[:, 0].sum()), "ci95": [round(low, 4), round(high, 4)]}


def figures(
    levels: dict[str, list[list[RiskLevel]]],
    risky: Sequence[Sequence[bool]],
    *,
    resamples: int,
    seed: int,
) -> dict[str, Any]:
    """Per mode: shares high, elevated and flagged (with intervals), and flagged turns that look risky."""
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {}
    for mode, per_dialogue in levels.items():
        high = [[lv is RiskLevel.HIGH for lv in d] for d in per_dialogue]
        elevated = [[lv is RiskLevel.ELEVATED for lv in d] for d in per_dialogue]
        flagged = [[lv is not RiskLevel.NONE for lv in d] for d in per_dialogue]
        flagged_risky = sum(f and r for fd, rd in zip(flagged, risky, strict=True) for f, r in zip(fd, rd, strict=True))
        high_risky = sum(h and r for hd, rd in zip(high, risky, strict=True) for h, r in zip(hd, rd, strict=True))
        out[mode] = {
            "high": _share(high, rng, resamples),
            "elevated": _share(elevated, rng, resamples),
            "flagged": _share(flagged, rng, resamples),
            "high_that_look_risky": high_risky,
            "flagged_that_look_risky": flagged_risky,
        }
    return out


def main(config: OrdinaryConfig) -> int:
    started = provenance()
    try:
        dialogues = load_dialogues(config.esconv_dir)
    except EsconvError as exc:
        folder = config.esconv_dir or default_esconv_dir()
        print(f"error: ESConv valid split not readable under {folder}: {exc}", file=sys.stderr)
        return 2
    from app.chat.safety.classifier import DEFAULT_MODEL_PATH, LearnedSafetyScreen

    lexical = LexicalSafetyScreen()
    model_path = config.model or DEFAULT_MODEL_PATH
    screens: dict[str, SafetyScreen] = {"learned": LearnedSafetyScreen.load(model_path), "lexical": lexical}
    risky = [[lexical.screen(t).flagged or mentions_risk(t) for t in turns] for turns in dialogues]
    turns = sum(len(d) for d in dialogues)
    print(
        f"ESConv valid: {len(dialogues)} dialogues, {turns} seeker turns ({sum(map(sum, risky))} flagged by the "
        "lexical screen or mentioning a risk word)"
    )
    results: dict[str, Any] = {
        "set": {
            "source": "ESConv valid split, seeker turns (consecutive seeker messages merged)",
            "dialogues": len(dialogues),
            "turns": turns,
            "turns_that_look_risky": int(sum(map(sum, risky))),
        },
        "targets_alone": TARGETS,
        "model": str(model_path.relative_to(ROOT) if model_path.is_relative_to(ROOT) else model_path),
        "artefact_sha256": hashlib.sha256(model_path.read_bytes()).hexdigest(),
        "resamples": config.resamples,
        "screens": {},
    }
    print(f"\n{'screen':<9}{'mode':<9}{'high':>33}{'elevated':>33}{'flagged':>33}")
    for name, screen in screens.items():
        report = figures(screen_dialogues(screen, dialogues), risky, resamples=config.resamples, seed=config.seed)
        results["screens"][name] = report
        for mode, row in report.items():
            cells = []
            for key in ("high", "elevated", "flagged"):
                fig = row[key]
                cells.append(f"{fig['value']:.4f} ({fig['count']:>3}) [{fig['ci95'][0]:.3f}, {fig['ci95'][1]:.3f}]")
            print(f"{name:<9}{mode:<9}" + "".join(f"{c:>33}" for c in cells))
    learned = results["screens"]["learned"]["alone"]
    met = {key: learned[key]["value"] <= target for key, target in TARGETS.items()}
    results["targets_met_alone"] = met
    print(
        "\ntargets (learned, alone): "
        + ", ".join(f"{k} <= {TARGETS[k]}: {'PASS' if ok else 'FAIL'}" for k, ok in met.items())
    )
    if config.out.lower() != "none":
        write_results(config.out, started, results)
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_config(OrdinaryConfig, None, __doc__.split("\n")[0], "python benchmarks/safety_ordinary.py")))
