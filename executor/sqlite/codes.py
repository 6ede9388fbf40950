"""SQLite's primary result codes, read from the ``sqlite3`` error that carries them."""

from __future__ import annotations

BUSY = 5  # another connection holds the lock
LOCKED = 6  # a table is locked by this connection's own statement
NOMEM = 7  # a memory allocation failed
INTERRUPT = 9  # the statement was interrupted
IOERR = 10  # the operating system reported an I/O error
CORRUPT = 11  # the file is damaged ("database disk image is malformed")
FULL = 13  # the disk (or the file's size limit) is full: nothing is written
PROTOCOL = 15  # a locking protocol error (a race on the WAL's shared memory)
NOTADB = 26  # the file is not a database (overwritten, truncated, the wrong file)

DAMAGED = frozenset({IOERR, CORRUPT, NOTADB})
"""The file, or the disk under it, failing: no task's fault. An executor treats these as
an outage (every task would meet them) until the file is mended or restored."""


def primary_code(exc: BaseException | None) -> int | None:
    """The primary result code of the ``sqlite3`` error *exc* is or wraps (extended codes
    keep it in their low byte), or None when there is none. peewee wraps an error once per
    layer it passes (twice when opening a connection fails on its pragmas, as on a damaged
    schema), so the whole chain of causes is searched."""
    seen = 0
    while exc is not None and seen < 8:
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None:
            return code & 0xFF
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None
