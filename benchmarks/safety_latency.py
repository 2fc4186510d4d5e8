"""Latency of the learned crisis screen at a baseline commit and in this checkout, side by side in one run.

How to run (from the repository root; a minute or two on 2 cores)::

    python benchmarks/safety_latency.py                        # baseline ed33c1b: vocabulary lookups by binary search
    python benchmarks/safety_latency.py --baseline HEAD~1 --rounds 4 --out none

Each side runs in its own worker process (``benchmarks/safety_latency_worker.py``) that imports ``app`` from its
revision's tree: the baseline's ``app/`` is extracted with ``git archive`` into a temporary folder, ``current`` is
this checkout (uncommitted changes included; the results file says whether the tree was dirty). Each side loads its
revision's shipped artefact. The workers take turns, ``--rounds`` times each (baseline, current, then current,
baseline, ...), so a shared machine's drift in speed hits both sides alike. Each worker times every set as
``benchmarks/safety_bench.py`` does (a warm-up pass, then ``--passes`` timed passes), per ``screen(text, context)``
call, wall and thread-CPU time. The sets:

* the dev, test and regression items with their context (the latest message alone, and the window when there is
  context);
* 200 ~1,000-character messages (``long_messages``, ordinary with a risky item in every fourth);
* a 100 KB message (only its last 3,000 characters are screened, whole and in pieces).

Both sides must reach the same verdict (level and categories) on every call when they load the same artefact; the
run reports how many differ. The target is a p99 wall time under 2 ms per call on an idle core (issue 12).
Results: ``benchmarks/results/safety_latency.json`` with the git SHA, date, machine, load and command.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # allow `python benchmarks/safety_latency.py` without installing the package
    sys.path.insert(0, str(ROOT))

from benchmarks.results_file import provenance, write_results  # noqa: E402
from benchmarks.safety_bench import (  # noqa: E402
    TARGET_P99_WALL_US,
    big_message,
    load_set,
    long_messages,
    percentiles,
)
from training.cli import parse_config  # noqa: E402
from training.sft import sha256_file  # noqa: E402

WORKER = Path(__file__).resolve().parent / "safety_latency_worker.py"
ARTEFACT = Path("app/chat/safety/model/risk_classifier.joblib")
SIDES = ("baseline", "current")


@dataclass
class LatencyConfig:
    """Command-line options."""

    baseline: str = field(
        default="ed33c1b", metadata={"help": "git revision to compare against (ed33c1b: binary-search lookups)"}
    )
    rounds: int = field(default=4, metadata={"help": "worker runs per side, alternating"})
    passes: int = field(default=5, metadata={"help": "timed passes over each set per worker run"})
    sets: list[str] = field(
        default_factory=lambda: ["dev", "test", "regression"], metadata={"help": "labelled sets whose items are timed"}
    )
    out: str = field(default="safety_latency", metadata={"help": "results name under benchmarks/results/; 'none'"})

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.passes < 1:
            raise ValueError("rounds, passes: must be at least 1")


def calls_by_set(names: Sequence[str]) -> dict[str, list[tuple[str, list[str]]]]:
    """The timed calls: each set's items with their context, ~1,000-character messages, a 100 KB message."""
    pooled = []
    sets: dict[str, list[tuple[str, list[str]]]] = {}
    for name in names:
        examples = load_set(name)
        sets[f"{name} items"] = [(ex.text, list(ex.context)) for ex in examples]
        pooled.extend(examples)
    sets["~1000-char typical"] = [(t, []) for t in long_messages(pooled, dense=False, seed=7)]
    sets["100 KB message"] = [(big_message(), [])] * 20
    return sets


