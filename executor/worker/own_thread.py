"""One long-lived thread for the batch path's hops (a batch's done-write, and the look-up
of a batch the read's own hop did not look up: a replayed one, say).

``trio.to_thread.run_sync`` hands each call to a cached thread, and names it, and takes it
back: about 200 us of CPU a hop here against about 100 us for a job put on a queue that
one thread waits on. The batch path makes such a hop per batch, so it has a thread of
its own. Everything else (blocking reads, heartbeats, progress writes, probes) stays on
trio's threads: a call stuck here (a database that stopped answering) holds up only the
batch hops queued behind it, never a heartbeat, which would let another executor take
this one's tasks over while they run.
"""

from __future__ import annotations

import functools
import queue
import threading
from collections.abc import Callable
from contextlib import suppress
from typing import Any, TypeVar

import outcome
import trio

T = TypeVar("T")
_Job = tuple[Callable[[], Any], trio.lowlevel.TrioToken, trio.lowlevel.Task]


class OwnThread:
    """``await own_thread.run(fn, *args)``: *fn* called in this object's thread.

    As ``trio.to_thread.run_sync`` (without abandon_on_cancel), the call cannot be
    cancelled once queued: the caller waits for it, so a call's effects (a commit, an
    ack) never happen behind the back of a caller that went away. Calls run one at a
    time, in the order made. The thread starts with the first call and ends at
    :meth:`close`.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
            self._thread.start()
        task = trio.lowlevel.current_task()
        token = trio.lowlevel.current_trio_token()
        self._jobs.put((functools.partial(fn, *args), token, task))
        return await trio.lowlevel.wait_task_rescheduled(_not_cancellable)

    def close(self) -> None:
        """End the thread once the calls queued before have run."""
        if self._thread is not None:
            self._jobs.put(None)
            self._thread = None

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            call, token, task = job
            result = outcome.capture(call)
            with suppress(trio.RunFinishedError):  # the caller's run is over: no one to tell
                token.run_sync_soon(trio.lowlevel.reschedule, task, result)


def _not_cancellable(_: Any) -> trio.lowlevel.Abort:
    return trio.lowlevel.Abort.FAILED
