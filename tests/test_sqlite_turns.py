"""Turns to write a SQLite file: threads of a process and separate processes never hold a
turn at once, a thread may nest turns, and a turn not had in time is an error, not a hang.

Mutual exclusion is checked the way it would break: every holder does a read-modify-write
of a shared counter file with a pause in between, so two holders at once lose an update."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import peewee as pw
import pytest

from executor.errors import DatabaseUnavailable, NoTurnToWrite
from executor.ingest.docstore.embedded import EmbeddedDocStore
from executor.ingest.types import Chunk
from executor.sqlite.turns import WriteTurns
from executor.store.database import TaskStore

ROOT = Path(__file__).resolve().parents[1]

INCREMENT = """
import sys, threading, time
from pathlib import Path
sys.path.insert(0, {root!r})
from executor.sqlite.turns import WriteTurns

turns = WriteTurns({db!r}, timeout=60)
counter = Path({counter!r})

def work():
    for _ in range({rounds}):
        with turns():
            value = int(counter.read_text())
            time.sleep(0.001)
            counter.write_text(str(value + 1))

threads = [threading.Thread(target=work) for _ in range({threads})]
for t in threads:
    t.start()
for t in threads:
    t.join()
"""


def test_threads_and_processes_never_hold_a_turn_at_once(tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    counter.write_text("0")
    script = INCREMENT.format(
        root=str(ROOT), db=str(tmp_path / "x.db"), counter=str(counter), rounds=25, threads=3
    )
    processes = [subprocess.Popen([sys.executable, "-c", script]) for _ in range(3)]
    assert [p.wait(120) for p in processes] == [0, 0, 0]
    assert int(counter.read_text()) == 3 * 3 * 25
    assert (tmp_path / "x.db.lock").exists()


def test_a_thread_may_nest_its_turns_and_then_hand_over(tmp_path: Path) -> None:
    turns = WriteTurns(tmp_path / "x.db", timeout=5)
    with turns(), turns():
        pass

    def take_a_turn() -> None:
        with turns():
            pass

    other = threading.Thread(target=take_a_turn)
    other.start()
    other.join(5)
    assert not other.is_alive()


def test_a_dropped_turns_object_closes_its_lock_file(tmp_path: Path) -> None:
    """Every TaskStore and store has one; a process that makes many must not run out of
    descriptors."""

    def open_descriptors() -> int:
        return len(os.listdir("/proc/self/fd"))

    before = open_descriptors()
    for n in range(50):
        turns = WriteTurns(tmp_path / f"{n}.db", timeout=5)
        with turns():
            pass
    del turns
    gc.collect()
    assert open_descriptors() <= before


@contextmanager
def held_by_another_thread(turn: Callable[[], AbstractContextManager[None]]) -> Iterator[None]:
    """While the body runs, another thread holds *turn*."""
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with turn():
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(5)
        yield
    finally:
        release.set()
        holder.join(5)


def test_no_turn_in_time_is_an_error(tmp_path: Path) -> None:
    turns = WriteTurns(tmp_path / "x.db", timeout=0.2)
    with held_by_another_thread(turns):
        started = time.monotonic()
        with pytest.raises(NoTurnToWrite, match="no turn to write"), turns():
            pass
        assert time.monotonic() - started < 5


def test_a_task_database_write_without_a_turn_is_an_outage(tmp_path: Path) -> None:
    """Not a failed task: the worker retries outages and fails nothing."""
    store = TaskStore(pw.SqliteDatabase(tmp_path / "tasks.db"))
    store.init_schema()
    store._turns = WriteTurns(tmp_path / "tasks.db", timeout=0.2)
    with (
        held_by_another_thread(store.writing),
        pytest.raises(DatabaseUnavailable, match="no turn to write"),
    ):
        store.create_document(kb_id="kb", name="a.txt", location="a.txt")


def test_a_store_write_without_a_turn_is_an_outage_too(tmp_path: Path) -> None:
    """The pipeline turns a ConnectionError from the store into a retry, not a failure."""
    with EmbeddedDocStore(tmp_path / "docstore.db", lock_timeout=0.2) as store:
        chunk = Chunk("c1", "d1", "kb1", "d1.txt", "hello", ["hello"])
        with (
            held_by_another_thread(store.write_turns.thread_turn),
            pytest.raises(ConnectionError, match="no turn to write"),
        ):
            store.upsert("ragflow_t", [chunk])
