"""Fail fast: a configuration mistake stops ``python -m app`` in seconds, before the model loads (30-100 s)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.server_process import REPO_ROOT


def start(args: list[str], env: dict[str, str]) -> tuple[int, str, float]:
    """Run the server with ``args``/``env`` until it exits (it must); return (status, output, seconds)."""
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "app", *args, "--log-format", "json"],
        cwd=REPO_ROOT,
        env={**os.environ, "SWEETIE_PORT": "1", **env},  # were a check to pass, nothing could bind port 1
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - started


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (
            [],
            {"SWEETIE_API_KEYS": "short:tenant"},
            "SWEETIE_API_KEYS: expected 'key [tenant] [limit=value ...]' with a key of at least 8",
        ),
        (["--model", "no-such-model"], {}, "model 'no-such-model' not found"),
        ([], {"SWEETIE_REDIS_URL": "http://127.0.0.1:6379"}, "SWEETIE_REDIS_URL"),
        ([], {"SWEETIE_STRATEGIES_FILE": "/nonexistent/strategies.yaml"}, "strategy catalogue file not found"),
        ([], {"SWEETIE_SAFETY_POLICY_FILE": "/nonexistent/policy.yaml"}, "cannot read safety policy"),
        ([], {"SWEETIE_PORT": "99999"}, "SWEETIE_PORT"),
    ],
)
def test_bad_configuration_stops_before_the_model_loads(args: list[str], env: dict[str, str], says: str) -> None:
    status, output, seconds = start(args, env)
    assert status == 2, output
    assert says in output, output
    assert "loading_model" not in output  # nothing was loaded: the mistake was found first
    assert "Traceback" not in output
    assert seconds < 30  # typically 2-4 s of imports; the model load alone takes 20-100 s


def test_bad_key_file_names_the_line(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# tenants\nsk-good-key-0001 alpha\nsk-bad two tenants\n")
    status, output, _ = start([], {"SWEETIE_API_KEYS_FILE": str(keys)})
    assert status == 2 and f"{keys}:3" in output, output


def test_a_malformed_limit_in_the_key_file_names_line_and_field(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("sk-good-key-0001 alpha rpm=60\nsk-good-key-0002 beta rpm=60 tpm=lots\n")
    status, output, seconds = start([], {"SWEETIE_API_KEYS_FILE": str(keys)})
    assert status == 2, output
    assert f"{keys}:2: field 'tpm': expected a whole number >= 1, got 'lots'" in output, output
    assert "loading_model" not in output and "Traceback" not in output and seconds < 30
    assert "sk-good-key" not in output  # never a key
