"""The one progress API a handler uses: it records progress and is a cancellation point."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import trio

DEFAULT_TO_PAGE = 100_000_000  # upstream's "whole document" page range end

# Runs a blocking store call in a worker thread (the executor passes trio.to_thread.run_sync).
StoreCall = Callable[..., Awaitable[Any]]


@functools.lru_cache(maxsize=2)
def _hhmmss(second: int) -> str:
    """*second* since the epoch as local ``HH:MM:SS``, formatted once per second: strftime
    costs about 28 us here, and a short task stamps two lines (a tenth of its CPU)."""
    return time.strftime("%H:%M:%S", time.localtime(second))


def stamp(message: str, task: dict[str, Any], moment: datetime | None = None) -> str:
    """Upstream's progress line: ``HH:MM:SS`` then ``Page(a~b):`` for a page-range task."""
    prefix = moment.strftime("%H:%M:%S") if moment else _hhmmss(int(time.time()))
    to_page = task.get("to_page", DEFAULT_TO_PAGE)
    if to_page is not None and 0 < to_page < DEFAULT_TO_PAGE:
        prefix += f" Page({task.get('from_page', 0) + 1}~{to_page + 1}):"
    return f"{prefix} {message}"


def message_lines(progress_msg: str | None) -> list[str]:
    """The lines of a task's ``progress_msg`` (none for an empty or missing one)."""
    return list(filter(None, progress_msg.split("\n"))) if progress_msg else []


WRITE_INTERVAL = 1.0
"""Seconds between progress writes of one task: a milestone reached sooner is kept in memory
and goes out with the next write. The task's final state (done, failed, cancelled) is
always written at once, with every line; a task of a second or less therefore costs two
writes (received, done), not one per milestone."""


class Progress:
    """Progress of one task: ``await progress(fraction, message)``.

    *fraction* is 0..1 (None keeps the current value); the message is appended to the
    task's ``progress_msg`` as a stamped line. Every call is a trio checkpoint, so a
    cancelled task stops here at the latest; the write itself is never torn by the cancel.

    A call writes to the database when *write_interval* has passed since the last write,
    when *fraction* is negative (failed or cancelled: final), or with ``flush=True``;
    otherwise its line and fraction wait for the next write.
    """

    def __init__(
        self,
        task: dict[str, Any],
        store_call: StoreCall,
        set_progress: Callable,
        write_interval: float = WRITE_INTERVAL,
    ):
        self.task = task
        self._store_call = store_call
        self._set_progress = set_progress
        self.write_interval = write_interval
        self.lines: list[str] = message_lines(task.get("progress_msg"))
        self.fraction: float = float(task.get("progress") or 0)
        self._fraction_unwritten = False
        self._written_at = trio.current_time()

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def note(self, message: str) -> str:
        """Append a stamped line without writing it (the caller writes ``text``)."""
        self.lines.append(stamp(message, self.task))
        return self.text

    async def __call__(
        self, fraction: float | None = None, message: str = "", *, flush: bool = False, **extra: Any
    ) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        if fraction is not None:
            self.fraction = max(-1.0, min(1.0, float(fraction)))
            self._fraction_unwritten = True
        if message:
            self.lines.append(stamp(message, self.task))
        due = trio.current_time() - self._written_at >= self.write_interval
        if flush or due or extra or self.fraction < 0:
            await self._write(**extra)

    async def _write(self, **extra: Any) -> None:
        fraction = self.fraction if self._fraction_unwritten else None
        await self._store_call(self._set_progress, self.task["id"], fraction, self.text, **extra)
        self._fraction_unwritten = False
        self._written_at = trio.current_time()