def extract(revision: str, into: Path) -> str:
    """Write ``app/`` at ``revision`` under ``into``; returns the full commit SHA (SystemExit naming a bad one)."""
    sha = subprocess.run(
        ["git", "rev-parse", "--verify", f"{revision}^{{commit}}"], cwd=ROOT, capture_output=True, text=True
    )
    if sha.returncode != 0:
        raise SystemExit(f"--baseline {revision}: not a commit of this repository ({sha.stderr.strip()})")
    archive = subprocess.run(["git", "archive", sha.stdout.strip(), "app"], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return sha.stdout.strip()


def run_worker(root: Path, calls: Path, out: Path, passes: int) -> dict[str, Any]:
    command = [sys.executable, str(WORKER), str(root), str(calls), str(out), str(passes)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"worker for {root} failed:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return result


def main(config: LatencyConfig) -> int:
    started = provenance()
    sets = calls_by_set(config.sets)
    samples: dict[str, dict[str, dict[str, list[float]]]] = {
        side: {name: {"wall_us": [], "cpu_us": []} for name in sets} for side in SIDES
    }
    verdicts: dict[str, dict[str, list[str]]] = {}
    with tempfile.TemporaryDirectory(prefix="safety-latency-") as tmp:
        folder = Path(tmp)
        baseline_root = folder / "baseline"
        baseline_root.mkdir()
        baseline_sha = extract(config.baseline, baseline_root)
        roots = {"baseline": baseline_root, "current": ROOT}
        calls_file = folder / "calls.json"
        calls_file.write_text(json.dumps(sets, ensure_ascii=False), encoding="utf-8")
        for i in range(config.rounds):
            order = SIDES if i % 2 == 0 else SIDES[::-1]
            for side in order:
                got = run_worker(roots[side], calls_file, folder / f"{side}.json", config.passes)
                for name, timing in got.items():
                    samples[side][name]["wall_us"].extend(timing["wall_us"])
                    samples[side][name]["cpu_us"].extend(timing["cpu_us"])
                    verdicts.setdefault(side, {})[name] = timing["verdicts"]
            print(f"round {i + 1}/{config.rounds} done", flush=True)
        artefacts = {side: sha256_file(roots[side] / ARTEFACT) for side in SIDES}

    same_artefact = artefacts["baseline"] == artefacts["current"]
    report: dict[str, Any] = {}
    print(
        f"\nper screen() call, {config.rounds} worker runs x {config.passes} passes per side; "
        f"baseline {baseline_sha[:7]} vs current tree"
    )
    print(f"{'set':22s} {'calls':>6s}  {'wall p50 / p99 (us): baseline':>30s}  {'current':>15s}  {'p99 ratio':>9s}")
    for name, calls in sets.items():
        row: dict[str, Any] = {"calls_per_round": len(calls)}
        for side in SIDES:
            row[side] = {kind: percentiles(values) for kind, values in samples[side][name].items()}
        b, c = row["baseline"]["wall_us"], row["current"]["wall_us"]
        row["p99_wall_ratio"] = round(c["p99_us"] / b["p99_us"], 3)
        row["current_p99_under_target"] = c["p99_us"] < TARGET_P99_WALL_US
        differ = sum(x != y for x, y in zip(verdicts["baseline"][name], verdicts["current"][name], strict=True))
        row["verdicts_differing"] = differ
        report[name] = row
        print(
            f"{name:22s} {len(calls):6d}  {b['p50_us']:>14.0f} / {b['p99_us']:<14.0f}  "
            f"{c['p50_us']:>6.0f} / {c['p99_us']:<6.0f}  {row['p99_wall_ratio']:>9.2f}"
            + (f"  ({differ} verdicts differ)" if differ else "")
        )
    print(f"target: p99 wall < {TARGET_P99_WALL_US:.0f} us; same artefact on both sides: {same_artefact}")
    results = {
        "baseline": {"revision": config.baseline, "sha": baseline_sha, "artefact_sha256": artefacts["baseline"]},
        "current": {"artefact_sha256": artefacts["current"]},
        "same_artefact": same_artefact,
        "rounds_per_side": config.rounds,
        "passes_per_round": config.passes,
        "target_p99_wall_us": TARGET_P99_WALL_US,
        "sets": report,
    }
    if config.out != "none":
        write_results(config.out, started, results)
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_config(LatencyConfig, None, __doc__.split("\n")[0], "python benchmarks/safety_latency.py")))
