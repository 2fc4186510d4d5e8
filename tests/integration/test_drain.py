"""Graceful drain on SIGTERM/SIGINT, against the real server process and its vLLM engine processes.

Both ways a server is signalled: the server process alone (Kubernetes, ``docker stop``, systemd ``KillMode=mixed``),
and its whole process group (systemd's default ``KillMode=control-group``, a terminal's Ctrl-C), where vLLM's engine
core and worker get the signal too and must leave termination to the server (``app/engine/engine_signals.py``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import TINY_MODEL
from tests.server_process import ServerProcess
from tests.tiny_model import build_tiny_llama, write_manifest
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

STREAM_TOKENS = 8000
BODY = {
    "model": TINY_MODEL,
    "messages": [{"role": "user", "content": "stay with me"}],
    "stream": True,
    "max_tokens": STREAM_TOKENS,
    "ignore_eos": True,
}
GROUP_STREAM_TOKENS = 3000
"""The group-signal tests need the stream in flight only when the signal lands (just after its first line) and
then read it to the end, with no HTTP check in between: ~8-25 s of stream instead of the 8,000 tokens' 20-60 s."""
FINISH_GRACE_S = 600
"""Drain grace of the tests whose stream must finish normally: the 8,000 tokens take ~20 s on an AVX512-BF16 CPU and
63 s on an AVX2-only one (float32), and ~130 s on 2 cores shared with the embedded model's first compile (the shared
servers load while the first tests run); a 60 s grace cut them (``left_in_flight=1``, ``outcome: aborted``)."""


@pytest.fixture(scope="module")
def long_model_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with room for an 8,000-token reply.

    The in-flight stream must outlast the checks made while it drains. The tiny model writes 3,000 tokens in about
    8 s, and on 2 busy cores the test process itself can stall for seconds (measured: a /ready round trip of up to
    9 s from the test process while the raw socket answered in 1 ms), so a 3,000-token stream sometimes drained and
    the server exited before the checks ran, and they met a closed port."""
    repo = tmp_path_factory.mktemp("long_model_repo")
    write_manifest(build_tiny_llama(repo / TINY_MODEL), TINY_MODEL, max_model_len=8192)
    return repo


def start_server(tiny_model_repo: Path, log: Path, *, grace_s: float, new_session: bool) -> ServerProcess:
    return ServerProcess(
        ["--model-repo", str(tiny_model_repo), "--model", TINY_MODEL, "--kv-cache-gb", "1"],
        log,
        # About drain, not safety; and the tests read the engine processes' own (vLLM) log lines.
        env={"SWEETIE_DRAIN_GRACE_S": str(grace_s), "SWEETIE_SAFETY_SCREEN": "lexical", "VLLM_LOGGING_LEVEL": "INFO"},
        new_session=new_session,
    ).start()


def engine_processes(server: ServerProcess) -> list[psutil.Process]:
    """vLLM's engine core and its worker processes (the server's descendants)."""
    assert server.proc is not None
    children = psutil.Process(server.proc.pid).children(recursive=True)
    names = " ".join(child.name() for child in children)
    assert "EngineCore" in names, names
    return children


def all_gone(procs: list[psutil.Process]) -> bool:
    def gone(proc: psutil.Process) -> bool:
        try:
            return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    return all(gone(proc) for proc in procs)


def kill_leftovers(procs: list[psutil.Process]) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()


def read_rest(lines: Iterator[str]) -> list[str]:
    """The rest of a stream's lines, up to its end or the server closing the connection."""
    rest: list[str] = []
    with contextlib.suppress(httpx.HTTPError):  # the connection closed mid-stream
        for line in lines:
            if line:
                rest.append(line)
    return rest


@contextlib.contextmanager
def group_server(
    repo: Path, log: Path, *, grace_s: float
) -> Iterator[tuple[ServerProcess, subprocess.Popen[bytes], list[psutil.Process]]]:
    """A server in its own process group (as under systemd or a shell), its process and its engine processes; on
    exit the server is stopped and no engine process is left behind, however the test ended."""
    server = start_server(repo, log, grace_s=grace_s, new_session=True)
    assert server.proc is not None
    engine = engine_processes(server)
    try:
        yield server, server.proc, engine
    finally:
        server.stop()
        kill_leftovers(engine)


@contextlib.contextmanager
def in_flight_stream(server: ServerProcess, max_tokens: int = STREAM_TOKENS) -> Iterator[Iterator[str]]:
    """A long streamed reply that has started: its remaining lines."""
    body = {**BODY, "max_tokens": max_tokens}
    with httpx.stream("POST", f"{server.base_url}/chat/completions", json=body, timeout=120) as resp:
        lines = resp.iter_lines()
        next(lines)
        yield lines


def wait_for_drain_start(server: ServerProcess) -> None:
    """Until the server has logged that it drains (read from its log file: no HTTP round trip from this process,
    which a full test run on 2 busy cores has seen take longer than the whole stream)."""
    wait_until(lambda: '"event": "draining"' in server.log_text(), what="the server to start draining", timeout=30)


