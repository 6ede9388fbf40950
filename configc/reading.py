"""Read one YAML file into ruamel's node tree, refusing what could crash or stall the loader.

A configuration file is small and hand-written, so anything far outside that is refused with
its file:line:col before ruamel builds a node tree:

- bytes that are not UTF-8 (a UTF-16 or UTF-32 file included), and control characters;
- nesting deeper than MAX_DEPTH (the composer recurses once per level; Python's stack would
  overflow at a few hundred);
- a document that, with every alias expanded, has more than MAX_NODES nodes: aliases are
  expanded when the tree is walked, so a 1 KB "billion laughs" file would take minutes.

Both bounds are checked on the parser's event stream, which needs no recursion and expands
nothing: an alias costs the size of its anchor's node, counted once when the anchor closes.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    ScalarEvent,
)
from ruamel.yaml.nodes import Node

from .errors import ConfigError, Location, Problem

MAX_DEPTH = 64
"""Levels of nesting a file may have (the schema needs 5)."""

MAX_NODES = 100_000
"""Nodes a document may have once aliases and merge keys are expanded."""

MAX_BYTES = 1 << 20
"""The largest file read: the shipped conf is 3 KB; ``--overlay /dev/zero`` never ends."""

# Characters no configuration value may hold, raw in the file or written as an escape:
# controls (C0 but tab, line feed and carriage return, which YAML itself uses; DEL; C1),
# surrogates, byte-order marks and noncharacters. The loader refuses the escaped forms too
# (text.bad_character); this catches the raw ones, which ruamel's reader would refuse with
# no line number.
_RAW_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufeff\ufffe\uffff]")

_WIDE_BOMS = {
    b"\xff\xfe\x00\x00": "UTF-32",
    b"\x00\x00\xfe\xff": "UTF-32",
    b"\xff\xfe": "UTF-16",
    b"\xfe\xff": "UTF-16",
}


def yaml_parser() -> YAML:
    """The parser every layer is read with: YAML 1.2 core types, pure Python."""
    return YAML(typ="safe", pure=True)


def character_name(char: str) -> str:
    name = unicodedata.name(char, "")
    return f"U+{ord(char):04X}" + (f" ({name})" if name else "")


def read_bytes(path: Path, source: str) -> bytes:
    """The file's bytes, or ConfigError if it cannot be read or is over MAX_BYTES."""
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_BYTES + 1)
    except OSError as exc:
        raise _error(source, 0, 0, f"cannot read: {exc.strerror}") from None
    if len(data) > MAX_BYTES:
        raise _error(source, 1, 1, f"larger than {MAX_BYTES >> 20} MiB: not a configuration file")
    return data


def decode(data: bytes, source: str) -> str:
    """*data* as text, or ConfigError at the first byte that is not UTF-8."""
    for bom, encoding in _WIDE_BOMS.items():
        if data.startswith(bom):
            raise _error(source, 1, 1, f"the file is {encoding}: save it as UTF-8")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        column = len(data[line_start : exc.start].decode("utf-8", "replace")) + 1
        byte = data[exc.start]
        raise _error(source, line, column, f"byte 0x{byte:02x} is not UTF-8") from None
    text = text.removeprefix("\ufeff")
    bad = _RAW_FORBIDDEN.search(text)
    if bad:
        line, column = _line_col(text, bad.start())
        hint = " (a UTF-16 file?)" if bad.group() == "\x00" else ""
        message = f"character {character_name(bad.group())} is not allowed{hint}"
        raise _error(source, line, column, message)
    return text


def compose(text: str, source: str) -> Node | None:
    """The document's root node (None for an empty file), or ConfigError with its position."""
    parser = yaml_parser()
    try:
        _check_shape(parser, text, source)
        return parser.compose(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Location(source, mark.line + 1, mark.column + 1) if mark else Location(source, 1, 1)
        raise ConfigError([Problem(f"YAML syntax error: {exc.problem}", location=where)]) from None
    except YAMLError as exc:  # a reader error: it has a character position, not a mark
        line, column = _line_col(text, getattr(exc, "position", 0) or 0)
        raise _error(source, line, column, f"YAML error: {exc}".splitlines()[0]) from None


@dataclass
class _Shape:
    """The size (values) and height (levels) of a node with its aliases expanded."""

    size: int = 1
    height: int = 0  # collections, this one included: 0 for a scalar
    anchor: str | None = None


def _check_shape(parser: YAML, text: str, source: str) -> None:
    """Refuse nesting past MAX_DEPTH and documents past MAX_NODES nodes, aliases expanded
    (an alias nests its anchor's node where it stands: a chain of anchors is deep)."""
    anchored: dict[str, _Shape] = {}
    open_nodes: list[_Shape] = []  # the collections the parser is inside, outermost first
    defined: set[str] = set()
    for event in parser.parse(text):
        anchor = None if isinstance(event, AliasEvent) else getattr(event, "anchor", None)
        if anchor is not None:
            # YAML lets a later &name shadow an earlier one; in a config file it is a
            # copy-paste slip that silently changes what later aliases mean.
            if anchor in defined:
                raise _marked(source, event, f"the anchor &{anchor} is defined twice")
            defined.add(anchor)
        if isinstance(event, CollectionStartEvent):
            open_nodes.append(_Shape(height=1, anchor=event.anchor))
            shape = _Shape()
        elif isinstance(event, CollectionEndEvent):
            shape = open_nodes.pop()
        elif isinstance(event, AliasEvent):
            if any(event.anchor == node.anchor for node in open_nodes):
                raise _marked(source, event, f"the alias *{event.anchor} is inside its own anchor")
            shape = anchored.get(event.anchor, _Shape())
        elif isinstance(event, ScalarEvent):
            shape = _Shape(anchor=event.anchor)
        else:
            continue
        if len(open_nodes) + shape.height > MAX_DEPTH:
            raise _marked(source, event, f"nested more than {MAX_DEPTH} levels deep")
        if isinstance(event, CollectionStartEvent):
            continue
        if shape.anchor is not None and not isinstance(event, AliasEvent):
            anchored[shape.anchor] = shape
        if open_nodes:
            parent = open_nodes[-1]
            parent.size += shape.size
            parent.height = max(parent.height, shape.height + 1)
            if parent.size > MAX_NODES:
                raise _marked(
                    source,
                    event,
                    f"the document has more than {MAX_NODES} values once its aliases are expanded",
                )


def _line_col(text: str, index: int) -> tuple[int, int]:
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def _error(source: str, line: int, column: int, message: str) -> ConfigError:
    return ConfigError([Problem(message, location=Location(source, line, column))])


def _marked(source: str, event, message: str) -> ConfigError:
    mark = event.start_mark
    return _error(source, mark.line + 1, mark.column + 1, message)
