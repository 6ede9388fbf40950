"""Task handlers: a registry from ``task_type`` to the coroutine that does the work.

A handler is ``async def handler(ctx: TaskContext) -> None``. It reports progress and
checks for cancellation through ``await ctx.progress(fraction, message)``; it may be
cancelled at any checkpoint (trio cancel scope) when an operator cancels the task or the
executor's drain times out, so it must leave nothing half-recorded that a re-run would not
replace. Raising any exception fails the task with a readable message.

A task type may also have a *group handler*, ``async def handle(ctxs: list[TaskContext])``,
for tasks fetched together: it does their work in shared thread hops and transactions
(a short task's cost is mostly those), and says per task how it went by setting
``ctx.outcome`` (see :class:`Outcome`). It checks ``ctx.cancel_requested()`` between its
steps, since one task of a group cannot be cancelled by a scope. Raising fails no task:
an outage leaves them all for a retry, any other error runs each on its own with the
type's handler, which meets the error alone.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from .errors import TaskInputError
from .progress import Progress
from .settings import Settings


class Outcome(enum.Enum):
    """How a group handler left one of its tasks."""

    DONE = "done"
    """Finished: recorded done with ``done_fields``, with the rest of the group."""
    RUN_ALONE = "run alone"
    """Not for this group (too large, say): run by the type's handler, on its own."""
    CANCELLED = "cancelled"
    """Stopped at ``cancel_requested()``, leaving nothing written: recorded cancelled."""


def _never() -> bool:
    return False


@dataclass
class TaskContext:
    """What a handler gets: the task row (re-read from the database) and the progress API."""

    task: dict[str, Any]
    progress: Progress
    settings: Settings
    services: dict[str, Any] = field(default_factory=dict)
    done_fields: dict[str, Any] = field(default_factory=dict)
    """Task columns the handler sets on success (ingestion: ``chunk_ids``, ``token_num``):
    written with the task's done state, in the transaction that runs its on_settled hook."""
    cancel_requested: Callable[[], bool] = _never
    """Whether an operator has cancelled the task (for group handlers; a handler of one
    task is cancelled at its next checkpoint instead)."""
    outcome: Outcome | Exception = Outcome.DONE
    """Set by a group handler: an exception fails the task with it."""

    @property
    def payload(self) -> dict[str, Any]:
        payload = self.task.get("payload") or {}
        if not isinstance(payload, dict):
            raise TaskInputError("the task's payload is not a JSON object")
        return payload


Handler = Callable[[TaskContext], Awaitable[None]]
GroupHandler = Callable[[list[TaskContext]], Awaitable[None]]
SettledHook = Callable[[dict[str, Any]], None]

INGEST_TASK_TYPE = ""
"""Upstream's standard parsing task has an empty task_type: ingestion registers under it."""


class HandlerRegistry:
    """Maps task types to handlers; the ingestion pipeline registers its own types."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self._settled: dict[str, SettledHook] = {}
        self._groups: dict[str, GroupHandler] = {}

    def register(
        self,
        task_type: str,
        handler: Handler,
        *,
        on_settled: SettledHook | None = None,
        group: GroupHandler | None = None,
    ) -> None:
        """Serve *task_type* with *handler*; *on_settled(task_row)* runs (in a thread) when
        the task's final state is recorded: done (in the same transaction), failed or
        cancelled (right after). A hook that writes does so in ``store.transaction()``,
        a savepoint inside the done transaction, so that its failure undoes only its own
        writes: it is logged, and the task stays done. *group*, if given, handles tasks
        of the type fetched together (see the module's docstring)."""
        if task_type in self._handlers:
            raise ValueError(f"task type {task_type!r} already has a handler")
        self._handlers[task_type] = handler
        if on_settled:
            self._settled[task_type] = on_settled
        if group:
            self._groups[task_type] = group

    def get(self, task_type: str) -> Handler | None:
        return self._handlers.get(task_type)

    def on_settled(self, task_type: str) -> SettledHook | None:
        return self._settled.get(task_type)

    def group(self, task_type: str) -> GroupHandler | None:
        return self._groups.get(task_type)

    def has_group(self, task_type: str) -> bool:
        return task_type in self._groups

    def types(self) -> list[str]:
        return sorted(self._handlers)


async def noop(ctx: TaskContext) -> None:
    """Does nothing: measures the executor's own cost per task."""


async def sleep(ctx: TaskContext) -> None:
    """Sleeps ``payload.seconds`` (default 1) in ``payload.steps`` steps, reporting each.

    For tests and benchmarks of long tasks, cancellation and draining; fails on purpose
    when ``payload.fail`` is set, with that text as the error.
    """
    seconds = float(ctx.payload.get("seconds", 1))
    steps = max(1, int(ctx.payload.get("steps", 1)))
    if seconds < 0:
        raise TaskInputError(f"payload.seconds must not be negative, got {seconds}")
    for step in range(steps):
        await trio.sleep(seconds / steps)
        await ctx.progress((step + 1) / (steps + 1), f"slept {step + 1}/{steps}")
    if ctx.payload.get("fail"):
        raise RuntimeError(str(ctx.payload["fail"]))


def builtin_registry() -> HandlerRegistry:
    registry = HandlerRegistry()
    registry.register("noop", noop)
    registry.register("sleep", sleep)
    return registry


def default_registry() -> HandlerRegistry:
    """The built-in types; ``executor.app.build_registry`` adds ingestion."""
    return builtin_registry()
