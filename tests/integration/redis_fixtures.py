"""Pytest fixtures for tests that need a real Redis.

Import them from a conftest (``from tests.integration.redis_fixtures import *``) or from a test module.

- ``redis_url``: the test Redis (``SWEETIE_TEST_REDIS_URL``, default ``redis://127.0.0.1:6379/15``). When it does
  not answer, the test is skipped with the reason, except under ``CI=true``, where it fails: CI must provide Redis.
- ``redis_key_prefix``: a key prefix unique to the test; the test's keys are deleted afterwards (only those).
- ``redis_server_factory``: starts private ``redis-server`` processes on free ports (for outage tests); all are
  stopped after the test. Needs the ``redis-server`` binary (skip, or fail under ``CI=true``, without it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from loadtest.ports import free_port

DEFAULT_TEST_REDIS_URL = "redis://127.0.0.1:6379/15"
_NO_RETRY = Retry(NoBackoff(), 0)  # probes answer at once; redis-py's default would retry with backoff

__all__ = [
    "DEFAULT_TEST_REDIS_URL",
    "RedisServer",
    "configured_redis_url",
    "ping_error",
    "redis_key_prefix",
    "redis_server_factory",
    "redis_url",
    "skip_or_fail",
]


def skip_or_fail(reason: str) -> None:
    """Skip the test with ``reason``; under ``CI=true`` fail instead (CI must meet the requirement)."""
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"{reason} (CI=true: this requirement must be met in CI)", pytrace=False)
    pytest.skip(reason)


def configured_redis_url() -> str:
    """The test Redis's URL: ``SWEETIE_TEST_REDIS_URL``, default ``redis://127.0.0.1:6379/15``."""
    return os.environ.get("SWEETIE_TEST_REDIS_URL", DEFAULT_TEST_REDIS_URL)


def ping_error(url: str) -> str | None:
    """None when the Redis at ``url`` answers PING, else the error's type name."""
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5, retry=_NO_RETRY)
    try:
        client.ping()
        return None
    except redis.RedisError as exc:
        return type(exc).__name__
    finally:
        client.close()


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of a reachable test Redis; skips (or fails under CI=true) when it does not answer PING."""
    url = configured_redis_url()
    error = ping_error(url)
    if error is not None:
        skip_or_fail(
            f"no Redis answering at SWEETIE_TEST_REDIS_URL={url} ({error}); start one with "
            "`redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no`"
        )
    return url


@pytest.fixture
def redis_key_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix unique to this test; every key under it is deleted after the test."""
    prefix = f"sweetietest-{uuid.uuid4().hex[:12]}"
    yield prefix
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=1.0, socket_timeout=1.0)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


class RedisServer:
    """A private ``redis-server`` process on a fixed port; ``stop()`` and ``start()`` may be repeated."""

    def __init__(self, binary: str, workdir: Path, extra_args: tuple[str, ...]) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._args = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            str(workdir),
            *extra_args,
        ]
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 10.0) -> None:
        """Start the server and wait until it answers PING."""
        self._process = subprocess.Popen(self._args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2, socket_timeout=0.5, retry=_NO_RETRY)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.RedisError:
                    if self._process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"redis-server on port {self.port} did not start") from None
                    time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        """Shut the server down (SIGTERM: with AOF enabled it flushes before exiting) and wait for it."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
        self._process = None


@pytest.fixture
def redis_server_factory(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """``start(*extra_args) -> RedisServer``: a running private redis-server, data dir under ``tmp_path``."""
    binary = shutil.which("redis-server")
    if binary is None:
        skip_or_fail("redis-server binary not found on PATH (apt-get install redis-server)")
    assert binary is not None
    servers: list[RedisServer] = []

    def start(*extra_args: str) -> RedisServer:
        workdir = tmp_path / f"redis-{len(servers)}"
        workdir.mkdir()
        server = RedisServer(binary, workdir, extra_args)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()
