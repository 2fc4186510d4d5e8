"""The support-strategy catalogue: names, definitions, examples and forgiving name matching.

The default catalogue is ESConv's eight strategies, shipped in ``app/core/strategies.yaml``. A deployment can
pass its own YAML to ``load_catalogue(path)``; that file either extends the shipped one (``mode: extend``, the
default: new names are added, same names are overridden) or replaces it (``mode: replace``).

Serving and training both import this module, so it stays light: only the standard library and PyYAML.

How to run (prints the catalogue as it would appear in a prompt)::

    python -m app.core.strategies [path/to/deployment_strategies.yaml]
"""

from __future__ import annotations

import functools
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEFAULT_PATH = Path(__file__).resolve().parent / "strategies.yaml"

# Bracket-like and quote characters that may wrap a strategy tag, e.g. "[Question]", "**Question**", "'Question'".
_WRAPPERS = "[](){}<>*_`'\"“”‘’ "
_TRAILING = ".:;,!?- "


class CatalogueError(ValueError):
    """A strategy YAML file is malformed; the message names the file and the offending entry."""


@dataclass(frozen=True)
class Strategy:
    """One support strategy."""

    name: str
    definition: str
    example: str
    aliases: tuple[str, ...] = ()


def normalize(text: str) -> str:
    """Reduce a strategy spelling to a comparison key: lower case, no brackets, single spaces.

    ``"[Restatement/Paraphrasing]"`` -> ``"restatement or paraphrasing"``;
    ``"Self_Disclosure"`` -> ``"self disclosure"``.
    """
    key = text.strip().strip(_WRAPPERS).strip(_TRAILING).strip(_WRAPPERS)
    key = key.lower().replace("&", " and ").replace("/", " or ")
    key = re.sub(r"[\s_\-]+", " ", key)
    return key.strip()


class StrategyCatalogue:
    """An ordered set of strategies with lookup by exact name, alias or loose spelling."""

    def __init__(self, strategies: list[Strategy], source: str = "<memory>") -> None:
        if not strategies:
            raise CatalogueError(f"{source}: the catalogue has no strategies")
        self.source = source
        self._by_name: dict[str, Strategy] = {}
        self._by_key: dict[str, str] = {}
        for strategy in strategies:
            self._by_name[strategy.name] = strategy
        # Exact names win over aliases: index aliases first, then names overwrite.
        for strategy in strategies:
            for alias in strategy.aliases:
                self._by_key.setdefault(normalize(alias), strategy.name)
        for strategy in strategies:
            self._by_key[normalize(strategy.name)] = strategy.name

    @property
    def names(self) -> list[str]:
        """Strategy names in catalogue order."""
        return list(self._by_name)

    @property
    def strategies(self) -> list[Strategy]:
        """Strategies in catalogue order."""
        return list(self._by_name.values())

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __len__(self) -> int:
        return len(self._by_name)

    def get(self, name: str) -> Strategy | None:
        """The strategy called ``name`` (any spelling ``canonical`` accepts), or None."""
        canonical = self.canonical(name)
        return None if canonical is None else self._by_name[canonical]

    def canonical(self, text: str) -> str | None:
        """The exact catalogue name for a loose spelling, or None when nothing matches.

        Case, spacing, underscores, hyphens and wrapping brackets/quotes are ignored, and short aliases are accepted:
        ``"[question]"`` -> ``"Question"``, ``"Reflection"`` -> ``"Reflection of feelings"``.
        """
        return self._by_key.get(normalize(text))

    def describe(self, with_examples: bool = True) -> str:
        """The catalogue as a bullet list for prompts: one strategy per line, with definition and example."""
        lines = []
        for strategy in self._by_name.values():
            line = f"- {strategy.name}: {strategy.definition}"
            if with_examples and strategy.example:
                line += f' Example: "{strategy.example}"'
            lines.append(line)
        return "\n".join(lines)


def _parse_strategies(raw: Any, source: str) -> tuple[str, list[Strategy]]:
    if not isinstance(raw, dict):
        raise CatalogueError(f"{source}: expected a mapping with a 'strategies' list at the top level")
    mode = raw.get("mode", "extend")
    if mode not in ("extend", "replace"):
        raise CatalogueError(f"{source}: mode: {mode!r} is not valid (valid: 'extend', 'replace')")
    items = raw.get("strategies")
    if not isinstance(items, list):
        raise CatalogueError(f"{source}: strategies: expected a list of strategies")
    allowed = {"name", "definition", "example", "aliases"}
    strategies: list[Strategy] = []
    for index, item in enumerate(items):
        where = f"{source}: strategies.{index}"
        if not isinstance(item, dict):
            raise CatalogueError(f"{where}: expected a mapping with name, definition, example")
        unknown = sorted(set(item) - allowed)
        if unknown:
            raise CatalogueError(f"{where}: unknown field(s) {unknown} (valid: {sorted(allowed)})")
        name, definition = item.get("name"), item.get("definition")
        if not isinstance(name, str) or not name.strip():
            raise CatalogueError(f"{where}.name: a non-empty string is required")
        if name != name.strip():
            raise CatalogueError(f"{where}.name: {name!r} has leading or trailing spaces")
        if not isinstance(definition, str) or not definition.strip():
            raise CatalogueError(f"{where}.definition: a non-empty string is required for {name!r}")
        example = item.get("example", "")
        if not isinstance(example, str):
            raise CatalogueError(f"{where}.example: expected a string")
        aliases = item.get("aliases", [])
        if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
            raise CatalogueError(f"{where}.aliases: expected a list of strings")
        strategies.append(Strategy(name, definition.strip(), example.strip(), tuple(aliases)))
    return mode, strategies


def _read_yaml(path: Path) -> Any:
    try:
        with path.open(encoding="utf-8") as handle:
            return yaml.safe_load(handle)
    except FileNotFoundError:
        raise CatalogueError(f"{path}: strategy catalogue file not found") from None
    except yaml.YAMLError as exc:
        raise CatalogueError(f"{path}: not valid YAML: {exc}") from None


@functools.lru_cache(maxsize=1)
def _default_strategies() -> tuple[Strategy, ...]:
    _, strategies = _parse_strategies(_read_yaml(DEFAULT_PATH), str(DEFAULT_PATH))
    return tuple(strategies)


def load_catalogue(path: str | Path | None = None) -> StrategyCatalogue:
    """The shipped catalogue, extended or replaced by the deployment YAML at ``path`` when given."""
    strategies = {s.name: s for s in _default_strategies()}
    if path is None:
        return StrategyCatalogue(list(strategies.values()), source=str(DEFAULT_PATH))
    override = Path(path)
    mode, extra = _parse_strategies(_read_yaml(override), str(override))
    if mode == "replace":
        strategies = {}
    for strategy in extra:
        strategies[strategy.name] = strategy
    return StrategyCatalogue(list(strategies.values()), source=str(override))


if __name__ == "__main__":
    catalogue = load_catalogue(sys.argv[1] if len(sys.argv) > 1 else None)
    print(catalogue.describe())
