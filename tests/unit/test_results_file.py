"""Results files say which machine measured them: CPU numbers differ several-fold between AVX2-only and
AVX512-BF16 CPUs, so a figure without the CPU's model and vector extensions cannot be compared with another."""

from __future__ import annotations

import json
import subprocess
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


def test_only_code_changes_make_a_run_dirty_not_the_results_files_it_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a benchmark of several steps writes results files as it goes: those say nothing about the code it ran
    results = tmp_path / "benchmarks" / "results"
    results.mkdir(parents=True)
    (results / "step1.json").write_text("{}\n")
    (tmp_path / "app.py").write_text("x = 1\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "start"]):
        subprocess.run([*git, *args], check=True)
    monkeypatch.setattr(results_file, "RESULTS", results)
    (results / "step1.json").write_text('{"done": true}\n')
    assert results_file.provenance()["git_dirty"] is False
    (tmp_path / "app.py").write_text("x = 2\n")
    assert results_file.provenance()["git_dirty"] is True


def test_a_results_name_that_is_a_path_elsewhere_is_written_there_and_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # exploring a candidate: `--out /tmp/x/ranking` writes outside the repository, and says where
    monkeypatch.setattr(results_file, "RESULTS", tmp_path / "repo" / "benchmarks" / "results")
    elsewhere = tmp_path / "scratch" / "ranking"
    path = results_file.write_results(str(elsewhere), results_file.provenance(), {"value": 2})
    assert path == elsewhere.with_suffix(".json")
    assert json.loads(path.read_text())["results"] == {"value": 2}
    assert capsys.readouterr().out.strip() == f"wrote {path}"


def test_a_results_name_given_with_its_json_suffix_is_not_doubled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(results_file, "RESULTS", tmp_path / "results")
    path = results_file.write_results(str(tmp_path / "scratch" / "api.json"), results_file.provenance(), {})
    assert path == tmp_path / "scratch" / "api.json" and path.is_file()
    assert (
        results_file.write_results("probe.json", results_file.provenance(), {}) == tmp_path / "results" / "probe.json"
    )
