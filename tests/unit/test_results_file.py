"""Results files say which machine measured them: CPU numbers differ several-fold between AVX2-only and
AVX512-BF16 CPUs, so a figure without the CPU's model and vector extensions cannot be compared with another."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.core.cpu import cpu_flags, cpu_model, vector_extensions
from benchmarks import results_file


def test_vector_extensions_keep_the_flags_that_decide_cpu_speed_in_a_fixed_order() -> None:
    flags = {"sse4_2", "amx_bf16", "avx2", "fma", "avx512f"}
    assert vector_extensions(flags) == ["avx2", "avx512f", "amx_bf16"]
    assert vector_extensions({"sse4_2", "avx2"}) == ["avx2"]  # an AVX2-only CPU
    assert vector_extensions(set()) == []


def test_a_results_file_records_the_cpu_model_and_its_vector_extensions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(results_file, "RESULTS", tmp_path / "results")
    path = results_file.write_results("probe", results_file.provenance(), {"value": 1})
    body = json.loads(path.read_text())
    machine = body["machine"]
    assert machine["cpu_model"] == cpu_model()
    assert machine["cpu_extensions"] == vector_extensions(cpu_flags())
    if Path("/proc/cpuinfo").is_file():  # Linux: read from the kernel, not left empty
        assert machine["cpu_model"] and set(machine["cpu_extensions"]) <= cpu_flags()
        assert "flags" not in machine  # the subset, not the whole flag list
    assert body["results"] == {"value": 1}
