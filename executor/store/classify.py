"""How the task database's errors are sorted: a lost connection, or a refusal that a retry
resolves (a deadlock, a lock wait timeout, a read-only server, a Galera node without quorum,
a full disk, a damaged SQLite file), is an outage (:class:`DatabaseUnavailable`: the task
waits); anything else is a real SQL error. The codes are MySQL/MariaDB's, PostgreSQL's
SQLSTATEs and SQLite's result codes; ``tests/test_db_conflicts.py`` provokes them on real
servers, ``tests/test_galera.py`` Galera's on a real cluster."""

from __future__ import annotations

from contextlib import suppress

import peewee as pw

from ..errors import DatabaseUnavailable
from ..sqlite import codes as sqlite_codes

# MySQL/MariaDB client errors that mean "no usable connection" (CR_* codes), and the
# server-side "shutdown in progress" family; anything else is a real SQL error.
_MYSQL_CONNECTION_CODES = {1040, 1053, 1077, 1078, 1079, 1080, 2002, 2003, 2006, 2013, 2055}


# Refusals that pass, so the task is retried rather than failed: a lock wait timeout or a
# deadlock, a server in read-only mode (a replica, a failover under way), a full disk.
# MySQL/MariaDB error codes, PostgreSQL SQLSTATEs and SQLite's SQLITE_FULL;
# tests/test_db_conflicts.py provokes all but the servers' full disk (1021, 53100), which
# are here from their documentation; a test fills SQLite's disk (test_ingest_pipeline.py).
_MYSQL_PASSING_CODES = {1205, 1213, 1290, 1836, 1021}
_POSTGRES_PASSING_STATES = {"40001", "40P01", "55P03", "25006", "53100"}

# A Galera node that is not part of the primary component (cut off from the majority, or
# joining) refuses every statement with 1047, ER_UNKNOWN_COM_ERROR, "WSREP has not yet
# prepared node for application use" (tests/test_galera.py). The code alone also means an
# unknown protocol command, which is no outage: the message says which.
_MYSQL_WSREP_NOT_READY = 1047


def is_passing_refusal(exc: Exception) -> bool:
    cause = exc.__cause__ or exc.__context__ or exc
    if getattr(cause, "pgcode", None) in _POSTGRES_PASSING_STATES:
        return True
    if sqlite_codes.primary_code(cause) == sqlite_codes.FULL:
        return True
    args = getattr(exc, "args", ()) or getattr(cause, "args", ())
    if not args or not isinstance(args[0], int):
        return False
    if args[0] == _MYSQL_WSREP_NOT_READY:
        return "wsrep" in str(args[1:]).lower()
    return args[0] in _MYSQL_PASSING_CODES


def raise_if_damaged(database: pw.Database, exc: Exception) -> None:
    """A SQLite file that is damaged or fails to read is an outage, not each task's fault:
    failing (or dead-lettering) every task that meets it would empty the queue. The
    connection is dropped, so that a file restored in place is read afresh."""
    cause = exc.__cause__ or exc.__context__ or exc
    if sqlite_codes.primary_code(cause) not in sqlite_codes.DAMAGED:
        return
    with suppress(pw.PeeweeException):
        database.close()
    raise DatabaseUnavailable(
        f"{exc} (the file {database.database} or its disk is failing: restore it from a "
        "backup or mend it; tasks wait, none is failed)"
    ) from exc


def failed_commit(exc: Exception) -> Exception | None:
    """The COMMIT's error behind peewee's failed ROLLBACK: SQLite rolls a transaction back
    itself when its COMMIT fails for a full disk, so the ROLLBACK that peewee then sends
    fails with "no transaction is active" and would hide why."""
    if "no transaction is active" not in str(exc):
        return None
    cause = exc.__context__
    while cause is not None:  # peewee's error, SQLite's error, then the COMMIT's
        if isinstance(cause, pw.PeeweeException) and "no transaction is active" not in str(cause):
            return cause
        cause = cause.__context__
    return None


def is_connection_error(exc: Exception) -> bool:
    if isinstance(exc, pw.InterfaceError):
        # The driver's own connection is unusable (PyMySQL's InterfaceError(0, ''): closed
        # after the server went away; psycopg2's "connection already closed").
        return True
    cause = exc.__cause__ or exc.__context__ or exc
    args = getattr(exc, "args", ()) or getattr(cause, "args", ())
    if args and isinstance(args[0], int):
        return args[0] in _MYSQL_CONNECTION_CODES
    text = str(exc).lower()
    if any(refusal in text for refusal in _POSTGRES_LOGIN_REFUSALS):
        return False  # the server answered: wrong credentials or names, as MariaDB's 1045
    return any(
        marker in text
        for marker in ("connection", "server closed", "could not connect", "database is locked")
    )


# PostgreSQL refusing a login, in its messages (the connection has no SQLSTATE yet): the
# config's to fix, not an outage to wait out. The wording of libpq 15 and server 15.
_POSTGRES_LOGIN_REFUSALS = (
    "password authentication failed",
    "no pg_hba.conf entry",
    "does not exist",  # role or database
)
