"""Which errors are an outage (retry the task later), and the worker's own error types.

Every outage decision of the worker goes through :func:`is_outage`, imported from here."""

from __future__ import annotations

from ..outage import DependencyUnavailable
from ..queue.broker import REDIS_UNAVAILABLE, refuses_writes
from ..store.database import DatabaseUnavailable


def is_outage(exc: BaseException) -> bool:
    """Whether *exc* means a service is unavailable for now (retry the task later), rather
    than something wrong with the task or the executor."""
    outages = (DatabaseUnavailable, DependencyUnavailable, *REDIS_UNAVAILABLE)
    return isinstance(exc, outages) or refuses_writes(exc)


class TaskNotInDatabase(LookupError):
    """A queue entry names a task the database does not have: the database was restored
    from an older backup, or the executor uses another database than the producer (a
    config mistake). Nothing to run, and not the task's fault: the entry is set aside to
    the dead-letter stream, not dropped, for `ragfleet dlq retry` once the task is there,
    and entries in a row like it pause fetching (see docs/architecture.md, set aside)."""
