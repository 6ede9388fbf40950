"""A peewee SQLite database whose per-thread connections close when their thread ends.

peewee keeps one connection per thread, open between calls. CPython 3.11's
``sqlite3.Connection`` is in a reference cycle of its own (its statement cache refers back
to it), so when a thread ends, dropping its connection does not close it: the file stays
open, with its page cache (up to 2 MiB by default), until a full garbage collection.
trio's worker threads end after 10 s idle and new ones start as the load changes, so an
executor piled up such connections: 3 open on the task database after its warm-up, 7 by
the end of 50,000 tasks (docs/benchmarks.md, "memory soak").
"""

from __future__ import annotations

import sqlite3
import threading

import peewee as pw


class _CloseWithThread:
    """Held in a thread-local: CPython drops it when its thread ends, and it then closes
    the thread's connection (closing a closed one does nothing)."""

    __slots__ = ("conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __del__(self) -> None:
        self.conn.close()


class ThreadSqliteDatabase(pw.SqliteDatabase):
    """:class:`peewee.SqliteDatabase` with ``check_same_thread=False``: the connection
    may be closed from whichever thread drops it last."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **{**kwargs, "check_same_thread": False})
        self._closers = threading.local()

    def _connect(self) -> sqlite3.Connection:
        conn = super()._connect()
        # A connection this thread had before (peewee closed it on an error) is replaced.
        self._closers.closer = _CloseWithThread(conn)
        return conn
