"""The worker's slots: one per task it may run at once (max_concurrent_tasks)."""

from __future__ import annotations

from collections.abc import Callable

import trio

GATHER_SECONDS = 0.2
"""While a group of tasks runs, how long a fetch for fewer than every slot waits for the
group's slots: fetched together, the next tasks run as one group too, instead of
splitting into a group and tasks alone that never come back together."""


class Slots:
    """A semaphore of max_concurrent_tasks slots, and how many groups of tasks run."""

    def __init__(self, total: int) -> None:
        self.total = total
        self._free = trio.Semaphore(total)
        self.groups_running = 0

    async def take(self, probing: Callable[[], bool]) -> int:
        """Every free slot, once one is; while a group runs, the group's too, if it ends
        within GATHER_SECONDS. If then *probing* (executor errors hold), every slot, once
        no task runs: the next task is a probe, run alone (see Health.set_aside)."""
        await self._free.acquire()
        if probing():
            return await self.take_every(1)
        taken = 1 + self.take_free()
        if not self.groups_running:
            return taken
        try:
            with trio.move_on_after(GATHER_SECONDS):
                while taken < self.total:
                    await self._free.acquire()
                    taken += 1
        except BaseException:
            self.give_back(taken)
            raise
        return taken

    def take_free(self) -> int:
        """Every free slot, without waiting: how many."""
        taken = 0
        while True:
            try:
                self._free.acquire_nowait()
            except trio.WouldBlock:
                return taken
            taken += 1

    async def take_every(self, held: int) -> int:
        """Wait until no task runs: the *held* slots and every other one."""
        taken = 0
        try:
            for _ in range(self.total - held):
                await self._free.acquire()
                taken += 1
        except BaseException:
            self.give_back(held + taken)
            raise
        return held + taken

    async def take_one(self) -> None:
        await self._free.acquire()

    def give_back(self, slots: int) -> None:
        for _ in range(slots):
            self._free.release()
