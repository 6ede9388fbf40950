"""The worker's clock and its thread hop: seams a test replaces through the constructor."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, TypeVar

import trio

T = TypeVar("T")


class Clock:
    """Wall time (compared with other hosts' stamps) and monotonic time (durations)."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


SYSTEM_CLOCK = Clock()


async def in_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call a blocking Redis or database function in a worker thread, off the event loop."""
    return await trio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))
