"""Unfinished tasks that no queue holds: which count as lost (real Redis, the three task
databases), and the executors' sweep that puts them back (real processes, a real Redis
crash that loses the tail of its append-only file)."""

from __future__ import annotations

import re
import time
import urllib.request
from pathlib import Path

from executors import wait_for
from servers import free_port

from executor.fleet import LostTaskFilter, requeue_lost, tasks_in_no_queue
from executor.queue import wire
from executor.queue.broker import Broker
from executor.queue.producer import enqueue, task_message
from executor.queue.roster import Roster

NOOP = {"task_type": "noop", "priority": 0, "payload": ""}


def _ids(rows):
    return sorted(row["id"] for row in rows)


def _dead_letter(client, task) -> None:
    """What the set-aside path leaves when the task's failure cannot be written: the entry
    in the dead-letter stream, the row still unfinished."""
    record = {**wire.encode_message(task_message(task)), "queue": wire.queue_name(0)}
    client.xadd(wire.DEAD_LETTER_STREAM, {**record, "reason": "test", "deliveries": "3"})


def test_only_tasks_no_queue_holds_and_no_executor_runs_are_lost(task_store, redis_client):
    queued, running, dead, lost, done = (task_store.create_tasks([NOOP]) for _ in range(5))
    task_store.create_tasks([{**NOOP, "priority": 7}])  # no worker reads a priority-7 stream
    enqueue(redis_client, (task_message(t) for t in queued))
    _dead_letter(redis_client, dead[0])
    task_store.set_progress(done[0]["id"], 1, "done")
    lost_filter = LostTaskFilter(running={running[0]["id"]})

    missing, unfinished = tasks_in_no_queue(Roster(redis_client), task_store, lost_filter)

    assert (_ids(missing), unfinished) == (_ids(lost), 5)
    assert _ids(tasks_in_no_queue(Roster(redis_client), task_store)[0]) == _ids(running + lost)
    # the row as a queue entry carries it, so that a worker can run it
    assert task_message(missing[0])["payload"] == ""


def test_more_lost_tasks_than_one_query_binds_are_all_found(task_store, redis_client):
    created = task_store.create_tasks([NOOP] * 1203)  # three IN lists of at most 500
    ids, unfinished = requeue_lost(Roster(redis_client), task_store)
    assert (sorted(ids), unfinished) == (_ids(created), 1203)
    assert redis_client.xlen(wire.queue_name(0)) == 1203
    assert requeue_lost(Roster(redis_client), task_store) == ([], 1203)  # idempotent


def test_a_task_recorded_or_changed_since_the_cutoff_is_not_lost(task_store, redis_client):
    (old,) = task_store.create_tasks([NOOP])
    time.sleep(0.01)
    cutoff = int(time.time() * 1000)
    time.sleep(0.01)
    task_store.create_tasks([NOOP])  # recorded after the cutoff
    stale = [old["id"]]

    found = tasks_in_no_queue(
        Roster(redis_client), task_store, LostTaskFilter(created_before_ms=cutoff)
    )
    assert _ids(found[0]) == stale
    unchanged = LostTaskFilter(unchanged_since_ms=cutoff)
    assert _ids(tasks_in_no_queue(Roster(redis_client), task_store, unchanged)[0]) == stale
    task_store.set_progress(old["id"], None, "a line")  # its row changed: about to be queued
    assert tasks_in_no_queue(Roster(redis_client), task_store, unchanged)[0] == []


def test_a_task_that_finishes_while_the_streams_are_read_is_not_lost(task_store, redis_client):
    """The database is read first, then the streams: a task finished in between (its entry
    deleted after its row said done) is in neither, and must not be enqueued again."""
    (task,) = task_store.create_tasks([NOOP])

    class FinishingWhileRead:
        def __init__(self, store):
            self.store = store

        def unfinished_task_stamps(self, **narrowing):
            stamps = self.store.unfinished_task_stamps(**narrowing)
            self.store.set_progress(task["id"], 1, "done")
            return stamps

        def unfinished_tasks(self, among):
            return self.store.unfinished_tasks(among)

    assert requeue_lost(Roster(redis_client), FinishingWhileRead(task_store)) == ([], 1)
    assert redis_client.xlen(wire.queue_name(0)) == 0


