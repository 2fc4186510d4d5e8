"""Inter-token latency under load before and after prompt rendering left the event loop (issue 16, point 3).

Until commit 709ec0d the server rendered the chat template and tokenised the whole session history on its event
loop, once per turn, while every other stream's tokens waited behind it; since then both run in a worker thread and
each stored message keeps its token count. This benchmark runs the server of the commit before (``--before``) and of
that commit (``--after``) under the same multi-turn session load and reports ITL p50/p99 side by side.

Each side runs from its own ``git worktree`` (under ``--work_dir``) with that commit's ``loadtest/compare.py --only
ours --sessions``, so each server is exactly the code of its commit, on this checkout's virtualenv. Both commits
predate ``cpu_dtype``, so the worktrees' manifest is given ``dtype: float32``, the same engine on any CPU (bfloat16 is
emulated on a CPU without AVX512-BF16, where it would bury the difference under a 4x slower decode); everything else,
eager mode included, is each commit's own.
The order is A/B/B/A for ``--rounds`` rounds, so that drift in the machine's load hits both alike.

How to run (from the repository root; ~4 minutes per run on 2 CPU cores)::

    python benchmarks/itl_render.py                    # writes benchmarks/results/itl_render.json
    python benchmarks/itl_render.py --rounds 1 --out none

Reported per side: median and range over runs of ITL p50 and p99, TTFT p50 and output tokens/s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # allow `python benchmarks/itl_render.py` without installing the package
    sys.path.insert(0, str(ROOT))

from benchmarks.results_file import provenance, write_results  # noqa: E402

METRICS = ("itl_p50_ms", "itl_p99_ms", "ttft_p50_ms", "output_tokens_per_s")
MANIFEST = Path("model_repo/sweetiechat/model.yaml")


def worktree(commit: str, work_dir: Path) -> Path:
    """A detached worktree of ``commit`` with the manifest's engine in float32 (see the module docstring)."""
    path = work_dir / commit[:12]
    if not path.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(path), commit], cwd=ROOT, check=True)
    manifest = path / MANIFEST
    text = manifest.read_text()
    if "dtype: bfloat16" in text:
        manifest.write_text(text.replace("dtype: bfloat16", "dtype: float32", 1))
    return path


def run_once(tree: Path, args: argparse.Namespace, log_dir: Path, label: str) -> dict[str, float]:
    """One ``compare --only ours --sessions`` run in ``tree``; its median metrics. A run whose server failed to
    start (compare picks a free port that another process can take before the server binds it) is tried again once.
    """
    for attempt in range(2):
        metrics = _run(tree, args, log_dir, f"{label}-{attempt}" if attempt else label)
        if metrics is not None:
            return metrics
    raise RuntimeError(f"{label}: the server failed twice; logs under {log_dir}")


def _run(tree: Path, args: argparse.Namespace, log_dir: Path, label: str) -> dict[str, float] | None:
    out = log_dir / f"{label}.json"
    command = [
        *(sys.executable, "-m", "loadtest.compare", "--only", "ours", "--sessions", "--turns", str(args.turns)),
        *("--concurrency", str(args.concurrency), "--requests", str(args.requests)),
        *("--max-tokens", str(args.max_tokens), "--repeats", "1", "--no-results", "--json", str(out)),
        *("--log-dir", str(log_dir / label)),
    ]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    env.pop("SWEETIE_REDIS_URL", None)  # the in-process store on both sides
    print(f"[{label}] {' '.join(command[1:])}", flush=True)
    subprocess.run(command, cwd=tree, env=env, check=True)
    summary = json.loads(out.read_text())["summary"]["ours"]
    if summary.get("failed_runs"):
        return None
    return {name: float(summary[name]["median"]) for name in METRICS}


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default="ddf3bdb", help="the commit that renders on the event loop")
    parser.add_argument("--after", default="709ec0d", help="the commit that renders in a worker thread")
    parser.add_argument("--rounds", type=int, default=2, help="A/B/B/A rounds")
    parser.add_argument("--turns", type=int, default=8, help="turns per session (the history grows each turn)")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent sessions")
    parser.add_argument("--requests", type=int, default=96, help="measured turns per run")
    parser.add_argument("--max-tokens", type=int, default=32, help="tokens per reply (ignore_eos)")
    parser.add_argument("--work_dir", type=Path, help="where the worktrees go (default: a temporary folder)")
    parser.add_argument("--out", default="itl_render", help="results file name under benchmarks/results ('none')")
    args = parser.parse_args(argv)

    started = provenance()
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="sweetie-itl-"))
    trees = {"before": worktree(args.before, work_dir), "after": worktree(args.after, work_dir)}
    order = [side for _ in range(args.rounds) for side in ("before", "after", "after", "before")]
    runs: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    try:
        for index, side in enumerate(order):
            runs[side].append(run_once(trees[side], args, work_dir / "logs", f"{index}-{side}"))
    finally:
        for tree in trees.values():
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)
        if not args.work_dir:
            shutil.rmtree(work_dir, ignore_errors=True)

    summary = {side: {name: spread([r[name] for r in results]) for name in METRICS} for side, results in runs.items()}
    print(f"{'':<22}{'before':>24}{'after':>24}")
    for name in METRICS:
        cells = [
            f"{s[name]['median']:.1f} [{s[name]['min']:.1f}-{s[name]['max']:.1f}]"
            for s in (summary["before"], summary["after"])
        ]
        print(f"{name:<22}{cells[0]:>24}{cells[1]:>24}")
    report: dict[str, Any] = {
        "commits": {"before": args.before, "after": args.after},
        "load": {
            "sessions": args.concurrency,
            "turns": args.turns,
            "requests": args.requests,
            "max_tokens": args.max_tokens,
            "ignore_eos": True,
            "engine_dtype": "float32",
        },
        "runs": runs,
        "summary": summary,
    }
    if args.out != "none":
        print(f"wrote {write_results(args.out, started, report)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
