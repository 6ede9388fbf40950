"""Group commit: batches that threads of one process want written at the same time go
into one shared transaction.

Several tasks of an executor index their documents at once, one batch of about 40 chunks
each. Written one transaction per batch, each pays for BEGIN, COMMIT, a hand-over of the
write turn, and its statements' hand-overs of Python's GIL, all while holding the file's
only write lock. Here a thread queues its batch and waits for the process's write turn;
the thread that gets it writes every queued batch for the same index (up to ``max_rows``
rows) in one transaction, and the threads whose batches went with it find them written.

A batch that fails in a group is not blamed on the others: the group is written again
batch by batch, and each thread gets its own batch's outcome. An outage (a ConnectionError:
the file stayed locked, no turn in time) is every batch's outcome at once; writing the
batches again one by one would only wait it out once per batch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ...sqlite.turns import WriteTurns


@dataclass(eq=False)
class Batch:
    """Rows of one index for one transaction, as its writer prepared them."""

    index: str
    ids: list[str]
    rows: Sequence[Any]  # as the write function takes them; opaque here
    done: bool = False
    error: BaseException | None = None


WriteGroup = Callable[[Sequence[Batch]], None]
"""Writes the batches (same index, distinct ids) in one transaction, or raises."""


class GroupCommit:
    def __init__(self, turns: WriteTurns, write: WriteGroup, max_rows: int) -> None:
        self.turns = turns
        self.write = write
        self.max_rows = max_rows
        self._queue: list[Batch] = []
        self._queue_lock = threading.Lock()

    def submit(self, batch: Batch) -> None:
        """Write *batch* (perhaps with others' batches); return once it is committed, or
        raise its error."""
        with self._queue_lock:
            self._queue.append(batch)
        try:
            with self.turns.thread_turn():
                while not batch.done:
                    self._write_next_group()
        finally:
            with self._queue_lock:  # no turn (timeout) or interrupted: take it back
                if batch in self._queue:
                    self._queue.remove(batch)
        if batch.error is not None:
            raise batch.error

    def _write_next_group(self) -> None:
        group = self._take_group()
        try:
            with self.turns.process_turn():
                self._write(group)
        except BaseException as exc:
            for batch in group:  # every owner hears of it, not just this thread
                if not batch.done:
                    batch.error, batch.done = exc, True
            if not isinstance(exc, Exception):
                raise

    def _take_group(self) -> list[Batch]:
        """The oldest queued batch and the ones after it for the same index, up to
        ``max_rows`` rows. A batch that shares a chunk id with one before it waits for a
        later group, and so does any batch after it that shares one with it: the same
        ids are written in the order they were submitted, so the last writer wins."""
        with self._queue_lock:
            first = self._queue[0]
            group, rows, seen = [first], len(first.ids), set(first.ids)
            for batch in self._queue[1:]:
                if rows + len(batch.ids) > self.max_rows:
                    break
                if batch.index != first.index:
                    continue
                if seen.isdisjoint(batch.ids):
                    group.append(batch)
                    rows += len(batch.ids)
                seen.update(batch.ids)
            self._queue = [b for b in self._queue if b not in group]
        return group

    def _write(self, group: list[Batch]) -> None:
        if len(group) > 1:
            try:
                self.write(group)
            except ConnectionError:
                raise  # the store is unavailable, whichever batch it is
            except Exception:
                pass  # one bad batch must not fail the others: write them one by one
            else:
                for batch in group:
                    batch.done = True
                return
        for batch in group:
            try:
                self.write([batch])
            except Exception as exc:
                batch.error = exc
            batch.done = True
