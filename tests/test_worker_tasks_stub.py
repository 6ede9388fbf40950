"""What the worker makes of each task, in milliseconds: the real Worker on a StubBroker and
a SQLite TaskStore (tests/worker_rig.py), asserting on the task rows and the stub's Redis.

Still the real-server tests' part (test_executor_flow.py, test_executor_recovery.py and
the other process tests): Redis restarts and lost data (FLUSHALL, a truncated AOF), MISCONF
and ACLs as Redis words them, signals to real processes, kills mid-task, MariaDB and
PostgreSQL, the heartbeat as upstream's tools read it, and LostTasks' passes (they read
Redis through its client).
"""

from __future__ import annotations

from worker_rig import A, Rig

from executor.queue import wire
from executor.queue.stub import StubBroker
from executor.store.database import CANCELLED_MESSAGE
from executor.version import build_info


def _drained(rig: Rig) -> bool:
    return not rig.redis.entries(0) and not rig.redis.pending_of(A)


def test_a_task_is_done_and_its_entry_deleted(tmp_path):
    rig = Rig(tmp_path)
    task = rig.task()
    worker = rig.run(rig.settled(task))
    assert rig.state(task) == "done"
    assert "Task done" in rig.row(task)["progress_msg"]
    assert rig.row(task)["retry_count"] == 0
    assert _drained(rig)
    assert (worker.counters.done, worker.counters.failed) == (1, 0)


def test_a_failing_handler_fails_its_task_and_the_worker_goes_on(tmp_path):
    rig = Rig(tmp_path, max_concurrent_tasks=1)
    failing, after = rig.task("fail"), rig.task()
    worker = rig.run(rig.settled(failing, after))
    assert rig.state(failing) == "failed"
    assert "[Exception]: ValueError: boom" in rig.row(failing)["progress_msg"]
    assert rig.state(after) == "done"
    assert _drained(rig) and not rig.redis.dead_letters
    assert (worker.counters.done, worker.counters.failed) == (1, 1)


def test_a_task_input_error_is_told_in_its_own_words(tmp_path):
    rig = Rig(tmp_path)
    task = rig.task("bad_input")
    rig.run(rig.settled(task))
    assert rig.row(task)["progress_msg"].endswith("[Exception]: payload.x must be a number")


def test_a_task_type_without_handler_fails_naming_the_known_ones(tmp_path):
    rig = Rig(tmp_path)
    task = rig.task("nope")
    rig.run(rig.settled(task))
    assert rig.state(task) == "failed"
    assert (
        "no handler for task type 'nope' (known: 'bad_input', 'fail', 'ok', 'slow')"
        in (rig.row(task)["progress_msg"])
    )
    assert rig.ran == [] and _drained(rig)


def test_a_task_cancelled_while_queued_never_runs(tmp_path):
    rig = Rig(tmp_path)
    task = rig.task()
    rig.redis.cancel(task)
    worker = rig.run(rig.settled(task))
    assert rig.state(task) == "cancelled"
    assert CANCELLED_MESSAGE in rig.row(task)["progress_msg"]
    assert rig.ran == [] and _drained(rig)
    assert worker.counters.failed == 1  # upstream counts cancelled tasks as failed


def test_a_task_cancelled_while_running_stops(tmp_path):
    rig = Rig(tmp_path)
    task = rig.task("slow")

    def cancel_once_running(_worker) -> None:
        if rig.ran:
            rig.redis.cancel(task)

    rig.run(rig.settled(task), during=cancel_once_running, timeout=3)
    assert rig.state(task) == "cancelled"
    assert rig.ran == [task] and _drained(rig)


def test_a_malformed_entry_is_dropped_and_the_worker_goes_on(tmp_path):
    rig = Rig(tmp_path, max_concurrent_tasks=1)
    rig.redis.enqueue({"not": "a task"})
    rig.redis.enqueue({"message": "{not json"})
    task = rig.task()
    worker = rig.run(rig.settled(task))
    assert rig.state(task) == "done"
    assert _drained(rig) and not rig.redis.dead_letters
    assert (worker.counters.done, worker.counters.failed) == (1, 0)


def test_an_entry_whose_task_is_not_in_the_database_is_set_aside(tmp_path):
    rig = Rig(tmp_path)
    entry = rig.redis.enqueue_task({"id": "ghost", "task_type": "ok"})
    rig.run(lambda: bool(rig.redis.dead_letters))
    (record,) = rig.redis.dead_letters
    assert (record["entry_id"], record["consumer"]) == (entry, A)
    assert "TaskNotInDatabase: task ghost is not in the database" in record["reason"]
    assert _drained(rig)


def test_set_asides_in_a_row_pause_fetching_then_run_one_task_alone(tmp_path):
    rig = Rig(tmp_path, max_concurrent_tasks=1)
    for n in range(3):
        rig.redis.enqueue_task({"id": f"ghost{n}", "task_type": "ok"})
    task = rig.task()
    paused = []

    def note_pause(worker) -> None:
        if worker.executor_errors.down and not paused:
            paused.append((len(rig.redis.dead_letters), rig.state(task)))

    worker = rig.run(rig.settled(task), during=note_pause)
    assert paused == [(3, "queued")]  # the third set-aside paused the fetching
    assert rig.state(task) == "done"
    assert not worker.executor_errors.down  # the task run alone settled: back to normal


def test_stop_drains_the_running_task_and_marks_a_clean_stop(tmp_path):
    rig = Rig(tmp_path)
    task = rig.task("slow", payload='{"seconds": 0.2}')
    rig.run(lambda: bool(rig.ran))  # stopped as soon as the task runs
    assert rig.state(task) == "done"
    assert _drained(rig)
    assert A in rig.redis.clean_stops


def test_a_drain_that_times_out_leaves_the_entry_pending(tmp_path):
    rig = Rig(tmp_path, drain_timeout=0.1)
    task = rig.task("slow")
    rig.run(lambda: bool(rig.ran))
    assert rig.state(task) == "running"
    assert "Executor stopped before the task finished" in rig.row(task)["progress_msg"]
    assert rig.redis.pending_of(A) == rig.redis.entries(0)  # delivered again after a restart


def test_the_heartbeat_names_the_running_task(tmp_path):
    rig = Rig(tmp_path)
    task = rig.task("slow", payload='{"seconds": 0.3}')

    def named() -> bool:
        beat = rig.redis.heartbeats.get(A, {})
        return any(task in payload for payload in beat)

    rig.run(named)
    assert A in rig.redis.executors
    latest = StubBroker(rig.redis, A).latest_heartbeat(A)
    assert latest is not None
    assert set(latest[1]) == {*wire.HEARTBEAT_FIELDS, *wire.RAGFLEET_HEARTBEAT_FIELDS}
    assert latest[1]["version"] == build_info().version
