"""Soak: the Locust users against a Redis-backed server while Redis restarts mid-run; no committed turn is lost.

During the outage session turns fail fast with 503 (Locust counts those as failures, as it should); every turn the
server confirmed, before or after the restart, must be in the stored session afterwards, at the turn number the
server announced.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import TINY_MODEL
from tests.integration.redis_fixtures import RedisServer
from tests.server_process import REPO_ROOT, ServerProcess
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.redis]


def test_no_committed_turn_lost_across_redis_restart(
    tiny_model_repo: Path, redis_server_factory: Callable[..., RedisServer], tmp_path: Path
) -> None:
    redis_server = redis_server_factory("--appendonly", "yes", "--appendfsync", "always")
    server = ServerProcess(
        ["--model-repo", str(tiny_model_repo), "--model", TINY_MODEL, "--kv-cache-gb", "1"],
        tmp_path / "soak-server.log",
        env={"SWEETIE_REDIS_URL": redis_server.url, "SWEETIE_REDIS_TIMEOUT_S": "0.5"},
    ).start()
    ledger = tmp_path / "ledger.jsonl"
    env = {
        **os.environ,
        "SWEETIE_MODEL": TINY_MODEL,
        "SWEETIE_MAX_TOKENS": "8",
        "SWEETIE_THINK_MIN": "0.05",
        "SWEETIE_THINK_MAX": "0.2",
        "SWEETIE_LEDGER": str(ledger),
    }
    command = [
        sys.executable, "-m", "locust", "-f", "loadtest/locustfile.py", "--headless", "-u", "4", "-r", "4",
        "-t", "10m", "--stop-timeout", "10", "--host", server.root_url, "--only-summary",
    ]  # fmt: skip

    def confirmed() -> int:
        return ledger.read_text().count("\n") if ledger.exists() else 0

    def store_errors() -> float:
        metrics = httpx.get(f"{server.root_url}/metrics").text
        return sum(
            sample.value
            for family in text_string_to_metric_families(metrics)
            for sample in family.samples
            if sample.name == "sweetie_session_store_errors_total"
        )

    locust = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: confirmed() >= 8, timeout=180, what="8 confirmed turns before the outage")
        before = confirmed()
        redis_server.stop()
        wait_until(lambda: store_errors() > 0, timeout=60, what="the server to see the outage")
        redis_server.start()
        wait_until(lambda: confirmed() >= before + 8, timeout=180, what="8 confirmed turns after the restart")
        locust.send_signal(signal.SIGTERM)  # stop the users; Locust finishes in-flight tasks (--stop-timeout)
        output, _ = locust.communicate(timeout=120)
        entries = [json.loads(line) for line in ledger.read_text().splitlines()]
        after = len(entries) - before
        assert before >= 8 and after >= 8, f"turns confirmed before/after the restart: {before}/{after}"
        for sid in {e["session_id"] for e in entries}:
            stored = httpx.get(f"{server.base_url}/sessions/{sid}", timeout=10)
            assert stored.status_code == 200, sid
            users = [m["content"] for m in stored.json()["messages"] if m["role"] == "user"]
            for entry in (e for e in entries if e["session_id"] == sid):
                assert users[entry["turn"] - 1] == entry["message"], (sid, entry)
        assert store_errors() > 0, "the outage should have been seen: " + output.decode()[-2000:]
    finally:
        if locust.poll() is None:
            locust.kill()
        server.stop()
