"""The worker's own metrics, by name (exported on /metrics, see executor.metrics and
docs/operations.md); the fleet-wide gauges are in gauges.py."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client import Counter, Gauge, Histogram

from ..metrics import Metrics

OUTCOMES = ("done", "failed", "cancelled", "dead_lettered")
"""How a task ends: the ``outcome`` label of ragfleet_tasks_total."""

UNKNOWN_TYPE = "unknown"
"""The ``type`` label of a task set aside before its row was read."""


def type_label(task_type: str | None) -> str:
    """The ``type`` label of a task type: upstream's ingestion type is "" (an empty label
    value would be the same as no label to Prometheus)."""
    return task_type or "ingest"


@dataclass(frozen=True)
class Meters:
    tasks: Counter
    duration: Histogram
    reclaimed: Counter
    grouped: Counter
    left_to_holder: Counter
    requeued: Counter
    malformed: Counter
    redis_errors: Counter
    db_errors: Counter
    in_flight: Gauge
    # Children of tasks/duration by label values, made once: .labels() is the slow part.
    _tasks_by: dict[tuple[str, str], Counter] = field(default_factory=dict)
    _duration_by: dict[str, Histogram] = field(default_factory=dict)

    @classmethod
    def define(cls, m: Metrics, task_types: Iterable[str] = ()) -> Meters:
        """The meters, with a series for every known task type and outcome from the start,
        so that rate() and absent() behave before the first task."""
        meters = cls(
            tasks=m.counter(
                "ragfleet_tasks_total", "Tasks ended, by type and outcome.", ("type", "outcome")
            ),
            duration=m.histogram(
                "ragfleet_task_duration_seconds", "Run time of tasks done, by type.", ("type",)
            ),
            reclaimed=m.counter("ragfleet_reclaimed_total", "Entries reclaimed from others."),
            grouped=m.counter(
                "ragfleet_grouped_tasks_total",
                "Tasks run in a group with others fetched with them.",
            ),
            left_to_holder=m.counter(
                "ragfleet_reclaimed_left_to_holder_total",
                "Entries reclaimed whose task another executor still runs, left to it.",
            ),
            requeued=m.counter(
                "ragfleet_lost_tasks_requeued_total",
                "Unfinished tasks no queue held, re-enqueued.",
            ),
            malformed=m.counter("ragfleet_malformed_messages_total", "Entries dropped."),
            redis_errors=m.counter("ragfleet_redis_errors_total", "Redis call failures."),
            db_errors=m.counter("ragfleet_db_errors_total", "Database call failures."),
            in_flight=m.gauge("ragfleet_tasks_in_flight", "Tasks running now."),
        )
        for task_type in (*task_types, UNKNOWN_TYPE):
            meters.tasks_of(type_label(task_type), "done")  # one type's series make all
        return meters

    def tasks_of(self, label: str, outcome: str) -> Counter:
        """The ragfleet_tasks_total series of type *label* and *outcome* (made with every
        other outcome of the type, the first time the type is seen)."""
        child = self._tasks_by.get((label, outcome))
        if child is None:
            for each in OUTCOMES:
                self._tasks_by[(label, each)] = self.tasks.labels(type=label, outcome=each)
            self._duration_by[label] = self.duration.labels(type=label)
            child = self._tasks_by[(label, outcome)]
        return child

    def ended(self, task_type: str | None, outcome: str, seconds: float | None = None) -> None:
        """Count one task of *task_type* ended with *outcome* (one of OUTCOMES); a task
        done also has its run time observed."""
        label = type_label(task_type)
        self.tasks_of(label, outcome).inc()
        if seconds is not None:
            self._duration_by[label].observe(seconds)
