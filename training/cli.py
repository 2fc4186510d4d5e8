"""Command-line parsing for the training and benchmark scripts: TRL's ``TrlParser`` over a config dataclass.

Each script keeps its settings in a dataclass whose fields carry ``metadata={"help": ...}`` and a default;
:func:`parse_config` makes one flag per field (``transformers.HfArgumentParser`` rules, through ``TrlParser``) and
reads a YAML preset given with ``--config preset.yaml`` whose keys are the field names, plus an optional ``env:``
mapping of environment variables to set (TRL's). Command-line flags win over the preset.

- ``--max_turns 6`` and ``--max-turns 6`` both work; lists take several values (``--data a.jsonl b.jsonl``).
- Booleans: ``--resume``, ``--resume true|false`` (or yes/no, y/n, t/f, 1/0); a field that defaults to true also
  has ``--no_NAME`` / ``--no-NAME``.
- ``none``/``null`` sets a field that may be None to None (TRL leaves ``str | None`` fields as the text; here they
  take it too).

What this module adds to ``TrlParser``: preset values are checked like flags (a wrong type, a bad choice or an
unknown key is an error naming the key; TRL would take them unchecked), and every bad value, including the
dataclass's own ``ValueError`` checks in ``__post_init__``, exits with status 2 and a message instead of a traceback.
``trl`` imports neither torch nor transformers for this, so ``--help`` stays quick.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from trl import TrlParser

ConfigT = TypeVar("ConfigT")

_EXPECTED = {str: "a string", int: "an integer", float: "a number", bool: "true or false", Path: "a path"}
_NONE = ("none", "null")


class PresetError(ValueError):
    """A ``--config`` preset key that is unknown or whose value does not fit its field."""


def _none_or_str(text: str) -> str | None:
    return None if text.lower() in _NONE else text


def _choice(choices: tuple[Any, ...]) -> Callable[[str], Any]:
    """argparse ``type=`` for one Literal value (argparse then checks ``choices``)."""
    by_text = {str(choice): choice for choice in choices}
    return lambda text: by_text.get(text, text)


def _typed(key: str, hint: Any, value: Any) -> Any:
    """A preset value as the field type ``hint``; :class:`PresetError` naming ``key`` when it does not fit."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (arg for arg in args if arg is not type(None)):
            try:
                return _typed(key, option, value)
            except PresetError as exc:
                errors.append(exc)
        raise errors[0]
    if origin is list:
        items = value if isinstance(value, list) else [value]  # a single value is a one-item list
        return [_typed(key, args[0], item) for item in items]
    if origin is Literal:
        if value not in args:
            raise PresetError(f"{key}: {value!r} is not valid (valid: {', '.join(map(repr, args))})")
        return value
    if hint is float and isinstance(value, int | str) and not isinstance(value, bool):
        with contextlib.suppress(ValueError):
            value = float(value)  # YAML reads 5e-5 (no dot) as a string
    elif hint is Path and isinstance(value, str):
        value = Path(value)
    if isinstance(value, bool) != (hint is bool) or not isinstance(value, hint):  # bools and numbers do not mix
        raise PresetError(f"{key}: expected {_EXPECTED.get(hint, getattr(hint, '__name__', hint))}, got {value!r}")
    return value


class ConfigParser(TrlParser):  # type: ignore[misc]  # trl is not type-checked here (follow_imports = "skip")
    """``TrlParser`` for one config dataclass, with typed preset values and a listed ``--config`` flag."""

    def __init__(self, config_cls: type[Any], **kwargs: Any) -> None:
        kwargs.setdefault("usage", "%(prog)s [-h] [--config PRESET.yaml] [--FLAG VALUE ...]")  # flags: below
        kwargs.setdefault("epilog", "Booleans: --NAME or --NAME true|false; --no_NAME where the default is true.")
        super().__init__([config_cls], **kwargs)
        hints = typing.get_type_hints(config_cls)
        self.fields = {field.name: hints[field.name] for field in dataclasses.fields(config_cls) if field.init}
        self.add_argument(
            "--config", metavar="PRESET.yaml", default=argparse.SUPPRESS, help="YAML preset; keys are the field names."
        )
        for action in self._actions:
            if action.help:
                action.help = action.help.replace("%", "%%")  # argparse formats help text with %
            hint = self.fields.get(action.dest)
            if hint is None:
                continue
            if isinstance(action, argparse._StoreFalseAction):
                action.help = argparse.SUPPRESS  # --no_NAME: in the epilog, not beside every boolean
                continue
            if set(typing.get_args(hint)) == {str, type(None)}:
                action.type = _none_or_str
            elif typing.get_origin(hint) is list and typing.get_origin(typing.get_args(hint)[0]) is Literal:
                action.choices = typing.get_args(typing.get_args(hint)[0])  # HfArgumentParser can't: type=Literal
                action.type = _choice(action.choices)

    def set_defaults_with_config(self, **kwargs: Any) -> list[str]:
        """The preset's values as defaults, each checked against its field first (TRL takes them as they come)."""
        unknown = sorted(map(str, set(kwargs) - set(self.fields)))
        if unknown:
            raise PresetError(f"unknown key(s) {unknown}; valid keys: {sorted(self.fields)}")
        typed = {key: _typed(key, self.fields[key], value) for key, value in kwargs.items()}
        remaining: list[str] = super().set_defaults_with_config(**typed)
        return remaining


def parse_config(
    config_cls: type[ConfigT],
    argv: Sequence[str] | None = None,
    description: str | None = None,
    prog: str | None = None,
) -> ConfigT:
    """Parse ``argv`` (default: sys.argv) into an instance of ``config_cls``, applying a ``--config`` preset.

    Bad values (wrong type or choice, unknown flag or preset key, a ``ValueError`` from the dataclass) exit with
    status 2 and a message naming the flag, key or field.
    """
    parser = ConfigParser(config_cls, prog=prog, description=description)
    args: list[str] = []
    for arg in sys.argv[1:] if argv is None else argv:
        args += arg.split("=", 1) if arg.startswith("--config=") else [arg]
    if args.count("--config") > 1 or args[-1:] == ["--config"]:
        parser.error("argument --config: give one preset file")
    preset = args[args.index("--config") + 1] if "--config" in args else None
    try:
        config, *_, unknown = parser.parse_args_and_config(args, return_remaining_strings=True)
    except FileNotFoundError:
        parser.error(f"--config {preset}: file not found (presets live in training/configs/)")
    except yaml.YAMLError as exc:
        parser.error(f"--config {preset}: not valid YAML: {exc}")
    except (PresetError, OSError) as exc:
        parser.error(f"--config {preset}: {exc}")
    except ValueError as exc:  # the dataclass's own checks; a preset that is not a mapping
        parser.error(str(exc))
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return typing.cast(ConfigT, config)
