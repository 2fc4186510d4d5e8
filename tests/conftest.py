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
