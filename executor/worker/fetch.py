"""Fetching deliveries: this consumer's own unacknowledged entries first, then entries
idle in any consumer (taken over), then new ones; and waiting out outages before it."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from ..errors import (
    REDIS_REFUSED,
    DatabaseConnectionFailed,
    DatabaseUnavailable,
    RedisAnswer,
    refuses_writes,
)
from ..logs import for_task
from ..lost_tasks import HEARTBEATS_AFTER_LOSS
from ..queue.broker import Broker, Delivery
from ..settings import ExecutorSettings
from ..store.database import TaskStore
from .clock import Clock, in_thread
from .health import Health
from .ledger import Ledger, Ledgers
from .lookup import TaskLookup
from .meters import Meters
from .running import LookedUp

IDLE_BLOCK_MS = 1000
"""XREADGROUP BLOCK when idle: a new entry wakes the read at once, so this bounds only how
long a stop waits for the read to return."""


@dataclass
class Fetched:
    """One fetch: its deliveries, whether the one fetched must run alone, the tasks the
    read's own hop looked up (and began, if they are to run), by entry id, and the
    ledgers that hop made for them (their messages decoded once, not again when held);
    a delivery not looked up is looked up by its batch or its own settle; and why that
    hop's look-up failed, if it did."""

    deliveries: list[Delivery]
    alone: bool = False
    looked_up: dict[str, LookedUp] = field(default_factory=dict)
    ledgers: dict[str, Ledger] = field(default_factory=dict)
    lookup_failed: Exception | None = None


