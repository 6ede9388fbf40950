"""Load one YAML layer with the position of every value, so errors can name file:line."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .errors import ConfigError, Location, Problem
from .interpolate import InterpolationError, has_reference, interpolate
from .reading import character_name, compose, decode, read_bytes, yaml_parser

KeyPath = tuple[str | int, ...]

REPLACE_TAG = "!replace"
CORE_PREFIX = "tag:yaml.org,2002:"
MAP_TAG, SEQ_TAG, STR_TAG, MERGE_TAG = (CORE_PREFIX + t for t in ("map", "seq", "str", "merge"))


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
    root = compose(decode(read_bytes(path, source), source), source)
    if root is None:
        return Layer(source, {})
    if not isinstance(root, MappingNode):
        raise ConfigError(
            [Problem("the file must hold a mapping of sections", location=Location(source, 1, 1))]
        )
    builder = _LayerBuilder(source, environ)
    data = builder.mapping(root, ())
    if builder.problems:
        raise ConfigError(builder.problems)
    return Layer(source, data, builder.origins, builder.replace)


class _LayerBuilder:
    """Walks ruamel's node tree into plain data, recording positions as it goes.

    Aliases are expanded here (reading.compose bounded their cost) and YAML 1.1 merge keys
    (``<<: *base``, ``<<: [*a, *b]``) are applied: keys written in the mapping win, then
    the merged mappings in order. Every problem is collected with its position.
    """

    def __init__(self, source: str, environ: Mapping[str, str]) -> None:
        self.source = source
        self.environ = environ
        self.origins: dict[KeyPath, Location] = {}
        self.replace: set[KeyPath] = set()
        self.problems: list[Problem] = []
        self.constructor = yaml_parser().constructor
        self.resolver = yaml_parser().resolver

    def _loc(self, node: Node) -> Location:
        return Location(self.source, node.start_mark.line + 1, node.start_mark.column + 1)

    def _problem(self, message: str, path: KeyPath, node: Node) -> None:
        self.problems.append(Problem(message, dotted(path), self._loc(node)))

    def mapping(self, node: MappingNode, path: KeyPath) -> dict[str, Any]:
        if node.tag == REPLACE_TAG:
            self.replace.add(path)
        out: dict[str, Any] = {}
        for key_node, value_node in self._pairs(node, path):
            key = self.key(key_node, path)
            if key is None:
                continue
            child = (*path, key)
            if key in out:
                self._problem("this key is already set in this mapping", child, key_node)
                continue
            self.origins[child] = self._loc(key_node)
            out[key] = self.value(value_node, child)
        return out

    def _pairs(self, node: MappingNode, path: KeyPath) -> list[tuple[Node, Node]]:
        """The mapping's own pairs, then those its merge keys bring that it does not set."""
        own: list[tuple[Node, Node]] = []
        merged: list[tuple[Node, Node]] = []
        for key_node, value_node in node.value:
            if key_node.tag == MERGE_TAG:
                merged.extend(self._merge_sources(value_node, path))
            else:
                own.append((key_node, value_node))
        seen = {k.value for k, _ in own if isinstance(k, ScalarNode)}
        for key_node, value_node in merged:
            if isinstance(key_node, ScalarNode) and key_node.value not in seen:
                seen.add(key_node.value)
                own.append((key_node, value_node))
        return own

    def _merge_sources(self, node: Node, path: KeyPath) -> list[tuple[Node, Node]]:
        sources = node.value if isinstance(node, SequenceNode) else [node]
        pairs: list[tuple[Node, Node]] = []
        for source in sources:
            if not isinstance(source, MappingNode):
                self._problem(
                    "a merge key (<<) takes a mapping or a list of mappings", path, source
                )
                continue
            pairs.extend(self._pairs(source, path))
        return pairs

    def sequence(self, node: SequenceNode, path: KeyPath) -> list[Any]:
        out = []
        for index, item in enumerate(node.value):
            child = (*path, index)
            self.origins[child] = self._loc(item)
            out.append(self.value(item, child))
        return out

    def key(self, node: Node, path: KeyPath) -> str | None:
        if not isinstance(node, ScalarNode):
            self._problem("a key must be a plain value, not a mapping or a list", path, node)
            return None
        if self._tag_problem(node, path) or self._text_problem(node.value, path, node):
            return None
        return node.value

    def value(self, node: Node, path: KeyPath) -> Any:
        if self._tag_problem(node, path):
            return None
        if isinstance(node, MappingNode):
            return self.mapping(node, path)
        if isinstance(node, SequenceNode):
            return self.sequence(node, path)
        return self.scalar(node, path)

    def scalar(self, node: ScalarNode, path: KeyPath) -> Any:
        try:
            value = self.constructor.construct_object(node)
        except (ValueError, ArithmeticError, YAMLError) as exc:
            self._problem(
                f"cannot read {node.value[:40]!r} as {_tag_name(node.tag)}: {exc}", path, node
            )
            return None
        if not isinstance(value, str):
            return value
        if has_reference(value):
            try:
                value = interpolate(value, self.environ)
            except InterpolationError as exc:
                self._problem(str(exc), path, node)
                return value
            if node.style is None:
                # A plain (unquoted) scalar is typed after substitution, as when upstream's
                # template is expanded by the shell before YAML parses it: `port:
                # ${PORT:-3306}` is an int.
                value = _plain_scalar(value)
        if isinstance(value, str) and self._text_problem(value, path, node):
            return None
        return value

    def _tag_problem(self, node: Node, path: KeyPath) -> bool:
        """Refuse an explicit tag that does not fit the node (``!!int x``, ``!!set x``)."""
        tag = node.tag
        if isinstance(node, MappingNode):
            ok, kind = tag in (MAP_TAG, REPLACE_TAG), "a mapping"
        elif isinstance(node, SequenceNode):
            ok, kind = tag == SEQ_TAG, "a list"
        else:
            resolved = self.resolver.resolve(ScalarNode, node.value, (True, False))
            plain = str(getattr(resolved, "value", resolved))  # a Tag in ruamel 0.18+
            ok, kind = tag in (STR_TAG, plain), f"this value (it reads as {_tag_name(plain)})"
        if not ok:
            self._problem(f"the tag {_tag_name(tag)} cannot be used on {kind}", path, node)
        return not ok

    def _text_problem(self, text: str, path: KeyPath, node: Node) -> bool:
        bad = bad_character(text)
        if bad is not None:
            self._problem(
                f"character {character_name(bad)} is not allowed in a value: no setting "
                "holds control characters or line breaks",
                path,
                node,
            )
        return bad is not None


# Characters no key or value may hold, however written (raw or as a double-quoted escape):
# controls (tab and line breaks included), surrogates, line and paragraph separators,
# byte-order marks and noncharacters. No setting is multi-line text, and each of these can
# end a line, or a token, in one of the files configc writes.
_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029\ufeff\ufffe\uffff]")


def bad_character(text: str) -> str | None:
    """The first character of *text* that no configuration value may hold, if any."""
    match = _FORBIDDEN.search(text)
    return match.group() if match else None


def _tag_name(tag: str) -> str:
    return "!!" + tag.removeprefix(CORE_PREFIX) if tag.startswith(CORE_PREFIX) else tag


_SCALAR_YAML = YAML(typ="safe", pure=True)


def _plain_scalar(text: str) -> Any:
    try:
        value = _SCALAR_YAML.load(text)
    except Exception:  # anything YAML cannot read as a scalar stays the text it was
        return text
    return value if isinstance(value, bool | int | float) or value is None else text
