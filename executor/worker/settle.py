"""Settling one delivery: done, failed, cancelled, dead-lettered, set aside (an error of
ours), or left pending for a retry (an outage); and its slots given back, whatever happens."""

from __future__ import annotations

import logging
from contextlib import suppress

from ..errors import (
    REDIS_REFUSED,
    DatabaseUnavailable,
    DependencyUnavailable,
    TaskNotInDatabase,
    is_outage,
)
from ..logs import for_task
from ..queue.broker import Broker
from ..settings import ExecutorSettings
from ..store.database import TaskStore
from .clock import in_thread
from .fetch import Fetcher
from .health import Health
from .ledger import Ledger, Ledgers
from .lookup import TaskLookup, not_runnable
from .meters import UNKNOWN_TYPE, Meters
from .outcomes import Outcomes
from .running import Counters, LookedUp
from .slots import Slots
from .steps import EndCancelled, Fail, FinishAlone, MeetError, Process, RunAlone, Step


class Settler:
    """Takes one delivery from its step to its end (see docs/architecture.md)."""

    def __init__(
        self,
        *,
        broker: Broker,
        store: TaskStore,
        config: ExecutorSettings,
        lookup: TaskLookup,
        outcomes: Outcomes,
        ledgers: Ledgers,
        slots: Slots,
        fetcher: Fetcher,
        health: Health,
        meters: Meters,
        counters: Counters,
        log: logging.Logger,
    ) -> None:
        self.broker = broker
        self.store = store
        self.config = config
        self.lookup = lookup
        self.outcomes = outcomes
        self.ledgers = ledgers
        self.slots = slots
        self.fetcher = fetcher
        self.health = health
        self.meters = meters
        self.counters = counters
        self.log = log

    async def settle(self, ledger: Ledger, slots: int = 1, step: Step | None = None) -> None:
        """Take *ledger*'s delivery from *step* (from the start, by default) to its end and
        release its *slots*, whatever happens."""
        try:
            await self._take(ledger, step or Process())
        except Exception as exc:
            if is_outage(exc):
                await self._note_outage(ledger, exc)
                return
            await self._set_aside(ledger, exc)  # outside any handler: a bug, not the task's
            self.health.set_aside(exc)
        else:
            self.health.settled()
        finally:
            self.let_go(ledger, slots)
        self.ledgers.forget(ledger)

    def let_go(self, ledger: Ledger, slots: int) -> None:
        self.ledgers.let_go(ledger)
        self.slots.give_back(slots)

    async def _take(self, ledger: Ledger, step: Step) -> None:
        delivery = ledger.delivery
        match step:
            case Process(looked_up):
                await self._process(ledger, looked_up)
            case RunAlone(task):
                await self.outcomes.run(delivery, task)
            case Fail(progress, error):
                await self.outcomes.fail(delivery, progress, error)
            case EndCancelled(progress):
                await self.outcomes.end_cancelled(delivery, progress)
            case FinishAlone(finished):
                await self.outcomes.finish_alone(finished)
            case MeetError(error):
                raise error

    async def _process(self, ledger: Ledger, looked_up: LookedUp | None) -> None:
        """Run or settle one delivery; *looked_up* if its batch's hop has looked it up."""
        delivery, message = ledger.delivery, ledger.message
        if message is None:
            self.log.error(
                "dropping entry %s of %s: %s", delivery.entry_id, delivery.queue, ledger.malformed
            )
            self.meters.malformed.inc()
            await in_thread(self.broker.ack, delivery)
            return
        deliveries = ledger.deliveries()
        if looked_up is None:
            looked_up = await in_thread(self.lookup.look_up, message["id"], deliveries)
        task, cancelled = looked_up
        self.health.db.recovered()
        if task is None:
            raise TaskNotInDatabase(
                f"task {message['id']} is not in the database (restored from an older "
                "backup, or this executor uses another database than the producer)"
            )
        if reason := not_runnable(task):
            for_task(self.log, task).warning(
                "acking entry %s without running it: %s", delivery.entry_id, reason
            )
            await in_thread(self.broker.ack, delivery)
            return
        if deliveries > self.config.max_deliveries:
            await self.outcomes.dead_letter(delivery, task, self.config.max_deliveries)
        elif cancelled:
            await self.outcomes.record_cancelled(self.outcomes.progress(task))
            await in_thread(self.broker.ack, delivery)
            await self.outcomes.settled(task)
        else:
            await self.outcomes.run(delivery, task)

    async def _note_outage(self, ledger: Ledger, exc: Exception) -> None:
        """The delivery met an outage: the entry stays pending and is replayed when it ends.

        Its next delivery is the outage's doing, not the task's: it must not count against
        max_deliveries. The ledger remembers that, and so does Redis (for an executor
        started before the entry comes back, or another that reclaims it) unless Redis is
        the outage."""
        outage = self.health.outage_of(exc)
        outage.failed(exc)
        if isinstance(exc, DatabaseUnavailable):
            self.meters.db_errors.inc()
        elif not isinstance(exc, DependencyUnavailable):
            self.meters.redis_errors.inc()
        self.fetcher.replay = True
        self.ledgers.note_outage(ledger)
        if outage is self.health.redis:
            return  # no use trying (a partitioned Redis would hold the slot for a timeout)
        with suppress(*REDIS_REFUSED):
            await in_thread(self.broker.note_outage, ledger.delivery)

    async def _set_aside(self, ledger: Ledger, exc: Exception) -> None:
        """An error outside the task's handler that is no outage (a bug in the executor):
        move the entry to the dead-letter stream with the error and fail the task, so this
        worker and its other tasks carry on. ``ragfleet dlq retry`` runs it again once the
        cause is fixed. If Redis refuses, the entry stays pending and comes back."""
        delivery = ledger.delivery
        reason = (
            f"[ragfleet]: executor error: {type(exc).__name__}: {exc}; see `ragfleet dlq list`."
        )
        for_task(self.log, ledger.message or {}).error(
            "entry %s of %s set aside: %s",
            delivery.entry_id,
            delivery.queue,
            reason,
            exc_info=None if isinstance(exc, TaskNotInDatabase) else exc,
        )
        try:
            await in_thread(self.broker.dead_letter, delivery, reason)
        except REDIS_REFUSED as error:
            self.log.error("entry %s stays pending: %s", delivery.entry_id, error)
            return
        self.counters.failed += 1
        self.meters.ended(_task_type(ledger), "dead_lettered")
        try:
            task = await in_thread(self.store.get_task, _task_id(ledger))
            if task is not None and 0 <= task["progress"] < 1:  # not if it settled already
                await self.outcomes.progress(task)(-1, reason)
                await self.outcomes.settled(task)
        except Exception as error:  # the same bug may stop this too: the DLQ has the entry
            self.log.error("task of entry %s not marked failed: %s", delivery.entry_id, error)


def _task_type(ledger: Ledger) -> str | None:
    """The task type the entry's message names (the row may be unread): for the metrics."""
    if ledger.message is None:
        return UNKNOWN_TYPE
    return ledger.message.get("task_type", UNKNOWN_TYPE)


def _task_id(ledger: Ledger) -> str:
    if ledger.message is None:
        assert ledger.malformed is not None
        raise ledger.malformed
    return ledger.message["id"]
