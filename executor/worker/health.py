"""The worker's health: its outages, the set-aside streak, and the /healthz answer."""

from __future__ import annotations

import logging

from ..errors import DatabaseUnavailable, DependencyUnavailable
from ..outage import Outage
from ..queue.broker import redis_error_text

SET_ASIDE_STREAK = 3
"""Entries set aside in a row (executor errors, no task settled between them) after which
the error is taken for the executor's own, not the tasks': fetching slows down to one
task at a time, after a growing pause, until one settles (see Health.set_aside)."""


class Health:
    """The five outages that pause fetching, and the streak of entries set aside."""

    def __init__(self, log: logging.Logger, heartbeat_interval: float) -> None:
        # An outage is over once the dependency has held for two heartbeats (see Outage).
        settle = 2 * heartbeat_interval
        self.redis = Outage("Redis", log, settle=settle, describe=redis_error_text)
        self.db = Outage("database", log, settle=settle)
        # Services only some tasks need (document store, embedding endpoint): nothing to
        # probe, so tasks are retried after a back-off until one gets through.
        self.dep = Outage("a task dependency", log, cap=30.0, settle=settle)
        self.refused_reads = Outage(
            "Redis reads", log, first=1.0, cap=30.0, settle=settle, describe=redis_error_text
        )
        # Executor errors on task after task: the executor's bug, or something it depends
        # on that fails in a way not known as an outage (see set_aside).
        self.executor_errors = Outage("task processing", log, first=1.0, cap=60.0, settle=settle)
        self.set_aside_streak = 0
        # Which of the task dependencies failed in the current outage of self.dep, and how
        # many outages each has had: the dependency gauges (gauges.py) tell them apart.
        self.deps_down: set[str] = set()
        self.dep_outages: dict[str, int] = {}

    def paused(self) -> bool:
        """Whether an outage says to wait before the next fetch."""
        return self.redis.down or any(
            outage.holds() for outage in (self.db, self.dep, self.executor_errors)
        )

    def answer(self, stopping: bool) -> tuple[bool, str]:
        """What /healthz says."""
        if stopping:
            return False, "stopping"
        for outage in (self.redis, self.db, self.executor_errors):
            if outage.down:
                return False, f"{outage.name} unavailable"
        return True, "ok"

    def outage_of(self, exc: BaseException) -> Outage:
        if isinstance(exc, DatabaseUnavailable):
            return self.db
        if isinstance(exc, DependencyUnavailable):
            self._note_dependency(exc.dependency)
            return self.dep
        return self.redis

    def _note_dependency(self, name: str) -> None:
        if not self.dep.down:
            self.deps_down.clear()  # the last outage is over
        if name not in self.deps_down:
            self.deps_down.add(name)
            self.dep_outages[name] = self.dep_outages.get(name, 0) + 1

    def dependency_down(self, name: str) -> bool:
        """Whether task dependency *name* failed in the outage that goes on now."""
        return self.dep.down and name in self.deps_down

    def settled(self) -> None:
        """A task settled: the streak is broken."""
        self.set_aside_streak = 0
        self.executor_errors.recovered()

    def set_aside(self, exc: Exception) -> None:
        """Entries set aside one after another mean an error every task meets: setting
        each aside at full speed would move the whole queue to the dead-letter stream.
        From the SET_ASIDE_STREAK-th on, fetching pauses (1 s, doubling each time the task
        run alone is set aside too, up to a minute) and then runs one task alone, until
        one settles. The tasks already running when it trips meet the error too: up to
        SET_ASIDE_STREAK + max_concurrent_tasks - 1 are set aside before the pause."""
        self.set_aside_streak += 1
        if self.set_aside_streak >= SET_ASIDE_STREAK:
            self.executor_errors.failed(
                RuntimeError(
                    f"{self.set_aside_streak} tasks in a row set aside by executor errors, "
                    f"the last {type(exc).__name__}: {exc}; one task at a time from now"
                )
            )
