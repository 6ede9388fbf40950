"""The executor's log lines: one record, one line, whatever its ids and messages hold; under
journald each line starts with its syslog priority, and a line about a task names it.

Task ids, file names and error messages come from queue entries and documents, which anyone
who can enqueue a task writes. A newline in one would start a line of the attacker's choosing
in the journal (journald makes each line of stderr an entry), a carriage return or an ESC
sequence would rewrite what a terminal shows. :class:`EscapingFormatter` escapes every
control character of the formatted message; a traceback keeps its own line breaks, but an
exception's message in it is one line too.

:class:`LineFormatter`, installed once by ``app.configure_logging``, adds what journald
reads: the ``<N>`` priority of sd-daemon(3) on every line (a traceback's too), so
``journalctl -p err`` shows exactly the errors, and ``task=<id> doc=<id>`` first in the
message of a line about a task (see :func:`for_task`).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any

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


# sd-daemon.h: SD_CRIT <2>, SD_ERR <3>, SD_WARNING <4>, SD_INFO <6>, SD_DEBUG <7>.
_PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))


def syslog_priority(levelno: int) -> int:
    """The syslog priority of a logging level (custom levels take the next one down)."""
    for level, priority in _PRIORITIES:
        if levelno >= level:
            return priority
    return 7


class LineFormatter(EscapingFormatter):
    """``LEVEL logger: [task=... doc=... ]message``; with *journald*, every line of the record
    (a traceback's too) prefixed by its priority and no timestamp (journald adds its own)."""

    def __init__(self, journald: bool) -> None:
        fmt = "%(levelname)s %(name)s: %(task_prefix)s%(message)s"
        super().__init__(fmt if journald else "%(asctime)s " + fmt)
        self.journald = journald

    def format(self, record: logging.LogRecord) -> str:
        task_id = getattr(record, "task_id", None)
        doc_id = getattr(record, "doc_id", None)
        record.task_prefix = f"task={task_id} doc={doc_id or '-'} " if task_id else ""
        text = super().format(record)
        if not self.journald:
            return text
        prefix = f"<{syslog_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in text.split("\n"))


def for_task(log: logging.Logger, task: Mapping[str, Any]) -> logging.LoggerAdapter:
    """*log* for lines about *task* (a task row or queue message): they carry its ids."""
    return logging.LoggerAdapter(log, {"task_id": task.get("id"), "doc_id": task.get("doc_id")})
