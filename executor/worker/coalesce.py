"""Calls that go together: settles waiting for the same kind of hop share one.

A short task's cost is mostly its round trips: a thread hop, a database commit, a Redis
round trip. Tasks fetched together end together, so their "done" records and acks are
written in one transaction and acked in one pipeline (group commit): the first task to
end takes the hop, the tasks that end while it runs go in the next one together.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import trio

from ..errors import is_outage

T = TypeVar("T")
Hop = Callable[[list[T]], Awaitable[None]]


@dataclass(eq=False)
class _Call(Generic[T]):
    item: T
    done: bool = False
    error: BaseException | None = None


class Coalesced(Generic[T]):
    """``await coalesced(item)`` runs *hop* on *item* with every other item waiting then.

    At most one hop runs at a time. The first caller runs it, after one pass of the
    scheduler (the other tasks of its batch, ending in that pass, join it); callers that
    come while it runs wait, and one of them runs the next hop for them all.

    Each caller sees its own item's result. An outage raised by a hop is every item's (the
    caller leaves its delivery for a retry, as it would alone); any other error is retried
    item by item, so that it stays the one item's that causes it.

    The wait is shielded from cancellation, as the thread hop it replaces is: a drain cut
    short does not leave an item half recorded, or recorded with no one waiting for it.
    """

    def __init__(self, hop: Hop[T]) -> None:
        self._hop = hop
        self._waiting: list[_Call[T]] = []
        self._running = False
        self._ended = trio.Event()  # set when the running hop ends

    @property
    def running(self) -> bool:
        return self._running

    async def until_idle(self) -> None:
        """Return once the hop running now (if any) has ended, and its callers have had a
        scheduler pass to go on. One hop only: a stream of them never holds a caller up."""
        if self._running:
            await self._ended.wait()
        await trio.lowlevel.checkpoint()

    async def __call__(self, item: T) -> None:
        call = _Call(item)
        self._waiting.append(call)
        with trio.CancelScope(shield=True):
            while not call.done:
                if self._running:
                    await self._ended.wait()
                else:
                    await self._run_next()
        if call.error is not None:
            raise call.error

    async def _run_next(self) -> None:
        self._running = True
        try:
            await trio.lowlevel.cancel_shielded_checkpoint()  # let the batch's others join
            calls, self._waiting = self._waiting, []
            if calls:  # (none if a hop that ended since took them all)
                await self._run(calls)
        finally:
            self._running = False
            self._ended.set()
            self._ended = trio.Event()

    async def _run(self, calls: list[_Call[T]]) -> None:
        try:
            await self._hop([call.item for call in calls])
        except Exception as exc:
            if len(calls) > 1 and not is_outage(exc):
                for call in calls:  # which item was it? each on its own
                    await self._run([call])
                return
            for call in calls:
                call.error = exc
        except BaseException as exc:  # (KeyboardInterrupt, say) every caller meets it too
            for call in calls:
                call.error, call.done = exc, True
            raise
        for call in calls:
            call.done = True
