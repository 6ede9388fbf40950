"""A SQLite file damaged under a running executor (the task database, the embedded store):
an outage that every task would meet, not each task's fault. The tasks wait, none is
failed or dead-lettered, and they finish once the file is restored from a backup the way
docs/deploy.md says.

The file is damaged and restored by other processes (dd, cp), as an operator's tools would.
Doing it with Python's open() here would break the test's own SQLite connection: closing
any descriptor of a file drops every POSIX lock this process holds on it, and SQLite
relies on those locks to tell whether other connections still use the WAL."""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import time
from contextlib import closing
from pathlib import Path

from executors import Executor, Fleet
from test_ingest_pipeline import CORPUS, doc_store, submit

from executor.queue import wire

PAGE = 4096


def _back_up(path: Path) -> Path:
    """Checkpoint the WAL into the file (so every row lives in its pages) and copy it."""
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    backup = path.with_name(path.name + ".backup")
    subprocess.run(["cp", path, backup], check=True)
    return backup


def _damage(path: Path) -> None:
    """Overwrite every page but the first (the header and the schema) with noise."""
    pages = path.stat().st_size // PAGE - 1
    subprocess.run(
        [
            "dd",
            "if=/dev/urandom",
            f"of={path}",
            f"bs={PAGE}",
            "seek=1",
            f"count={pages}",
            "conv=notrunc",
            "status=none",
        ],
        check=True,
    )


def _restore(fleet: Fleet, executor: Executor, backup: Path, path: Path) -> Executor:
    """docs/deploy.md's procedure: stop what uses the file, remove its WAL and shared-memory
    files (they belong to the damaged file), copy the backup in place, start again."""
    assert executor.terminate() == 0
    fleet.store.database.close()  # the test's own reads use the file too
    for companion in ("-wal", "-shm"):
        path.with_name(path.name + companion).unlink(missing_ok=True)
    subprocess.run(["cp", backup, path], check=True)
    return fleet.start()


def _waits_unharmed(fleet, executor, logged: str) -> None:
    """The executor met the damage, logged it once, and failed or dead-lettered nothing."""
    executor.wait_log(logged)
    time.sleep(3)  # the tasks are retried meanwhile, at the outage's pace
    assert executor.process.poll() is None, executor.log[-3000:]
    assert len(re.findall(logged, executor.log)) == 1, executor.log[-3000:]
    assert "set aside" not in executor.log
    assert fleet.redis.xlen(wire.DEAD_LETTER_STREAM) == 0


def test_a_damaged_task_database_pauses_the_tasks_until_it_is_restored(fleet):
    executor = fleet.start()
    executor.signal(signal.SIGSTOP)
    ids = fleet.submit("noop", count=10)
    path = Path(fleet.settings.database["path"])
    backup = _back_up(path)
    _damage(path)
    executor.signal(signal.SIGCONT)

    _waits_unharmed(fleet, executor, r"database unavailable: .* is failing: restore it")
    assert fleet.redis.xlen(wire.queue_name(0)) == 10  # every entry still pending
    _restore(fleet, executor, backup, path)

    rows = fleet.wait_done(ids, timeout=30)
    assert [r["progress"] for r in rows] == [1] * 10


def test_a_damaged_embedded_store_pauses_ingestion_until_it_is_restored(fleet):
    executor = fleet.start()
    fleet.wait_done(submit(fleet, CORPUS / "declaration-of-independence.txt"))  # the store exists
    executor.signal(signal.SIGSTOP)
    ids = submit(fleet, *sorted(CORPUS.iterdir()))
    path = Path(fleet.settings.doc_store["path"])
    backup = _back_up(path)
    _damage(path)
    executor.signal(signal.SIGCONT)

    _waits_unharmed(fleet, executor, r"unavailable: document store: .* is failing")
    assert all(0 <= fleet.task(i)["progress"] < 1 for i in ids)
    _restore(fleet, executor, backup, path)

    rows = fleet.wait_done(ids, timeout=60)
    assert [r["progress"] for r in rows] == [1.0] * len(ids), [r["progress_msg"] for r in rows]
    assert doc_store(fleet).integrity_check() == []
