"""training.cli: one parser (TRL's TrlParser) for every training and benchmark script: flags, YAML presets, errors
that exit 2 naming the flag or key, every shipped preset, a fast --help."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from training.cli import parse_config
from training.roleplay import RoleplayConfig
from training.sft import SftConfig

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Demo:
    names: list[str] = field(default_factory=lambda: ["a"], metadata={"help": "Names (100% optional)."})
    mode: Literal["fast", "slow"] = field(default="fast", metadata={"help": "Speed."})
    count: int = 1
    limit: int | None = 5
    rate: float = 0.5
    label: str | None = "x"
    where: Path = Path("out")
    flag: bool = False
    eager_mode: bool = True
    weights: list[Literal["balanced", "none"]] = field(default_factory=lambda: ["none"])

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"count: must be at least 1 (got {self.count})")


def parse(*argv: str) -> Demo:
    return parse_config(Demo, list(argv))


def preset(tmp_path: Path, text: str) -> str:
    path = tmp_path / "preset.yaml"
    path.write_text(text)
    return str(path)


def test_defaults_and_typed_flags_in_both_spellings() -> None:
    assert parse() == Demo()
    config = parse("--names", "b", "c", "--mode", "slow", "--count", "3", "--rate", "2e-3", "--where", "w")
    assert config == Demo(names=["b", "c"], mode="slow", count=3, rate=2e-3, where=Path("w"))
    assert parse("--eager-mode", "false", "--limit", "7").eager_mode is False
    assert parse("--eager_mode", "false", "--limit", "7").limit == 7
    assert parse("--weights", "balanced", "none").weights == ["balanced", "none"]


def test_optional_fields_take_none() -> None:
    assert parse("--limit", "none", "--label", "null") == Demo(limit=None, label=None)


@pytest.mark.parametrize(
    ("argv", "flag", "eager_mode"),
    [
        ([], False, True),
        (["--flag"], True, True),
        (["--flag", "true", "--eager_mode", "no"], True, False),
        (["--flag", "False", "--eager-mode", "1"], False, True),
        (["--no_eager_mode"], False, False),
        (["--no-eager-mode", "--names", "z"], False, False),
        (["--eager_mode", "--names", "z"], False, True),
    ],
)
def test_boolean_forms(argv: list[str], flag: bool, eager_mode: bool) -> None:
    config = parse(*argv)
    assert (config.flag, config.eager_mode) == (flag, eager_mode)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--count", "x"], "argument --count: invalid int value: 'x'"),
        (["--mode", "medium"], "argument --mode: invalid choice: 'medium'"),
        (["--weights", "balanced", "even"], "argument --weights: invalid choice: 'even'"),
        (["--flag", "maybe"], "argument --flag: Truthy value expected: got maybe"),
        (["--rate", "fast"], "argument --rate: invalid float value: 'fast'"),
        (["--limit", "all"], "argument --limit: invalid int value: 'all'"),
        (["--count", "0"], "count: must be at least 1 (got 0)"),  # the dataclass's own check
        (["--colour", "red"], "unrecognized arguments: --colour red"),
        (["--no-flag"], "unrecognized arguments: --no-flag"),  # --no_NAME only where the default is true
        (["--config"], "argument --config: give one preset file"),
    ],
)
def test_bad_flag_values_exit_2_naming_the_flag(
    config_error: Callable[..., str], argv: list[str], message: str
) -> None:
    assert message in config_error(Demo, *argv)


def test_preset_values_are_typed_and_flags_win(tmp_path: Path) -> None:
    text = "names: only\nmode: slow\ncount: 4\nlimit: null\nrate: 5e-5\nwhere: p\nflag: true\neager_mode: false\n"
    path = preset(tmp_path, text + "weights: [balanced]\nlabel: none\n")
    expected = Demo(
        names=["only"], mode="slow", count=4, limit=None, rate=5e-5, where=Path("p"), flag=True, weights=["balanced"]
    )
    assert parse("--config", path) == dataclasses.replace(expected, eager_mode=False, label=None)
    config = parse(f"--config={path}", "--count", "9", "--names", "x", "y", "--eager-mode", "--rate", "3")
    assert config == dataclasses.replace(expected, count=9, names=["x", "y"], rate=3.0, label=None)
    assert isinstance(parse("--config", preset(tmp_path, "rate: 2\n")).rate, float)


def test_preset_env_section_sets_environment_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWEETIE_TEST_PRESET_ENV", "before")  # restored after the test
    assert parse("--config", preset(tmp_path, "env:\n  SWEETIE_TEST_PRESET_ENV: 1\ncount: 2\n")).count == 2
    assert os.environ["SWEETIE_TEST_PRESET_ENV"] == "1"


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("count: '3'\n", "count: expected an integer, got '3'"),
        ("count: true\n", "count: expected an integer, got True"),
        ("count: 1.5\n", "count: expected an integer, got 1.5"),
        ("rate: fast\n", "rate: expected a number, got 'fast'"),
        ("flag: 1\n", "flag: expected true or false, got 1"),
        ("label: 5\n", "label: expected a string, got 5"),
        ("limit: null\ncount: null\n", "count: expected an integer, got None"),
        ("names: [a, 2]\n", "names: expected a string, got 2"),
        ("mode: medium\n", "mode: 'medium' is not valid (valid: 'fast', 'slow')"),
        ("weights: [even]\n", "weights: 'even' is not valid (valid: 'balanced', 'none')"),
        ("count: 0\n", "count: must be at least 1 (got 0)"),
        ("colour: red\nsize: 2\n", "unknown key(s) ['colour', 'size']; valid keys: ['count', 'eager_mode', 'flag',"),
        ("- a\n", "must contain a YAML mapping"),
        ("count: [\n", "not valid YAML"),
    ],
)
def test_bad_presets_exit_2_naming_the_key(
    tmp_path: Path, config_error: Callable[..., str], yaml_text: str, message: str
) -> None:
    assert message in config_error(Demo, "--config", preset(tmp_path, yaml_text))


def test_missing_preset_exits_2(config_error: Callable[..., str]) -> None:
    assert "--config nowhere.yaml: file not found" in config_error(Demo, "--config", "nowhere.yaml")


def test_help_lists_both_spellings_the_preset_flag_and_the_boolean_forms(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse("--help")
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--names NAMES [NAMES ...], --names" not in out  # a name without "_" has one spelling
    for text in ("--eager_mode [EAGER_MODE], --eager-mode", "{fast,slow}", "100% optional", "--config PRESET.yaml"):
        assert text in out
    assert "--no_eager_mode" not in out and "--no_NAME where the default is true" in out


SHIPPED_PRESETS: dict[str, type[Any]] = {
    "cpu-smol.yaml": SftConfig,
    "gpu-8b.yaml": SftConfig,
    "roleplay.yaml": RoleplayConfig,
    "roleplay_smol.yaml": RoleplayConfig,
}


def test_every_shipped_preset_is_listed_here() -> None:
    assert sorted(path.name for path in (REPO / "training" / "configs").glob("*.yaml")) == sorted(SHIPPED_PRESETS)


@pytest.mark.parametrize(("name", "config_cls"), SHIPPED_PRESETS.items(), ids=list(SHIPPED_PRESETS))
def test_every_shipped_preset_parses(name: str, config_cls: type[Any]) -> None:
    config = parse_config(config_cls, ["--config", str(REPO / "training" / "configs" / name)])
    assert config != config_cls()  # the preset changed something


ENTRY_POINTS = [
    (["-m", "training.sft"], "--max_seq_length"),
    (["-m", "training.export"], "--checkpoint"),
    (["-m", "training.evaluate"], "--models"),
    (["-m", "training.roleplay"], "--counselor_model"),
    (["-m", "training.esconv"], "--esconv_dir"),
    (["-m", "training.safety_classifier"], "--level_class_weight"),
    (["-m", "training.scenarios", "expand"], "--count"),
    (["benchmarks/sft_esconv.py"], "--skip_train"),
    (["benchmarks/reply_length.py"], "--turns"),
    (["benchmarks/safety_bench.py"], "--screen"),
    (["benchmarks/safety_ordinary.py"], "--esconv_dir"),
    (["benchmarks/session_store_bench.py"], "--redis_url"),
    (["benchmarks/roleplay_bench.py"], "--skip_expand"),
    (["benchmarks/sampling_defaults.py"], "--speed_prompts"),
]


@pytest.mark.parametrize(("target", "flag"), ENTRY_POINTS, ids=[t[-1] for t, _ in ENTRY_POINTS])
def test_help_of_every_entry_point_is_quick_and_imports_no_torch(target: list[str], flag: str) -> None:
    started = time.perf_counter()
    command = [sys.executable, "-X", "importtime", *target, "--help"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert flag in result.stdout and "--config PRESET.yaml" in result.stdout
    imported = {
        line.rpartition("|")[2].strip() for line in result.stderr.splitlines() if line.startswith("import time")
    }
    assert "trl" in imported and not imported & {"torch", "transformers"}
    assert time.perf_counter() - started < 20  # generous: the machine is shared; typically 0.6-1.3 s
