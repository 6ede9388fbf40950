"""The executor's log lines: one record, one line, whatever its ids and messages hold.

Task ids, file names and error messages come from queue entries and documents, which anyone
who can enqueue a task writes. A newline in one would start a line of the attacker's choosing
in the journal (journald makes each line of stderr an entry), a carriage return or an ESC
sequence would rewrite what a terminal shows. :class:`EscapingFormatter`, installed once by
``app.configure_logging``, escapes every control character of the formatted message; a
traceback keeps its own line breaks, but an exception's message in it is one line too.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator
from types import TracebackType

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_CONTROLS = [*range(0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029]  # C0, DEL, C1, separators
ESCAPES = {
    code: _NAMED.get(chr(code), f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    for code in _CONTROLS
}
"""str.translate's table: each control character to its Python escape."""
_KEEPING_NEWLINES = {code: text for code, text in ESCAPES.items() if code != ord("\n")}


def escape_controls(text: str, *, keep_newlines: bool = False) -> str:
    """*text* with every control character written as its escape (``\\n``, ``\\x1b``)."""
    return text.translate(_KEEPING_NEWLINES if keep_newlines else ESCAPES)


_ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, ...]


class EscapingFormatter(logging.Formatter):
    """A Formatter whose every record is one line, but for a traceback's own lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape_controls(super().formatMessage(record))

    def formatException(self, ei: _ExcInfo) -> str:
        text = super().formatException(ei)
        # The lines of the traceback are code's; an exception's message may hold anything.
        for exc in _chain(ei[1]):
            message = "".join(traceback.format_exception_only(type(exc), exc)).rstrip("\n")
            if "\n" in message:
                text = text.replace(message, escape_controls(message))
        return escape_controls(text, keep_newlines=True)

    def formatStack(self, stack_info: str) -> str:
        return escape_controls(super().formatStack(stack_info), keep_newlines=True)


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    """*exc*, its causes and contexts, and the members of exception groups among them."""
    pending, seen = [exc], set()
    while pending:
        exc = pending.pop()
        if exc is None or id(exc) in seen:
            continue
        seen.add(id(exc))
        yield exc
        pending += [exc.__cause__, exc.__context__]
        if isinstance(exc, BaseExceptionGroup):
            pending += exc.exceptions
