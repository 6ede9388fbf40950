"""Tasks fetched together run as a group (executor.handlers' group handlers): one in-process
worker against real Redis and SQLite, with a task type of the test's own whose handlers
record what they were given, so that each way a group's task can end is provoked."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio
from executors import Fleet

from executor.errors import DependencyUnavailable, TaskInputError
from executor.handlers import HandlerRegistry, Outcome, TaskContext
from executor.queue import wire
from executor.worker import Worker

GroupHandler = Callable[[list[TaskContext]], Awaitable[None]]


class Calls:
    """The test type's two handlers, and what each was called with."""

    def __init__(self, group: GroupHandler) -> None:
        self.alone: list[str] = []
        self.groups: list[list[str]] = []
        self._group = group

    async def handler(self, ctx: TaskContext) -> None:
        self.alone.append(ctx.task["payload"]["name"])

    async def group(self, ctxs: list[TaskContext]) -> None:
        self.groups.append([ctx.task["payload"]["name"] for ctx in ctxs])
        await self._group(ctxs)


class GroupingFails(HandlerRegistry):
    """A registry whose group handler lookup fails once the tasks are looked up (standing in
    for a bug of ours in the grouping)."""

    def group(self, task_type: str) -> GroupHandler | None:
        raise RuntimeError("injected grouping bug")


def named(ctxs: list[TaskContext], name: str) -> TaskContext:
    return next(ctx for ctx in ctxs if ctx.task["payload"]["name"] == name)


def submit(fleet: Fleet, *names: str) -> dict[str, str]:
    return {name: fleet.submit("grouped", name=name)[0] for name in names}


def run_until(worker: Worker, settled: int, during: Callable[[], None] | None = None) -> None:
    """Run *worker* until *settled* tasks are done or failed (calling *during* once it
    has started), then stop it and let it drain."""

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.run)
            if during:
                await trio.to_thread.run_sync(during)
            with trio.fail_after(30):
                while worker.counters.done + worker.counters.failed < settled:
                    await trio.sleep(0.02)
            worker.stop()

    trio.run(main)


def with_type(worker: Worker, calls: Calls) -> Worker:
    worker.registry.register("grouped", calls.handler, group=calls.group)
    return worker


def assert_queues_empty(fleet: Fleet) -> None:
    queue = wire.queue_name(0)
    assert fleet.redis.xlen(queue) == 0
    assert fleet.redis.xpending(queue, wire.GROUP)["pending"] == 0


def test_tasks_fetched_together_run_as_one_group_and_are_recorded_done(fleet):
    async def done(ctxs: list[TaskContext]) -> None:
        for ctx in ctxs:
            await ctx.progress(0.5, f"worked on {ctx.task['payload']['name']}")

    calls = Calls(done)
    ids = submit(fleet, "a", "b", "c", "d")  # before the start: one read fetches all four
    with fleet.in_process_worker() as worker:
        run_until(with_type(worker, calls), settled=4)
    assert calls.groups == [["a", "b", "c", "d"]] and calls.alone == []
    for name, task_id in ids.items():
        row = fleet.task(task_id)
        assert row["progress"] == 1 and row["retry_count"] == 0 and row["begin_at"]
        lines = row["progress_msg"].splitlines()
        assert [line.split(" ", 1)[1] for line in lines[:2]] == [
            "Task has been received.",
            f"worked on {name}",
        ]
        assert lines[2].split(" ", 1)[1].startswith("Task done (") and len(lines) == 3
    assert (worker.counters.done, worker.counters.failed) == (4, 0)
    assert worker.metrics.registry.get_sample_value("ragfleet_grouped_tasks_total") == 4
    assert_queues_empty(fleet)


def test_each_task_of_a_group_ends_its_own_way(make_fleet):
    fleet = make_fleet(max_concurrent_tasks=5)

    async def mixed(ctxs: list[TaskContext]) -> None:
        named(ctxs, "failed").outcome = TaskInputError("the document is corrupt")
        named(ctxs, "crashed").outcome = ZeroDivisionError("division by zero")
        named(ctxs, "large").outcome = Outcome.RUN_ALONE
        named(ctxs, "cancelled").outcome = Outcome.CANCELLED

    calls = Calls(mixed)
    ids = submit(fleet, "done", "failed", "crashed", "large", "cancelled")
    with fleet.in_process_worker() as worker:
        run_until(with_type(worker, calls), settled=5)
    assert calls.groups == [["done", "failed", "crashed", "large", "cancelled"]]
    assert calls.alone == ["large"]  # run by the handler of one task
    rows = {name: fleet.task(task_id) for name, task_id in ids.items()}
    assert {name: row["progress"] for name, row in rows.items()} == {
        "done": 1,
        "failed": -1,
        "crashed": -1,
        "large": 1,
        "cancelled": -1,
    }
    assert "[Exception]: the document is corrupt" in rows["failed"]["progress_msg"]
    assert "[Exception]: ZeroDivisionError: division by zero" in rows["crashed"]["progress_msg"]
    assert "Task has been canceled." in rows["cancelled"]["progress_msg"]
    # The task run alone was begun once, by the group's look-up, not again on its own.
    assert rows["large"]["progress_msg"].count("Task has been received.") == 1
    assert (worker.counters.done, worker.counters.failed) == (2, 3)
    assert_queues_empty(fleet)


