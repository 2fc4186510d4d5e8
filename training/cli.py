"""Command-line parsing for the training scripts' config dataclasses.

Each script keeps its settings in a dataclass whose fields carry ``metadata={"help": ...}`` and a default (or
``default_factory``); :func:`parse_config` turns it into flags and accepts a YAML preset with ``--config preset.yaml``
whose keys are the field names (command-line flags win over the preset). Field types: ``str``, ``int``, ``float``,
``bool``, ``Path``, ``Literal[...]`` (choices), ``list[X]`` of those (one flag, several values) and ``X | None``.

- ``--max_turns 6`` and ``--max-turns 6`` both work; ``none``/``null`` sets an optional field to None.
- Booleans: ``--resume``, ``--resume true|false`` (or yes/no, y/n, t/f, 1/0), ``--no-resume`` and ``--no_resume``.
- Preset values are checked like flags: a wrong type, a bad choice or an unknown key is an error naming the key.
- Bad values, including the dataclass's own ``ValueError`` checks, exit with status 2 and a message naming the field.

Plain argparse keeps ``--help`` instant: no torch or transformers import.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

ConfigT = TypeVar("ConfigT")

_EXPECTED = {str: "a string", int: "an integer", float: "a number", bool: "true or false", Path: "a path"}
_BOOLS = {word: True for word in ("true", "t", "yes", "y", "1")}
_BOOLS |= {word: False for word in ("false", "f", "no", "n", "0")}  # what transformers accepted
_NONE = ("none", "null")


@dataclasses.dataclass(frozen=True)
class _FieldType:
    """What a config field holds: a scalar type, with Literal choices, as a list, and/or None allowed."""

    scalar: type
    choices: tuple[Any, ...] | None = None
    is_list: bool = False
    optional: bool = False


def _field_type(annotation: Any) -> _FieldType:
    """The :class:`_FieldType` of a field annotation; TypeError for a type the parser does not support."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        rest = [arg for arg in args if arg is not type(None)]
        if len(rest) == 1:
            return dataclasses.replace(_field_type(rest[0]), optional=True)
    elif origin is list and len(args) == 1:
        item = _field_type(args[0])
        if not item.is_list and not item.optional:
            return dataclasses.replace(item, is_list=True)
    elif origin is Literal and len({type(arg) for arg in args}) == 1 and type(args[0]) in _EXPECTED:
        return _FieldType(type(args[0]), choices=args)
    elif annotation in _EXPECTED:
        return _FieldType(annotation)
    raise TypeError(f"unsupported config field type {annotation!r}")


def _from_text(kind: _FieldType) -> Callable[[str], Any]:
    """argparse ``type=`` for one command-line value of ``kind`` (Literal choices are left to argparse)."""

    def convert(text: str) -> Any:
        if kind.optional and text.lower() in _NONE:
            return None
        try:
            return _BOOLS[text.lower()] if kind.scalar is bool else kind.scalar(text)
        except (KeyError, ValueError):
            raise argparse.ArgumentTypeError(f"expected {_EXPECTED[kind.scalar]}, got {text!r}") from None

    return convert


def _from_yaml(name: str, kind: _FieldType, value: Any) -> Any:
    """A preset value as ``kind``; ValueError naming the key when it does not fit."""
    if value is None and kind.optional:
        return None
    if kind.is_list:
        items = value if isinstance(value, list) else [value]  # a single value is a one-item list
        return [_from_yaml(name, dataclasses.replace(kind, is_list=False, optional=False), item) for item in items]
    scalar = kind.scalar
    if scalar is float and isinstance(value, int | str) and not isinstance(value, bool):
        with contextlib.suppress(ValueError):
            value = float(value)  # YAML reads 5e-5 (no dot) as a string
    elif scalar is Path and isinstance(value, str):
        value = Path(value)
    if isinstance(value, bool) != (scalar is bool) or not isinstance(value, scalar):  # bools and numbers do not mix
        raise ValueError(f"{name}: expected {_EXPECTED[scalar]}, got {value!r}")
    if kind.choices is not None and value not in kind.choices:
        raise ValueError(f"{name}: {value!r} is not valid (valid: {', '.join(map(repr, kind.choices))})")
    return value


def _fields(config_cls: type[Any]) -> dict[str, tuple[dataclasses.Field[Any], _FieldType]]:
    hints = typing.get_type_hints(config_cls)
    return {field.name: (field, _field_type(hints[field.name])) for field in dataclasses.fields(config_cls)}


def load_preset(config_cls: type[Any], path: Path) -> dict[str, Any]:
    """The YAML preset at ``path`` as typed field values; ValueError names the file and the key when one is wrong."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ValueError(f"--config {path}: file not found (presets live in training/configs/)") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"--config {path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"--config {path}: expected a mapping of field names to values")
    fields = _fields(config_cls)
    unknown = sorted(map(str, set(raw) - set(fields)))
    if unknown:
        raise ValueError(f"--config {path}: unknown key(s) {unknown}; valid keys: {sorted(fields)}")
    try:
        return {key: _from_yaml(key, fields[key][1], value) for key, value in raw.items()}
    except ValueError as exc:
        raise ValueError(f"--config {path}: {exc}") from None


def build_parser(
    config_cls: type[Any], description: str | None = None, prog: str | None = None
) -> argparse.ArgumentParser:
    """An argparse parser with one flag (and its dashed spelling) per field of the dataclass ``config_cls``."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog="Booleans: --NAME, --NAME true|false, --no-NAME or --no_NAME. A field that may be None takes 'none'.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--config", type=Path, default=None, help="YAML preset; keys are the flag names below.")
    for name, (field, kind) in _fields(config_cls).items():
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            raise TypeError(f"{config_cls.__name__}.{name}: config fields need a default value")
        dashed = name.replace("_", "-")
        flags = list(dict.fromkeys([f"--{name}", f"--{dashed}"]))
        help_text = field.metadata.get("help", "").replace("%", "%%")
        if kind.scalar is bool and not kind.is_list:
            parser.add_argument(
                *flags, type=_from_text(kind), nargs="?", const=True, default=default, metavar="BOOL", help=help_text
            )
            negatives = list(dict.fromkeys([f"--no_{name}", f"--no-{dashed}"]))
            parser.add_argument(*negatives, dest=name, action="store_false", help=argparse.SUPPRESS)
        else:
            metavar = None if kind.choices else kind.scalar.__name__.upper()
            parser.add_argument(
                *flags,
                type=_from_text(kind),
                choices=kind.choices,
                nargs="+" if kind.is_list else None,
                default=default,
                metavar=metavar,
                help=help_text,
            )
    return parser


def parse_config(
    config_cls: type[ConfigT],
    argv: Sequence[str] | None = None,
    description: str | None = None,
    prog: str | None = None,
) -> ConfigT:
    """Parse ``argv`` (default: sys.argv) into an instance of ``config_cls``, applying a ``--config`` preset.

    Bad values (wrong type or choice, unknown preset key, a ``ValueError`` from the dataclass) exit with status 2.
    """
    parser = build_parser(config_cls, description, prog)
    first, _ = parser.parse_known_args(argv)
    if first.config is not None:
        try:
            parser.set_defaults(**load_preset(config_cls, first.config))
        except ValueError as exc:
            parser.error(str(exc))
    values = vars(parser.parse_args(argv))
    values.pop("config")
    try:
        return config_cls(**values)
    except ValueError as exc:
        parser.error(str(exc))
