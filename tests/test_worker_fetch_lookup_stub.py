"""New entries' tasks are looked up and begun in the read's own thread hop (Fetcher's
_read_new), and a look-up failing there loses nothing: the real Worker on a StubBroker
and a SQLite TaskStore (tests/worker_rig.py).

That a stop's abandoned read begins nothing is test_executor_flow.py's
test_sigterm_drains_running_tasks_then_exits_0 (a real process and a real Redis)."""

from __future__ import annotations

import threading
from typing import Any

import trio
from worker_rig import Rig

from executor.queue import wire
from executor.worker.fetch import Fetched


def _fetch(rig: Rig, slots: int) -> Fetched:
    worker = rig.worker()

    async def fetch() -> Fetched:
        return await worker.fetcher.fetch(slots)

    return trio.run(fetch)


def test_the_fetch_looks_new_tasks_up_and_begins_them_in_its_own_hop(tmp_path):
    rig = Rig(tmp_path)
    first, second = rig.task(), rig.task()
    cancelled = rig.task()
    rig.redis.cancel(cancelled)
    fetched = _fetch(rig, 3)
    by_task = {task["id"]: flag for task, flag in fetched.looked_up.values() if task}
    assert by_task == {first: False, second: False, cancelled: True}
    assert len(fetched.deliveries) == 3
    for task_id in (first, second):  # begun before any settle started
        row = rig.row(task_id)
        assert row["begin_at"] is not None and row["retry_count"] == 0
        assert row["progress_msg"].endswith("Task has been received.")
    assert rig.row(cancelled)["begin_at"] is None  # settles cancelled, never begun


def test_a_look_up_failing_in_the_fetch_begins_nothing_and_loses_nothing(tmp_path, monkeypatch):
    rig = Rig(tmp_path)
    tasks = [rig.task(), rig.task()]
    worker = rig.worker()
    lookup = worker.fetcher.lookup
    look_up_all = lookup.look_up_all
    calls: list[int] = []

    def first_call_fails(batch: list[Any], counts: list[int]) -> Any:
        calls.append(len(batch))
        if len(calls) == 1:
            raise OSError("stale connection")  # what a server restart leaves, say
        return look_up_all(batch, counts)

    monkeypatch.setattr(lookup, "look_up_all", first_call_fails)
    rig.run(rig.settled(*tasks), worker)
    assert calls[:2] == [2, 2]  # the fetch's look-up, then the batch's own
    assert [rig.state(task) for task in tasks] == ["done", "done"]
    assert sorted(rig.ran) == sorted(tasks)  # each ran once
    assert all(rig.row(task)["retry_count"] == 0 for task in tasks)


def test_entries_being_looked_up_in_the_read_count_as_held(tmp_path, monkeypatch):
    """A look-up can last as long as the database's timeouts: meanwhile the heartbeats
    keep the entries fresh and name their tasks, or another executor could take them over
    and run them too."""
    rig = Rig(tmp_path)
    task = rig.task()
    worker = rig.worker()
    lookup = worker.fetcher.lookup
    look_up_all = lookup.look_up_all
    entered, release = threading.Event(), threading.Event()

    def slow(batch: list[Any], counts: list[int]) -> Any:
        entered.set()
        release.wait(5)
        return look_up_all(batch, counts)

    monkeypatch.setattr(lookup, "look_up_all", slow)
    seen: list[list[str]] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker.fetcher.fetch, 1)
            await trio.to_thread.run_sync(entered.wait, 5)
            seen.append([ledger.task_id for ledger in worker.ledgers.held_ledgers()])
            seen.append(list(worker.heartbeats.current_tasks()))
            release.set()
        seen.append([ledger.task_id for ledger in worker.ledgers.held_ledgers()])

    trio.run(main)
    assert seen == [[task], [task], []]


def test_a_new_entry_is_decoded_once(tmp_path, monkeypatch):
    """The read's hop decodes each new entry's message for its look-up; the worker holds
    and settles that ledger, and does not decode the message again."""
    rig = Rig(tmp_path)
    tasks = [rig.task(), rig.task(), rig.task()]
    decoded: list[str] = []
    decode_message = wire.decode_message

    def counted(fields: Any) -> Any:
        message = decode_message(fields)
        decoded.append(message["id"])
        return message

    monkeypatch.setattr(wire, "decode_message", counted)
    rig.run(rig.settled(*tasks), rig.worker())
    assert [rig.state(task) for task in tasks] == ["done"] * 3
    assert sorted(decoded) == sorted(tasks)
