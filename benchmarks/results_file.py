"""Write a benchmark's results file: ``benchmarks/results/<name>.json`` with where, when and how it was measured.

Every number the README quotes comes from one of these files. Each records the git commit (and whether the tree had
uncommitted changes to tracked files outside ``benchmarks/results/``: a benchmark of several steps writes results
files as it goes, which says nothing about the code it ran), the UTC date, the machine (platform, CPU model, count
and vector extensions, memory), the load average before and after the run, and the exact command.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.core.cpu import cpu_flags, cpu_model, vector_extensions

RESULTS = Path(__file__).resolve().parent / "results"
EXCLUDE_RESULTS = ":(top,exclude)benchmarks/results"
"""Pathspec: results files written by the run itself do not make the tree dirty."""


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, cwd=RESULTS.parent, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip()


def provenance() -> dict[str, Any]:
    """Git SHA, date, machine and load: call it at the start of a run (the load average before it)."""
    memory_gib = None
    if hasattr(os, "sysconf") and "SC_PHYS_PAGES" in os.sysconf_names:
        memory_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    return {
        "git_sha": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no", "--", ":/", EXCLUDE_RESULTS)),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.machine(),
            "cpu_model": cpu_model(),
            "cpus": os.cpu_count(),
            "cpu_extensions": vector_extensions(cpu_flags()),
            "memory_gib": memory_gib,
            "python": platform.python_version(),
        },
        "load_average_before": list(os.getloadavg()),
        "command": " ".join([Path(sys.argv[0]).name if sys.argv[0].endswith(".py") else sys.argv[0], *sys.argv[1:]]),
    }


def write_results(name: str, started: dict[str, Any], results: dict[str, Any]) -> Path:
    """Write ``results`` with the ``started`` provenance (and the load average now) to ``results/<name>.json`` (an
    absolute ``name`` is written where it says; a ``.json`` suffix is not doubled)."""
    path = RESULTS / (name if name.endswith(".json") else f"{name}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {**started, "load_average_after": list(os.getloadavg()), "results": results}
    path.write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    root = RESULTS.parent.parent
    print(f"wrote {path.relative_to(root) if path.is_relative_to(root) else path}")  # NAME may be a path elsewhere
    return path
