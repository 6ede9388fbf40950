"""Gauges read at scrape time: the fleet's queues (from a snapshot a loop refreshes in a
thread, so a scrape never waits for Redis) and the dependencies' health (from Health)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import trio
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..errors import REDIS_REFUSED
from ..metrics import Metrics
from ..queue.roster import Roster
from ..queue.stats import QueuesSnapshot
from .clock import SYSTEM_CLOCK, Clock, in_thread
from .health import Health

DEPENDENCIES = ("redis", "database", "document_store", "embedding_endpoint", "storage")
"""The ``dependency`` label: Redis and the task database, then what tasks need (the
names DependencyUnavailable carries, see executor.ingest.pipeline)."""

STALE_AFTER = 3
"""A snapshot older than this many refresh periods is not exported: no figure is better
than a wrong one when Redis cannot be read."""


class QueueGauges(Collector):
    """ragfleet_queue_* and ragfleet_dead_letter_entries: fleet-wide facts, the same from
    every executor (a dashboard takes max() over instances)."""

    def __init__(self, roster: Roster, period: float, clock: Clock, log: logging.Logger) -> None:
        self.roster = roster
        self.period = period
        self.clock = clock
        self.log = log
        self.snapshot: QueuesSnapshot | None = None
        self._taken = 0.0  # monotonic

    async def refresh(self) -> None:
        """Read the queues now (in a thread); a failure keeps the last snapshot (which is
        not exported once it is STALE_AFTER periods old)."""
        try:
            self.snapshot = await in_thread(self.roster.queues)
            self._taken = self.clock.monotonic()
        except REDIS_REFUSED as exc:
            self.log.debug("queue gauges not refreshed: %s", exc)
        except Exception:  # a gauge must never stop the worker: the figures go stale
            self.log.exception("reading the queues for the gauges failed")

    async def refresh_forever(self) -> None:
        while True:
            await self.refresh()
            await trio.sleep(self.period)

    def collect(self) -> Iterator[Metric]:
        snapshot = self.snapshot
        if snapshot is None or self.clock.monotonic() - self._taken > STALE_AFTER * self.period:
            return
        waiting = GaugeMetricFamily(
            "ragfleet_queue_waiting_entries",
            "Entries no executor has taken yet, per stream (fleet-wide).",
            labels=("queue",),
        )
        pending = GaugeMetricFamily(
            "ragfleet_queue_pending_entries",
            "Entries taken and not acknowledged, per stream and consumer (fleet-wide).",
            labels=("queue", "consumer"),
        )
        oldest = GaugeMetricFamily(
            "ragfleet_queue_oldest_entry_age_seconds",
            "Age of the oldest entry a stream holds, waiting or pending; 0 when empty.",
            labels=("queue",),
        )
        for queue in snapshot.queues:
            waiting.add_metric((queue.queue,), queue.waiting)
            oldest.add_metric((queue.queue,), queue.oldest_age)
            for consumer, count in sorted(queue.consumers.items()):
                pending.add_metric((queue.queue, consumer), count)
        yield waiting
        yield pending
        yield oldest
        yield GaugeMetricFamily(
            "ragfleet_dead_letter_entries",
            "Entries in the dead-letter stream (fleet-wide).",
            value=snapshot.dead_letters,
        )


async def start_queue_gauges(
    services: trio.Nursery, metrics: Metrics, roster: Roster, period: float, log: logging.Logger
) -> QueueGauges:
    """Export the queues' figures, read once before /metrics answers, then every *period*."""
    gauges = QueueGauges(roster, period, SYSTEM_CLOCK, log)
    await gauges.refresh()
    metrics.register(gauges)
    services.start_soon(gauges.refresh_forever)
    return gauges


class HealthGauges(Collector):
    """ragfleet_dependency_up and ragfleet_dependency_outages_total, as this executor sees
    its dependencies: down from a failure until the worker's next success with it."""

    def __init__(self, health: Health) -> None:
        self.health = health

    def _states(self) -> Iterator[tuple[str, bool, int]]:
        h = self.health
        yield "redis", h.redis.down, h.redis.outages
        yield "database", h.db.down, h.db.outages
        for name in DEPENDENCIES[2:]:
            yield name, h.dependency_down(name), h.dep_outages.get(name, 0)

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "ragfleet_dependency_up",
            "1 if the dependency answers as far as this executor knows, 0 while it is down.",
            labels=("dependency",),
        )
        outages = CounterMetricFamily(
            "ragfleet_dependency_outages",
            "Outages of the dependency this executor has met (relapses included).",
            labels=("dependency",),
        )
        for name, down, count in self._states():
            up.add_metric((name,), 0 if down else 1)
            outages.add_metric((name,), count)
        yield up
        yield outages
