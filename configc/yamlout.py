"""A small, fast, deterministic block-style YAML emitter for JSON-like data.

configc writes YAML only for data it built itself (dicts with str keys, lists, str, int,
float, bool, None), so a general emitter is not needed; ruamel.yaml's pure-Python one cost
about 5 ms per ``ragfleet.yaml``. This one writes the layout ruamel's round-trip dumper did
(``indent(mapping=2, sequence=4, offset=2)``): keys in insertion order, 2-space mapping
indent, list items as ``- item`` 2 columns under their key, ``{}`` and ``[]`` for empty
collections, nothing after the colon (or dash) for None.

Scalars are written so that YAML 1.1 readers (PyYAML, Ansible) and YAML 1.2 readers
(ruamel.yaml, the executor) both read back exactly the value written:

- a string is plain only when it is made of unremarkable characters and cannot be read as
  anything but a string (no bool, null, number, sexagesimal or date form); otherwise it is
  single-quoted, or double-quoted with escapes if it holds a control, line-break or other
  non-printable character;
- floats are written with a dot in the mantissa (``1.0e-05``: YAML 1.1 needs it) and as
  ``.inf``, ``-.inf``, ``.nan``;
- bools are ``true``/``false``.

Loading stays with ruamel (its round-trip parser gives errors their file:line:col); this is
for output only.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from typing import Any

try:  # the loader's round-trip parser reads an anchored bool as this int subclass
    from ruamel.yaml.scalarbool import ScalarBoolean
except ImportError:  # pragma: no cover
    ScalarBoolean = bool

__all__ = ["dump"]

# A plain scalar: letters, digits and "_./" first (no indicator such as - ? : , [ ] { } # &
# * ! | > ' " % @ ` can start it), then also "@:+-" and inner spaces; no "#", quote, control
# or non-ASCII character anywhere. _string() adds the rules this cannot say (": ", trailing
# ":" or space, and the forms in _NOT_A_STRING).
_PLAIN = re.compile(r"[A-Za-z0-9_./][A-Za-z0-9_./@:+ -]*")

# Strings YAML 1.1 or 1.2 would read as something else. Deliberately broader than the
# resolvers (it quotes e.g. "1:99" or "0x" too), but not so broad that dotted addresses
# or versions ("10.0.0.1", "1.2.3"), which no resolver reads as numbers, get quotes.
_NOT_A_STRING = re.compile(
    r"""
      [-+]?0[box][0-9a-f_]*                         # 0b1010, 0o17, 0x1F (any case)
    | [-+]?[0-9][0-9_]*(?::[0-9_]*)*                # ints, 1_000, 017, sexagesimal 1:20
        (?:\.[0-9_]*)?(?:e[-+]?[0-9]+)?             #   and floats: 1.5, 1., 1e3, 1:20.5
    | [-+]?\.[0-9_]*(?:e[-+]?[0-9]+)?               # .5, .5e3 (and a lone ".")
    | [-+]?\.(?:inf|nan)                            # .inf, -.Inf, .NaN
    | [0-9]{4}-[0-9]{1,2}-[0-9]{1,2}.*              # dates and timestamps (YAML 1.1)
    | y|n|yes|no|true|false|on|off|null|~           # bools (YAML 1.1 and 1.2), null
    """,
    re.VERBOSE | re.IGNORECASE,
)

# Characters a single-quoted scalar may hold as they are: printable and not a line break
# (YAML 1.1 also breaks lines at U+0085, U+2028 and U+2029) and not a byte-order mark.
_PRINTABLE = "[\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]"
_SINGLE_QUOTABLE = re.compile(_PRINTABLE + "*")
_LITERAL_IN_DOUBLE_QUOTES = re.compile(_PRINTABLE)

_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r", '"': '\\"', "\\": "\\\\", "\0": "\\0"}

# A key longer than this is written as an explicit "? key" (implicit keys are limited to
# 1024 characters).
_MAX_IMPLICIT_KEY = 1000


class AnsibleUnsafe(str):
    """A string Ansible must not template: written with Ansible's ``!unsafe`` tag."""


_JINJA_MARKERS = ("{{", "{%", "{#")


