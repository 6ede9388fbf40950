"""The progress API's writes: milestones closer together than the write interval share one
write, final states are written at once, and nothing reported is ever dropped.

A real TaskStore on SQLite; trio's MockClock stands in for the passing of time, so the
interval is tested exactly, not by sleeping."""

from __future__ import annotations

import functools
from typing import Any

import peewee as pw
import pytest
import trio
import trio.testing

from executor.progress import WRITE_INTERVAL, Progress
from executor.store.database import TaskStore


@pytest.fixture
def store(tmp_path) -> TaskStore:
    store = TaskStore(pw.SqliteDatabase(tmp_path / "tasks.db"))
    store.init_schema()
    return store


def new_task(store: TaskStore) -> dict[str, Any]:
    doc = store.create_document(kb_id="kb", name="a.txt", location="a.txt")
    (task,) = store.create_tasks([{"doc_id": doc["id"], "progress_msg": "00:00:00 received"}])
    return store.get_task(task["id"])


class Writes:
    """Runs the store's calls (synchronously: this test has no threads to spare) and
    counts them."""

    def __init__(self) -> None:
        self.count = 0

    async def __call__(self, fn, *args, **kwargs):
        self.count += 1
        return functools.partial(fn, *args, **kwargs)()


def run(test) -> None:
    clock = trio.testing.MockClock()
    trio.run(test, clock, clock=clock)


def test_milestones_within_the_interval_share_the_next_write(store) -> None:
    task = new_task(store)
    writes = Writes()

    async def main(clock: trio.testing.MockClock) -> None:
        progress = Progress(task, writes, store.set_progress)
        await progress(0.1, "Start to parse a.txt.")
        await progress(0.4, "Finished parsing.")
        assert writes.count == 0
        assert store.get_task(task["id"])["progress"] == 0
        clock.jump(WRITE_INTERVAL)
        await progress(None, "Generated 3 chunks.")
        assert writes.count == 1

    run(main)
    row = store.get_task(task["id"])
    assert row["progress"] == pytest.approx(0.4)  # the fraction held back goes out too
    lines = row["progress_msg"].split("\n")
    assert lines[0] == "00:00:00 received"
    assert [line[9:] for line in lines[1:]] == [
        "Start to parse a.txt.",
        "Finished parsing.",
        "Generated 3 chunks.",
    ]


@pytest.mark.parametrize(
    ("call", "fraction", "last_line"),
    [
        ({"fraction": -1, "message": "[Exception]: broken"}, -1, "[Exception]: broken"),
        ({"message": "Executor stopped.", "flush": True}, 0.3, "Executor stopped."),
    ],
    ids=["failure", "flush"],
)
def test_a_final_or_flushed_call_is_written_at_once(store, call, fraction, last_line) -> None:
    """Every line goes with it; a call without a fraction keeps the stored one."""
    task = new_task(store)
    store.set_progress(task["id"], 0.3, task["progress_msg"])
    task = store.get_task(task["id"])
    writes = Writes()

    async def main(clock: trio.testing.MockClock) -> None:
        progress = Progress(task, writes, store.set_progress)
        await progress(None, "Start to parse a.txt.")
        await progress(**call)
        assert writes.count == 1

    run(main)
    row = store.get_task(task["id"])
    assert row["progress"] == pytest.approx(fraction)
    assert "Start to parse a.txt." in row["progress_msg"]
    assert row["progress_msg"].endswith(last_line)


def test_writes_resume_once_the_interval_has_passed(store) -> None:
    task = new_task(store)
    writes = Writes()

    async def main(clock: trio.testing.MockClock) -> None:
        progress = Progress(task, writes, store.set_progress, write_interval=5)
        for step in range(1, 11):
            clock.jump(1)
            await progress(step / 10, f"step {step}")
        assert writes.count == 2  # at 5 s and 10 s

    run(main)
    assert store.get_task(task["id"])["progress"] == pytest.approx(1.0)
