"""The queues' figures (Roster.queues) on the real Redis, and the queue gauges built on them."""

from __future__ import annotations

import logging
import time

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from executor.metrics import Metrics
from executor.queue import wire
from executor.queue.broker import Broker
from executor.queue.roster import Roster
from executor.worker.clock import SYSTEM_CLOCK
from executor.worker.gauges import QueueGauges

Q0, Q1 = wire.queue_name(0), wire.queue_name(1)


def test_an_empty_redis_has_empty_queues(redis_client):
    snapshot = Roster(redis_client).queues()
    assert [q.queue for q in snapshot.queues] == [Q1, Q0]
    assert all(
        (q.length, q.waiting, q.pending, q.oldest_age, q.consumers) == (0, 0, 0, 0.0, {})
        for q in snapshot.queues
    )
    assert snapshot.dead_letters == 0
    assert snapshot.taken_at == pytest.approx(time.time(), abs=5)


def test_depth_pending_per_consumer_age_and_dead_letters(redis_client):
    roster = Roster(redis_client)
    old_id = f"{int((time.time() - 120) * 1000)}-0"  # an entry added two minutes ago
    redis_client.xadd(Q0, wire.encode_message({"id": "t0"}), id=old_id)
    roster.enqueue([{"id": f"t{i}"} for i in range(1, 5)] + [{"id": "p", "priority": 1}])
    a, b = (Broker(redis_client, wire.consumer_name(h, 1)) for h in ("a", "b"))
    a.ensure_groups()
    taken = a.read_new(2, 0)  # the priority-1 entry and the two-minute-old one
    b.read_new(1, 0)
    a.dead_letter(taken[0], "test")

    snapshot = roster.queues()
    q1, q0 = snapshot.queues
    assert (q1.length, q1.waiting, q1.pending) == (0, 0, 0)
    assert (q0.length, q0.waiting, q0.pending) == (5, 3, 2)
    assert q0.consumers == {a.consumer: 1, b.consumer: 1}
    assert 119 < q0.oldest_age < 130
    assert snapshot.dead_letters == 1
    assert snapshot.as_dict()["queues"][1]["consumers"] == q0.consumers


def test_the_gauges_export_the_snapshot_and_hide_a_stale_one(redis_client):
    roster = Roster(redis_client)
    roster.enqueue([{"id": "t1"}, {"id": "t2"}])
    Broker(redis_client, "c").ensure_groups()
    metrics = Metrics()
    gauges = QueueGauges(roster, 0.2, SYSTEM_CLOCK, logging.getLogger("test"))
    metrics.register(gauges)
    assert "ragfleet_queue" not in metrics.render()  # nothing read yet: nothing exported
    trio.run(gauges.refresh)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics.render())
        for s in family.samples
    }
    assert samples[("ragfleet_queue_waiting_entries", (("queue", Q0),))] == 2
    assert samples[("ragfleet_queue_waiting_entries", (("queue", Q1),))] == 0
    assert samples[("ragfleet_queue_oldest_entry_age_seconds", (("queue", Q0),))] < 5
    assert samples[("ragfleet_dead_letter_entries", ())] == 0
    time.sleep(0.7)  # more than STALE_AFTER periods without a refresh
    assert "ragfleet_queue" not in metrics.render()


def test_a_failing_read_keeps_the_worker_going_and_the_last_snapshot(redis_client, caplog):
    class Broken:
        def queues(self):
            raise KeyError("a reply we did not expect")

    gauges = QueueGauges(Roster(redis_client), 60, SYSTEM_CLOCK, logging.getLogger("test"))
    trio.run(gauges.refresh)
    before = gauges.snapshot
    gauges.roster = Broken()  # type: ignore[assignment]
    trio.run(gauges.refresh)  # does not raise
    assert gauges.snapshot is before and "reading the queues for the gauges failed" in caplog.text
