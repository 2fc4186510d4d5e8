"""Shared fixtures: real server processes (tiny random Llama, and the embedded SmolLM2 'sweetiechat')."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server_process import REPO_ROOT, ServerProcess
from tests.tiny_model import build_tiny_llama, write_manifest

pytest_plugins = ["tests.integration.redis_fixtures"]

TINY_MODEL = "tiny"
TINY_MAX_LEN = 4096
KEY_A, KEY_B = "key-alpha-0123456789", "key-beta-0123456789"
SESSION_TTL_S = 600  # long: the sliding TTL is checked on the Redis keys, not by waiting it out


@pytest.fixture(scope="session")
def tiny_model_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repo with one manifest, ``tiny``: a random 2-layer Llama built in code."""
    repo = tmp_path_factory.mktemp("model_repo")
    folder = build_tiny_llama(repo / TINY_MODEL)
    write_manifest(folder, TINY_MODEL, max_model_len=TINY_MAX_LEN)
    return repo


@pytest.fixture(scope="session")
def tiny_server(tiny_model_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The real server (vLLM engine on CPU) serving the tiny model, once per test session."""
    logs = tmp_path_factory.mktemp("logs")
    server = ServerProcess(
        ["--model-repo", str(tiny_model_repo), "--model", TINY_MODEL, "--kv-cache-gb", "1"],
        logs / "tiny-server.log",
    ).start()
    yield server
    server.stop()


def session_server_env(redis_url: str) -> dict[str, str]:
    """The Redis-backed server's settings: two API keys (tenants alpha and beta), a short lock wait."""
    return {
        "SWEETIE_REDIS_URL": redis_url,
        "SWEETIE_API_KEYS": f"{KEY_A}:alpha,{KEY_B}:beta",
        "SWEETIE_SESSION_TTL_S": str(SESSION_TTL_S),
        "SWEETIE_SESSION_LOCK_WAIT_S": "0.5",
        "SWEETIE_REDIS_TIMEOUT_S": "5",  # generous: a loaded 2-core CI box must not turn a busy lock into a 503
    }


@pytest.fixture(scope="session")
def session_server(
    tiny_model_repo: Path, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """The real server on the tiny model with Redis and API keys, once per test session (sessions, Responses and
    Conversations tests share it)."""
    server = ServerProcess(
        ["--model-repo", str(tiny_model_repo), "--model", TINY_MODEL, "--kv-cache-gb", "1"],
        tmp_path_factory.mktemp("logs") / "session-server.log",
        env=session_server_env(redis_url),
    ).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def smol_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real server serving the embedded default ``sweetiechat`` (SmolLM2-135M-Instruct); yields the /v1 URL."""
    logs = tmp_path_factory.mktemp("logs")
    server = ServerProcess(
        ["--model-repo", str(REPO_ROOT / "model_repo"), "--model", "sweetiechat", "--kv-cache-gb", "1"],
        logs / "smol-server.log",
    ).start()
    yield server.base_url
    server.stop()
