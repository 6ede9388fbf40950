"""The executor's normal path against real Redis and SQLite: fetch, run, record, ack."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path

from executors import RAGFLEET, sqlite_database, wait_for, write_config

from executor import __version__
from executor.queue import wire
from executor.version import git_commit

CHECKOUT = Path(__file__).resolve().parents[1]


def test_noop_tasks_complete_and_leave_streams_empty(fleet):
    ids = fleet.submit("noop", count=20)
    worker = fleet.start()
    rows = fleet.wait_done(ids, timeout=20)
    assert all(r["progress"] == 1 for r in rows)
    assert all(re.search(r"^\d\d:\d\d:\d\d Task done \(", r["progress_msg"], re.M) for r in rows)
    assert all(r["retry_count"] == 0 and r["begin_at"] for r in rows)
    # Acked entries are deleted: the streams hold only unfinished work. A task is recorded
    # done before its entry is acked, so the last ack may still be on its way.
    wait_for(lambda: fleet.redis.xlen(wire.queue_name(0)) == 0, 5, "the last ack")
    assert fleet.redis.xpending(wire.queue_name(0), wire.GROUP)["pending"] == 0
    assert worker.terminate() == 0


def test_priority_one_is_read_before_zero(make_fleet):
    # One slot: tasks start one after another, so begin_at orders them exactly (with more
    # slots, tasks of one batch record begin_at from parallel threads, in any order).
    fleet = make_fleet(max_concurrent_tasks=1)
    low = fleet.submit("noop", count=5, priority=0)
    high = fleet.submit("noop", count=5, priority=1)
    fleet.start()
    rows = {r["id"]: r for r in fleet.wait_done(low + high)}
    assert max(rows[i]["begin_at"] for i in high) <= min(rows[i]["begin_at"] for i in low)


def test_failing_task_is_failed_with_a_readable_message_and_the_executor_goes_on(fleet):
    bad = fleet.submit("sleep", seconds=0, fail="the document is corrupt")
    negative = fleet.submit("sleep", seconds=-1)
    unknown = fleet.submit("no-such-type")
    good = fleet.submit("noop")
    worker = fleet.start()
    rows = fleet.wait_done(bad + negative + unknown + good)
    assert [r["progress"] for r in rows] == [-1, -1, -1, 1]
    assert "[Exception]: RuntimeError: the document is corrupt" in rows[0]["progress_msg"]
    assert "[Exception]: payload.seconds must not be negative, got -1.0" in rows[1]["progress_msg"]
    assert (
        "[Exception]: no handler for task type 'no-such-type' "
        "(known: '' (ingestion), 'noop', 'sleep')" in rows[2]["progress_msg"]
    )
    # Failed tasks are acked too, right after their failure is recorded (in that order, so
    # a crash in between re-delivers an entry that is then acked as already failed).
    queue = wire.queue_name(0)
    wait_for(lambda: fleet.redis.xlen(queue) == 0, 10, "the failed tasks' acks", worker)
    assert worker.process.poll() is None


def test_malformed_entries_are_acked_and_logged_and_the_executor_stays_alive(fleet):
    """Entries no task can come of are dropped; one naming a task the database lacks is
    kept in the dead-letter stream (see the next test)."""
    queue = wire.queue_name(0)
    fleet.redis.xadd(queue, {"message": "not json"})
    fleet.redis.xadd(queue, {"message": json.dumps({"task_type": "noop"})})
    fleet.redis.xadd(queue, {"message": json.dumps(["a", "list"])})
    fleet.redis.xadd(queue, {"other": "field"})
    fleet.redis.xadd(queue, {"message": json.dumps({"id": "0" * 32})})  # no such task
    worker = fleet.start()
    good = fleet.submit("noop")
    fleet.wait_done(good)
    worker.wait_log(f"task {'0' * 32} is not in the database")
    (kept,) = json.loads(fleet.cli("dlq", "list", "--json").stdout)
    assert kept["task_id"] == "0" * 32 and "TaskNotInDatabase" in kept["reason"]
    for reason in (
        "'message' is not JSON",
        "'message' has no task 'id'",
        "'message' is JSON but not an object",
        "entry has no 'message' field",
    ):
        assert reason in worker.log
    assert fleet.redis.xlen(queue) == 0
    assert fleet.redis.xpending(queue, wire.GROUP)["pending"] == 0
    assert worker.process.poll() is None


def test_heartbeat_has_upstreams_fields_and_types_plus_the_version(fleet):
    worker = fleet.start()
    name = "task_executor_test_1"
    wait_for(lambda: fleet.redis.zcard(name), 10, "a heartbeat")
    assert fleet.redis.smembers(wire.EXECUTORS_SET) == {name.encode()}
    beat = json.loads(fleet.redis.zrange(name, -1, -1)[0])
    assert set(beat) == {*wire.HEARTBEAT_FIELDS, *wire.RAGFLEET_HEARTBEAT_FIELDS}
    assert beat["name"] == name and beat["pid"] == worker.process.pid
    iso_ms_tz = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d$"
    assert re.match(iso_ms_tz, beat["now"]) and re.match(iso_ms_tz, beat["boot_at"])
    types = {k: type(v).__name__ for k, v in beat.items()}
    assert types == {
        "name": "str",
        "now": "str",
        "boot_at": "str",
        "pending": "int",
        "lag": "int",
        "done": "int",
        "failed": "int",
        "current": "dict",
        "ip_address": "str",
        "pid": "int",
        "version": "str",
        "commit": "str",
    }
    assert beat["ip_address"] == "127.0.0.1"
    # the checkout runs in place: the commit is the checkout's, as --version says
    assert (beat["version"], beat["commit"]) == (__version__, git_commit(CHECKOUT))
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", beat["commit"])
    score = fleet.redis.zrange(name, -1, -1, withscores=True)[0][1]
    assert abs(score - time.time()) < 5


def test_running_task_shows_in_heartbeat_current(fleet):
    fleet.start()
    (task_id,) = fleet.submit("sleep", seconds=4)
    name = "task_executor_test_1"

    def current():
        beats = fleet.redis.zrange(name, -1, -1)
        return beats and json.loads(beats[0])["current"].get(task_id)

    assert wait_for(current, 10, "the task in the heartbeat")["id"] == task_id


def test_expired_executor_is_removed_under_the_cleanup_lock(fleet):
    ghost = "task_executor_ghost_1"
    fleet.redis.sadd(wire.EXECUTORS_SET, ghost)
    fleet.redis.zadd(ghost, {json.dumps({"name": ghost}): time.time() - 600})
    worker = fleet.start()
    wait_for(lambda: not fleet.redis.sismember(wire.EXECUTORS_SET, ghost), 10, "ghost removal")
    # Logged once the cleanup is over (its heartbeats deleted, the lock released); checked
    # before, those could still be under way.
    worker.wait_log(f"removed executor {ghost}")
    assert not fleet.redis.exists(ghost)
    # Released (compare-and-delete), not left to its 60 s expiry. Every heartbeat's pass takes
    # it again for a moment, so a single look can meet the next pass holding it: watch for it
    # to be free within a few seconds instead.
    wait_for(lambda: not fleet.redis.exists(wire.CLEANUP_LOCK), 5, "the cleanup lock released")


def test_cleanup_lock_held_by_another_executor_is_respected(fleet):
    ghost = "task_executor_ghost_1"
    fleet.redis.sadd(wire.EXECUTORS_SET, ghost)
    fleet.redis.set(wire.CLEANUP_LOCK, "task_executor_other_1", ex=60)
    fleet.start()
    wait_for(lambda: fleet.redis.zcard("task_executor_test_1") >= 2, 10, "two heartbeats")
    assert fleet.redis.sismember(wire.EXECUTORS_SET, ghost)
    assert fleet.redis.get(wire.CLEANUP_LOCK) == b"task_executor_other_1"


def test_cancel_mid_task_lands_within_a_second(fleet):
    fleet.start()
    (task_id,) = fleet.submit("sleep", seconds=60, steps=60)
    wait_for(lambda: fleet.task(task_id)["begin_at"], 10, "the task to start")
    result = fleet.cli("cancel", task_id)
    requested = time.monotonic()  # the flag is set when the command returns
    assert result.returncode == 0, result.stderr
    row = wait_for(lambda: (r := fleet.task(task_id))["progress"] < 0 and r, 5, "cancellation")
    took = time.monotonic() - requested
    assert took < 1.0, took
    assert row["progress_msg"].endswith("Task has been canceled.")
    assert "Task done" not in row["progress_msg"]
    assert fleet.redis.xlen(wire.queue_name(0)) == 0


def test_cancelled_queued_task_never_runs(fleet):
    (task_id,) = fleet.submit("sleep", seconds=30)
    assert fleet.cli("cancel", task_id).returncode == 0
    fleet.start()
    row = fleet.wait_done([task_id])[0]
    assert row["progress"] == -1 and "Task has been canceled." in row["progress_msg"]
    assert "slept" not in row["progress_msg"]


def test_cancel_unknown_task_exits_4(fleet):
    result = fleet.cli("cancel", "f" * 32)
    assert result.returncode == 4 and "no task ffff" in result.stderr


def test_sigterm_drains_running_tasks_then_exits_0(fleet):
    worker = fleet.start()
    (task_id,) = fleet.submit("sleep", seconds=2, steps=4)
    wait_for(lambda: fleet.task(task_id)["begin_at"], 10, "the task to start")
    worker.signal(signal.SIGTERM)
    # Submitted once the worker has taken the signal (before that, a read under way could
    # still return it): not taken.
    worker.wait_log("stopping: no new tasks; 1 running")
    later = fleet.submit("noop")
    assert worker.process.wait(20) == 0
    assert fleet.task(task_id)["progress"] == 1
    assert fleet.task(later[0])["begin_at"] is None


def test_drain_timeout_leaves_the_task_for_redelivery(fleet):
    worker = fleet.start()
    (task_id,) = fleet.submit("sleep", seconds=60, steps=60)
    wait_for(lambda: fleet.task(task_id)["begin_at"], 10, "the task to start")
    worker.signal(signal.SIGTERM)
    assert worker.process.wait(20) == 0  # drain_timeout is 5 s in these tests
    row = fleet.task(task_id)
    assert 0 <= row["progress"] < 1
    assert "Executor stopped before the task finished" in row["progress_msg"]
    pending = fleet.redis.xpending(wire.queue_name(0), wire.GROUP)
    assert pending["pending"] == 1  # unacked: it will be delivered again


def test_status_and_tasks_commands(fleet):
    result = fleet.cli("status")
    assert result.returncode == 1 and "(none)" in result.stdout  # no executor yet
    fleet.start()
    ids = fleet.submit("noop", count=3)
    fleet.wait_done(ids)
    wait_for(lambda: fleet.cli("status").returncode == 0, 10, "status to be ok")
    result = fleet.cli("status", "--json")
    (row,) = json.loads(result.stdout)["executors"]
    assert row["name"] == "task_executor_test_1" and row["state"] == "alive"
    assert (row["version"], row["commit"]) == (__version__, git_commit(CHECKOUT))
    lines = fleet.cli("status").stdout.splitlines()
    assert lines[0].startswith("executors (at ")  # then the executors' table, then the queues'
    table = lines[1:]
    assert table[0].split()[:2] == ["NAME", "VERSION"]
    assert table[1].split()[1] == f"{__version__}@{row['commit'][:12]}" + (
        "-dirty" if row["commit"].endswith("-dirty") else ""
    )
    result = fleet.cli("tasks", "--state", "done", "--json")
    assert sorted(t["id"] for t in json.loads(result.stdout)) == sorted(ids)
    result = fleet.cli("tasks")
    assert result.returncode == 0 and "Task done" in result.stdout


def test_unreachable_redis_exits_3(fleet, redis_server):
    redis_server.stop()
    try:
        result = fleet.cli("status")
    finally:
        redis_server.start()
    assert result.returncode == 3 and "Redis unavailable" in result.stderr


def ragfleet(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [str(RAGFLEET), "--config", str(config), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def test_operator_commands_say_what_is_wrong_with_the_database(
    tmp_path, redis_client, redis_server
):
    """No traceback for a database the config names wrongly or one without its tables:
    one line, exit 2 (configuration)."""

    (tmp_path / "not-a-dir").write_text("a file")
    for name in ("bad", "empty"):
        (tmp_path / name).mkdir()
        database = sqlite_database(tmp_path / ("not-a-dir" if name == "bad" else name))
        config = write_config(tmp_path / name, redis_server, database)
        for command in (["tasks"], ["submit", "-t", "noop"], ["cancel", "x"]):
            result = ragfleet(config, *command)
            assert result.returncode == 2, (command, result.stderr)
            assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1
            if name == "bad":
                assert result.stderr.startswith("ragfleet: cannot open the task database (")
            else:
                assert result.stderr == (
                    "ragfleet: task database: no such table: task (run `ragfleet db init`)\n"
                )
    assert ragfleet(config, "db", "init").returncode == 0
    assert ragfleet(config, "tasks").returncode == 0


def test_db_init_creates_the_blob_table_of_the_database_storage_once(tmp_path, redis_server):
    """`ragfleet db init` also makes what the configured blob storage keeps in the task
    database (the `database` backend's blob table), and a second run changes nothing."""
    config = write_config(
        tmp_path, redis_server, sqlite_database(tmp_path), storage={"backend": "database"}
    )

    def db_init() -> str:
        argv = [str(RAGFLEET), "--config", str(config), "db", "init"]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout

    first = db_init()
    assert "ragfleet: created table blob\n" in first
    assert db_init() == "ragfleet: schema is up to date (0 changes)\n"


def test_db_init_creates_a_missing_sqlite_directory_or_says_why_not(tmp_path, redis_server):
    """A SQLite path in a directory that does not exist yet: `db init` creates it (owner
    and group only) and says so; where it cannot (a file in the way of a parent), one line
    and exit 2, no traceback."""
    database = {"type": "sqlite", "path": str(tmp_path / "state" / "deep" / "ragfleet.db")}
    config = write_config(tmp_path, redis_server, database)
    result = ragfleet(config, "db", "init")
    assert result.returncode == 0, result.stderr
    assert f"ragfleet: created directory {tmp_path / 'state' / 'deep'}\n" in result.stdout
    assert (tmp_path / "state" / "deep").stat().st_mode & 0o777 == 0o750
    assert ragfleet(config, "db", "init").stdout.endswith("schema is up to date (0 changes)\n")

    (tmp_path / "blocked").write_text("a file")
    database = {"type": "sqlite", "path": str(tmp_path / "blocked" / "sub" / "ragfleet.db")}
    (tmp_path / "other").mkdir()
    config = write_config(tmp_path / "other", redis_server, database)
    result = ragfleet(config, "db", "init")
    assert result.returncode == 2
    assert result.stderr == (
        f"ragfleet: cannot create the task database's directory {tmp_path / 'blocked' / 'sub'}: "
        "Not a directory\n"
    )
