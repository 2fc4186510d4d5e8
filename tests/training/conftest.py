"""Shared fixtures for training tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
