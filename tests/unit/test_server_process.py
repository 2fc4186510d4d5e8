"""The test servers' environment: what an import in the test process changed does not reach them."""

from __future__ import annotations

import pytest

from tests import server_process
from tests.server_process import launch_environment


def test_an_imported_library_cannot_silence_vllms_log_lines_in_test_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_process, "_VLLM_LOGGING_LEVEL", None)  # the run started without it
    monkeypatch.setenv("VLLM_LOGGING_LEVEL", "ERROR")  # what `import trl` does (trl/_compat.py)
    env = launch_environment({"SWEETIE_X": "1"})
    assert "VLLM_LOGGING_LEVEL" not in env and env["SWEETIE_X"] == "1"
    monkeypatch.setattr(server_process, "_VLLM_LOGGING_LEVEL", "DEBUG")  # a developer's own setting is kept
    assert launch_environment()["VLLM_LOGGING_LEVEL"] == "DEBUG"
    assert launch_environment({"VLLM_LOGGING_LEVEL": "INFO"})["VLLM_LOGGING_LEVEL"] == "INFO"  # and a test's
