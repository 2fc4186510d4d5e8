"""One side of ``benchmarks/safety_latency.py``: time the learned screen of the ``app`` package under ROOT.

Run by that benchmark, not by hand::

    python benchmarks/safety_latency_worker.py ROOT CALLS_JSON OUT_JSON PASSES

``ROOT`` is a folder holding an ``app/`` package (this checkout, or a past revision's ``app/`` from ``git
archive``); it goes first on ``sys.path`` before anything of the project is imported, so the screen, its features
and its shipped artefact are all that revision's. ``CALLS_JSON`` maps a set name to ``[[text, [context...]], ...]``.
Per set, one warm-up pass, then PASSES timed passes (as ``safety_bench.py`` times a set); ``OUT_JSON`` gets the wall
and thread-CPU time of every call in microseconds and every verdict (level and categories), never the text.
"""

from __future__ import annotations

import gc
import json
import sys
import time
from pathlib import Path


def main(root: str, calls_path: str, out_path: str, passes: str) -> int:
    sys.path.insert(0, str(Path(root).resolve()))
    from app.chat.safety.classifier import LearnedSafetyScreen  # that revision's screen and artefact

    screen = LearnedSafetyScreen.load()
    sets: dict[str, list[tuple[str, list[str]]]] = json.loads(Path(calls_path).read_text(encoding="utf-8"))
    out: dict[str, dict[str, list[float] | list[str]]] = {}
    for name, calls in sets.items():
        verdicts = []
        for text, context in calls:  # warm-up, and the verdicts
            result = screen.screen(text, context)
            verdicts.append(f"{result.level.value}:{','.join(result.categories)}")
        gc.collect()
        wall: list[float] = []
        cpu: list[float] = []
        for _ in range(int(passes)):
            for text, context in calls:
                w0, c0 = time.perf_counter_ns(), time.thread_time_ns()
                screen.screen(text, context)
                cpu.append((time.thread_time_ns() - c0) / 1000)
                wall.append((time.perf_counter_ns() - w0) / 1000)
        out[name] = {"wall_us": wall, "cpu_us": cpu, "verdicts": verdicts}
    Path(out_path).write_text(json.dumps(out), encoding="utf-8")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(f"usage: {sys.argv[0]} ROOT CALLS_JSON OUT_JSON PASSES (run by benchmarks/safety_latency.py)")
    sys.exit(main(*sys.argv[1:]))
