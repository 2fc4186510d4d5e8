"""``deploy/gateway/fleet.sh``, the local scale-out recipe, run the way its header tells a user to run it.

Two replicas of the tiny model on a real Redis and the real smg gateway in front (the script's default policy,
``manual`` on ``X-Session-Id``): a session's turns go through the gateway to one replica and keep their history, and
Ctrl-C (SIGINT to the script's process group, as a terminal sends it) stops the gateway, every replica and their vLLM
engine processes, with the script's exit status 130.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import openai
import psutil
import pytest

from loadtest.ports import free_port, port_is_free
from loadtest.smg_gateway import ROUTED_WORKER_HEADER, GatewayError, smg_executable
from tests.conftest import KEY_A, TINY_MODEL, session_server_env
from tests.integration.redis_fixtures import skip_or_fail
from tests.server_process import launch_environment
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.redis]

REPO_ROOT = Path(__file__).resolve().parents[2]
BANNER = "Ctrl-C stops everything."


@dataclass
class Fleet:
    script: subprocess.Popen[bytes]
    gateway: str
    output: Path


def consecutive_free_ports(count: int) -> int:
    """A first port such that it and the next ``count - 1`` are free now (the script numbers replicas upwards)."""
    for _ in range(50):
        first = free_port()
        if all(port_is_free(first + offset) for offset in range(1, count)):
            return first
    raise RuntimeError(f"no {count} consecutive free ports")


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    def running(proc: psutil.Process) -> bool:
        try:
            return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    return [proc for proc in procs if running(proc)]


@pytest.fixture
def fleet(tiny_model_repo: Path, redis_url: str, tmp_path: Path) -> Iterator[Fleet]:
    try:
        smg = smg_executable()
    except GatewayError as exc:
        skip_or_fail(str(exc))
    gateway_port = free_port()
    env = {
        **launch_environment(session_server_env(redis_url)),  # a running test Redis: the script leaves it alone
        "REPLICAS": "2",
        "FIRST_REPLICA_PORT": str(consecutive_free_ports(2)),
        "GATEWAY_PORT": str(gateway_port),
        "GATEWAY_METRICS_PORT": str(free_port()),
        "FLEET_LOG_DIR": str(tmp_path / "fleet-logs"),
        "SWEETIE_SAFETY_SCREEN": "lexical",  # about routing, not the screen
        "PYTHON": sys.executable,
        "SMG": smg,
    }
    output = tmp_path / "fleet.out"
    command = ["bash", "deploy/gateway/fleet.sh", "--model-repo", str(tiny_model_repo), "--model", TINY_MODEL]
    with output.open("wb") as out:
        script = subprocess.Popen(
            [*command, "--kv-cache-gb", "1"],
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, like a terminal's foreground job
        )
    started: list[psutil.Process] = []
    try:
        wait_until(
            lambda: BANNER in output.read_text() or script.poll() is not None,
            timeout=900,
            what="fleet.sh to report the gateway ready",
        )
        assert script.poll() is None, output.read_text()[-3000:]
        started = descendants(script.pid)
        yield Fleet(script, f"http://127.0.0.1:{gateway_port}/v1", output)
    finally:
        if script.poll() is None:
            os.killpg(script.pid, signal.SIGKILL)
        for proc in alive(started + descendants(script.pid)):
            proc.kill()


def test_fleet_serves_a_session_through_the_gateway_and_ctrl_c_stops_everything(fleet: Fleet) -> None:
    client = openai.OpenAI(base_url=fleet.gateway, api_key=KEY_A, max_retries=0, timeout=120)
    session_id = f"fleet-{uuid.uuid4().hex[:12]}"
    workers, turns = set(), []
    for text in ("I could not sleep again last night.", "My mind keeps going over the same worries."):
        raw = client.chat.completions.with_raw_response.create(
            model=TINY_MODEL,
            messages=[{"role": "user", "content": text}],
            max_tokens=8,
            extra_headers={"X-Session-Id": session_id},  # what the gateway routes on
            extra_body={"session_id": session_id},  # what the replica reads (smg does not forward the header)
        )
        workers.add(raw.headers[ROUTED_WORKER_HEADER])
        turns.append(raw.parse().model_extra)
    assert len(workers) == 1  # both turns on one replica
    assert [turn["turn"] for turn in turns] == [1, 2]  # and the second one saw the first

    engine_and_replicas = descendants(fleet.script.pid)
    names = " ".join(proc.name() for proc in engine_and_replicas)
    assert "smg" in names and "EngineCore" in names, names
    os.killpg(fleet.script.pid, signal.SIGINT)  # Ctrl-C in the terminal that runs the script
    assert fleet.script.wait(timeout=240) == 130
    wait_until(lambda: not alive(engine_and_replicas), timeout=60, what="every process of the fleet to exit")
    assert "==> stopping" in fleet.output.read_text()