class Fetcher:
    """Where the next deliveries come from (see docs/architecture.md, fetched)."""

    def __init__(
        self,
        *,
        broker: Broker,
        store: TaskStore,
        config: ExecutorSettings,
        ledgers: Ledgers,
        health: Health,
        meters: Meters,
        clock: Clock,
        log: logging.Logger,
        on_queues_lost: Callable[[], None],
        lookup: TaskLookup,
    ) -> None:
        self.broker = broker
        self.lookup = lookup
        self.store = store
        self.config = config
        self.ledgers = ledgers
        self.health = health
        self.meters = meters
        self.clock = clock
        self.log = log
        self.on_queues_lost = on_queues_lost
        self.replay = True  # replay own unacked entries before reading new ones
        self.after_crash = False  # the last run died holding entries: replay them alone
        self.spare: list[Delivery] = []  # held, fetched beyond a probe's one: fetched next
        self._reclaim_period = max(0.5, min(config.heartbeat_interval, config.reclaim_idle / 2))
        self._next_reclaim = 0.0

    async def fetch(self, slots: int, *, look_up: bool = True) -> Fetched:
        """Up to *slots* deliveries, and whether the one fetched must run alone.

        Entries whose consumer died holding them (this consumer's last run, if it did not
        stop cleanly, or another consumer's, reclaimed) may hold the task that killed it.
        They are fetched one at a time and run alone: if one kills this worker too, the
        delivery it costs is charged to it, not to every entry the worker held, so
        max_deliveries dead-letters the poison task and nothing beside it.

        An entry a probe's read returned beyond the one asked for comes first: a probe
        runs one task alone.

        New entries (if *look_up*) have their tasks looked up and begun in the read's own
        hop (see :meth:`_read_new`).
        """
        if self.spare:
            batch, self.spare = self.spare[:slots], self.spare[slots:]
            return Fetched(batch)
        if self.replay:
            alone = self.after_crash
            want = 1 if alone else slots
            batch = await in_thread(self.broker.replay_own, set(self.ledgers.held), want)
            if len(batch) < want:
                self.replay = self.after_crash = False
            if batch:
                self.log.info(
                    "replaying %s unacknowledged entries of %s",
                    "one of the" if alone else len(batch),
                    self.broker.consumer
                    + (" alone (its last run did not stop cleanly)" if alone else ""),
                )
                return Fetched(batch, alone)
        if reclaimed := await self._reclaim_due():
            return Fetched(reclaimed, alone=True)
        # Abandoned on cancel: a stop must not wait for the blocking read to time out.
        read = functools.partial(self._read_new, slots, look_up)
        fetched = await trio.to_thread.run_sync(read, abandon_on_cancel=True)
        if fetched.looked_up:
            self.health.db.recovered()
        elif isinstance(fetched.lookup_failed, DatabaseConnectionFailed):
            self.health.db.noticed(fetched.lookup_failed)
        return fetched

    def _read_new(self, slots: int, look_up: bool) -> Fetched:
        """In a thread: new entries and, if *look_up*, their tasks looked up and begun in
        the same hop (TaskLookup.look_up_all), so that nothing waits for a hop back to
        trio and out again between an entry's arrival and its task's begin_at. Only the
        entries that have a slot (a woken read may return one more than asked).

        Not once the fetch is cancelled (a stop abandons the read: what it returns after
        that stays pending, not begun, for a run that will run it). If the look-up fails
        (a connection left stale by an outage, say), nothing is lost: each delivery is
        looked up again by its batch or its own settle, which tell an outage from an
        error of one task's; :meth:`fetch` notes a broken connection as an outage."""
        batch = self.broker.read_new(slots, IDLE_BLOCK_MS)
        if not (look_up and batch):
            return Fetched(batch)
        try:
            trio.from_thread.check_cancelled()
        except trio.Cancelled:
            return Fetched(batch)
        ledgers = [Ledger(delivery) for delivery in batch[:slots]]
        made = {ledger.entry_id: ledger for ledger in ledgers}
        counts = [ledger.deliveries() for ledger in ledgers]
        try:
            with self.ledgers.reading(ledgers):
                found = self.lookup.look_up_all(ledgers, counts)
        except Exception as exc:
            self.log.debug(
                "looking up %d new entries in the read's hop failed (%s: %s): each is "
                "looked up again",
                len(ledgers),
                type(exc).__name__,
                exc,
            )
            return Fetched(batch, ledgers=made, lookup_failed=exc)
        looked_up = {
            ledger.entry_id: task
            for ledger, task in zip(ledgers, found, strict=True)
            if task is not None  # (None: malformed)
        }
        return Fetched(batch, looked_up=looked_up, ledgers=made)

    async def _reclaim_due(self) -> list[Delivery]:
        """Every reclaim period: take over an entry that a dead or stuck consumer left idle
        for ``reclaim_idle`` (XAUTOCLAIM), one at a time; while there are such entries,
        the next is taken as soon as this one is started. Not until Redis has been back
        for 1.5 heartbeat intervals after an outage, and not an entry whose task another
        executor still holds (see docs/reliability.md)."""
        now = trio.current_time()
        grace = HEARTBEATS_AFTER_LOSS * self.config.heartbeat_interval
        if now < self._next_reclaim or self.health.redis.up_for() < grace:
            return []
        self._next_reclaim = now + self._reclaim_period
        idle_ms = int(self.config.reclaim_idle * 1000)
        batch = await in_thread(self.broker.reclaim, idle_ms, 1)
        taken = [d for d in batch if not self.ledgers.is_held(d.entry_id)]
        if taken:
            self._next_reclaim = now  # there may be more
        fresh = [d for d in taken if not await self._still_held(d)]
        if fresh:
            self.log.warning(
                "reclaimed entry %s of %s, idle for over %.0f s (its consumer died or hung): "
                "running it alone",
                fresh[0].entry_id,
                fresh[0].queue,
                self.config.reclaim_idle,
            )
            self.meters.reclaimed.inc(len(fresh))
        return fresh

    async def _still_held(self, delivery: Delivery) -> bool:
        """Whether an entry just taken over is left to the executor that still holds its
        task, or left because the database cannot tell."""
        task_id = Ledger(delivery).task_id
        if task_id is None:
            return False  # malformed: settling drops it
        try:
            age = await in_thread(self._held_elsewhere, task_id)
        except DatabaseUnavailable as exc:
            self.meters.db_errors.inc()
            self.log.warning(
                "entry %s of %s: cannot tell whether task %s is held elsewhere (%s): "
                "leaving it, to check again in %.0f s",
                delivery.entry_id,
                delivery.queue,
                task_id,
                exc,
                self.config.reclaim_idle,
            )
            await in_thread(self.broker.leave_to_holder, delivery)
            return True
        if age is None:
            return False
        for_task(self.log, {"id": task_id}).warning(
            "entry %s of %s: task %s still runs elsewhere (its row was stamped %.1f s ago; "
            "its executor cannot reach Redis?): leaving it to that executor",
            delivery.entry_id,
            delivery.queue,
            task_id,
            age,
        )
        self.meters.left_to_holder.inc()
        await in_thread(self.broker.leave_to_holder, delivery)
        return True

    def _held_elsewhere(self, task_id: str) -> float | None:
        """In a thread: how many seconds ago the unfinished task's row was stamped, if
        recently enough (half of reclaim_idle) that another executor still holds it."""
        stamped = self.store.lease_stamp(task_id)
        if stamped is None:
            return None
        age = self.clock.time() - stamped
        return age if age < self.config.reclaim_idle / 2 else None

    async def until_healthy(self) -> None:
        """While Redis or the database is down, probe it instead of fetching tasks.

        Fetching during an outage would only redeliver entries and count deliveries that
        never had a chance to run.

        A database outage ends when a task's statements get through again, not when the
        probe does: a read-only server or a full disk answers ``SELECT 1`` and still
        refuses every write. Once the probe answers, fetching resumes at the outage's
        back-off pace, and the first look-up that gets through ends the outage.
        """
        health = self.health
        while health.db.down:
            await trio.sleep(health.db.until_retry())
            try:
                await in_thread(self.store.ping)
            except DatabaseUnavailable as exc:
                health.db.failed(exc)
            else:
                self.replay = True
                break
        for outage in (health.dep, health.executor_errors):
            while outage.holds():
                await trio.sleep(outage.until_retry())
        while health.redis.down:
            # Paced also when the probe answers and the fetch after it fails (a relapse).
            await trio.sleep(health.redis.until_retry())
            try:
                created = await in_thread(self.broker.ensure_groups)
            except REDIS_REFUSED as exc:  # MISCONF, say
                health.redis.failed(exc)
            else:
                health.redis.recovered()
                self.replay = True
                if created:  # it came back without its data
                    self.on_queues_lost()

    async def recover_from(self, exc: RedisAnswer) -> None:
        if refuses_writes(exc):
            self.health.redis.failed(exc)  # the next round probes until it takes writes
        elif "NOGROUP" in str(exc):  # Redis lost its data under us (FLUSHALL, say)
            if await in_thread(self.broker.ensure_groups):
                self.on_queues_lost()
        else:  # NOPERM (an ACL changed under us), say: the operator's to fix; logged once
            await self.health.refused_reads.back_off(exc)
