"""Reading YAML while remembering where every key and value came from.

The loader builds plain Python data (dicts, lists, scalars) and a SourceMap from
each path in that data to its file, line and column, so any problem found later
(by pydantic or a cross-field check) can be reported where the user wrote it.

YAML here follows the 1.2 core schema for booleans: only true/false are
booleans, so the key ``on:`` stays the string "on" and ``no`` stays "no".
Timestamps stay strings. Duplicate keys are errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
import re
from typing import Any

import yaml

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class Position:
    """A place in a file: 1-based line and column."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Issue:
    """One problem in a config file: where, which setting, what is wrong."""

    path: Path_
    message: str
    position: Position | None = None

    @property
    def dotted(self) -> str:
        return dotted(self.path)

    def __str__(self) -> str:
        where = f"{self.position}: " if self.position else ""
        what = f"{self.dotted}: " if self.path else ""
        return f"{where}{what}{self.message}"

    def to_dict(self) -> dict:
        pos = self.position
        return {
            "file": pos.file if pos else None,
            "line": pos.line if pos else None,
            "column": pos.column if pos else None,
            "path": self.dotted,
            "message": self.message,
        }


def dotted(path: Path_) -> str:
    """Render a path the way users write it: services.api.routes[0].host."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass
class SourceMap:
    """Positions of the values (and of the keys) of a loaded document."""

    file: str
    values: dict[Path_, Position] = field(default_factory=dict)
    keys: dict[Path_, Position] = field(default_factory=dict)

    def locate(self, path: Path_, *, key: bool = False) -> Position | None:
        """The position of ``path``, or of its nearest ancestor that has one."""
        table = self.keys if key else self.values
        probe = tuple(path)
        while True:
            if probe in table:
                return table[probe]
            if key and probe in self.values:
                return self.values[probe]
            if not probe:
                return None
            probe = probe[:-1]
            table = self.values


class YAMLLoadError(Exception):
    """The YAML could not be parsed; carries the issues with their positions."""

    def __init__(self, issues: list[Issue]):
        super().__init__("; ".join(str(i) for i in issues))
        self.issues = issues


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans and no timestamp conversion."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers
            if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def _position(file: str, mark: yaml.Mark | None) -> Position | None:
    if mark is None:
        return None
    return Position(file, mark.line + 1, mark.column + 1)


def load_yaml_text(text: str, file: str) -> tuple[Any, SourceMap, list[Issue]]:
    """Parse one YAML document into plain data, its SourceMap, and the problems
    that do not stop parsing (duplicate keys, non-string keys).

    Raises YAMLLoadError when the text is not YAML at all."""
    smap = SourceMap(file)
    try:
        loader = _Loader(text)  # checks every character: may raise ReaderError
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        raise YAMLLoadError([Issue(
            (), f"invalid YAML: unacceptable character #x{exc.character:04x}: {exc.reason}",
            Position(file, line, column))]) from exc
    try:
        node = loader.get_single_node()
        issues: list[Issue] = []
        if node is None:
            return None, smap, issues
        data = _build(loader, node, (), smap, issues)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or "invalid YAML"
        if exc.context and exc.context not in problem:
            problem = f"{problem} ({exc.context})"
        raise YAMLLoadError([Issue((), f"invalid YAML: {problem}", _position(file, mark))]) from exc
    except yaml.YAMLError as exc:  # errors without a mark (rare: bad encoding)
        raise YAMLLoadError([Issue((), f"invalid YAML: {exc}", Position(file, 1, 1))]) from exc
    finally:
        loader.dispose()
    return data, smap, issues


def load_yaml_file(path: Path) -> tuple[Any, SourceMap, list[Issue]]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise YAMLLoadError(
            [Issue((), f"not UTF-8 text (byte {exc.start})", Position(str(path), 1, 1))]
        ) from exc
    return load_yaml_text(text, str(path))


def _construct(loader: _Loader, node: yaml.Node) -> Any:
    """A scalar (or key) as Python data; a bad explicit tag (`!!int x`) is a YAML error."""
    try:
        return loader.construct_object(node, deep=True)
    except yaml.YAMLError:
        raise
    except Exception as exc:  # ValueError, IndexError, KeyError, ... from a constructor
        raise yaml.constructor.ConstructorError(
            None, None, f"cannot read {node.value!r} as {node.tag}", node.start_mark) from exc


def _build(loader: _Loader, node: yaml.Node, path: Path_, smap: SourceMap,
           issues: list[Issue], parents: tuple[int, ...] = ()) -> Any:
    if id(node) in parents:  # `&a [*a]`: an alias inside its own anchor
        raise yaml.composer.ComposerError(
            None, None, "an alias refers to a node that contains it (recursive anchor)",
            node.start_mark)
    parents = parents + (id(node),)
    smap.values[path] = _position(smap.file, node.start_mark)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves `<<: *anchor` merge keys
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = _construct(loader, key_node)
            key_pos = _position(smap.file, key_node.start_mark)
            if not isinstance(key, str):
                issues.append(Issue(path, f"keys must be strings, got {key!r}", key_pos))
                continue
            if key in result:
                first = smap.keys.get(path + (key,))
                issues.append(Issue(
                    path + (key,),
                    f"duplicate key '{key}' (first defined at line {first.line})"
                    if first else f"duplicate key '{key}'",
                    key_pos,
                ))
                continue
            smap.keys[path + (key,)] = key_pos
            result[key] = _build(loader, value_node, path + (key,), smap, issues, parents)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_build(loader, item, path + (i,), smap, issues, parents)
                for i, item in enumerate(node.value)]
    return _construct(loader, node)
