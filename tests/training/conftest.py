"""Shared fixtures for training tests."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from training.cli import parse_config
from training.esconv import default_esconv_dir


@pytest.fixture(scope="session")
def esconv_dir() -> Path:
    """The shared ESConv folder; skips when absent, fails under CI=true (CI must provide it)."""
    folder = default_esconv_dir()
    if not (folder / "train.jsonl").exists() or not (folder / "valid.jsonl").exists():
        message = f"ESConv not found at {folder} (set SWEETIE_ESCONV_DIR); it is not shipped in the repo (CC BY-NC)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return folder


@pytest.fixture
def config_error(capsys: pytest.CaptureFixture[str]) -> Callable[..., str]:
    """``config_error(ConfigClass, *argv)``: what ``parse_config`` prints when it exits with status 2."""

    def error(config_cls: type[Any], *argv: str) -> str:
        with pytest.raises(SystemExit) as exc:
            parse_config(config_cls, list(argv))
        assert exc.value.code == 2
        return capsys.readouterr().err

    return error
