"""Task handlers: a registry from ``task_type`` to the coroutine that does the work.

A handler is ``async def handler(ctx: TaskContext) -> None``. It reports progress and
checks for cancellation through ``await ctx.progress(fraction, message)``; it may be
cancelled at any checkpoint (trio cancel scope) when an operator cancels the task or the
executor's drain times out, so it must leave nothing half-recorded that a re-run would not
replace. Raising any exception fails the task with a readable message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from .progress import Progress
from .settings import Settings


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

    @property
    def payload(self) -> dict[str, Any]:
        payload = self.task.get("payload") or {}
        if not isinstance(payload, dict):
            raise TaskInputError("the task's payload is not a JSON object")
        return payload


class TaskInputError(ValueError):
    """The task itself is wrong (bad parameters, unreadable document): fail it, do not retry."""


Handler = Callable[[TaskContext], Awaitable[None]]
SettledHook = Callable[[dict[str, Any]], None]

INGEST_TASK_TYPE = ""
"""Upstream's standard parsing task has an empty task_type: ingestion registers under it."""


class HandlerRegistry:
    """Maps task types to handlers; the ingestion pipeline registers its own types."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self._settled: dict[str, SettledHook] = {}

    def register(
        self, task_type: str, handler: Handler, *, on_settled: SettledHook | None = None
    ) -> None:
        """Serve *task_type* with *handler*; *on_settled(task_row)* runs (in a thread) when
        the task's final state is recorded: done (in the same transaction), failed or
        cancelled (right after). A hook that writes does so in ``store.transaction()``,
        a savepoint inside the done transaction, so that its failure undoes only its own
        writes: it is logged, and the task stays done."""
        if task_type in self._handlers:
            raise ValueError(f"task type {task_type!r} already has a handler")
        self._handlers[task_type] = handler
        if on_settled:
            self._settled[task_type] = on_settled

    def get(self, task_type: str) -> Handler | None:
        return self._handlers.get(task_type)

    def on_settled(self, task_type: str) -> SettledHook | None:
        return self._settled.get(task_type)

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
