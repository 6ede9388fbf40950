"""How a delivery's task ends: run by its handler, then done, failed, cancelled or
dead-lettered, with its type's on_settled hook; each recorded in the database and acked."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from ..errors import REDIS_UNAVAILABLE, DatabaseUnavailable, TaskInputError, is_outage
from ..handlers import HandlerRegistry, SettledHook, TaskContext
from ..logs import for_task
from ..progress import Progress
from ..queue.broker import Broker, Delivery
from ..settings import Settings
from ..store.database import CANCELLED_MESSAGE, TaskStore
from .clock import Clock, in_thread
from .coalesce import Coalesced
from .health import Health
from .meters import Meters
from .running import Counters, Finished, Running


class Outcomes:
    """Runs begun tasks and records how each ended."""

    def __init__(
        self,
        *,
        broker: Broker,
        store: TaskStore,
        registry: HandlerRegistry,
        settings: Settings,
        health: Health,
        meters: Meters,
        counters: Counters,
        running: dict[str, Running],
        clock: Clock,
        log: logging.Logger,
        hop: Callable[..., Awaitable[Any]] = in_thread,
    ) -> None:
        self.broker = broker
        self.store = store
        self.registry = registry
        self.settings = settings
        self.health = health
        self.meters = meters
        self.counters = counters
        self.running = running
        self.clock = clock
        self.log = log
        # Tasks that end while another's "done" is being written go in the next write
        # together: one hop, one transaction, one ack round trip for them all.
        # (hop: the Worker's OwnThread.)
        self._finishing = Coalesced[Finished](lambda items: hop(self.finish, items))

    def progress(self, task: dict[str, Any]) -> Progress:
        return Progress(task, in_thread, self.store.set_progress)

    def track(self, running: Running) -> None:
        self.running[running.task["id"]] = running
        self.meters.in_flight.set(len(self.running))

    def untrack(self, task_id: str) -> None:
        self.running.pop(task_id, None)
        self.meters.in_flight.set(len(self.running))

    async def run(self, delivery: Delivery, task: dict[str, Any]) -> None:
        """Run a task that TaskLookup has begun (or fail it: no handler)."""
        task_id = task["id"]
        progress = self.progress(task)
        handler = self.registry.get(task.get("task_type") or "")
        if handler is None:
            known = ", ".join(
                repr(t) + (" (ingestion)" if not t else "") for t in self.registry.types()
            )
            await self.fail(
                delivery,
                progress,
                TaskInputError(
                    f"no handler for task type {task.get('task_type')!r} (known: {known})"
                ),
            )
            return
        running = Running(delivery, task, self.clock.monotonic())
        self.track(running)
        ctx = TaskContext(task, progress, self.settings)
        try:
            with running.scope:
                await handler(ctx)
        except trio.Cancelled:
            await self.note_interrupted(progress)
            raise
        except Exception as exc:
            if is_outage(exc):
                raise  # not the task's fault: the settle leaves it for a retry
            await self.fail(delivery, progress, exc)
            return
        finally:
            self.untrack(task_id)
        if running.scope.cancelled_caught:
            await self.end_cancelled(delivery, progress)
            return
        await self.finish_alone(self.done(delivery, ctx, running.started))

    async def end_cancelled(self, delivery: Delivery, progress: Progress) -> None:
        await self.record_cancelled(progress)
        await in_thread(self.broker.ack, delivery)
        await self.settled(progress.task)

    def done(self, delivery: Delivery, ctx: TaskContext, started: float) -> Finished:
        seconds = self.clock.monotonic() - started
        text = ctx.progress.note(f"Task done ({seconds:.2f}s)")
        return Finished(delivery, ctx.task, {**ctx.done_fields, "process_duration": seconds}, text)

    async def until_recorded(self) -> None:
        """Return once no "done" write is in flight (its tasks have given their slots back)."""
        if self._finishing.running:
            await self._finishing.until_idle()

    async def finish_alone(self, finished: Finished) -> None:
        """Record one task done: with the others ending meanwhile (see Coalesced)."""
        await self._finishing(finished)
        self.count_done([finished])

    def count_done(self, finished: list[Finished]) -> None:
        self.health.dep.recovered()
        for item in finished:
            self.counters.done += 1
            seconds = item.fields["process_duration"]
            self.meters.ended(item.task.get("task_type"), "done", seconds)

    def finish(self, finished: list[Finished]) -> None:
        """In a thread: record the tasks done with their fields and run their on_settled
        hooks in one transaction, then ack their entries in one round trip (one hop, not
        three per task: a short task's cost is mostly these round trips).

        If the ack fails, the entries are delivered again and acked without a re-run, since
        the tasks are already done.
        """
        with self.store.transaction():
            self.store.set_progress_many(
                [(item.task["id"], 1.0, item.progress_msg, item.fields) for item in finished]
            )
            for item in finished:  # after every row is done: each recounts from the rows
                if hook := self.registry.on_settled(item.task.get("task_type") or ""):
                    self._run_settled_hook(hook, item.task)
        self.broker.ack_all([item.delivery for item in finished])

    async def settled(self, task: dict[str, Any]) -> None:
        if hook := self.registry.on_settled(task.get("task_type") or ""):
            await in_thread(self._run_settled_hook, hook, task)

    def _run_settled_hook(self, hook: SettledHook, task: dict[str, Any]) -> None:
        """In a thread: the task type's on_settled *hook*; its failure is logged, never the
        task's."""
        try:
            hook(task)
        except Exception:
            for_task(self.log, task).exception("on_settled hook of task %s failed", task["id"])

    async def fail(self, delivery: Delivery, progress: Progress, exc: Exception) -> None:
        text = str(exc) if isinstance(exc, TaskInputError) else f"{type(exc).__name__}: {exc}"
        for_task(self.log, progress.task).error(
            "task %s failed: %s",
            progress.task["id"],
            text,
            exc_info=not isinstance(exc, TaskInputError),
        )
        await progress(-1, f"[Exception]: {text}")
        self.counters.failed += 1
        self.meters.ended(progress.task.get("task_type"), "failed")
        await in_thread(self.broker.ack, delivery)
        await self.settled(progress.task)

    async def record_cancelled(self, progress: Progress) -> None:
        for_task(self.log, progress.task).info("task %s cancelled", progress.task["id"])
        await progress(-1, CANCELLED_MESSAGE)
        self.counters.failed += 1  # upstream counts cancelled tasks as failed
        self.meters.ended(progress.task.get("task_type"), "cancelled")

    async def dead_letter(self, delivery: Delivery, task: dict[str, Any], limit: int) -> None:
        reason = (
            f"Task is abandoned after {limit} deliveries "
            f"(max_deliveries={limit}); see `ragfleet dlq list`."
        )
        for_task(self.log, task).error("task %s dead-lettered: %s", task["id"], reason)
        await self.progress(task)(-1, f"[ragfleet]: {reason}")
        await in_thread(self.broker.dead_letter, delivery, reason)
        self.counters.failed += 1
        self.meters.ended(task.get("task_type"), "dead_lettered")
        await self.settled(task)

    async def note_interrupted(self, progress: Progress) -> None:
        """The drain gave up on this task: say so in its log; it will be delivered again."""
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            try:
                await progress(
                    None,
                    "Executor stopped before the task finished; it will be retried.",
                    flush=True,
                )
            except (DatabaseUnavailable, *REDIS_UNAVAILABLE):
                pass