def assert_draining(server: ServerProcess) -> None:
    wait_until(lambda: httpx.get(f"{server.root_url}/ready").status_code == 503, what="/ready to turn 503", timeout=10)
    ready = httpx.get(f"{server.root_url}/ready")
    assert ready.status_code == 503 and ready.json()["status"] == "draining"
    refused = httpx.post(f"{server.base_url}/chat/completions", json={**BODY, "stream": False}, timeout=10)
    assert refused.status_code == 503 and refused.headers["retry-after"]
    assert refused.json()["error"]["type"] == "service_unavailable"


def test_sigterm_drains_in_flight_streams_then_exits_0(long_model_repo: Path, tmp_path: Path) -> None:
    """SIGTERM to the server process: the in-flight stream finishes normally and the server exits 0."""
    server = start_server(long_model_repo, tmp_path / "drain.log", grace_s=FINISH_GRACE_S, new_session=False)
    assert server.proc is not None
    try:
        with in_flight_stream(server) as lines:
            server.proc.send_signal(signal.SIGTERM)
            assert_draining(server)
            rest = [line for line in lines if line]
        assert rest[-1] == "data: [DONE]"  # the in-flight stream finished normally
        assert any('"finish_reason":"length"' in line for line in rest), rest[-3:]
        assert not any("engine_error" in line for line in rest)
        assert server.proc.wait(timeout=60) == 0
        log = server.log_text()
        assert '"event": "draining"' in log and '"event": "drained"' in log and '"event": "stopped"' in log
    finally:
        server.stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_group_signal_drains_in_flight_streams_then_everything_exits(
    sig: signal.Signals, long_model_repo: Path, tmp_path: Path
) -> None:
    """The signal to the whole process group: the engine processes ignore it, the stream still finishes normally,
    the server exits 0, and no engine process outlives it. (What /ready and new requests get while a server drains
    is checked above; here it is the engine processes that are on trial.)"""
    with group_server(long_model_repo, tmp_path / "group.log", grace_s=FINISH_GRACE_S) as (server, proc, engine):
        with in_flight_stream(server, GROUP_STREAM_TOKENS) as lines:
            os.killpg(proc.pid, sig)
            wait_for_drain_start(server)
            rest = read_rest(lines)
        assert rest and rest[-1] == "data: [DONE]", rest[-3:]  # the in-flight stream finished normally
        assert any('"finish_reason":"length"' in line for line in rest), rest[-3:]
        assert not any("engine_error" in line for line in rest)
        assert proc.wait(timeout=60) == 0
        wait_until(lambda: all_gone(engine), what="the engine processes to exit", timeout=30)
        log = server.log_text()
        assert f"{sig.name} ignored by engine process" in log
        assert '"event": "drained"' in log and '"event": "stopped"' in log


def test_group_signal_past_the_drain_deadline_stops_everything(long_model_repo: Path, tmp_path: Path) -> None:
    """A stream still running at the drain deadline is cut; the server and the engine processes exit all the same."""
    with group_server(long_model_repo, tmp_path / "deadline.log", grace_s=1) as (server, proc, engine):
        with in_flight_stream(server) as lines:
            os.killpg(proc.pid, signal.SIGTERM)
            rest = read_rest(lines)
        assert not any('"finish_reason":"length"' in line for line in rest)  # cut at the deadline
        assert proc.wait(timeout=60) == 0
        wait_until(lambda: all_gone(engine), what="the engine processes to exit", timeout=30)
        assert '"event": "drained"' in server.log_text()


def test_second_ctrl_c_to_the_group_stops_everything_at_once(long_model_repo: Path, tmp_path: Path) -> None:
    """A second Ctrl-C does not wait out the drain grace, and leaves no engine process behind."""
    with group_server(long_model_repo, tmp_path / "twice.log", grace_s=300) as (server, proc, engine):
        with in_flight_stream(server) as lines:
            os.killpg(proc.pid, signal.SIGINT)
            wait_for_drain_start(server)
            second = time.monotonic()
            os.killpg(proc.pid, signal.SIGINT)
            read_rest(lines)
        assert proc.wait(timeout=60) == 130  # as after an interrupt, without a traceback
        wait_until(lambda: all_gone(engine), what="the engine processes to exit", timeout=30)
        assert time.monotonic() - second < 60  # far inside the 300 s grace
        log = server.log_text()
        assert '"event": "stopped"' in log and "Traceback" not in log


def test_engine_processes_do_not_outlive_a_killed_server(long_model_repo: Path, tmp_path: Path) -> None:
    """SIGKILL to the server (no drain, no close): the engine core notices and exits, and its worker with it."""
    with group_server(long_model_repo, tmp_path / "killed.log", grace_s=60) as (_, proc, engine):
        proc.kill()
        proc.wait(timeout=10)
        wait_until(lambda: all_gone(engine), what="the engine processes to exit", timeout=60)
