"""``${VAR}`` and ``${VAR:-default}`` in string values, as upstream's Docker template uses them.

Only these two forms are recognised and nothing is evaluated by a shell: the text between
``${`` and ``}`` is a variable name, optionally followed by ``:-`` and a literal default.
``${VAR:-default}`` takes the default when VAR is unset *or empty* (bash semantics);
``${VAR}`` with VAR unset is an error, so a forgotten variable never becomes an empty password.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_REFERENCE = re.compile(r"\$\{(?P<body>[^}]*)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class InterpolationError(ValueError):
    """A reference could not be resolved; the message says which and why."""


def has_reference(text: str) -> bool:
    return "${" in text


def interpolate(text: str, environ: Mapping[str, str]) -> str:
    """Return *text* with every reference replaced from *environ*."""

    def substitute(match: re.Match[str]) -> str:
        name, sep, default = match.group("body").partition(":-")
        if not _NAME.match(name):
            body = match.group("body")
            raise InterpolationError(
                f"bad reference ${{{body}}}: expected ${{NAME}} or ${{NAME:-default}}"
            )
        value = environ.get(name)
        if sep:
            return value if value else default
        if value is None:
            raise InterpolationError(
                f"environment variable {name} is not set (use ${{{name}:-default}} for a default)"
            )
        return value

    result = _REFERENCE.sub(substitute, text)
    if "${" in _REFERENCE.sub("", text):
        raise InterpolationError(f"unterminated reference in {text!r}: a '${{' has no '}}'")
    return result
