"""A real Worker on a StubBroker and a SQLite TaskStore, run in trio until a condition
holds: the rig of the millisecond worker tests (tests/test_worker_*_stub.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio
from executors import sqlite_database

from executor.handlers import HandlerRegistry, TaskContext, TaskInputError
from executor.queue import wire
from executor.queue.producer import task_message
from executor.queue.stub import StubBroker, StubRedis
from executor.settings import Settings
from executor.store.database import TaskStore, task_state
from executor.store.opening import open_database
from executor.worker import Worker

A, B = wire.consumer_name("a", 1), wire.consumer_name("b", 1)

FAST = {
    "max_concurrent_tasks": 2,
    "heartbeat_interval": 0.05,
    "worker_heartbeat_timeout": 1,
    "reclaim_idle": 0.2,
    "max_deliveries": 3,
    "drain_timeout": 2,
    "lost_task_sweep": 0,  # LostTasks reads Redis directly: the real-server tests' part
    "log_level": "DEBUG",
}


class Rig:
    """One Redis (in memory), one database, the handlers below; workers made on demand.

    Handlers: ``ok``, ``fail`` (ValueError), ``bad_input`` (TaskInputError), ``slow``
    (sleeps ``payload.seconds``, default 10, cancellable). Each records in ``self.ran`` the
    task ids it started, and ``self.most_at_once`` the most tasks running together."""

    def __init__(self, tmp_path: Path, **executor: Any) -> None:
        self.skew = 0.0  # seconds added to the stub's clock: ages pending entries
        self.redis = StubRedis(clock=lambda: time.time() + self.skew)
        self.store = TaskStore(open_database(sqlite_database(tmp_path)))
        self.store.init_schema()
        self.settings = Settings.from_mapping(
            {
                "host_id": "a",
                "database": sqlite_database(tmp_path),
                "executor": {**FAST, "state_dir": str(tmp_path / "state"), **executor},
            }
        )
        self.ran: list[str] = []
        self.most_at_once = 0
        self._running = 0
        self.registry = HandlerRegistry()
        for name in ("ok", "fail", "bad_input", "slow"):
            self.registry.register(name, self._handler(name))
        StubBroker(self.redis, A).ensure_groups()  # Redis has its groups: no loss to mend

    def _handler(self, name: str):
        async def handle(ctx: TaskContext) -> None:
            self.ran.append(ctx.task["id"])
            self._running += 1
            self.most_at_once = max(self.most_at_once, self._running)
            try:
                await trio.sleep(float(ctx.payload.get("seconds", 10 if name == "slow" else 0)))
                if name == "fail":
                    raise ValueError("boom")
                if name == "bad_input":
                    raise TaskInputError("payload.x must be a number")
            finally:
                self._running -= 1

        return handle

    # -- tasks -------------------------------------------------------------------------------

    def task(self, task_type: str = "ok", *, queued: bool = True, **row: Any) -> str:
        """A task recorded in the database and, if *queued*, enqueued; its id."""
        fields = {"task_type": task_type, "priority": 0, "payload": "", **row}
        (task,) = self.store.create_tasks([fields])
        if queued:
            self.redis.enqueue_task(task_message(task), task["priority"])
        return task["id"]

    def row(self, task_id: str) -> dict[str, Any]:
        row = self.store.get_task(task_id)
        assert row is not None
        return row

    def state(self, task_id: str) -> str:
        return task_state(self.row(task_id))

    def settled(self, *task_ids: str) -> Callable[[], bool]:
        return lambda: all(self.state(t) not in ("queued", "running") for t in task_ids)

    # -- workers -----------------------------------------------------------------------------

    def worker(self, consumer: str = A) -> Worker:
        return Worker(self.settings, 1, StubBroker(self.redis, consumer), self.store, self.registry)

    def run(
        self,
        until: Callable[[], bool],
        worker: Worker | None = None,
        *,
        during: Callable[[Worker], None] | None = None,
        timeout: float = 5,
    ) -> Worker:
        """Run *worker* (a new one by default) until *until()* holds, then stop it and
        wait for it to drain. *during(worker)* is called at each poll while it runs."""
        worker = worker or self.worker()

        async def main() -> None:
            with trio.fail_after(timeout):
                async with trio.open_nursery() as nursery:
                    await nursery.start(worker.run)
                    while not await trio.to_thread.run_sync(until):
                        if during:
                            during(worker)
                        await trio.sleep(0.005)
                    worker.stop()

        trio.run(main)
        return worker
