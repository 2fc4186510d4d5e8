"""Graceful drain on SIGTERM, against the real server process."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest

from tests.conftest import TINY_MODEL
from tests.server_process import ServerProcess
from tests.waiting import wait_until

pytestmark = pytest.mark.slow


def test_sigterm_drains_in_flight_streams_then_exits_0(tiny_model_repo: Path, tmp_path: Path) -> None:
    """SIGTERM to the server process: the in-flight stream finishes normally and the server exits 0."""
    server = ServerProcess(
        ["--model-repo", str(tiny_model_repo), "--model", TINY_MODEL, "--kv-cache-gb", "1"],
        tmp_path / "drain.log",
        env={"SWEETIE_DRAIN_GRACE_S": "60", "SWEETIE_SAFETY_SCREEN": "lexical"},  # about drain, not safety
    ).start()
    assert server.proc is not None
    body = {
        "model": TINY_MODEL,
        "messages": [{"role": "user", "content": "stay with me"}],
        "stream": True,
        "max_tokens": 3000,
        "ignore_eos": True,
    }
    try:
        with httpx.stream("POST", f"{server.base_url}/chat/completions", json=body, timeout=120) as resp:
            lines = resp.iter_lines()
            next(lines)
            server.proc.send_signal(signal.SIGTERM)
            wait_until(
                lambda: httpx.get(f"{server.root_url}/ready").status_code == 503, what="/ready to turn 503", timeout=10
            )
            ready = httpx.get(f"{server.root_url}/ready")
            assert ready.status_code == 503 and ready.json()["status"] == "draining"
            refused = httpx.post(f"{server.base_url}/chat/completions", json={**body, "stream": False}, timeout=10)
            assert refused.status_code == 503 and refused.headers["retry-after"]
            assert refused.json()["error"]["type"] == "service_unavailable"
            rest = [line for line in lines if line]
        assert rest[-1] == "data: [DONE]"  # the in-flight stream finished normally
        assert any('"finish_reason":"length"' in line for line in rest), rest[-3:]
        assert not any("engine_error" in line for line in rest)
        assert server.proc.wait(timeout=60) == 0
        log = server.log_text()
        assert '"event": "draining"' in log and '"event": "drained"' in log and '"event": "stopped"' in log
    finally:
        server.stop()
