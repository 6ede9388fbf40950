"""The worker's metrics, by name (exported on /metrics, see executor.metrics)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from ..metrics import Counter, Gauge, Histogram, Metrics


@dataclass(frozen=True)
class Meters:
    done: Counter
    failed: Counter
    cancelled: Counter
    dead: Counter
    reclaimed: Counter
    grouped: Counter
    left_to_holder: Counter
    requeued: Counter
    malformed: Counter
    redis_errors: Counter
    db_errors: Counter
    in_flight: Gauge
    duration: Histogram

    @classmethod
    def define(cls, m: Metrics) -> Meters:
        meters = cls(
            done=m.counter("ragfleet_tasks_done_total", "Tasks finished successfully."),
            failed=m.counter("ragfleet_tasks_failed_total", "Tasks failed by their handler."),
            cancelled=m.counter("ragfleet_tasks_cancelled_total", "Tasks cancelled."),
            dead=m.counter("ragfleet_tasks_dead_lettered_total", "Tasks dead-lettered."),
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
            duration=m.histogram("ragfleet_task_duration_seconds", "Task run time."),
        )
        for field in fields(cls):
            meter = getattr(meters, field.name)
            if isinstance(meter, Counter):
                meter.inc(0)  # export zeros from the start, so rate() and absent() behave
        return meters
