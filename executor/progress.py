"""The one progress API a handler uses: it records progress and is a cancellation point."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import trio

DEFAULT_TO_PAGE = 100_000_000  # upstream's "whole document" page range end

# Runs a blocking store call in a worker thread (the executor passes trio.to_thread.run_sync).
StoreCall = Callable[..., Awaitable[Any]]


def stamp(message: str, task: dict[str, Any], moment: datetime | None = None) -> str:
    """Upstream's progress line: ``HH:MM:SS`` then ``Page(a~b):`` for a page-range task."""
    prefix = (moment or datetime.now()).strftime("%H:%M:%S")
    to_page = task.get("to_page", DEFAULT_TO_PAGE)
    if to_page is not None and 0 < to_page < DEFAULT_TO_PAGE:
        prefix += f" Page({task.get('from_page', 0) + 1}~{to_page + 1}):"
    return f"{prefix} {message}"


class Progress:
    """Progress of one task: ``await progress(fraction, message)``.

    *fraction* is 0..1 (None keeps the current value); the message is appended to the
    task's ``progress_msg`` as a stamped line. Every call is a trio checkpoint, so a
    cancelled task stops here at the latest; the write itself is never torn by the cancel.
    """

    def __init__(self, task: dict[str, Any], store_call: StoreCall, set_progress: Callable):
        self.task = task
        self._store_call = store_call
        self._set_progress = set_progress
        previous = (task.get("progress_msg") or "").split("\n")
        self.lines: list[str] = [line for line in previous if line]
        self.fraction: float = float(task.get("progress") or 0)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def note(self, message: str) -> str:
        """Append a stamped line without writing it (the caller writes ``text``)."""
        self.lines.append(stamp(message, self.task))
        return self.text

    async def __call__(self, fraction: float | None = None, message: str = "", **extra: Any):
        await trio.lowlevel.checkpoint_if_cancelled()
        if fraction is not None:
            self.fraction = max(-1.0, min(1.0, float(fraction)))
        if message:
            self.lines.append(stamp(message, self.task))
        await self._store_call(self._set_progress, self.task["id"], fraction, self.text, **extra)
