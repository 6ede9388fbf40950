"""peewee databases whose per-thread connections close when their thread ends.

peewee keeps one connection per thread, open between calls, and never closes one whose
thread ended. trio's worker threads end after 10 s idle and new ones start as the load
changes, so what such a connection holds stays behind:

- **SQLite**: CPython 3.11's ``sqlite3.Connection`` is in a reference cycle of its own (its
  statement cache refers back to it), so the file stays open, with its page cache (up to
  2 MiB by default), until a full garbage collection: an executor piled up 3 open
  connections on the task database after its warm-up, 7 by the end of 50,000 tasks
  (docs/benchmarks.md, "memory soak").
- **Servers** (MariaDB/MySQL, PostgreSQL): the socket closes when the connection is garbage
  collected, or at exit with the process, without the protocol's goodbye (MySQL's
  COM_QUIT, PostgreSQL's Terminate). MariaDB counts each in ``Aborted_clients`` and logs
  an "Aborted connection ... (Got an error reading communication packets)" warning: one
  per executor thread at every restart, and one each time trio retires a thread that had
  a connection. So a server's connections are also closed at exit
  (:meth:`ClosingConnections.close_all`).
"""

from __future__ import annotations

import threading
import weakref
from contextlib import suppress
from typing import Any

import peewee as pw


class _Closer:
    """Held in a thread-local: CPython drops it when its thread ends, and it then closes
    the thread's connection. A server database refers to it weakly, for ``close_all``."""

    __slots__ = ("__weakref__", "conn")

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def close(self) -> None:
        with suppress(Exception):  # closed already, or a socket the server dropped
            self.conn.close()

    def __del__(self) -> None:
        self.close()


class ClosedWithThread:
    """For a peewee database, first among its bases: each thread's connection closes when
    the thread ends."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._closers = threading.local()

    def _connect(self) -> Any:
        conn = super()._connect()  # type: ignore[misc]
        # A connection this thread had before (peewee dropped it after an error) is closed.
        self._closers.closer = self._closer(conn)
        return conn

    def _closer(self, conn: Any) -> _Closer:
        return _Closer(conn)


class ClosingConnections(ClosedWithThread):
    """:class:`ClosedWithThread` for a server, whose connections :meth:`close_all` also
    closes at exit, with the protocol's goodbye."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._open: weakref.WeakSet[_Closer] = weakref.WeakSet()

    def _closer(self, conn: Any) -> _Closer:
        closer = super()._closer(conn)
        self._open.add(closer)
        return closer

    def close_all(self) -> None:
        """Close every connection this database opened that is still open, whichever
        thread holds it: at exit, once no thread uses the database."""
        for closer in list(self._open):
            closer.close()


class ThreadSqliteDatabase(ClosedWithThread, pw.SqliteDatabase):
    """With ``check_same_thread=False``: the connection may be closed from whichever
    thread drops it last."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{**kwargs, "check_same_thread": False})


class ClosingMySQLDatabase(ClosingConnections, pw.MySQLDatabase):
    pass


class ClosingPostgresqlDatabase(ClosingConnections, pw.PostgresqlDatabase):
    pass
