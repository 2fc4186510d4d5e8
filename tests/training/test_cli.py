"""training.cli: one parser for every training script (flags, YAML presets, errors, a fast --help)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from training.cli import build_parser, parse_config

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


def test_optional_fields_take_none() -> None:
    assert parse("--limit", "none", "--label", "null") == Demo(limit=None, label=None)


@pytest.mark.parametrize(
    ("argv", "flag", "eager_mode"),
    [
        ([], False, True),
        (["--flag"], True, True),
        (["--flag", "true", "--eager_mode", "no"], True, False),
        (["--flag", "False", "--eager-mode", "1"], False, True),
        (["--flag", "--no-flag"], False, True),
        (["--no_flag", "--no_eager_mode"], False, False),
        (["--no-eager-mode", "--names", "z"], False, False),
        (["--eager_mode", "--names", "z"], False, True),
    ],
)
def test_boolean_forms(argv: list[str], flag: bool, eager_mode: bool) -> None:
    config = parse(*argv)
    assert (config.flag, config.eager_mode) == (flag, eager_mode)


def test_bad_flag_values_exit_2_naming_the_flag(config_error: Callable[..., str]) -> None:
    assert "argument --count: expected an integer, got 'x'" in config_error(Demo, "--count", "x")
    assert "--mode: invalid choice: 'medium'" in config_error(Demo, "--mode", "medium")
    assert "--flag: expected true or false, got 'maybe'" in config_error(Demo, "--flag", "maybe")
    assert "--rate: expected a number" in config_error(Demo, "--rate", "fast")
    assert "--limit: expected an integer, got 'all'" in config_error(Demo, "--limit", "all")
    assert "count: must be at least 1 (got 0)" in config_error(Demo, "--count", "0")
    assert "unrecognized arguments: --colour" in config_error(Demo, "--colour", "red")


def test_preset_values_are_typed_and_flags_win(tmp_path: Path) -> None:
    text = "names: only\nmode: slow\ncount: 4\nlimit: null\nrate: 5e-5\nwhere: p\nflag: true\neager_mode: false\n"
    path = preset(tmp_path, text)
    expected = Demo(names=["only"], mode="slow", count=4, limit=None, rate=5e-5, where=Path("p"), flag=True)
    assert parse("--config", path) == dataclasses.replace(expected, eager_mode=False)
    config = parse("--config", path, "--count", "9", "--names", "x", "y", "--eager-mode", "--rate", "3")
    assert config == dataclasses.replace(expected, count=9, names=["x", "y"], rate=3.0)
    assert isinstance(parse("--config", preset(tmp_path, "rate: 2\n")).rate, float)


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
        ("count: 0\n", "count: must be at least 1 (got 0)"),
        ("colour: red\nsize: 2\n", "unknown key(s) ['colour', 'size']; valid keys: ['count', 'eager_mode', 'flag',"),
        ("- a\n", "expected a mapping of field names to values"),
        ("count: [\n", "not valid YAML"),
    ],
)
def test_bad_presets_exit_2_naming_the_key(
    tmp_path: Path, config_error: Callable[..., str], yaml_text: str, message: str
) -> None:
    assert message in config_error(Demo, "--config", preset(tmp_path, yaml_text))


def test_missing_preset_and_unsupported_field_types(config_error: Callable[..., str]) -> None:
    assert "--config nowhere.yaml: file not found" in config_error(Demo, "--config", "nowhere.yaml")

    @dataclass
    class Mapping:
        table: dict[str, int] = field(default_factory=dict)

    with pytest.raises(TypeError, match="unsupported config field type"):
        build_parser(Mapping)


def test_help_lists_every_spelling(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse("--help")
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--names STR [STR ...], --names" not in out  # a name without "_" has one spelling
    for text in ("--names STR [STR ...]", "--eager_mode [BOOL], --eager-mode [BOOL]", "{fast,slow}", "100% optional"):
        assert text in out
    assert "--no-NAME or --no_NAME" in out


ENTRY_POINTS = [
    (["-m", "training.sft"], "--max_seq_length"),
    (["-m", "training.export"], "--checkpoint"),
    (["-m", "training.evaluate"], "--models"),
    (["-m", "training.roleplay"], "--counselor_model"),
    (["-m", "training.esconv"], "--esconv_dir"),
    (["benchmarks/sft_esconv.py"], "--skip_train"),
    (["benchmarks/reply_length.py"], "--turns"),
    (["benchmarks/safety_bench.py"], "--clock"),
    (["benchmarks/session_store_bench.py"], "--redis_url"),
]


@pytest.mark.parametrize(("target", "flag"), ENTRY_POINTS, ids=[t[-1] for t, _ in ENTRY_POINTS])
def test_help_of_every_entry_point_is_quick_and_imports_no_torch(target: list[str], flag: str) -> None:
    started = time.perf_counter()
    command = [sys.executable, "-X", "importtime", *target, "--help"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert flag in result.stdout
    imported = {
        line.rpartition("|")[2].strip() for line in result.stderr.splitlines() if line.startswith("import time")
    }
    assert imported and not imported & {"torch", "transformers"}
    assert time.perf_counter() - started < 20  # generous: the machine is shared; typically 1-2 s
