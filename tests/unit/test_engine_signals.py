"""The engine processes leave termination to the server (``app/engine/engine_signals.py``), on stand-in processes
that install SIGTERM/SIGINT handlers the way vLLM's engine core and worker do.

The real engine: ``tests/integration/test_drain.py`` (the process group signalled, a killed server).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import psutil
import pytest

from app.engine import engine_signals
from tests.server_process import REPO_ROOT
from tests.waiting import wait_until

# Stands in for vLLM's run_engine_core / worker_main: its own handlers first, then the plugins.
ENGINE = textwrap.dedent(
    """
    import logging, signal, sys, time
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(message)s", force=True)

    def vllm_handler(signum, frame):
        print("vllm handler", signal.Signals(signum).name, flush=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, vllm_handler)
    signal.signal(signal.SIGINT, vllm_handler)
    from app.engine import engine_signals
    engine_signals.register()
    print("registered", flush=True)
    while True:
        time.sleep(0.02)
    """
)

# Stands in for the server: starts one engine process that belongs to it, then waits to be killed.
SERVER = textwrap.dedent(
    """
    import os, subprocess, sys, time
    env = {**os.environ, "SWEETIE_ENGINE_SERVER_PID": str(os.getpid())}
    engine = subprocess.Popen([sys.executable, "-c", sys.argv[1]], env=env, stdout=open(sys.argv[2], "w"))
    print(engine.pid, flush=True)
    time.sleep(600)
    """
)


def start(script: str, log: Path, server_pid: int | None, *args: str) -> subprocess.Popen[bytes]:
    env = {key: value for key, value in os.environ.items() if key != engine_signals.ENV}
    if server_pid is not None:
        env[engine_signals.ENV] = str(server_pid)
    return subprocess.Popen(
        [sys.executable, "-c", script, *args], cwd=REPO_ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT
    )


def wait_for(log: Path, text: str, timeout: float = 30) -> None:
    wait_until(lambda: text in log.read_text(), what=f"{text!r} in {log.name}", timeout=timeout)


def test_engine_core_ignores_group_signals_until_the_server_releases_it(tmp_path: Path) -> None:
    log = tmp_path / "core.log"
    core = start(ENGINE, log, os.getpid())  # this test is its server
    try:
        wait_for(log, "registered")
        core.send_signal(signal.SIGTERM)
        core.send_signal(signal.SIGINT)
        wait_for(log, "SIGTERM ignored by engine process")
        wait_for(log, "SIGINT ignored by engine process")
        assert core.poll() is None and "vllm handler" not in log.read_text()
        core.send_signal(engine_signals.RELEASE)
        assert core.wait(timeout=30) == 0
        text = log.read_text()
        assert "released: vLLM's SIGTERM/SIGINT handlers are back" in text
        assert "vllm handler SIGTERM" in text  # the shutdown vLLM does on its SIGTERM
    finally:
        core.kill()


def test_worker_takes_vllms_handlers_back_on_release(tmp_path: Path) -> None:
    """A worker (its parent is not the server) ignores the signals, and after the release exits on them again."""
    log = tmp_path / "worker.log"
    worker = start(ENGINE, log, 1)  # the server is some other process than its parent
    try:
        wait_for(log, "registered")
        worker.send_signal(signal.SIGTERM)
        wait_for(log, "SIGTERM ignored by engine process")
        worker.send_signal(engine_signals.RELEASE)
        wait_for(log, "released: vLLM's SIGTERM/SIGINT handlers are back")
        assert worker.poll() is None  # a worker exits by its death pipe, not by the release
        worker.send_signal(signal.SIGTERM)  # the executor's fallback works as in vLLM
        assert worker.wait(timeout=30) == 0
        assert "vllm handler SIGTERM" in log.read_text()
    finally:
        worker.kill()


def test_engine_core_shuts_down_when_its_server_dies(tmp_path: Path) -> None:
    server_log, core_log = tmp_path / "server.log", tmp_path / "core.log"
    server = start(SERVER, server_log, None, ENGINE, str(core_log))
    core: psutil.Process | None = None
    try:
        wait_until(lambda: server_log.read_text().strip(), what="the engine pid")
        core = psutil.Process(int(server_log.read_text()))
        wait_for(core_log, "registered")
        server.kill()
        server.wait(timeout=10)
        wait_until(lambda: not core.is_running() or core.status() == psutil.STATUS_ZOMBIE, what="the engine to exit")
        text = core_log.read_text()
        assert "is gone: engine core" in text and "vllm handler SIGTERM" in text
    except psutil.NoSuchProcess:
        pass  # exited before it could be inspected: it did not outlive the server
    finally:
        server.kill()
        if core is not None and core.is_running():
            core.kill()


def test_processes_where_vllm_installed_no_handlers_are_left_alone(tmp_path: Path) -> None:
    """A process vLLM spawns for other work (or any process inheriting the variable) keeps default signals."""
    log = tmp_path / "other.log"
    script = "from app.engine import engine_signals; import time\nengine_signals.register()\n"
    other = start(script + "print('registered', flush=True)\ntime.sleep(600)", log, os.getpid())
    try:
        wait_for(log, "registered")
        other.send_signal(signal.SIGTERM)
        assert other.wait(timeout=30) == -signal.SIGTERM
    finally:
        other.kill()


def test_register_is_a_no_op_in_the_server_and_without_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    before = {sig: signal.getsignal(sig) for sig in (*engine_signals.HELD, engine_signals.RELEASE)}
    monkeypatch.setattr(engine_signals, "_state", {})
    monkeypatch.delenv(engine_signals.ENV, raising=False)
    engine_signals.register()
    monkeypatch.setenv(engine_signals.ENV, str(os.getpid()))
    engine_signals.register()
    assert {sig: signal.getsignal(sig) for sig in before} == before


class FakeProc:
    def __init__(self, name: str, pid: int, alive: bool = True) -> None:
        self.name, self.pid, self.alive = name, pid, alive
        self.joined: float | None = None

    def is_alive(self) -> bool:
        return self.alive

    def join(self, timeout: float) -> None:
        self.joined = timeout


def test_enable_releases_engine_cores_before_vllm_stops_them(monkeypatch: pytest.MonkeyPatch) -> None:
    import vllm.envs
    import vllm.v1.engine.utils as engine_utils

    calls: list[tuple[str, Any]] = []
    monkeypatch.setattr(engine_utils, "shutdown", lambda procs, timeout=None: calls.append(("vllm", timeout)))
    monkeypatch.setattr(engine_signals, "_signal", lambda pid, sig: calls.append(("release", pid)))
    monkeypatch.setattr(engine_signals, "plugin_installed", lambda: True)
    monkeypatch.setattr(engine_signals, "_state", {"atexit": True})  # no exit hook in the test process
    monkeypatch.setenv(engine_signals.ENV, "")  # restored after the test

    assert engine_signals.enable() and engine_signals.enable()  # idempotent: one wrapper
    assert os.environ[engine_signals.ENV] == str(os.getpid())
    procs = [FakeProc("EngineCore", 11), FakeProc("EngineCore_DP1", 12, alive=False), FakeProc("DPCoordinator", 13)]
    engine_utils.shutdown(procs, timeout=5.0)
    assert calls[0] == ("release", 11) and calls[1][0] == "vllm" and len(calls) == 2
    joined = procs[0].joined  # the released engine core gets the time to exit by itself, its workers' time included
    budget = 5.0 + vllm.envs.VLLM_WORKER_SHUTDOWN_TIMEOUT_SECONDS
    assert joined is not None and budget - 1.0 < joined <= budget
    assert 0.0 <= calls[1][1] <= joined  # vLLM's SIGTERM/SIGKILL only after that, within the same deadline
    assert procs[1].joined is None and procs[2].joined is None


def test_enable_leaves_vllm_alone_without_the_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    import vllm.v1.engine.utils as engine_utils

    original = engine_utils.shutdown
    monkeypatch.setattr(engine_signals, "plugin_installed", lambda: False)
    monkeypatch.setenv(engine_signals.ENV, "")
    assert not engine_signals.enable()
    assert engine_utils.shutdown is original and os.environ[engine_signals.ENV] == ""


def test_the_entry_point_is_installed() -> None:
    """``pip install -e .`` after pyproject.toml changes: vLLM finds plugins through the installed metadata."""
    assert engine_signals.plugin_installed()
