"""YAML files whose errors name the line: load a document and find the line of any field path in it.

``load_yaml(path)`` returns the data and a :class:`Lines` that maps a field path such as
``("scenarios", 3, "seeker", "age_group")`` to its 1-based line. A path that does not exist (a missing field) maps
to the line of the deepest part that does, so a message can still point at the entry that lacks the field.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic_core import ErrorDetails


class Lines:
    """Line numbers of the nodes of one YAML document."""

    def __init__(self, root: yaml.Node | None) -> None:
        self.root = root

    def line(self, path: Sequence[str | int]) -> int:
        """The 1-based line of ``path`` (a key's own line for mapping entries), else of its deepest existing part."""
        node = self.root
        if node is None:
            return 1
        line = node.start_mark.line + 1
        for part in path:
            found: yaml.Node | None = None
            if isinstance(node, yaml.MappingNode):
                for key, value in node.value:
                    if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                        line, found = key.start_mark.line + 1, value
                        break
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
                found = node.value[part]
                line = found.start_mark.line + 1
            if found is None:
                break
            node = found
        return line


def load_yaml(path: Path) -> tuple[Any, Lines]:
    """The document at ``path`` and its line map; ``yaml.YAMLError`` (with its own line) on a syntax error."""
    loader = yaml.SafeLoader(path.read_text(encoding="utf-8"))
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()
    return data, Lines(node)


def error_lines(
    errors: Sequence[ErrorDetails], file: Path, lines: Lines, prefix: Sequence[str | int] = ()
) -> list[str]:
    """``file:line: field.path: message`` for each pydantic error (``ValidationError.errors()``) under ``prefix``."""
    out = []
    for error in errors:
        loc = [*prefix, *error["loc"]]
        field = ".".join(str(part) for part in loc)
        out.append(f"{file}:{lines.line(loc)}: {field}: {error['msg']}" if field else f"{file}:1: {error['msg']}")
    return out
