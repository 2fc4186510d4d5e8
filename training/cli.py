"""Command-line parsing for the training scripts' config dataclasses.

Each script keeps its settings in a dataclass whose fields carry ``metadata={"help": ...}``; ``parse_config`` turns
it into flags (``--max_turns`` and ``--max-turns`` both work, booleans get ``--x/--no-x``) and accepts a YAML preset
with ``--config preset.yaml`` whose keys are the field names (command-line flags win over the preset). Plain argparse
keeps ``--help`` instant: no transformers import.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

ConfigT = TypeVar("ConfigT")

_SCALARS: dict[Any, type] = {str: str, int: int, float: float, bool: bool}


def _scalar_type(annotation: Any) -> tuple[type, bool]:
    """The scalar type of ``X`` or ``X | None`` and whether None is allowed."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and rest[0] in _SCALARS:
            return _SCALARS[rest[0]], True
    if annotation in _SCALARS:
        return _SCALARS[annotation], False
    raise TypeError(f"unsupported config field type {annotation!r}")


def build_parser(
    config_cls: type[Any], description: str | None = None, prog: str | None = None
) -> argparse.ArgumentParser:
    """An argparse parser with one flag per field of the dataclass ``config_cls``."""
    parser = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--config", type=Path, default=None, help="YAML preset; keys are the flag names below.")
    hints = typing.get_type_hints(config_cls)
    for field in dataclasses.fields(config_cls):
        kind, _ = _scalar_type(hints[field.name])
        flags = [f"--{field.name}"]
        if "_" in field.name:
            flags.append(f"--{field.name.replace('_', '-')}")
        help_text = field.metadata.get("help", "")
        if field.default is dataclasses.MISSING:
            raise TypeError(f"{config_cls.__name__}.{field.name}: config fields need a plain default value")
        default = field.default
        if kind is bool:
            parser.add_argument(*flags, action=argparse.BooleanOptionalAction, default=default, help=help_text)
        else:
            metavar = kind.__name__.upper()
            parser.add_argument(*flags, type=kind, default=default, help=help_text, metavar=metavar)
    return parser


def parse_config(
    config_cls: type[ConfigT],
    argv: Sequence[str] | None = None,
    description: str | None = None,
    prog: str | None = None,
) -> ConfigT:
    """Parse ``argv`` (default: sys.argv) into an instance of ``config_cls``, applying a ``--config`` preset."""
    parser = build_parser(config_cls, description, prog)
    known = {field.name for field in dataclasses.fields(config_cls)}  # type: ignore[arg-type]
    first, _ = parser.parse_known_args(argv)
    if first.config is not None:
        preset = yaml.safe_load(first.config.read_text(encoding="utf-8")) or {}
        if not isinstance(preset, dict):
            parser.error(f"--config {first.config}: expected a mapping of field names to values")
        unknown = sorted(set(preset) - known)
        if unknown:
            parser.error(f"--config {first.config}: unknown key(s) {unknown}; valid keys: {sorted(known)}")
        parser.set_defaults(**preset)
    args = vars(parser.parse_args(argv))
    args.pop("config")
    return config_cls(**args)
