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
        begun together (TaskStore.begin_tasks)."""
        ids = [ledger.task_id for ledger in batch]
        rows = self.store.get_tasks([task_id for task_id in ids if task_id])
        tasks = _rows_of_their_own([rows.get(task_id) if task_id else None for task_id in ids])
        cancelled = self.broker.cancelled([task["id"] for task in tasks if task])
        begun = [
            self.received(task, count)
            for task, count in zip(tasks, counts, strict=True)
            if task and task["id"] not in cancelled and self.will_run(task, count)
        ]
        self.store.begin_tasks(begun)
        return [
            None if task_id is None else (task, bool(task and task["id"] in cancelled))
            for task_id, task in zip(ids, tasks, strict=True)
        ]

    def begin(self, task: dict[str, Any], deliveries: int) -> None:
        """In a thread: if *task* is going to run, record it begun (begin_at, retry count,
        its "received" line)."""
        if self.will_run(task, deliveries):
            self.store.begin_tasks([self.received(task, deliveries)])

    @staticmethod
    def received(task: dict[str, Any], deliveries: int) -> tuple[str, int, str]:
        """*task* given its "received" line; what TaskStore.begin_tasks records of it."""
        received = stamp("Task has been received.", task)
        task["progress_msg"] = "\n".join([*message_lines(task["progress_msg"]), received])
        return task["id"], deliveries - 1, task["progress_msg"]

    def will_run(self, task: dict[str, Any], deliveries: int) -> bool:
        return (
            not_runnable(task) is None
            and deliveries <= self.config.max_deliveries
            and self.registry.get(task.get("task_type") or "") is not None
        )


def _rows_of_their_own(rows: list[dict[str, Any] | None]) -> list[dict[str, Any] | None]:
    """*rows* with a copy for each repeat of one task (two entries of it: a re-enqueue), as
    two reads would give them, since beginning one changes it."""
    seen: set[str] = set()
    own: list[dict[str, Any] | None] = []
    for row in rows:
        if row is not None and row["id"] in seen:
            row = copy.deepcopy(row)
        elif row is not None:
            seen.add(row["id"])
        own.append(row)
    return own


def not_runnable(task: dict[str, Any]) -> str | None:
    """Why a looked-up task is not run at all (it has settled), or None."""
    task_id = task["id"]
    if task["progress"] >= 1:
        return f"task {task_id} is already done"
    if task["progress"] < 0:
        return f"task {task_id} has already failed or been cancelled"
    return None
