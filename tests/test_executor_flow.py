"""The executor's normal path against real Redis and SQLite: fetch, run, record, ack."""

from __future__ import annotations

import signal

from executor import wire


def test_noop_tasks_complete_and_leave_streams_empty(fleet):
    ids = fleet.submit("noop", count=20)
    worker = fleet.start()
    rows = fleet.wait_done(ids, timeout=20)
    assert all(r["progress"] == 1 for r in rows)
    assert all("Task done (" in r["progress_msg"] for r in rows)
    assert all(r["retry_count"] == 0 for r in rows)
    # Acked entries are deleted: the streams hold only unfinished work.
    assert fleet.redis.xlen(wire.queue_name(0)) == 0
    assert fleet.redis.xpending(wire.queue_name(0), wire.GROUP)["pending"] == 0
    assert worker.terminate() == 0
