"""Deliveries again and again, in milliseconds: replays, reclaims, delivery counts, the
dead-letter stream and Redis outages, with the real Worker on a StubBroker (see
tests/worker_rig.py); faults come through the stub's seam (``StubRedis.faults``).

Still the real-server tests' part (test_executor_recovery.py, test_outage.py and the
process tests): a Redis that restarts, loses its data or answers MISCONF or NOPERM in its
own words, a worker killed mid-task (SIGKILL) and restarted as a process, partitions, and
the timing of XREADGROUP BLOCK on a real server.
"""

from __future__ import annotations

import time
from itertools import pairwise

import redis
from worker_rig import A, B, Rig

from executor.queue.stub import StubBroker


def _deliver(rig: Rig, consumer: str, times: int) -> list:
    """Deliver every queued entry to *consumer* *times* times, as a run that died would."""
    broker = StubBroker(rig.redis, consumer)
    held = broker.read_new(10, 0)
    for _ in range(times - 1):
        held = broker.replay_own(set(), 10)
    return held


def test_an_entry_delivered_max_deliveries_times_is_dead_lettered(tmp_path):
    rig = Rig(tmp_path, max_deliveries=2)
    task = rig.task()
    _deliver(rig, A, 2)  # this delivery is its third
    worker = rig.run(rig.settled(task))
    assert rig.state(task) == "failed"
    assert "abandoned after 2 deliveries" in rig.row(task)["progress_msg"]
    (record,) = rig.redis.dead_letters
    assert (record["deliveries"], record["consumer"]) == ("3", A)
    assert rig.ran == [] and not rig.redis.pending_of(A)
    assert worker.counters.failed == 1


def test_deliveries_an_outage_cut_short_do_not_count(tmp_path):
    rig = Rig(tmp_path, max_deliveries=2)
    task = rig.task()
    (delivery,) = _deliver(rig, A, 2)
    StubBroker(rig.redis, A).note_outage(delivery)  # the third counts as the second
    rig.run(rig.settled(task))
    assert rig.state(task) == "done"
    assert rig.row(task)["retry_count"] == 1
    assert not rig.redis.dead_letters and not rig.redis.outage_deliveries


def test_a_redis_outage_while_fetching_pauses_the_worker_until_redis_is_back(tmp_path):
    rig = Rig(tmp_path)
    rig.redis.faults.fail_always("read_new", redis.ConnectionError("Connection refused"))
    failed_at: list[float] = []  # when each read failed
    check = rig.redis.faults.check

    def timed_check(method: str) -> None:
        try:
            check(method)
        except redis.ConnectionError:
            failed_at.append(time.monotonic())
            raise

    rig.redis.faults.check = timed_check
    tasks: list[str] = []

    def heal_once_down(worker) -> None:
        if worker.redis_outage.down and not tasks:
            rig.redis.faults.heal()
            tasks.append(rig.task())

    worker = rig.run(lambda: bool(tasks) and rig.settled(*tasks)(), during=heal_once_down)
    # One failed read, then no other until the back-off (0.2 s, then longer) ran out. The
    # test's poll heals Redis when it first sees the outage: on a loaded machine that can
    # come after a retry, so the reads' spacing is what is checked, not their number.
    assert failed_at
    assert all(later - earlier >= 0.18 for earlier, later in pairwise(failed_at)), failed_at
    assert not worker.redis_outage.down
    assert worker.counters.done == 1


def test_an_unclean_stop_replays_its_entries_one_at_a_time(tmp_path):
    rig = Rig(tmp_path)
    tasks = [rig.task("slow", payload='{"seconds": 0.05}') for _ in range(2)]
    _deliver(rig, A, 1)  # held by a run that died: no clean-stop mark
    rig.run(rig.settled(*tasks))
    assert {rig.state(t) for t in tasks} == {"done"}
    assert rig.most_at_once == 1  # each alone: one may be what killed the last run
    assert [rig.row(t)["retry_count"] for t in tasks] == [1, 1]


def test_a_clean_stop_replays_its_entries_together(tmp_path):
    rig = Rig(tmp_path)
    tasks = [rig.task("slow", payload='{"seconds": 0.05}') for _ in range(2)]
    _deliver(rig, A, 1)
    StubBroker(rig.redis, A).note_clean_stop()
    rig.run(rig.settled(*tasks))
    assert {rig.state(t) for t in tasks} == {"done"}
    assert rig.most_at_once == 2
    assert A in rig.redis.clean_stops  # this run's own mark, for the next


def test_an_idle_entry_of_a_dead_consumer_is_reclaimed_and_run_alone(tmp_path):
    rig = Rig(tmp_path)
    stale = int((rig.redis.clock() - 60) * 1000)  # its holder stopped stamping its row
    task = rig.task(update_time=stale)
    _deliver(rig, B, 1)
    rig.skew = 1.0  # idle for longer than reclaim_idle
    rig.run(rig.settled(task))
    assert rig.state(task) == "done"
    assert rig.row(task)["retry_count"] == 1
    assert not rig.redis.pending_of(B) and not rig.redis.pending_of(A)


def test_an_idle_entry_whose_task_is_still_stamped_is_left_to_its_holder(tmp_path):
    rig = Rig(tmp_path, reclaim_idle=20)
    task = rig.task()  # its row just stamped: its holder is alive, cut off from Redis
    _deliver(rig, B, 1)
    rig.skew = 60.0
    rig.run(lambda: bool(rig.redis.outage_deliveries))
    assert rig.state(task) == "queued" and rig.ran == []
    assert rig.redis.pending_of("ragfleet-held-elsewhere") == rig.redis.entries(0)