def test_one_executor_of_the_fleet_sweeps_per_period(redis_client):
    first = Broker(redis_client, "task_executor_a_1")
    second = Broker(redis_client, "task_executor_b_1")
    assert first.take_sweep_turn(60)
    assert not second.take_sweep_turn(60) and not first.take_sweep_turn(60)
    assert 55 <= redis_client.ttl(wire.SWEEP_LOCK) <= 60
    redis_client.delete(wire.SWEEP_LOCK)  # the period is over
    assert second.take_sweep_turn(60)


def test_a_heartbeat_needs_no_stream(redis_client):
    """Redis lost its data: until some executor creates the groups again, the heartbeats
    still say which tasks each executor runs (the passes spare what they name)."""
    assert Broker(redis_client, "task_executor_a_1").queue_info() == (0, 0)


# -- the sweep in running executors ----------------------------------------------------------


def _aof_tail(workdir: Path) -> Path:
    """The incremental file Redis appends to now (multi-part AOF, Redis 7)."""
    manifest = (workdir / "appendonlydir" / "appendonly.aof.manifest").read_text()
    (name,) = re.findall(r"^file (\S+) seq \d+ type i$", manifest, re.MULTILINE)
    return workdir / "appendonlydir" / name


def test_tasks_whose_entries_redis_lost_in_a_crash_are_found_by_the_sweep(make_fleet, redis_server):
    """Redis is killed and its append-only file lacks its last writes (appendfsync everysec
    loses up to a second; here the file is cut back, mid-command, to before the last three
    submits). It comes back with its consumer groups, so no executor sees a loss, and
    without those three entries: only the sweep finds the tasks, and each runs once."""
    base = free_port()
    fleet = make_fleet(lost_task_sweep=1, metrics_port_base=base)
    assert fleet.start(instance=3).terminate() == 0  # the groups exist from now on
    kept = fleet.submit("noop", count=2)
    aof = _aof_tail(redis_server.workdir)
    size = aof.stat().st_size
    lost = fleet.submit("noop", count=3)
    redis_server.kill()
    with aof.open("r+b") as stream:
        stream.truncate(size + 7)
    redis_server.start()
    assert fleet.redis.xlen(wire.queue_name(0)) == 2  # the three entries are gone

    workers = [fleet.start(instance=1), fleet.start(instance=2)]
    rows = fleet.wait_done(kept + lost, timeout=30)

    assert [r["progress"] for r in rows] == [1] * 5
    assert all(r["progress_msg"].count("Task has been received.") == 1 for r in rows)
    logs = "\n".join(w.log for w in workers)
    assert "Redis had no consumer groups" not in logs  # nothing else could have found them
    (found,) = re.findall(r"re-enqueued (\d) of \d unfinished tasks that no queue held: (.*)", logs)
    assert found[0] == "3" and sorted(found[1].split(", ")) == sorted(lost)
    counted = [_requeued_metric(f"http://127.0.0.1:{base + w.instance}") for w in workers]
    assert sorted(counted) == [0, 3]


def _requeued_metric(url: str) -> int:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        body = response.read().decode()
    (value,) = re.findall(r"^ragfleet_lost_tasks_requeued_total (\S+)$", body, re.MULTILINE)
    return int(float(value))


