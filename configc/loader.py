"""Load one YAML layer with the position of every value, so errors can name file:line."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from .errors import ConfigError, Location, Problem
from .interpolate import InterpolationError, has_reference, interpolate

KeyPath = tuple[str | int, ...]

REPLACE_TAG = "!replace"


@dataclass
class Layer:
    """One configuration file as plain data, plus where each path was written.

    ``origins`` maps every key path (mapping keys and list indexes) to its location;
    ``replace`` holds the paths of mappings tagged ``!replace``.
    """

    source: str
    data: dict[str, Any]
    origins: dict[KeyPath, Location] = field(default_factory=dict)
    replace: set[KeyPath] = field(default_factory=set)


def dotted(path: KeyPath) -> str:
    """``("hosts", 0, "name")`` -> ``"hosts[0].name"``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_layer(path: Path, environ: Mapping[str, str], label: str | None = None) -> Layer:
    """Read *path*; interpolate ``${VAR}`` from *environ*; raise ConfigError on any problem."""
    source = label or str(path)
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        problem = Problem(f"cannot read: {exc.strerror}", location=Location(source, 0, 0))
        raise ConfigError([problem]) from None
    try:
        root = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Location(source, mark.line + 1, mark.column + 1) if mark else None
        raise ConfigError([Problem(f"YAML syntax error: {exc.problem}", location=where)]) from None
    if root is None:
        root = CommentedMap()
    if not isinstance(root, CommentedMap):
        raise ConfigError(
            [Problem("the file must hold a mapping of sections", location=Location(source, 1, 1))]
        )
    builder = _LayerBuilder(source, environ)
    data = builder.mapping(root, ())
    if builder.problems:
        raise ConfigError(builder.problems)
    return Layer(source, data, builder.origins, builder.replace)


class _LayerBuilder:
    """Walks ruamel's round-trip tree into plain data, recording positions as it goes."""

    def __init__(self, source: str, environ: Mapping[str, str]) -> None:
        self.source = source
        self.environ = environ
        self.origins: dict[KeyPath, Location] = {}
        self.replace: set[KeyPath] = set()
        self.problems: list[Problem] = []

    def _loc(self, line_col: tuple[int, int]) -> Location:
        return Location(self.source, line_col[0] + 1, line_col[1] + 1)

    def mapping(self, node: CommentedMap, path: KeyPath) -> dict[str, Any]:
        tag = getattr(node, "tag", None)
        if tag is not None and tag.value == REPLACE_TAG:
            self.replace.add(path)
        out: dict[str, Any] = {}
        for key in node:
            child = (*path, str(key))
            self.origins[child] = self._loc(node.lc.key(key))
            out[str(key)] = self.value(node[key], child, self._loc(node.lc.value(key)))
        return out

    def sequence(self, node: CommentedSeq, path: KeyPath) -> list[Any]:
        out = []
        for index, item in enumerate(node):
            child = (*path, index)
            location = self._loc(node.lc.item(index))
            self.origins[child] = location
            out.append(self.value(item, child, location))
        return out

    def value(self, node: Any, path: KeyPath, location: Location) -> Any:
        if isinstance(node, CommentedMap):
            return self.mapping(node, path)
        if isinstance(node, CommentedSeq):
            return self.sequence(node, path)
        if isinstance(node, str):
            return self.string(node, path, location)
        return node

    def string(self, node: str, path: KeyPath, location: Location) -> Any:
        if not has_reference(node):
            return str(node)
        try:
            text = interpolate(str(node), self.environ)
        except InterpolationError as exc:
            self.problems.append(Problem(str(exc), dotted(path), location))
            return str(node)
        # A plain (unquoted) scalar is typed after substitution, as when upstream's template
        # is expanded by the shell before YAML parses it: `port: ${PORT:-3306}` is an int.
        return _plain_scalar(text) if type(node) is str else text


_SCALAR_YAML = YAML(typ="safe", pure=True)


def _plain_scalar(text: str) -> Any:
    try:
        value = _SCALAR_YAML.load(text)
    except Exception:  # anything YAML cannot read as a scalar stays the text it was
        return text
    return value if isinstance(value, bool | int | float) or value is None else text
