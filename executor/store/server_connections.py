"""Server databases (MariaDB/MySQL, PostgreSQL) whose connections end with a goodbye.

peewee keeps one connection per thread, open between calls, and never closes one whose
thread ended: the socket closes when the connection is garbage collected, and at exit
with the process, without the protocol's goodbye (MySQL's COM_QUIT, PostgreSQL's
Terminate). MariaDB counts each such connection in ``Aborted_clients`` and writes an
"Aborted connection ... (Got an error reading communication packets)" warning to its
error log: one per executor thread at every restart, and one each time trio retires an
idle worker thread that had a connection. Here a thread's connection is closed when the
thread ends, and :meth:`close_all` closes every one still open (at the executor's exit).
"""

from __future__ import annotations

import threading
import weakref
from contextlib import suppress
from typing import Any

import peewee as pw


class _Closer:
    """Held in a thread-local: CPython drops it when its thread ends, and it then closes
    the thread's connection. Its database refers to it weakly, for :meth:`close_all`."""

    __slots__ = ("__weakref__", "conn")

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def close(self) -> None:
        with suppress(Exception):  # closed already, or a socket the server dropped
            self.conn.close()

    def __del__(self) -> None:
        self.close()


class ClosingConnections:
    """For a peewee database of a server, first among its bases: see the module's
    docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._closers = threading.local()
        self._open: weakref.WeakSet[_Closer] = weakref.WeakSet()

    def _connect(self) -> Any:
        conn = super()._connect()  # type: ignore[misc]
        closer = _Closer(conn)
        self._open.add(closer)
        # A connection this thread had before (peewee dropped it after an error) is closed.
        self._closers.closer = closer
        return conn

    def close_all(self) -> None:
        """Close every connection this database opened that is still open, whichever
        thread holds it: at exit, once no thread uses the database."""
        for closer in list(self._open):
            closer.close()


class ClosingMySQLDatabase(ClosingConnections, pw.MySQLDatabase):
    pass


class ClosingPostgresqlDatabase(ClosingConnections, pw.PostgresqlDatabase):
    pass
