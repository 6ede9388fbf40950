"""Deliveries fetched together: looked up and begun in one hop; tasks of a type with a
group handler run as one group, every other delivery settles on its own."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from ..errors import is_outage
from ..handlers import GroupHandler, HandlerRegistry, Outcome, TaskContext
from ..settings import Settings
from .clock import Clock, in_thread
from .health import Health
from .ledger import Ledger, Ledgers
from .lookup import TaskLookup
from .meters import Meters
from .outcomes import Outcomes
from .running import Finished, LookedUp, Running
from .slots import Slots
from .steps import EndCancelled, Fail, FinishAlone, MeetError, Process, RunAlone, Step

HandOver = Callable[[Ledger, Step], None]
"""Starts a settle of its own for a ledger, from a step; it takes its one slot along."""
Members = list[tuple[Ledger, dict[str, Any]]]


class Groups:
    """Settles a batch of deliveries, each holding one slot (see docs/architecture.md)."""

    def __init__(
        self,
        *,
        registry: HandlerRegistry,
        settings: Settings,
        lookup: TaskLookup,
        outcomes: Outcomes,
        ledgers: Ledgers,
        slots: Slots,
        health: Health,
        meters: Meters,
        clock: Clock,
        log: logging.Logger,
        hand_over: HandOver,
        hop: Callable[..., Awaitable[Any]] = in_thread,
    ) -> None:
        self.registry = registry
        self.settings = settings
        self.lookup = lookup
        self.outcomes = outcomes
        self.ledgers = ledgers
        self.slots = slots
        self.health = health
        self.meters = meters
        self.clock = clock
        self.log = log
        self._start = hand_over
        self._hop = hop  # the batch look-up's thread hop (the Worker's OwnThread)

    async def settle_batch(
        self, batch: list[Ledger], looked_up: list[LookedUp | None] | None = None
    ) -> None:
        """Each delivery ends in a settle of its own; after an error of ours on the way,
        every delivery not handed over yet settles on its own from the start, and the
        worker goes on. *looked_up*: the batch's tasks, if the fetch looked them up and
        began them already."""
        left = {ledger.entry_id: ledger for ledger in batch}  # not handed over yet
        try:
            await self._group_and_run(batch, left, looked_up)
        except Exception as exc:
            self.log.error(
                "settling %d entries together failed (%s: %s): settling each on its own",
                len(left),
                type(exc).__name__,
                exc,
                exc_info=exc,
            )
            for ledger in list(left.values()):
                self._hand_over(ledger, Process(), left)
        finally:
            for ledger in left.values():  # cut short (a stop): delivered again
                self._let_go(ledger)

    def _let_go(self, ledger: Ledger) -> None:
        self.ledgers.let_go(ledger)
        self.slots.give_back(1)

    def _hand_over(self, ledger: Ledger, step: Step, left: dict[str, Ledger]) -> None:
        del left[ledger.entry_id]
        self._start(ledger, step)

    async def _group_and_run(
        self, batch: list[Ledger], left: dict[str, Ledger], looked_up: list[LookedUp | None] | None
    ) -> None:
        counts = [ledger.deliveries() for ledger in batch]
        if looked_up is None:
            try:
                looked_up = await self._hop(self.lookup.look_up_all, batch, counts)
            except Exception:  # an outage, say: each delivery meets it again on its own
                looked_up = [None] * len(batch)
            else:
                self.health.db.recovered()
        groups: dict[str, Members] = {}
        for ledger, found, count in zip(batch, looked_up, counts, strict=True):
            task_type = self._group_of(found, count, groups) if found else None
            if task_type is None:
                self._hand_over(ledger, Process(found), left)
            else:
                assert found and found[0]
                groups.setdefault(task_type, []).append((ledger, found[0]))
        for task_type, members in groups.items():
            handler = self.registry.group(task_type)
            assert handler is not None
            await self._run_group(handler, members, left)

    def _group_of(self, found: LookedUp, deliveries: int, groups: dict[str, Members]) -> str | None:
        """The task type whose group handler runs this looked-up task, or None: it is
        not going to run, its type has none, or the group has it already (two entries of
        one task: the second settles on its own, as it would have)."""
        task, cancelled = found
        if task is None or cancelled or not self.lookup.will_run(task, deliveries):
            return None
        task_type = task.get("task_type") or ""
        members = groups.get(task_type, [])
        if self.registry.group(task_type) is None or any(t["id"] == task["id"] for _, t in members):
            return None
        return task_type

    async def _run_group(
        self, handler: GroupHandler, members: Members, left: dict[str, Ledger]
    ) -> None:
        """Run begun tasks of one type through their group handler, record the finished
        ones done in one hop, and hand each of the others over to a settle of its own:
        failed, cancelled, or run alone by the type's handler.

        If the handler raises, an outage leaves every task for a retry (each notes it as
        its own); any other error is logged and every task runs alone, where the error
        meets only its own."""
        started = self.clock.monotonic()
        pairs = [(ledger, self._join_group(ledger, task, started)) for ledger, task in members]
        self.slots.groups_running += 1
        self.meters.grouped.inc(len(members))
        self.log.debug(
            "running %d tasks as a group: %s", len(members), [t["id"] for _, t in members]
        )
        try:
            error = await self._handle_group(handler, pairs)
            if error is not None:
                for ledger, _ in pairs:
                    self._hand_over(ledger, MeetError(error), left)
                return
            finished = [
                self.outcomes.done(ledger.delivery, ctx, started)
                for ledger, ctx in pairs
                if ctx.outcome is Outcome.DONE
            ]
            await self._finish_group(finished, left)
            for ledger, ctx in pairs:
                if ctx.outcome is not Outcome.DONE:
                    self._hand_over(ledger, _rest_of(ctx), left)
        finally:
            self.slots.groups_running -= 1

    def _join_group(self, ledger: Ledger, task: dict[str, Any], started: float) -> TaskContext:
        running = Running(ledger.delivery, task, started)
        self.outcomes.track(running)
        return TaskContext(
            task,
            self.outcomes.progress(task),
            self.settings,
            cancel_requested=lambda: running.cancel_requested,
        )

    async def _handle_group(
        self, handler: GroupHandler, pairs: list[tuple[Ledger, TaskContext]]
    ) -> Exception | None:
        """Await the group *handler*; return the outage it raised, if it did."""
        ctxs = [ctx for _, ctx in pairs]
        try:
            await handler(ctxs)
        except trio.Cancelled:
            with trio.CancelScope(shield=True):  # side by side, as tasks run alone would
                async with trio.open_nursery() as nursery:
                    for ctx in ctxs:
                        nursery.start_soon(self.outcomes.note_interrupted, ctx.progress)
            raise
        except Exception as exc:
            if is_outage(exc):
                return exc
            self.log.warning(
                "a group of %d tasks failed (%s: %s): running each on its own",
                len(ctxs),
                type(exc).__name__,
                exc,
                exc_info=exc,
            )
            for ctx in ctxs:
                ctx.outcome = Outcome.RUN_ALONE
        finally:
            for ctx in ctxs:
                self.outcomes.untrack(ctx.task["id"])
        return None

    async def _finish_group(self, finished: list[Finished], left: dict[str, Ledger]) -> None:
        """Record *finished* done in one hop. If that fails, an outage leaves them for a
        retry; after any other error each is recorded on its own."""
        if not finished:
            return
        try:
            await in_thread(self.outcomes.finish, finished)
        except Exception as exc:
            for item in finished:
                step = MeetError(exc) if is_outage(exc) else FinishAlone(item)
                self._hand_over(left[item.delivery.entry_id], step, left)
            return
        self.outcomes.count_done(finished)
        self.health.settled()
        for item in finished:  # all at once: the next fetch has all their slots
            ledger = left.pop(item.delivery.entry_id)
            self._let_go(ledger)
            self.ledgers.forget(ledger)


def _rest_of(ctx: TaskContext) -> Step:
    """What is left to do for a member of a group that did not finish it."""
    if isinstance(ctx.outcome, Exception):
        return Fail(ctx.progress, ctx.outcome)
    if ctx.outcome is Outcome.CANCELLED:
        return EndCancelled(ctx.progress)
    ctx.task["progress_msg"] = ctx.progress.text  # run alone, from the lines so far
    return RunAlone(ctx.task)
