"""How the executor's log lines look: under journald each line starts with its syslog
priority (``<3>``, sd-daemon(3)), so ``journalctl -p err`` shows exactly the errors; a line
about a task carries ``task=<id> doc=<id>`` first in its message (see :func:`for_task`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

# sd-daemon.h: SD_CRIT <2>, SD_ERR <3>, SD_WARNING <4>, SD_INFO <6>, SD_DEBUG <7>.
_PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))


def syslog_priority(levelno: int) -> int:
    """The syslog priority of a logging level (custom levels take the next one down)."""
    for level, priority in _PRIORITIES:
        if levelno >= level:
            return priority
    return 7


class LineFormatter(logging.Formatter):
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
