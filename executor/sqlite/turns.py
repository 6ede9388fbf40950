"""Writers of one SQLite file taking turns, woken the moment the file is free.

SQLite lets one writer at a time into a database file; the others get SQLITE_BUSY and its
busy handler polls, sleeping 1, 2, 5, 10 ... up to 100 ms between tries, while the lock
may lie free. With several executor threads and processes writing one file (the task
database and the embedded document store on a single host), those sleeps were most of
an ingestion task's wall time. Here writers queue instead: threads of a process on a
mutex, processes on an exclusive ``flock`` of ``<file>.lock``; the kernel and the mutex
hand the turn over at once. SQLite's own locking stays in force underneath, so a writer
that does not take turns (an older ragfleet, the ``sqlite3`` shell) is still safe, only
slower.

A process that dies holding its turn releases the flock with its descriptors. One that is
stopped (SIGSTOP) holds it, as it would hold SQLite's lock, until it resumes.
"""

from __future__ import annotations

import fcntl
import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import NoTurnToWrite


class WriteTurns:
    """Turns to write the SQLite file at *path*: ``with turns(): <one write transaction>``.

    Re-entrant within a thread, so a write helper may call another. Safe across ``fork``:
    a child opens its own descriptor of the lock file.
    """

    def __init__(self, path: str | os.PathLike[str], timeout: float) -> None:
        self.lock_path = Path(f"{path}.lock")
        self.timeout = timeout
        self._mutex = threading.Lock()
        self._held = threading.local()
        self._fd, self._fd_pid = -1, -1
        self._closer: weakref.finalize | None = None

    @contextmanager
    def __call__(self) -> Iterator[None]:
        """This thread's turn, then this process's: the whole turn to write."""
        if getattr(self._held, "depth", 0):
            self._held.depth += 1
            try:
                yield
            finally:
                self._held.depth -= 1
            return
        with self.thread_turn(), self.process_turn():
            self._held.depth = 1
            try:
                yield
            finally:
                self._held.depth = 0

    @contextmanager
    def thread_turn(self) -> Iterator[None]:
        """The turn among this process's threads (not re-entrant)."""
        if not self._mutex.acquire(timeout=self.timeout):
            raise NoTurnToWrite(f"{self.lock_path}: no turn to write for {self.timeout:.0f} s")
        try:
            yield
        finally:
            self._mutex.release()

    @contextmanager
    def process_turn(self) -> Iterator[None]:
        """The turn among processes; take :meth:`thread_turn` first."""
        fd = self._descriptor()
        fcntl.flock(fd, fcntl.LOCK_EX)  # releases the GIL while it waits
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _descriptor(self) -> int:
        """This process's descriptor of the lock file, opened on first use (in a thread turn)."""
        if self._fd_pid != os.getpid():
            flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
            self._fd, self._fd_pid = os.open(self.lock_path, flags, 0o644), os.getpid()
            self._closer = weakref.finalize(self, os.close, self._fd)  # no leak when dropped
        return self._fd

    def close(self) -> None:
        """Close this process's descriptor (the next turn opens it again)."""
        with self._mutex:
            if self._fd_pid == os.getpid() and self._closer is not None:
                self._closer()
            self._fd, self._fd_pid = -1, -1
