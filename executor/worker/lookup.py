"""Looking a delivery's task up, and beginning it if it is going to run: one hop."""

from __future__ import annotations

import copy
from typing import Any

from ..handlers import HandlerRegistry
from ..progress import message_lines, stamp
from ..queue.broker import Broker
from ..settings import ExecutorSettings
from ..store.database import TaskStore
from .ledger import Ledger
from .running import LookedUp


class TaskLookup:
    """Reads task rows and cancel flags, and records runnable tasks begun."""

    def __init__(
        self,
        broker: Broker,
        store: TaskStore,
        registry: HandlerRegistry,
        config: ExecutorSettings,
    ) -> None:
        self.broker = broker
        self.store = store
        self.registry = registry
        self.config = config

    def look_up(self, task_id: str, deliveries: int) -> LookedUp:
        """In a thread: the task's row and whether its cancel flag is set. A task that is
        going to run is begun here too (see :meth:`begin`): one hop, not two."""
        task = self.store.get_task(task_id)
        cancelled = bool(task and self.broker.cancelled([task_id]))
        if task and not cancelled:
            self.begin(task, deliveries)
        return task, cancelled

    def look_up_all(self, batch: list[Ledger], counts: list[int]) -> list[LookedUp | None]:
        """In a thread: :meth:`look_up` for each delivery (None for a malformed one), with
        the rows read in one statement, the cancel flags in one round trip and the tasks
        begun in one transaction."""
        ids = [ledger.task_id for ledger in batch]
        rows = self.store.get_tasks([task_id for task_id in ids if task_id])
        tasks = [_own_copy(rows.get(task_id), index, ids) for index, task_id in enumerate(ids)]
        cancelled = self.broker.cancelled([task["id"] for task in tasks if task])
        with self.store.transaction():
            for task, count in zip(tasks, counts, strict=True):
                if task and task["id"] not in cancelled:
                    self.begin(task, count)
        return [
            None if task_id is None else (task, bool(task and task["id"] in cancelled))
            for task_id, task in zip(ids, tasks, strict=True)
        ]

    def begin(self, task: dict[str, Any], deliveries: int) -> None:
        """In a thread: if *task* is going to run, record it begun (begin_at, retry count,
        its "received" line)."""
        if self.will_run(task, deliveries):
            received = stamp("Task has been received.", task)
            task["progress_msg"] = "\n".join([*message_lines(task["progress_msg"]), received])
            self.store.begin_task(task["id"], deliveries - 1, task["progress_msg"])

    def will_run(self, task: dict[str, Any], deliveries: int) -> bool:
        return (
            not_runnable(task) is None
            and deliveries <= self.config.max_deliveries
            and self.registry.get(task.get("task_type") or "") is not None
        )


def _own_copy(
    row: dict[str, Any] | None, index: int, ids: list[str | None]
) -> dict[str, Any] | None:
    """*row* for the delivery at *index*: two entries of one task (a re-enqueue) each get
    a row of their own, as two reads would give them, since beginning one changes it."""
    if row is None or ids.index(row["id"]) == index:
        return row
    return copy.deepcopy(row)


def not_runnable(task: dict[str, Any]) -> str | None:
    """Why a looked-up task is not run at all (it has settled), or None."""
    task_id = task["id"]
    if task["progress"] >= 1:
        return f"task {task_id} is already done"
    if task["progress"] < 0:
        return f"task {task_id} has already failed or been cancelled"
    return None
