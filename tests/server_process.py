"""Start the real server (``python -m app``) as a subprocess for integration tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from loadtest.ports import free_port

REPO_ROOT = Path(__file__).resolve().parent.parent

# Importing TRL (the training tests do, in this process) sets VLLM_LOGGING_LEVEL=ERROR in os.environ (trl/_compat.py):
# servers started after that would write none of vLLM's own log lines, which some tests read. Servers get the value
# the test run started with, as a user's shell would give them.
_VLLM_LOGGING_LEVEL = os.environ.get("VLLM_LOGGING_LEVEL")


def launch_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a server (or a script that starts servers): this process's, as it was before any import
    changed vLLM's log level, plus ``extra``."""
    env = dict(os.environ)
    if _VLLM_LOGGING_LEVEL is None:
        env.pop("VLLM_LOGGING_LEVEL", None)
    else:
        env["VLLM_LOGGING_LEVEL"] = _VLLM_LOGGING_LEVEL
    return {**env, **(extra or {})}


PORT_RETRIES = 2
"""How many times :meth:`ServerProcess.wait_ready` loads a server again on a fresh port when its port was taken."""


class ServerProcess:
    """One ``python -m app`` process with its log captured to a file."""

    def __init__(
        self, args: list[str], log_path: Path, env: dict[str, str] | None = None, *, new_session: bool = False
    ) -> None:
        """``new_session``: start the server in its own session and process group (as a service manager or a shell
        does), so that a test can signal the whole group with ``os.killpg(server.proc.pid, sig)``."""
        self.port = free_port()
        self.base_args = args
        self.log_path = log_path
        self.env = launch_environment(env)
        self.new_session = new_session
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def args(self) -> list[str]:
        return [*self.base_args, "--host", "127.0.0.1", "--port", str(self.port), "--log-format", "json"]

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    def start(self, timeout: float = 600.0) -> ServerProcess:
        """Launch the process and wait until ``/ready`` answers 200 (RuntimeError with the log's tail if not)."""
        return self.launch().wait_ready(timeout)

    def launch(self) -> ServerProcess:
        """Start the process and return at once; :meth:`wait_ready` waits for it to serve."""
        with self.log_path.open("wb") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "app", *self.args],
                cwd=REPO_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=self.new_session,
            )
        return self

    def wait_ready(self, timeout: float = 600.0) -> ServerProcess:
        """Until ``/ready`` answers 200; RuntimeError with the log's tail if the process exits or ``timeout`` passes."""
        assert self.proc is not None, "launch() first"
        deadline = time.monotonic() + timeout
        rebinds = PORT_RETRIES
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                if rebinds and "address already in use" in self.log_tail():
                    # The port was free when chosen, and something (another server's engine, say) took it before
                    # this server bound it, minutes later: load again on a fresh port.
                    rebinds -= 1
                    self.port = free_port()
                    self.launch()
                    continue
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.root_url}/ready", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"server not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM, then wait for the exit (a kill after ``timeout``); the exit code, None if never launched."""
        self.terminate()
        return self.wait_stopped(timeout)

    def terminate(self) -> None:
        """Send SIGTERM if the process runs (it drains and exits); :meth:`wait_stopped` waits for it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait_stopped(self, timeout: float = 60.0) -> int | None:
        """Wait for the exit; after ``timeout``, kill it (and its process group, if it has its own)."""
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            if self.new_session:
                os.killpg(self.proc.pid, signal.SIGKILL)  # the engine processes too
            else:
                self.proc.kill()
            return self.proc.wait()