def dump(data: dict[str, Any] | list[Any], *, ansible: bool = False) -> str:
    """The block-style YAML document for *data*, ending with a newline.

    With *ansible*, a string holding a Jinja delimiter is tagged ``!unsafe``: Ansible
    templates every variable it reads, so a password such as ``{{ lookup('pipe', ...) }}``
    in the inventory or host_vars would run on the control machine.
    """
    if ansible:
        data = _mark_unsafe(data)
    lines: list[str] = []
    if isinstance(data, dict):
        if not data:
            return "{}\n"
        _mapping(data, "", "", lines)
    elif isinstance(data, list):
        if not data:
            return "[]\n"
        _sequence(data, "", "", lines)
    else:
        raise TypeError(f"the top level must be a dict or a list, not {type(data).__name__}")
    lines.append("")
    return "\n".join(lines)


def _mark_unsafe(data: Any) -> Any:
    if isinstance(data, dict):
        return {key: _mark_unsafe(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_mark_unsafe(item) for item in data]
    if isinstance(data, str) and any(marker in data for marker in _JINJA_MARKERS):
        return AnsibleUnsafe(data)
    return data


def _mapping(data: dict[Any, Any], indent: str, lead: str, lines: list[str]) -> None:
    """Append *data*'s lines, keys at *indent*; the first line starts with *lead* instead."""
    inner = indent + "  "
    for key, value in data.items():
        if type(key) is not str:
            if not isinstance(key, str):
                raise TypeError(f"mapping keys must be str, not {type(key).__name__}: {key!r}")
            key = str(key)
        text = _string(key)
        if len(text) > _MAX_IMPLICIT_KEY:
            lines.append(f"{lead}? {text}")
            lead, text = indent, ""
        if isinstance(value, dict):
            if value:
                lines.append(f"{lead}{text}:")
                _mapping(value, inner, inner, lines)
            else:
                lines.append(f"{lead}{text}: {{}}")
        elif isinstance(value, list):
            if value:
                lines.append(f"{lead}{text}:")
                _sequence(value, inner, inner, lines)
            else:
                lines.append(f"{lead}{text}: []")
        elif value is None:
            lines.append(f"{lead}{text}:")
        else:
            lines.append(f"{lead}{text}: {_scalar(value)}")
        lead = indent


def _sequence(data: list[Any], indent: str, lead: str, lines: list[str]) -> None:
    """Append *data*'s items, dashes at *indent*; the first line starts with *lead* instead."""
    inner = indent + "  "
    for item in data:
        if isinstance(item, dict):
            if item:
                _mapping(item, inner, lead + "- ", lines)
            else:
                lines.append(f"{lead}- {{}}")
        elif isinstance(item, list):
            if item:
                _sequence(item, inner, lead + "- ", lines)
            else:
                lines.append(f"{lead}- []")
        elif item is None:
            lines.append(f"{lead}-")
        else:
            lines.append(f"{lead}- {_scalar(item)}")
        lead = indent


def _scalar(value: Any) -> str:
    kind = type(value)
    if kind is str:
        return _string(value)
    if kind is int:
        return str(value)
    if isinstance(value, bool | ScalarBoolean):  # before int: both are ints
        return "true" if value else "false"
    if isinstance(value, int):  # int subclasses, e.g. ruamel's ScalarInt or HexInt
        return int.__repr__(value)
    if isinstance(value, float):
        return _float(value)
    if kind is AnsibleUnsafe:
        return "!unsafe " + _string(str(value))
    if isinstance(value, str):
        return _string(str(value))
    raise TypeError(f"cannot write {kind.__name__} as YAML: {value!r}")


def _float(value: float) -> str:
    if math.isnan(value):
        return ".nan"
    if math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    text = float.__repr__(value)
    if "." not in text and "e" in text:  # 1e-05 is a string to YAML 1.1; 1.0e-05 is not
        mantissa, exponent = text.split("e")
        text = f"{mantissa}.0e{exponent}"
    return text


@lru_cache(maxsize=8192)
def _string(text: str) -> str:
    if (
        _PLAIN.fullmatch(text)
        and not text.endswith((":", " "))
        and ": " not in text
        and " #" not in text
        and not _NOT_A_STRING.fullmatch(text)
    ):
        return text
    if _SINGLE_QUOTABLE.fullmatch(text):
        return "'" + text.replace("'", "''") + "'"
    return double_quoted(text)


def scalar(text: str) -> str:
    """*text* as a YAML scalar: plain when it reads back as this string, else quoted."""
    return _string(text)


def double_quoted(text: str) -> str:
    """*text* as a double-quoted YAML scalar, escaped where it must be."""
    return '"' + "".join(_escape(char) for char in text) + '"'


def _escape(char: str) -> str:
    if char in _ESCAPES:
        return _ESCAPES[char]
    if _LITERAL_IN_DOUBLE_QUOTES.fullmatch(char):
        return char
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"
