"""The executor's exception types, and the one answer to "is this an outage?".

A leaf: it imports no executor module, so every layer may raise and classify these. The
ingestion plug-ins' own errors live in :mod:`executor.ingest.errors` (they never reach the
worker raw: the pipeline turns them into the types here). Redis's exception classes are
sorted here too, as data: which of them mean "not now", which "refused", is decided once.
"""

from __future__ import annotations

import redis


class SettingsError(ValueError):
    """The runtime config file is missing or not what configc writes, or names something
    that cannot be used."""


class InstanceRunning(SettingsError):
    """Another live process is this executor instance."""


class TaskInputError(ValueError):
    """The task itself is wrong (bad parameters, unreadable document): fail it, do not retry."""


class TaskNotInDatabase(LookupError):
    """A queue entry names a task the database does not have: the database was restored
    from an older backup, or the executor uses another database than the producer (a
    config mistake). Nothing to run, and not the task's fault: the entry is set aside to
    the dead-letter stream, not dropped, for `ragfleet dlq retry` once the task is there,
    and entries in a row like it pause fetching (see Worker._note_set_aside)."""


class MalformedMessage(ValueError):
    """A stream entry that is not a task message; it is acked and logged, never retried."""


class DatabaseUnavailable(ConnectionError):
    """The database cannot be reached right now; retry later, fail nothing."""


class DatabaseConnectionFailed(DatabaseUnavailable):
    """A connection-level failure: the server went away (a restart, a cluster node killed,
    a proxy's failover) or cannot be reached; on SQLite, a lock another process held past
    the busy timeout (executor.store.classify sorts them). The connection is dropped, so the
    thread's next statement opens another: met where nothing repeats the statement (a
    lease renewal, the read's look-up), it is the only sign of the failure, and is noted
    as an outage (see Outage.noticed)."""


class NoTurnToWrite(ConnectionError):
    """Another thread of this process kept the SQLite file for longer than the timeout. A
    ConnectionError, so callers treat it as the file being unavailable for now: the
    executor retries the task later instead of failing it."""


class DependencyUnavailable(ConnectionError):
    """A service a task needs (document store, embedding endpoint) cannot be reached: the task
    is retried later, never failed. *dependency* names it for the metrics: "document_store",
    "embedding_endpoint" or "storage" (see executor.worker.gauges)."""

    def __init__(self, message: str, dependency: str = "task_dependency") -> None:
        super().__init__(message)
        self.dependency = dependency


# -- Redis's errors, sorted ------------------------------------------------------------------

RedisAnswer = redis.ResponseError
"""Redis answered a command with an error (a missing consumer group, MISCONF, ...)."""

# Redis cannot take our commands for now: down or unreachable, loading its data, out of
# memory (maxmemory with noeviction refuses writes), or a read-only replica (a failover).
# Under Sentinel, redis-py raises ConnectionError subclasses for the rest of a failover: no
# sentinel names a master yet (MasterNotFoundError), or the server a pooled connection
# reaches was demoted (READONLY, or UNBLOCKED for a blocked XREADGROUP, turned into
# "The previous master is now a slave"): all outages, waited out (tests/test_sentinel_failover.py).
REDIS_UNAVAILABLE = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.BusyLoadingError,
    redis.OutOfMemoryError,
    redis.ReadOnlyError,
)

REDIS_REFUSED = (*REDIS_UNAVAILABLE, redis.ResponseError)
"""Redis unavailable, or answering an error (MISCONF among them): what a probe or a
best-effort call takes as "not now" rather than a failure of its own."""

REDIS_DENIED = (
    redis.AuthenticationError,
    redis.exceptions.AuthorizationError,
    redis.exceptions.NoPermissionError,
)
"""Redis answers and refuses us: a wrong password, an unknown or disabled user, an ACL
without our commands or keys. The config's or the ACL's to fix, not an outage to wait out
(redis-py makes a refused login a ConnectionError: test for this first)."""


# Redis refuses writes until it can again: MISCONF, it failed to persist (its AOF or its last
# save; a full disk, say); NOREPLICAS, a master under Sentinel short of the replicas
# min-replicas-to-write asks for (just promoted, before the sentinels have pointed the
# other replicas at it; or cut off from them).
_WRITES_REFUSED = ("MISCONF ", "NOREPLICAS ")


def refuses_writes(exc: BaseException) -> bool:
    """Redis answered MISCONF or NOREPLICAS: it refuses writes for now. redis-py has no
    exception class for either, and prefixes an error inside a pipeline with the command
    that met it."""
    text = str(exc)
    return isinstance(exc, redis.ResponseError) and any(
        text.startswith(code) or f"of pipeline caused error: {code}" in text
        for code in _WRITES_REFUSED
    )


def redis_denied(exc: BaseException) -> bool:
    """Redis refused our login or our ACL: a config error (exit 2), never waited out."""
    return isinstance(exc, REDIS_DENIED)


def redis_outage(exc: BaseException) -> bool:
    """Redis cannot take our commands for now (a refused login among them: ask
    :func:`redis_denied` first where the two must differ)."""
    return isinstance(exc, REDIS_UNAVAILABLE) or refuses_writes(exc)


def redis_refused(exc: BaseException) -> bool:
    """Redis is out or answered an error: what a probe or a best-effort call takes as
    "not now" (a superset of :func:`redis_outage`)."""
    return isinstance(exc, REDIS_REFUSED)


def unreachable(exc: BaseException) -> bool:
    """A service a task needs could not be reached (its client raised a ConnectionError):
    the pipeline turns it into DependencyUnavailable, an outage."""
    return isinstance(exc, ConnectionError)


def is_outage(exc: BaseException) -> bool:
    """Whether *exc* means a service is unavailable for now (retry the task later, back
    off), rather than something wrong with the task or the executor."""
    return isinstance(exc, (DatabaseUnavailable, DependencyUnavailable)) or redis_outage(exc)


def not_now(exc: BaseException) -> bool:
    """A best-effort pass (the lost-task passes) that met *exc* is skipped, not failed: an
    outage, Redis answering an error, or another pass keeping a turn (TimeoutError)."""
    return is_outage(exc) or redis_refused(exc) or isinstance(exc, TimeoutError)
