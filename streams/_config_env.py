"""Where a config came from (file and YAML nodes), and every environment variable it names but is unset.

The worker reads the variables a config names (secrets, API keys) in several places as it starts:
the lead policy (CRM credentials, managers' and account executives' secrets), the reps' profiles,
the API keys, the providers, the enrichment keys. Each of those stops at the first variable
missing. ``unset_variables`` runs that same code with a stand-in for every missing variable, so
all of them are found in one go, and points at the line of the config naming each one.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final

import yaml

__all__ = ["ConfigOrigin", "Loc", "Section", "dotted", "line_of", "node_problems", "unset_variables"]

Loc = tuple[int | str, ...]

#: What a missing variable reads as while the check runs: shaped like a ``whsec_`` secret, so that
#: code validating a secret's form does not stop the check. It never leaves the check.
_STAND_IN: Final = "whsec_" + "A" * 43


@dataclass(frozen=True)
class ConfigOrigin:
    """The file a config was read from and its YAML nodes. Two configs with the same content are
    equal wherever they came from, hence ``compare=False``."""

    source: str | None = field(default=None, compare=False)
    node: yaml.Node | None = field(default=None, compare=False, repr=False)

    def where(self, loc: Loc) -> str:
        """``file:line: path`` (or just ``path`` for a config built in code)."""
        line = line_of(self.node, loc) if self.node is not None else None
        if self.source is None:
            return dotted(loc)
        return f"{self.source}:{line}: {dotted(loc)}" if line else f"{self.source}: {dotted(loc)}"


@dataclass(frozen=True, slots=True)
class Section:
    """A part of the worker's start that reads variables: ``resolve(env)`` is the worker's own code,
    ``within`` the parts of the config that name its variables, ``default_at`` where a variable it
    reads by its default name (absent from the file) is reported."""

    resolve: Callable[[Mapping[str, str]], object]
    within: tuple[Loc, ...]
    default_at: Loc


class _Recording(Mapping[str, str]):
    """``env`` that answers a stand-in for a variable that is unset or empty, noting its name."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env
        self.unset: list[str] = []

    def __getitem__(self, name: str) -> str:
        value = self._env.get(name)
        if value:
            return value
        if name not in self.unset:
            self.unset.append(name)
        return _STAND_IN

    def __iter__(self) -> Iterator[str]:
        return iter(self._env)

    def __len__(self) -> int:
        return len(self._env)


def _named_variables(node: yaml.Node | None, loc: Loc) -> Iterator[tuple[Loc, str]]:
    """``(path, value)`` of every ``*_env: NAME`` entry under ``node`` (at ``loc``)."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            name = getattr(key, "value", None)
            if not isinstance(name, str):
                continue
            if name.endswith("_env") and isinstance(value, yaml.ScalarNode):
                yield (*loc, name), str(value.value)
            else:
                yield from _named_variables(value, (*loc, name))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _named_variables(item, (*loc, index))


def unset_variables(origin: ConfigOrigin, sections: list[Section], env: Mapping[str, str]) -> list[str]:
    """One line per place the config names a variable that ``env`` lacks:
    ``file:line: path: environment variable NAME is not set`` (never a value)."""
    named = list(_named_variables(origin.node, ()))
    found: dict[str, int] = {}  # problem -> its line, to list them in the file's order
    for section in sections:
        recording = _Recording(env)
        section.resolve(recording)
        for name in recording.unset:
            places = [loc for loc, value in named
                      if value == name and any(loc[:len(part)] == part for part in section.within)]
            for loc in places or [section.default_at]:
                line = line_of(origin.node, loc) if origin.node is not None else None
                found.setdefault(f"{origin.where(loc)}: environment variable {name} is not set", line or 0)
    return sorted(found, key=found.__getitem__)


def line_of(node: yaml.Node | None, loc: Loc) -> int | None:
    """Follow a location through the YAML node tree to a line number (the deepest node found)."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if getattr(k, "value", None) == part), None)
            if match is None:
                break
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            break
        line = node.start_mark.line + 1
    return line


def dotted(loc: Loc) -> str:
    """``("teams", 0, "reps", 1, "id")`` -> ``teams[0].reps[1].id``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


_TIMESTAMP = "tag:yaml.org,2002:timestamp"


def node_problems(node: yaml.Node | None, loc: Loc = ()) -> list[tuple[int, str]]:
    """``(line, "path: problem")`` for what the YAML loader would pass over silently or fail on with a
    traceback: a key given twice in one mapping (the last one silently won: ``capacity: 3, capacity:
    300`` gave 300, a second ``teams:`` dropped the first list), and a date that does not exist
    (``2026-02-30``: a ValueError from the loader)."""
    found: list[tuple[int, str]] = []
    if isinstance(node, yaml.MappingNode):
        first: dict[object, int] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else None
            if name is not None and name != "<<":  # a merge key may repeat what it merges
                if name in first:
                    found.append((key.start_mark.line + 1, f"{dotted((*loc, name))}: key {name!r} is given twice in "
                                  f"this mapping (first at line {first[name]}); keep one"))
                first.setdefault(name, key.start_mark.line + 1)
            found += node_problems(value, (*loc, name if name is not None else "?"))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            found += node_problems(item, (*loc, index))
    elif isinstance(node, yaml.ScalarNode) and node.tag == _TIMESTAMP:
        try:
            yaml.SafeLoader("").construct_yaml_timestamp(node)
        except ValueError as exc:
            found.append((node.start_mark.line + 1, f"{dotted(loc)}: {node.value!r} is not a date ({exc})"))
    return found