def test_the_sweep_leaves_running_and_dead_lettered_tasks_alone(make_fleet):
    """A task whose entry Redis lost while it ran makes no progress for 8 s (older than the
    sweep's cutoff): only its executor's heartbeat says it runs. A dead-lettered task the
    database still calls unfinished is the operator's. Several sweeps pass; neither is
    enqueued, and the running one finishes once."""
    fleet = make_fleet(lost_task_sweep=1)
    worker = fleet.start()
    (running,) = fleet.submit("sleep", seconds=8)
    wait_for(lambda: fleet.task(running)["begin_at"], 15, "the task to start")
    (entry_id, _), *_ = fleet.redis.xrange(wire.queue_name(0))
    fleet.redis.xdel(wire.queue_name(0), entry_id)
    (dead,) = fleet.store.create_tasks([NOOP])
    _dead_letter(fleet.redis, dead)

    swept = "lost-task sweep: every unfinished task is queued or running"
    eligible = worker.log.count(swept) + 4  # the cutoff (worker_heartbeat_timeout) is 3 s
    wait_for(lambda: worker.log.count(swept) >= eligible, 15, "four more sweeps")

    assert fleet.redis.xlen(wire.queue_name(0)) == 0
    row = fleet.wait_done([running], timeout=15)[0]
    assert row["progress"] == 1 and row["progress_msg"].count("Task has been received.") == 1
    assert fleet.task(dead["id"])["progress"] == 0
    assert not re.search(r"re-enqueued [1-9]", worker.log)


def test_an_entry_held_to_run_alone_is_not_run_twice_when_redis_loses_its_data(make_fleet):
    """Executor 1 takes over the entry of a dead executor and holds it, to run alone once
    its own task has finished. Redis loses its data meanwhile, and an executor that meets
    the empty Redis (executor 2, started on it, or executor 1 itself at its next read,
    whichever comes first on a loaded machine) re-enqueues what no queue holds and no
    heartbeat names. Executor 1's heartbeat names the entry it holds, so it is left alone:
    it runs once more, not twice at once."""
    fleet = make_fleet()
    dead = fleet.start(instance=3)
    (taken_over,) = fleet.submit("sleep", seconds=2)
    wait_for(lambda: fleet.task(taken_over)["begin_at"], 15, "the task to start")
    dead.kill()
    holder = fleet.start(instance=1)
    (own,) = fleet.submit("sleep", seconds=25)  # outlasts the pass, which must find it running
    wait_for(lambda: fleet.task(own)["begin_at"], 15, "its own task to start")
    holder.wait_log(r"reclaimed entry .* running it alone", timeout=20)
    fleet.redis.flushall()
    other = fleet.start(instance=2)
    passed = r"re-enqueued \d+ of \d+ unfinished tasks that no queue held"
    wait_for(lambda: re.search(passed, holder.log + other.log), 40, "a lost-task pass")

    rows = {r["id"]: r for r in fleet.wait_done([own, taken_over], timeout=60)}

    assert [r["progress"] for r in rows.values()] == [1, 1]
    received = {i: rows[i]["progress_msg"].count("Task has been received.") for i in rows}
    assert received == {own: 1, taken_over: 2}  # the dead executor's delivery, and one more
    logs = holder.log + other.log
    assert "re-enqueued 0 of 2 unfinished tasks" in logs
    assert not re.search(r"re-enqueued [1-9]", logs)


def test_a_pass_that_can_find_nothing_lost_reads_no_stream(task_store, redis_client):
    """Every executor that starts on a new Redis makes a pass for the tasks recorded before
    then: with none, it must not copy every queued entry into memory (the memory soak's
    step, docs/benchmarks.md)."""
    cutoff = int(time.time() * 1000) - 1
    created = task_store.create_tasks([NOOP] * 3)  # recorded after the cutoff, queued
    enqueue(redis_client, (task_message(t) for t in created))

    class StreamsUnread(Roster):
        def queued_task_ids(self):
            raise AssertionError("the streams were read")

    lost = LostTaskFilter(created_before_ms=cutoff)
    assert tasks_in_no_queue(StreamsUnread(redis_client), task_store, lost) == ([], 3)
    unchanged = LostTaskFilter(unchanged_since_ms=cutoff)
    assert tasks_in_no_queue(StreamsUnread(redis_client), task_store, unchanged) == ([], 3)
