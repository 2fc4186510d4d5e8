"""Shared fixtures: real server processes (tiny random Llama, and the embedded SmolLM2 'sweetiechat')."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.server_process import REPO_ROOT, ServerProcess
from tests.tiny_model import build_tiny_llama, write_manifest

pytest_plugins = ["tests.integration.redis_fixtures"]

if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    # A shell starts a background job (`cmd &` without job control, as CI runners and nohup'd runs do) with SIGINT
    # ignored, and a child inherits that: the servers and scripts these tests start would then ignore the Ctrl-C the
    # tests send their process groups (bash cannot even trap a signal ignored on entry), and the drain and fleet
    # tests fail for the launcher's sake. A handler, unlike SIG_IGN, is reset to the default in a child at exec.
    signal.signal(signal.SIGINT, signal.default_int_handler)

TINY_MODEL = "tiny"
TINY_MAX_LEN = 4096
KEY_A, KEY_B = "key-alpha-0123456789", "key-beta-0123456789"
SESSION_TTL_S = 600  # long: the sliding TTL is checked on the Redis keys, not by waiting it out
Launched = dict[str, ServerProcess]
"""The shared servers of this run, by fixture name (see ``shared_servers``)."""


@pytest.fixture(scope="session")
def tiny_model_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repo with one manifest, ``tiny``: a random 2-layer Llama built in code."""
    repo = tmp_path_factory.mktemp("model_repo")
    folder = build_tiny_llama(repo / TINY_MODEL)
    write_manifest(folder, TINY_MODEL, max_model_len=TINY_MAX_LEN)
    return repo


def tiny_server_process(repo: Path, logs: Path) -> ServerProcess:
    return ServerProcess(
        ["--model-repo", str(repo), "--model", TINY_MODEL, "--kv-cache-gb", "1"], logs / "tiny-server.log"
    )


def session_server_env(redis_url: str) -> dict[str, str]:
    """The Redis-backed server's settings: two API keys (tenants alpha and beta), a short lock wait."""
    return {
        "SWEETIE_REDIS_URL": redis_url,
        "SWEETIE_API_KEYS": f"{KEY_A}:alpha,{KEY_B}:beta",
        "SWEETIE_SESSION_TTL_S": str(SESSION_TTL_S),
        "SWEETIE_SESSION_LOCK_WAIT_S": "0.5",
        "SWEETIE_REDIS_TIMEOUT_S": "5",  # generous: a loaded 2-core CI box must not turn a busy lock into a 503
    }


def session_server_process(repo: Path, redis_url: str, logs: Path) -> ServerProcess:
    return ServerProcess(
        ["--model-repo", str(repo), "--model", TINY_MODEL, "--kv-cache-gb", "1"],
        logs / "session-server.log",
        env=session_server_env(redis_url),
    )


def smol_server_process(logs: Path) -> ServerProcess:
    """The embedded default ``sweetiechat`` (SmolLM2-135M-Instruct), as the README's first command serves it."""
    return ServerProcess(
        ["--model-repo", str(REPO_ROOT / "model_repo"), "--model", "sweetiechat", "--kv-cache-gb", "1"],
        logs / "smol-server.log",
    )


@pytest.fixture(scope="session", autouse=True)
def shared_servers(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launched]:
    """Launch every shared server that a collected test uses as soon as the run starts, without waiting for it.

    Loading a server is mostly one process importing on one core (about a minute each on a 2-core box, and a few
    more for the embedded model's first compile), so the servers load while the first tests run instead of in
    front of the tests that need them. The fixtures below wait for readiness; all are stopped together at the end.
    A server whose prerequisite is missing (no Redis) is not launched here: its fixture starts it, and skips or
    fails, as before.
    """
    from tests.integration.redis_fixtures import configured_redis_url, ping_error  # a plugin (pytest_plugins) by now

    used = {name for item in request.session.items for name in getattr(item, "fixturenames", ())}
    launched: Launched = {}
    logs = tmp_path_factory.mktemp("logs")
    if "tiny_server" in used or "session_server" in used:
        repo = request.getfixturevalue("tiny_model_repo")
        if "tiny_server" in used:
            launched["tiny_server"] = tiny_server_process(repo, logs).launch()
        url = configured_redis_url()
        if "session_server" in used and ping_error(url) is None:
            launched["session_server"] = session_server_process(repo, url, logs).launch()
    if "smol_server" in used:
        launched["smol_server"] = smol_server_process(logs).launch()
    yield launched
    for server in launched.values():  # signal all, then wait: they shut down side by side
        server.terminate()
    for server in launched.values():
        server.wait_stopped()


def ready(launched: Launched, name: str, make: Callable[[], ServerProcess]) -> ServerProcess:
    """The server launched at the start of the run (or now, if it was not), once it serves."""
    if name not in launched:
        launched[name] = make().launch()
    return launched[name].wait_ready()


@pytest.fixture(scope="session")
def tiny_server(
    shared_servers: Launched, tiny_model_repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> ServerProcess:
    """The real server (vLLM engine on CPU) serving the tiny model, once per test session."""
    return ready(
        shared_servers, "tiny_server", lambda: tiny_server_process(tiny_model_repo, tmp_path_factory.mktemp("logs"))
    )


@pytest.fixture(scope="session")
def session_server(
    shared_servers: Launched, tiny_model_repo: Path, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> ServerProcess:
    """The real server on the tiny model with Redis and API keys, once per test session (sessions, Responses and
    Conversations tests share it)."""
    logs = tmp_path_factory.mktemp("logs")
    return ready(shared_servers, "session_server", lambda: session_server_process(tiny_model_repo, redis_url, logs))


@pytest.fixture(scope="session")
def smol_server(shared_servers: Launched, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The real server serving the embedded default ``sweetiechat``; the /v1 URL."""
    logs = tmp_path_factory.mktemp("logs")
    return ready(shared_servers, "smol_server", lambda: smol_server_process(logs)).base_url
