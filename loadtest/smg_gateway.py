"""The smg gateway (PyPI ``smg``, the ``gateway`` extra) in front of running SweetieChat replicas, as a child process.

    with SmgGateway("manual", {"http://127.0.0.1:8001": "sweetiechat", ...}, Path("smg.log")) as gateway:
        client = openai.OpenAI(base_url=f"{gateway.root}/v1", ...)

The same flags as the local recipe (deploy/gateway/fleet.sh); deploy/gateway/README.md says why each one is there.
Replicas are listed in a file-discovery manifest that names their model, not with ``--worker-urls``: with static
URLs smg learns the model from ``GET /v1/models``, which answers 401 when the replicas require API keys, and then
registers every replica as model ``unknown`` (each request: 404 model_not_found).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from loadtest.ports import free_port

ROUTING_HEADER = "X-Session-Id"
"""The gateway routes on this header but does not forward it: clients also send the body field ``session_id``."""
ROUTED_WORKER_HEADER = "x-smg-routed-worker-id"
"""smg adds it to every response from an HTTP worker: the URL of the replica that served the request."""

POLICIES: dict[str, tuple[str, ...]] = {
    # Pins each session id to a replica in the gateway's memory; a new id goes to the replica with the fewest
    # requests in flight. One gateway: pins are not shared between gateway processes.
    "manual": ("--policy", "manual", "--routing-key-headers", "x-session-id", "--assignment-mode", "min_load"),
    # Hashes the session id onto a ring of the replicas: the same placement from every gateway process, no state.
    "consistent_hashing": ("--policy", "consistent_hashing", "--routing-key-headers", "x-session-id"),
    # The baseline: turns of one session alternate between replicas.
    "round_robin": ("--policy", "round_robin"),
}

COMMON_FLAGS: tuple[str, ...] = (
    # Take a replica out while it loads or drains (/ready 503), not only when it is dead (/health).
    *("--health-check-endpoint", "/ready", "--health-check-interval-secs", "5", "--health-failure-threshold", "2"),
    # smg retries 429 and 503 five times by default (500 twice), on other replicas: a rate-limited tenant would
    # cost five times the load, and a turn could run twice. The replicas' 429/503 carry Retry-After for the client.
    "--disable-retries",
    # smg counts 5xx as failures: ten 503s (Redis down) would cut a healthy replica off for a minute, stateless
    # requests included. /ready health checks take dead or draining replicas out instead.
    "--disable-circuit-breaker",
    # smg polls vLLM's load endpoints (/loads, /v1/loads, /metrics) every few seconds to leave out replicas with a
    # long queue; ours answer 404 to the first two, and do their own admission (a queue, then 429).
    "--disable-load-monitoring",
    "--disable-worker-overload-protection",
    # A pure router: no tokenizer download for the model name.
    "--disable-tokenizer-autoload",
    "--shutdown-grace-period-secs",
    "30",
)


class GatewayError(RuntimeError):
    """The gateway could not start, or did not see every replica healthy in time."""


def smg_executable() -> str:
    """``smg`` next to this interpreter (the venv), else on PATH."""
    beside = Path(sys.executable).parent / "smg"
    found = str(beside) if os.access(beside, os.X_OK) else shutil.which("smg")
    if found is None:
        raise GatewayError("smg not found: install the gateway extra (pip install -e '.[gateway]', smg==1.13.0)")
    return found


def served_model(replica: str, timeout: float = 5.0) -> str:
    """The model a ready replica serves, from its ``/ready`` (which needs no API key, unlike ``/v1/models``)."""
    response = httpx.get(f"{replica}/ready", timeout=timeout)
    if response.status_code != 200:
        raise GatewayError(f"replica {replica} is not ready: /ready answered {response.status_code}")
    return str(response.json()["model"])


def discovery_manifest(workers: Mapping[str, str]) -> dict[str, Any]:
    """smg's file-discovery manifest: one entry per replica URL, with the model it serves."""
    return {"version": 1, "workers": [{"url": url, "model_id": model} for url, model in workers.items()]}


class SmgGateway:
    """One ``smg launch`` process on 127.0.0.1 with the replicas in ``workers`` (URL -> model name)."""

    def __init__(self, policy: str, workers: Mapping[str, str], log: Path, port: int | None = None) -> None:
        if policy not in POLICIES:
            raise ValueError(f"unknown policy {policy!r}; one of {', '.join(POLICIES)}")
        if not workers:
            raise ValueError("no replicas to route to")
        self.policy = policy
        self.workers = dict(workers)
        self.log = log
        self.port = port or free_port()
        self.metrics_port = free_port()
        self.manifest = log.with_name(f"{log.stem}-workers.json")
        self._admin_key = secrets.token_urlsafe(24)  # the control plane (POST /workers ...) is closed to others
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            *(smg_executable(), "launch", "--host", "127.0.0.1", "--port", str(self.port)),
            *("--prometheus-host", "127.0.0.1", "--prometheus-port", str(self.metrics_port)),
            *POLICIES[self.policy],
            *("--discovery-provider", "file", "--discovery-file", str(self.manifest)),
            *COMMON_FLAGS,
            *("--control-plane-api-keys", f"local:local:admin:{self._admin_key}"),
            *("--log-level", "warn"),
        ]

    def start(self, timeout: float = 60.0) -> SmgGateway:
        """Start smg and wait until it reports every replica healthy."""
        self.manifest.write_text(json.dumps(discovery_manifest(self.workers), indent=2) + "\n")
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        seen: Any = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise GatewayError(f"smg exited with {self.proc.returncode}; log: {self.log}\n{self.tail()}")
            try:
                seen = httpx.get(f"{self.root}/readiness", timeout=2).json()
            except (httpx.HTTPError, ValueError):
                seen = None
            if isinstance(seen, dict) and seen.get("healthy_workers") == len(self.workers):
                return self
            time.sleep(0.25)
        self.stop()
        raise GatewayError(f"smg did not see {len(self.workers)} healthy replicas in {timeout:.0f} s (last: {seen})")

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 40.0) -> None:
        """SIGTERM (smg finishes what is in flight), SIGKILL after ``timeout`` seconds; the ports are free after."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def __enter__(self) -> SmgGateway:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
