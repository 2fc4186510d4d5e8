"""CI smoke run of loadtest/locustfile.py: 4 users with multi-turn streaming sessions for 30 s against the tiny server.

.venv/bin/python -m pytest tests/loadtest/test_locust_smoke.py
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TINY_MODEL
from tests.server_process import REPO_ROOT, ServerProcess

MAX_TOKENS = 16


def read_stats(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    with path.open(newline="") as handle:
        return {(row["Type"], row["Name"]): row for row in csv.DictReader(handle)}


@pytest.mark.slow
def test_locust_sessions_stream_without_failures(tiny_server: ServerProcess, tmp_path: Path) -> None:
    prefix = tmp_path / "smoke"
    env = {
        **os.environ,
        "SWEETIE_MODEL": TINY_MODEL,
        "SWEETIE_MAX_TOKENS": str(MAX_TOKENS),
        "SWEETIE_THINK_MIN": "0.1",
        "SWEETIE_THINK_MAX": "0.3",
    }
    command = [
        sys.executable, "-m", "locust", "-f", "loadtest/locustfile.py", "--headless",
        "-u", "4", "-r", "4", "-t", "30s", "--stop-timeout", "10",
        "--host", tiny_server.root_url, "--csv", str(prefix), "--only-summary",
    ]  # fmt: skip
    run = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=180)
    output = run.stdout + run.stderr
    assert run.returncode == 0, f"locust exited {run.returncode}:\n{output[-4000:]}"

    stats = read_stats(Path(f"{prefix}_stats.csv"))
    chat = stats[("POST", "/v1/chat/completions")]
    assert int(chat["Failure Count"]) == 0, output[-4000:]
    requests = int(chat["Request Count"])
    assert requests >= 12, f"only {requests} turns in 30 s:\n{output[-2000:]}"
    with Path(f"{prefix}_failures.csv").open() as handle:
        assert len(handle.readlines()) <= 1, "failures recorded"

    # Every user holds 3-6 turn sessions, so most turns are follow-ups in a session.
    first, later = stats[("TTFT", "first turn")], stats[("TTFT", "later turn")]
    ttft_count = int(first["Request Count"]) + int(later["Request Count"])
    assert int(later["Request Count"]) >= int(first["Request Count"]) >= 4
    assert requests * 0.8 <= ttft_count <= requests, "TTFT should be timed for (nearly) every streamed reply"
    for row in (first, later):
        assert 0 < float(row["Median Response Time"]) < 10_000, row

    itl = stats[("ITL", "chat")]
    assert int(itl["Request Count"]) >= ttft_count, "replies of up to 16 tokens stream several chunks each"
    assert 0 <= float(itl["Median Response Time"]) < 2_000, itl

    rate = stats[("TOKENS_PER_S", "chat")]
    assert 0 < float(rate["Average Content Size"]) <= MAX_TOKENS, "completion tokens must respect max_tokens"
    assert float(rate["Median Response Time"]) > 0