def test_a_group_handler_that_raises_runs_each_task_alone(fleet, caplog):
    async def broken(ctxs: list[TaskContext]) -> None:
        raise KeyError("a bug in the group handler")

    calls = Calls(broken)
    ids = submit(fleet, "a", "b", "c")
    with fleet.in_process_worker() as worker, caplog.at_level(logging.WARNING):
        run_until(with_type(worker, calls), settled=3)
    assert calls.groups == [["a", "b", "c"]] and sorted(calls.alone) == ["a", "b", "c"]
    assert all(fleet.task(task_id)["progress"] == 1 for task_id in ids.values())
    assert "a group of 3 tasks failed (KeyError: 'a bug in the group handler')" in caplog.text
    assert_queues_empty(fleet)


def test_an_error_of_ours_while_grouping_settles_each_task_on_its_own(fleet, caplog):
    """A fault injected into the worker's grouping (standing in for a bug of ours) loses
    no task and stops no worker: the entries not handed over yet settle one by one."""
    calls = Calls(lambda ctxs: trio.sleep(0))
    ids = submit(fleet, "a", "b", "c")
    with (
        fleet.in_process_worker(registry=GroupingFails()) as worker,
        caplog.at_level(logging.ERROR),
    ):
        run_until(with_type(worker, calls), settled=3)
    assert calls.groups == [] and sorted(calls.alone) == ["a", "b", "c"]
    assert all(fleet.task(task_id)["progress"] == 1 for task_id in ids.values())
    assert "settling 3 entries together failed (RuntimeError: injected grouping bug)" in (
        caplog.text
    )
    assert_queues_empty(fleet)


def test_an_outage_in_a_group_leaves_every_task_for_a_retry(fleet):
    """A dependency out of reach fails no task of the group: their entries stay pending,
    are replayed once the back-off has passed, and that delivery is not counted."""
    attempts = []

    async def flaky(ctxs: list[TaskContext]) -> None:
        attempts.append(len(ctxs))
        if len(attempts) == 1:
            raise DependencyUnavailable("document store: connection refused")

    calls = Calls(flaky)
    ids = submit(fleet, "a", "b", "c")
    with fleet.in_process_worker() as worker:
        run_until(with_type(worker, calls), settled=3)
    assert attempts == [3, 3] and calls.alone == []
    rows = [fleet.task(task_id) for task_id in ids.values()]
    assert all(row["progress"] == 1 for row in rows)
    assert all(row["retry_count"] == 0 for row in rows)  # the outage's delivery not counted
    assert_queues_empty(fleet)


def test_a_task_cancelled_while_its_group_runs_is_recorded_cancelled(fleet):
    async def until_cancelled(ctxs: list[TaskContext]) -> None:
        target = named(ctxs, "b")
        with trio.fail_after(10):
            while not target.cancel_requested():
                await trio.sleep(0.02)
        target.outcome = Outcome.CANCELLED

    calls = Calls(until_cancelled)
    ids = submit(fleet, "a", "b", "c")

    def cancel_b() -> None:
        result = fleet.cli("cancel", ids["b"])
        assert result.returncode == 0, result.stderr

    with fleet.in_process_worker() as worker:
        run_until(with_type(worker, calls), settled=3, during=cancel_b)
    rows = {name: fleet.task(task_id) for name, task_id in ids.items()}
    assert {name: row["progress"] for name, row in rows.items()} == {"a": 1, "b": -1, "c": 1}
    assert "Task has been canceled." in rows["b"]["progress_msg"]
    assert_queues_empty(fleet)


def test_a_drain_that_times_out_leaves_a_groups_tasks_to_be_delivered_again(make_fleet):
    fleet = make_fleet(drain_timeout=1)
    started = trio.Event()

    async def endless(ctxs: list[TaskContext]) -> None:
        started.set()
        await trio.sleep_forever()

    calls = Calls(endless)
    ids = submit(fleet, "a", "b")
    with fleet.in_process_worker() as worker:
        with_type(worker, calls)

        async def main() -> None:
            async with trio.open_nursery() as nursery:
                await nursery.start(worker.run)
                with trio.fail_after(10):
                    await started.wait()
                worker.stop()

        trio.run(main)
    assert calls.groups == [["a", "b"]]
    for task_id in ids.values():
        row = fleet.task(task_id)
        assert row["progress"] == 0
        assert (
            "Executor stopped before the task finished; it will be retried."
            in (row["progress_msg"])
        )
    queue = wire.queue_name(0)
    assert fleet.redis.xpending(queue, wire.GROUP)["pending"] == 2
    assert worker.ledgers.held == {} and worker.running == {}
