"""Write configuration values into other programs' files only in a form each one reads back.

Every ``{{ value }}`` a template writes goes through ``SafeValues.finalize`` (jinja2's
finalize hook), which applies the rule of the file's format, chosen by template name:

- redis.conf: a value that is not a bare word is double-quoted with redis' escapes
  (``\\"``, ``\\\\``, ``\\xHH`` for every byte outside printable ASCII), which redis-server
  splits back into the same bytes (sdssplitargs);
- YAML (elasticsearch.yml, the compiled YAML documents): yamlout's quoting;
- systemd units, the unit's environment file, the MariaDB option file: each directive
  quotes differently (or not at all), so a value must be a bare word there; one that is not
  is refused;
- the Redis ACL file: Redis 7.0 splits its lines at spaces and reads no quotes, so a value
  must be one word of printable ASCII (the passwords go there as SHA-256 hashes).

Text that a filter already wrote in its format (``Verbatim``, e.g. ``to_yaml``'s output) and
integers pass as they are. A refused value is recorded, not raised, so that ``check`` can
report every one with the file:line:col that set it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jinja2

from . import yamlout


class Verbatim(str):
    """Text already written in its target format by a filter: the template writes it as is."""


@dataclass(frozen=True)
class UnsafeValue:
    """A value a template could not write safely in its format."""

    value: str
    file_format: str
    reason: str

    def __str__(self) -> str:
        return f"cannot be written into {self.file_format}: {self.reason}"


# A word every format here reads back unquoted and unchanged: no space, quote, comment sign,
# backslash, '%' (a systemd specifier), '$' (a variable) or ';' (a systemd list separator).
BARE_WORD = re.compile(r"[A-Za-z0-9_./@:+-]+")
# A word of the Redis ACL file (no space, no control character; quotes would be literal).
ACL_WORD = re.compile(r"[!-~]+")

_REDIS_ESCAPES = {ord('"'): '\\"', ord("\\"): "\\\\"}


def redis_word(value: str) -> str:
    """*value* as one redis.conf argument: bare when it is a bare word, else double-quoted."""
    if BARE_WORD.fullmatch(value):
        return value
    out = []
    for byte in value.encode("utf-8"):
        if byte in _REDIS_ESCAPES:
            out.append(_REDIS_ESCAPES[byte])
        elif 0x20 <= byte < 0x7F:
            out.append(chr(byte))
        else:
            out.append(f"\\x{byte:02x}")
    return '"' + "".join(out) + '"'


def yaml_flow_list(values: list[str]) -> Verbatim:
    """A YAML flow sequence of double-quoted strings, ``["a", "b"]``."""
    return Verbatim("[" + ", ".join(yamlout.double_quoted(v) for v in values) + "]")


@dataclass(frozen=True)
class _Format:
    name: str
    write: Callable[[str], str] | None  # None: the value must match *word*
    word: re.Pattern[str] = BARE_WORD


_FORMATS = {
    "redis.conf.j2": _Format("redis.conf", redis_word),
    "sentinel.conf.j2": _Format("the sentinel config (redis.conf)", redis_word),
    "elasticsearch.yml.j2": _Format("elasticsearch.yml (YAML)", yamlout.scalar),
    "yaml_document.j2": _Format("a YAML file", yamlout.scalar),
    "prometheus-alerts.yml.j2": _Format("the alert rules (YAML)", yamlout.scalar),
    "redis-users.acl.j2": _Format("the Redis ACL file", None, ACL_WORD),
    "mariadb.cnf.j2": _Format("the MariaDB option file", None),
    "executor.env.j2": _Format("the systemd environment file", None),
    "ragfleet-executor@.service.j2": _Format("the systemd unit", None),
    "ragfleet-executor.target.j2": _Format("the systemd unit", None),
}


@dataclass
class SafeValues:
    """The finalize hook of one renderer, and what it refused."""

    refused: list[UnsafeValue] = field(default_factory=list)

    @jinja2.pass_context
    def finalize(self, context: jinja2.runtime.Context, value: Any) -> Any:
        if isinstance(value, Verbatim) or type(value) is int:
            return value
        file_format = _FORMATS[context.name]
        if not isinstance(value, str):
            return self._refuse(str(value), file_format, f"{type(value).__name__} is not text")
        if file_format.write is not None:
            return file_format.write(value)
        if file_format.word.fullmatch(value):
            return value
        allowed = (
            "letters, digits and _ . / @ : + -"
            if file_format.word is BARE_WORD
            else "printable ASCII without spaces"
        )
        return self._refuse(
            value,
            file_format,
            f"only {allowed} can be written there" + (" (and not nothing)" if not value else ""),
        )

    def _refuse(self, value: str, file_format: _Format, reason: str) -> str:
        self.refused.append(UnsafeValue(value, file_format.name, reason))
        return ""
