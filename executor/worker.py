"""The executor: one trio nursery that fetches tasks from Redis Streams and runs them.

Structure (all in :meth:`Worker.run`)::

    services nursery: signals, heartbeats, cancel watcher, watchdog, metrics endpoint,
                      lost-task passes (executor.lost_tasks)
    └── drain scope (deadline set on SIGTERM)
        └── tasks nursery: one child per running task, at most max_concurrent_tasks
            (tasks fetched together whose type has a group handler: one child runs
            them as a group, then each settles in a child of its own)
            └── fetch scope (cancelled on SIGTERM): the collector, which replays this
                consumer's unacked entries, reclaims idle ones, then reads new ones
                (entries whose consumer died holding them: one at a time, each alone)

Every Redis and database call is synchronous and runs in a worker thread
(``trio.to_thread.run_sync``), never on the event loop. An outage of either never fails or
acknowledges a task: fetching pauses, the outage is logged once, and work resumes (with
this consumer's unacknowledged entries replayed first) when the dependency is back.
"""

from __future__ import annotations

import errno
import functools
import json
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import redis
import trio

from .handlers import (
    GroupHandler,
    HandlerRegistry,
    Outcome,
    SettledHook,
    TaskContext,
    TaskInputError,
)
from .instance_guard import refuse_a_live_twin
from .lost_tasks import HEARTBEATS_AFTER_LOSS, LostTasks
from .memtrace import MemoryTracer
from .metrics import Metrics, serve_metrics_on
from .outage import DependencyUnavailable, Outage
from .progress import Progress, message_lines, stamp
from .queue import wire
from .queue.broker import (
    REDIS_DENIED,
    REDIS_REFUSED,
    REDIS_UNAVAILABLE,
    Broker,
    Delivery,
    redis_error_text,
    refuses_writes,
)
from .sdnotify import Notifier, run_watchdog
from .settings import Settings, SettingsError
from .store.database import CANCELLED_MESSAGE, DatabaseUnavailable, TaskStore

T = TypeVar("T")

CANCEL_POLL_SECONDS = 0.2
"""How often running tasks' cancel flags are checked: cancellation lands within ~0.3 s."""
_PORT_ERRNOS = frozenset({errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL})
"""Errors taking the metrics port that are the config's: another process has the port, it
is privileged, or the address is not this machine's."""
SET_ASIDE_STREAK = 3
"""Entries set aside in a row (executor errors, no task settled between them) after which
the error is taken for the executor's own, not the tasks': fetching slows down to one
task at a time, after a growing pause, until one settles (see Worker._note_set_aside)."""
GATHER_SECONDS = 0.2
"""While a group of tasks runs, how long a fetch for fewer than every slot waits for the
group's slots: fetched together, the next tasks run as one group too, instead of
splitting into a group and tasks alone that never come back together."""
IDLE_BLOCK_MS = 1000
"""XREADGROUP BLOCK when idle: a new entry wakes the read at once, so this bounds only how
long a stop waits for the read to return."""


@dataclass
class Running:
    """A task being handled: its stream entry, its row, and the scope that cancels it."""

    delivery: Delivery
    task: dict[str, Any]
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    started: float = field(default_factory=time.monotonic)
    cancel_requested: bool = False


LookedUp = tuple[dict[str, Any] | None, bool]
"""A task's row (None if the database has none) and whether its cancel flag is set."""
Work = Callable[[], Awaitable[None]]


@dataclass
class Finished:
    """A task its handler has finished, to be recorded done (see Worker._finish)."""

    delivery: Delivery
    task: dict[str, Any]
    fields: dict[str, Any]
    progress_msg: str


class TaskNotInDatabase(LookupError):
    """A queue entry names a task the database does not have: the database was restored
    from an older backup, or the executor uses another database than the producer (a
    config mistake). Nothing to run, and not the task's fault: the entry is set aside to
    the dead-letter stream, not dropped, for `ragfleet dlq retry` once the task is there,
    and entries in a row like it pause fetching (see Worker._note_set_aside)."""


@dataclass
class Counters:
    done: int = 0
    failed: int = 0


class Worker:
    """One executor process: consumer ``task_executor_<host>_<instance>``."""

    def __init__(
        self,
        settings: Settings,
        instance: int,
        broker: Broker,
        store: TaskStore,
        registry: HandlerRegistry,
        *,
        notifier: Notifier | None = None,
        metrics_port: int | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        self.settings = settings
        self.config = settings.executor
        self.instance = instance
        self.broker = broker
        self.store = store
        self.registry = registry
        self.name = broker.consumer
        self.notifier = notifier or Notifier.from_environ({})
        self.metrics_port = metrics_port
        self.log = log or logging.getLogger(f"ragfleet.{self.name}")
        # An outage is over once the dependency has held for two heartbeats (see Outage).
        settle = 2 * self.config.heartbeat_interval
        self.redis_outage = Outage("Redis", self.log, settle=settle, describe=redis_error_text)
        self.db_outage = Outage("database", self.log, settle=settle)
        # Services only some tasks need (document store, embedding endpoint): nothing to
        # probe, so tasks are retried after a back-off until one gets through.
        self.dep_outage = Outage("a task dependency", self.log, cap=30.0, settle=settle)
        self.refused_reads = Outage(
            "Redis reads", self.log, first=1.0, cap=30.0, settle=settle, describe=redis_error_text
        )
        # Executor errors on task after task: the executor's bug, or something it depends
        # on that fails in a way not known as an outage (see _note_set_aside).
        self.executor_errors = Outage(
            "task processing", self.log, first=1.0, cap=60.0, settle=settle
        )
        self._set_aside_streak = 0
        self.counters = Counters()
        self.boot_at = wire.iso_now()
        self.pid = os.getpid()
        self.ip_address = ""
        self.running: dict[str, Running] = {}
        self.stopping = False
        self._held: dict[str, Delivery] = {}  # fetched and not yet settled, by entry id
        self._spare: list[Delivery] = []  # held, fetched beyond a probe's one: fetched next
        self._outage_deliveries: dict[str, int] = {}  # redeliveries caused by outages
        self._replay = True  # replay own unacked entries before reading new ones
        self._after_crash = False  # the last run died holding entries: replay them alone
        self._alone: set[str] = set()  # entries fetched to run alone, not settled (suspects)
        self._slots = trio.Semaphore(self.config.max_concurrent_tasks)
        self._groups_running = 0
        self._fetch_scope = trio.CancelScope()
        self._drain_scope = trio.CancelScope()
        self._tasks: trio.Nursery | None = None
        self._services: trio.Nursery | None = None
        self._queues_lost_at: int | None = None  # ms; set when Redis had no groups
        self._last_beat = time.monotonic()
        c = self.config
        self._reclaim_period = max(0.5, min(c.heartbeat_interval, c.reclaim_idle / 2))
        self._next_reclaim = 0.0
        self.memory = MemoryTracer(Path(self.config.state_dir) / "tracemalloc", self.log)
        self.metrics = Metrics()
        self._define_metrics()
        self.lost_tasks = LostTasks(self.broker, self.store, c, self.log, self.m_requeued.inc)

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until stopped (SIGTERM/SIGINT or :meth:`stop`), then drain and return."""
        listeners = await self._listen_for_metrics()
        await self._connect()
        async with trio.open_nursery() as services:
            self._services = services
            if self._queues_lost_at is not None:
                services.start_soon(self.lost_tasks.after_loss, self._queues_lost_at)
            services.start_soon(self.lost_tasks.sweep)
            await services.start(self._signals)  # handlers in place before READY is sent
            services.start_soon(self._heartbeats)
            services.start_soon(self._renew_leases)
            services.start_soon(self._cancel_watcher)
            services.start_soon(run_watchdog, self.notifier, self._alive)
            if listeners:
                await services.start(serve_metrics_on, listeners, self.metrics, self._health)
            self.notifier.ready(f"consuming as {self.name}")
            self.log.info(
                "started as %s (pid %d, up to %d tasks at once)",
                self.name,
                self.pid,
                self.config.max_concurrent_tasks,
            )
            task_status.started()
            await self._work()
            await self._note_clean_stop()
            services.cancel_scope.cancel()
        self.log.info(
            "stopped: %d done, %d failed since %s",
            self.counters.done,
            self.counters.failed,
            self.boot_at,
        )

    def stop(self) -> None:
        """Stop fetching and drain: running tasks get ``drain_timeout`` seconds to finish.

        A second call cancels them at once. Either way they stay unacknowledged, so they are
        delivered again (to this consumer after a restart, or to another after a reclaim).
        """
        if self.stopping:
            self.log.warning("stopping now: cancelling %d running tasks", len(self.running))
            self._drain_scope.cancel()
            return
        self.stopping = True
        self.notifier.stopping()
        self.log.info(
            "stopping: no new tasks; %d running get up to %.0f s to finish",
            len(self.running),
            self.config.drain_timeout,
        )
        self._fetch_scope.cancel()
        self._drain_scope.deadline = trio.current_time() + self.config.drain_timeout

    async def _note_clean_stop(self) -> None:
        """Drained (or gave up on the drain): what this worker leaves pending did not kill
        it, so the next run may replay it all at once. Not while entries it was to run
        alone are left (the crash replay was not over, or a reclaimed entry was cut
        short), nor if Redis is out of reach: the next run then replays one entry at a
        time, which is slower, never wrong."""
        if self._after_crash or self._alone or self.redis_outage.down:
            return
        with suppress(*REDIS_REFUSED):
            await self._redis(self.broker.note_clean_stop)

    async def _connect(self) -> None:
        """Create the consumer groups, send the first heartbeat, ask for cancels and read
        this consumer's clean-stop mark, waiting for Redis if it is not up yet.

        That is every kind of Redis command the worker uses (streams, sets, sorted sets,
        strings, scripts, hashes): Redis refusing one of them (an ACL without it) is
        raised, for the executor to stop with exit 2, and not waited out as an outage
        that would never end.
        """
        while True:
            try:
                if await self._redis(self.broker.ensure_groups):
                    self.note_queues_lost()
                self.ip_address = await trio.to_thread.run_sync(self.broker.local_address)
                await refuse_a_live_twin(
                    self.broker,
                    self.name,
                    address=self.ip_address,
                    interval=self.config.heartbeat_interval,
                    timeout=self.config.worker_heartbeat_timeout,
                )
                await self._redis(self._beat, self._heartbeat(), [])
                await self._redis(self.broker.cancelled, ["-"])
                self._after_crash = not await self._redis(self.broker.take_clean_stop)
                return
            except REDIS_DENIED:
                raise
            except REDIS_REFUSED as exc:  # MISCONF, say
                await self.redis_outage.back_off(exc)

    async def _listen_for_metrics(self) -> list[trio.SocketListener]:
        """The metrics port, taken first: one in use (by another service, or this instance
        already running) or not ours to take is the config's to fix, a SettingsError."""
        if self.metrics_port is None:
            return []
        try:
            return await trio.open_tcp_listeners(self.metrics_port, host="0.0.0.0")
        except (OSError, OverflowError) as exc:
            if isinstance(exc, OSError) and exc.errno not in _PORT_ERRNOS:
                raise  # a shortage of the machine's (descriptors, memory): a restart mends it
            reason = exc.strerror if isinstance(exc, OSError) else "no such port"
            raise SettingsError(
                f"cannot serve metrics on port {self.metrics_port} (executor.metrics_port_base "
                f"+ instance {self.instance}): {reason}"
            ) from None

    async def _work(self) -> None:
        with self._drain_scope:
            async with trio.open_nursery() as tasks:
                self._tasks = tasks
                with self._fetch_scope:
                    await self._collect()
        if self._drain_scope.cancelled_caught:
            self.log.warning("drain timed out; unfinished tasks will be delivered again")

    async def _signals(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        signals = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)
        with trio.open_signal_receiver(*signals) as received:
            task_status.started()
            async for signum in received:
                if signum in (signal.SIGTERM, signal.SIGINT):
                    self.stop()
                else:
                    await self.memory.handle_signal(signum)

    # -- fetching ----------------------------------------------------------------------------

    async def _collect(self) -> None:
        """Fetch as many tasks as there are free slots; block on Redis when there are none."""
        while True:
            await self._until_healthy()
            slots = await self._take_slots()
            if self._paused():  # an outage began, or a probe failed, while we waited
                self._give_back(slots)
                continue
            probing = self.executor_errors.down
            try:
                batch, alone = await self._fetch(1 if probing else slots)
            except REDIS_UNAVAILABLE as exc:
                self._give_back(slots)
                self.redis_outage.failed(exc)
                self.m_redis_errors.inc()
                continue
            except redis.ResponseError as exc:
                self._give_back(slots)
                await self._recover_from(exc)
                continue
            self.redis_outage.recovered()
            self.refused_reads.recovered()
            if not batch and not self._held:  # nothing to try the database with; it answers
                self.db_outage.recovered()
            with self._holding(batch):
                if probing and len(batch) > 1:  # a woken read returned one more than asked
                    batch, self._spare = batch[:1], batch[1:]
                if (alone or probing) and len(batch) == 1:
                    (delivery,) = batch
                    if alone:  # from now: a stop writes no clean mark
                        self._alone.add(delivery.entry_id)
                    self._start_alone(delivery, await self._take_every_slot(slots))
                    continue
                for _ in range(len(batch) - slots):
                    await self._slots.acquire()  # a woken read may return one more than asked
                self._start(batch)
                self._give_back(slots - len(batch))

    async def _fetch(self, slots: int) -> tuple[list[Delivery], bool]:
        """Up to *slots* deliveries, and whether the one fetched must run alone.

        Entries whose consumer died holding them (this consumer's last run, if it did not
        stop cleanly, or another consumer's, reclaimed) may hold the task that killed it.
        They are fetched one at a time and run alone: if one kills this worker too, the
        delivery it costs is charged to it, not to every entry the worker held, so
        max_deliveries dead-letters the poison task and nothing beside it.

        An entry a probe's read returned beyond the one asked for comes first: a probe
        runs one task alone.
        """
        if self._spare:
            batch, self._spare = self._spare[:slots], self._spare[slots:]
            return batch, False
        if self._replay:
            alone = self._after_crash
            want = 1 if alone else slots
            batch = await self._redis(self.broker.replay_own, set(self._held), want)
            if len(batch) < want:
                self._replay = self._after_crash = False
            if batch:
                self.log.info(
                    "replaying %s unacknowledged entries of %s",
                    "one of the" if alone else len(batch),
                    self.name + (" alone (its last run did not stop cleanly)" if alone else ""),
                )
                return batch, alone
        if reclaimed := await self._reclaim_due():
            return reclaimed, True
        # Abandoned on cancel: a stop must not wait for the blocking read to time out.
        read = functools.partial(self.broker.read_new, slots, IDLE_BLOCK_MS)
        return await trio.to_thread.run_sync(read, abandon_on_cancel=True), False

    async def _reclaim_due(self) -> list[Delivery]:
        """Every reclaim period: take over an entry that a dead or stuck consumer left idle
        for ``reclaim_idle`` (XAUTOCLAIM), one at a time (see _fetch); while there are
        such entries, the next is taken as soon as this one is started. Entries this
        worker holds are kept fresh by its heartbeats, so they are never idle that long
        while it lives.

        Except across a Redis outage: no heartbeat could refresh an entry meanwhile, so
        after one longer than ``reclaim_idle`` every entry looks abandoned. Nothing is
        taken over until Redis has been back for 1.5 heartbeat intervals, by which time
        every live holder has refreshed its entries; else their running tasks would run
        a second time here.

        And except from a holder cut off from Redis alone: an entry whose task's row it
        still stamps is left to it (see :meth:`_still_held`)."""
        now = trio.current_time()
        grace = HEARTBEATS_AFTER_LOSS * self.config.heartbeat_interval
        if now < self._next_reclaim or self.redis_outage.up_for() < grace:
            return []
        self._next_reclaim = now + self._reclaim_period
        idle_ms = int(self.config.reclaim_idle * 1000)
        batch = await self._redis(self.broker.reclaim, idle_ms, 1)
        taken = [d for d in batch if d.entry_id not in self._held]
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
            self.m_reclaimed.inc(len(fresh))
        return fresh

    async def _still_held(self, delivery: Delivery) -> bool:
        """Whether an entry just taken over is left to the executor that still holds its
        task (see :meth:`_held_elsewhere`), or left because the database cannot tell."""
        try:
            task_id = wire.decode_message(delivery.fields)["id"]
        except wire.MalformedMessage:
            return False  # _process drops it
        try:
            age = await self._db(self._held_elsewhere, task_id)
        except DatabaseUnavailable as exc:
            self.m_db_errors.inc()
            self.log.warning(
                "entry %s of %s: cannot tell whether task %s is held elsewhere (%s): "
                "leaving it, to check again in %.0f s",
                delivery.entry_id,
                delivery.queue,
                task_id,
                exc,
                self.config.reclaim_idle,
            )
            await self._redis(self.broker.leave_to_holder, delivery)
            return True
        if age is None:
            return False
        await self._leave_to_holder(delivery, task_id, age)
        return True

    async def _take_slots(self) -> int:
        """Every free slot, once one is; while a group runs, the group's too, if it ends
        within GATHER_SECONDS. While executor errors hold, every slot, once no task runs:
        the next task is a probe, run alone (see _note_set_aside)."""
        await self._slots.acquire()
        if self.executor_errors.down:
            return await self._take_every_slot(1)
        taken = 1 + self._take_free_slots()
        if not self._groups_running:
            return taken
        try:
            with trio.move_on_after(GATHER_SECONDS):
                while taken < self.config.max_concurrent_tasks:
                    await self._slots.acquire()
                    taken += 1
        except BaseException:
            self._give_back(taken)
            raise
        return taken

    def _take_free_slots(self) -> int:
        taken = 0
        while True:
            try:
                self._slots.acquire_nowait()
            except trio.WouldBlock:
                return taken
            taken += 1

    async def _take_every_slot(self, held: int) -> int:
        """Wait until no task runs: the *held* slots and every other one."""
        taken = 0
        try:
            for _ in range(self.config.max_concurrent_tasks - held):
                await self._slots.acquire()
                taken += 1
        except BaseException:
            self._give_back(held + taken)
            raise
        return held + taken

    def _give_back(self, slots: int) -> None:
        for _ in range(slots):
            self._slots.release()

    @contextmanager
    def _holding(self, batch: list[Delivery]) -> Iterator[None]:
        """Hold *batch* from its fetch until it settles: the heartbeats keep held entries
        fresh and name their tasks. A delivery can wait a long time for its slots (one
        to run alone waits for every running task to finish); without that, another
        worker would take its entry over meanwhile, and both would run it. A wait cut
        short (a stop) lets go of the batch, which is delivered again."""
        for delivery in batch:
            self._held[delivery.entry_id] = delivery
        try:
            yield
        except BaseException:
            for delivery in batch:
                self._held.pop(delivery.entry_id, None)
            raise

    def _paused(self) -> bool:
        """Whether an outage says to wait before the next fetch (see _until_healthy)."""
        return self.redis_outage.down or any(
            outage.holds() for outage in (self.db_outage, self.dep_outage, self.executor_errors)
        )

    def _start(self, batch: list[Delivery]) -> None:
        """Settle each delivery in a child of its own, except those whose message names a
        type with a group handler: two or more of them settle together."""
        assert self._tasks is not None
        together = [delivery for delivery in batch if self._may_group(delivery)]
        if len(together) > 1:
            self._tasks.start_soon(self._settle_batch, together)
        else:
            together = []
        for delivery in batch:
            if delivery not in together:
                self._tasks.start_soon(self._settle, delivery)

    def _may_group(self, delivery: Delivery) -> bool:
        """Whether the entry's message names a task type that has a group handler (its row
        has the last word: see :meth:`_group_of`)."""
        try:
            message = wire.decode_message(delivery.fields)
        except wire.MalformedMessage:
            return False
        return self.registry.group(message.get("task_type") or "") is not None

    def _start_alone(self, delivery: Delivery, slots: int) -> None:
        """Run *delivery* holding all *slots*: nothing else starts until it settles."""
        assert self._tasks is not None
        self._tasks.start_soon(self._settle, delivery, slots)

    async def _until_healthy(self) -> None:
        """While Redis or the database is down, probe it instead of fetching tasks.

        Fetching during an outage would only redeliver entries and count deliveries that
        never had a chance to run.

        A database outage ends when a task's statements get through again, not when the
        probe does: a read-only server or a full disk answers ``SELECT 1`` and still
        refuses every write. Once the probe answers, fetching resumes at the outage's
        back-off pace, and the first look-up that gets through ends the outage.
        """
        while self.db_outage.down:
            await trio.sleep(self.db_outage.until_retry())
            try:
                await self._db(self.store.ping)
            except DatabaseUnavailable as exc:
                self.db_outage.failed(exc)
            else:
                self._replay = True
                break
        for outage in (self.dep_outage, self.executor_errors):
            while outage.holds():
                await trio.sleep(outage.until_retry())
        while self.redis_outage.down:
            # Paced also when the probe answers and the fetch after it fails (a relapse).
            await trio.sleep(self.redis_outage.until_retry())
            try:
                created = await self._redis(self.broker.ensure_groups)
            except REDIS_REFUSED as exc:  # MISCONF, say
                self.redis_outage.failed(exc)
            else:
                self.redis_outage.recovered()
                self._replay = True
                if created:  # it came back without its data
                    self.note_queues_lost()

    def note_queues_lost(self) -> None:
        """Redis had no consumer group: it lost its data (a restart without persistence, a
        FLUSHALL) or is new. The groups are back; the tasks it held are re-enqueued from
        the database after a grace period (see LostTasks.after_loss)."""
        self._queues_lost_at = int(time.time() * 1000)
        self.log.warning(
            "Redis had no consumer groups (it lost its data, or is new): created them; "
            "unfinished tasks that no queue holds are re-enqueued in %.0f s",
            self.lost_tasks.delay_after_loss,
        )
        if self._services is not None:
            self._services.start_soon(self.lost_tasks.after_loss, self._queues_lost_at)

    async def _recover_from(self, exc: redis.ResponseError) -> None:
        if refuses_writes(exc):
            self.redis_outage.failed(exc)  # the next round probes until it takes writes
        elif "NOGROUP" in str(exc):  # Redis lost its data under us (FLUSHALL, say)
            if await self._redis(self.broker.ensure_groups):
                self.note_queues_lost()
        else:  # NOPERM (an ACL changed under us), say: the operator's to fix; logged once
            await self.refused_reads.back_off(exc)

    # -- running one delivery ----------------------------------------------------------------

    async def _settle(self, delivery: Delivery, slots: int = 1, work: Work | None = None) -> None:
        """Process one delivery (or do *work*, what is left of it after its group) and
        release its slots, whatever happens."""
        try:
            await (work or functools.partial(self._process, delivery))()
        except Exception as exc:
            if _is_outage(exc):
                await self._note_outage(delivery, exc)
                return
            await self._set_aside(delivery, exc)  # outside any handler: a bug, not the task's
            self._note_set_aside(exc)
        else:
            self._note_settled()
        finally:
            self._let_go(delivery, slots)
        self._forget(delivery)

    def _note_settled(self) -> None:
        self._set_aside_streak = 0
        self.executor_errors.recovered()

    def _let_go(self, delivery: Delivery, slots: int) -> None:
        self._held.pop(delivery.entry_id, None)
        self._give_back(slots)

    def _forget(self, delivery: Delivery) -> None:
        """Settled: the entry is not left pending."""
        self._alone.discard(delivery.entry_id)
        self._outage_deliveries.pop(delivery.entry_id, None)

    # -- running tasks fetched together ------------------------------------------------------

    async def _settle_batch(self, batch: list[Delivery]) -> None:
        """Settle deliveries fetched together, each holding one slot. One hop looks them all
        up and begins those that will run; tasks of a type with a group handler run as a
        group (see :meth:`_run_group`), and every other delivery settles on its own, as if
        fetched alone. Each ends in a :meth:`_settle` of its own; after an error of ours
        on the way, every delivery not handed over yet settles on its own from the start,
        and the worker goes on."""
        left = {delivery.entry_id: delivery for delivery in batch}  # not handed over yet
        try:
            await self._group_and_run(batch, left)
        except Exception as exc:
            self.log.error(
                "settling %d entries together failed (%s: %s): settling each on its own",
                len(left),
                type(exc).__name__,
                exc,
                exc_info=exc,
            )
            for delivery in list(left.values()):
                self._hand_over(delivery, functools.partial(self._process, delivery), left)
        finally:
            for delivery in left.values():  # cut short (a stop): delivered again
                self._let_go(delivery, 1)

    async def _group_and_run(self, batch: list[Delivery], left: dict[str, Delivery]) -> None:
        counts = [self._deliveries(delivery) for delivery in batch]
        try:
            looked_up = await self._db(self._look_up_all, batch, counts)
        except Exception:  # an outage, say: each delivery meets it again on its own
            looked_up = [None] * len(batch)
        else:
            self.db_outage.recovered()
        groups: dict[str, list[tuple[Delivery, dict[str, Any]]]] = {}
        for delivery, found, count in zip(batch, looked_up, counts, strict=True):
            task_type = self._group_of(found, count, groups) if found else None
            if task_type is None:
                work = functools.partial(self._process, delivery, found)
                self._hand_over(delivery, work, left)
            else:
                assert found and found[0]
                groups.setdefault(task_type, []).append((delivery, found[0]))
        for task_type, members in groups.items():
            handler = self.registry.group(task_type)
            assert handler is not None
            await self._run_group(handler, members, left)

    def _look_up_all(self, batch: list[Delivery], counts: list[int]) -> list[LookedUp | None]:
        """In a thread: :meth:`_look_up` for each delivery (None for a malformed one), with
        the cancel flags read in one round trip and the tasks begun in one transaction."""
        ids: list[str | None] = []
        for delivery in batch:
            try:
                ids.append(wire.decode_message(delivery.fields)["id"])
            except wire.MalformedMessage:
                ids.append(None)
        tasks = [self.store.get_task(task_id) if task_id else None for task_id in ids]
        cancelled = self.broker.cancelled([task["id"] for task in tasks if task])
        with self.store.transaction():
            for task, count in zip(tasks, counts, strict=True):
                if task and task["id"] not in cancelled:
                    self._begin(task, count)
        return [
            None if task_id is None else (task, bool(task and task["id"] in cancelled))
            for task_id, task in zip(ids, tasks, strict=True)
        ]

    def _group_of(
        self, found: LookedUp, deliveries: int, groups: dict[str, list[tuple[Delivery, Any]]]
    ) -> str | None:
        """The task type whose group handler runs this looked-up task, or None: it is
        not going to run, its type has none, or the group has it already (two entries of
        one task: the second settles on its own, as it would have)."""
        task, cancelled = found
        if task is None or cancelled or not self._will_run(task, deliveries):
            return None
        task_type = task.get("task_type") or ""
        members = groups.get(task_type, [])
        if self.registry.group(task_type) is None or any(t["id"] == task["id"] for _, t in members):
            return None
        return task_type

    async def _run_group(
        self,
        handler: GroupHandler,
        members: list[tuple[Delivery, dict[str, Any]]],
        left: dict[str, Delivery],
    ) -> None:
        """Run begun tasks of one type through their group handler, record the finished
        ones done in one hop, and hand each of the others over to a settle of its own:
        failed, cancelled, or run alone by the type's handler.

        If the handler raises, an outage leaves every task for a retry (each notes it as
        its own); any other error is logged and every task runs alone, where the error
        meets only its own."""
        started = time.monotonic()
        pairs = [(delivery, self._join_group(delivery, task)) for delivery, task in members]
        self._groups_running += 1
        self.m_grouped.inc(len(members))
        self.log.debug(
            "running %d tasks as a group: %s", len(members), [t["id"] for _, t in members]
        )
        try:
            error = await self._handle_group(handler, pairs)
            if error is not None:
                for delivery, _ in pairs:
                    self._hand_over(delivery, functools.partial(_raise, error), left)
                return
            finished = [
                self._done(delivery, ctx, started)
                for delivery, ctx in pairs
                if ctx.outcome is Outcome.DONE
            ]
            await self._finish_group(finished, left)
            for delivery, ctx in pairs:
                if ctx.outcome is not Outcome.DONE:
                    self._hand_over(delivery, self._rest_of(delivery, ctx), left)
        finally:
            self._groups_running -= 1

    def _join_group(self, delivery: Delivery, task: dict[str, Any]) -> TaskContext:
        running = Running(delivery, task)
        self.running[task["id"]] = running
        self.m_in_flight.set(len(self.running))
        progress = Progress(task, self._db, self.store.set_progress)
        return TaskContext(
            task, progress, self.settings, cancel_requested=lambda: running.cancel_requested
        )

    async def _handle_group(
        self, handler: GroupHandler, pairs: list[tuple[Delivery, TaskContext]]
    ) -> Exception | None:
        """Await the group *handler*; return the outage it raised, if it did."""
        ctxs = [ctx for _, ctx in pairs]
        try:
            await handler(ctxs)
        except trio.Cancelled:
            with trio.CancelScope(shield=True):  # side by side, as tasks run alone would
                async with trio.open_nursery() as nursery:
                    for ctx in ctxs:
                        nursery.start_soon(self._note_interrupted, ctx.progress)
            raise
        except Exception as exc:
            if _is_outage(exc):
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
                self.running.pop(ctx.task["id"], None)
            self.m_in_flight.set(len(self.running))
        return None

    async def _finish_group(self, finished: list[Finished], left: dict[str, Delivery]) -> None:
        """Record *finished* done in one hop. If that fails, an outage leaves them for a
        retry; after any other error each is recorded on its own."""
        if not finished:
            return
        try:
            await self._db(self._finish, finished)
        except Exception as exc:
            for item in finished:
                work = (
                    functools.partial(_raise, exc)
                    if _is_outage(exc)
                    else functools.partial(self._finish_alone, item)
                )
                self._hand_over(item.delivery, work, left)
            return
        self._count_done(finished)
        self._note_settled()
        for item in finished:  # all at once: the next fetch has all their slots
            del left[item.delivery.entry_id]
            self._let_go(item.delivery, 1)
            self._forget(item.delivery)

    def _rest_of(self, delivery: Delivery, ctx: TaskContext) -> Work:
        """What is left to do for a member of a group that did not finish it."""
        if isinstance(ctx.outcome, Exception):
            return functools.partial(self._fail, delivery, ctx.progress, ctx.outcome)
        if ctx.outcome is Outcome.CANCELLED:
            return functools.partial(self._end_cancelled, delivery, ctx.progress)
        ctx.task["progress_msg"] = ctx.progress.text  # run alone, from the lines so far
        return functools.partial(self._run, delivery, ctx.task)

    def _hand_over(self, delivery: Delivery, work: Work, left: dict[str, Delivery]) -> None:
        """Settle *delivery* in a child of its own, by *work*; it takes its slot along."""
        assert self._tasks is not None
        del left[delivery.entry_id]
        self._tasks.start_soon(self._settle, delivery, 1, work)

    def _note_set_aside(self, exc: Exception) -> None:
        """Entries set aside one after another mean an error every task meets: setting
        each aside at full speed would move the whole queue to the dead-letter stream.
        From the SET_ASIDE_STREAK-th on, fetching pauses (1 s, doubling each time the task
        run alone is set aside too, up to a minute) and then runs one task alone, until
        one settles. The tasks already running when it trips meet the error too: up to
        SET_ASIDE_STREAK + max_concurrent_tasks - 1 are set aside before the pause."""
        self._set_aside_streak += 1
        if self._set_aside_streak >= SET_ASIDE_STREAK:
            self.executor_errors.failed(
                RuntimeError(
                    f"{self._set_aside_streak} tasks in a row set aside by executor errors, "
                    f"the last {type(exc).__name__}: {exc}; one task at a time from now"
                )
            )

    async def _note_outage(self, delivery: Delivery, exc: Exception) -> None:
        """The delivery met an outage: the entry stays pending and is replayed when it ends.

        Its next delivery is the outage's doing, not the task's: it must not count against
        max_deliveries. This process remembers that, and so does Redis (for an executor
        started before the entry comes back, or another that reclaims it) unless Redis is
        the outage."""
        outage = self._outage_of(exc)
        outage.failed(exc)
        if isinstance(exc, DatabaseUnavailable):
            self.m_db_errors.inc()
        elif not isinstance(exc, DependencyUnavailable):
            self.m_redis_errors.inc()
        self._replay = True
        self._outage_deliveries[delivery.entry_id] = self._outage_count(delivery) + 1
        if outage is self.redis_outage:
            return  # no use trying (a partitioned Redis would hold the slot for a timeout)
        with suppress(*REDIS_REFUSED):
            await self._redis(self.broker.note_outage, delivery)

    def _outage_count(self, delivery: Delivery) -> int:
        """How many of the entry's deliveries an outage cut short, as far as we know."""
        return max(delivery.outage_deliveries, self._outage_deliveries.get(delivery.entry_id, 0))

    def _outage_of(self, exc: BaseException) -> Outage:
        if isinstance(exc, DatabaseUnavailable):
            return self.db_outage
        if isinstance(exc, DependencyUnavailable):
            return self.dep_outage
        return self.redis_outage

    async def _process(self, delivery: Delivery, looked_up: LookedUp | None = None) -> None:
        """Run or settle one delivery; *looked_up* if its group's hop has looked it up."""
        try:
            message = wire.decode_message(delivery.fields)
        except wire.MalformedMessage as exc:
            self.log.error("dropping entry %s of %s: %s", delivery.entry_id, delivery.queue, exc)
            self.m_malformed.inc()
            await self._redis(self.broker.ack, delivery)
            return
        deliveries = self._deliveries(delivery)
        if looked_up is None:
            looked_up = await self._db(self._look_up, message["id"], deliveries)
        task, cancelled = looked_up
        self.db_outage.recovered()
        if task is None:
            raise TaskNotInDatabase(
                f"task {message['id']} is not in the database (restored from an older "
                "backup, or this executor uses another database than the producer)"
            )
        if reason := self._not_runnable(task):
            self.log.warning("acking entry %s without running it: %s", delivery.entry_id, reason)
            await self._redis(self.broker.ack, delivery)
            return
        if deliveries > self.config.max_deliveries:
            await self._dead_letter(delivery, task)
        elif cancelled:
            await self._record_cancelled(Progress(task, self._db, self.store.set_progress))
            await self._redis(self.broker.ack, delivery)
            await self._settled(task)
        else:
            await self._run(delivery, task)

    def _deliveries(self, delivery: Delivery) -> int:
        """The entry's deliveries that count against max_deliveries (not an outage's)."""
        return delivery.deliveries - self._outage_count(delivery)

    def _look_up(self, task_id: str, deliveries: int) -> LookedUp:
        """In a thread: the task's row and whether its cancel flag is set. A task that is
        going to run is begun here too (see :meth:`_begin`): one hop, not two."""
        task = self.store.get_task(task_id)
        cancelled = bool(task and self.broker.cancelled([task_id]))
        if task and not cancelled:
            self._begin(task, deliveries)
        return task, cancelled

    def _begin(self, task: dict[str, Any], deliveries: int) -> None:
        """In a thread: if *task* is going to run, record it begun (begin_at, retry count,
        its "received" line)."""
        if self._will_run(task, deliveries):
            received = stamp("Task has been received.", task)
            task["progress_msg"] = "\n".join([*message_lines(task["progress_msg"]), received])
            self.store.begin_task(task["id"], deliveries - 1, task["progress_msg"])

    def _held_elsewhere(self, task_id: str) -> float | None:
        """In a thread, for an entry just taken over: how many seconds ago the task's row
        was stamped, if recently enough that another executor still holds it, else None.

        An executor renews the stamp of the tasks it holds every heartbeat, in the database
        (:meth:`_renew_leases`). Cut off from Redis alone, it cannot keep their entries
        fresh, so they look abandoned, but it goes on running the tasks; taken over, they
        would run twice at once. (Nothing else changes the row of a task whose entry has
        been idle that long.) A dead executor's last stamp is at least ``reclaim_idle``
        less one heartbeat old when its entries are taken over; a live one's, about a
        heartbeat: half of ``reclaim_idle`` tells them apart (configc keeps reclaim_idle
        above six heartbeats). Host clocks must agree to well within that."""
        task = self.store.get_task(task_id)
        if task is None or not 0 <= task["progress"] < 1:
            return None
        age = time.time() - (task["update_time"] or 0) / 1000
        return age if age < self.config.reclaim_idle / 2 else None

    async def _leave_to_holder(self, delivery: Delivery, task_id: str, age: float) -> None:
        """Neither run nor ack an entry whose task another executor runs: hand it to
        wire.HELD_ELSEWHERE. It is taken over again after ``reclaim_idle``: then acked if
        the task has finished, run if its executor has stopped renewing its stamp, or left
        again. This delivery does not count against max_deliveries."""
        self.log.warning(
            "entry %s of %s: task %s still runs elsewhere (its row was stamped %.1f s ago; "
            "its executor cannot reach Redis?): leaving it to that executor",
            delivery.entry_id,
            delivery.queue,
            task_id,
            age,
        )
        self.m_left_to_holder.inc()
        await self._redis(self.broker.leave_to_holder, delivery)

    def _will_run(self, task: dict[str, Any], deliveries: int) -> bool:
        return (
            self._not_runnable(task) is None
            and deliveries <= self.config.max_deliveries
            and self.registry.get(task.get("task_type") or "") is not None
        )

    def _not_runnable(self, task: dict[str, Any]) -> str | None:
        task_id = task["id"]
        if task["progress"] >= 1:
            return f"task {task_id} is already done"
        if task["progress"] < 0:
            return f"task {task_id} has already failed or been cancelled"
        return None

    async def _run(self, delivery: Delivery, task: dict[str, Any]) -> None:
        """Run a task that :meth:`_look_up` has begun (or fail it: no handler)."""
        task_id = task["id"]
        progress = Progress(task, self._db, self.store.set_progress)
        handler = self.registry.get(task.get("task_type") or "")
        if handler is None:
            known = ", ".join(
                repr(t) + (" (ingestion)" if not t else "") for t in self.registry.types()
            )
            await self._fail(
                delivery,
                progress,
                TaskInputError(
                    f"no handler for task type {task.get('task_type')!r} (known: {known})"
                ),
            )
            return
        running = Running(delivery, task)
        self.running[task_id] = running
        self.m_in_flight.set(len(self.running))
        ctx = TaskContext(task, progress, self.settings)
        try:
            with running.scope:
                await handler(ctx)
        except trio.Cancelled:
            await self._note_interrupted(progress)
            raise
        except Exception as exc:
            if _is_outage(exc):
                raise  # not the task's fault: _settle leaves it for a retry
            await self._fail(delivery, progress, exc)
            return
        finally:
            del self.running[task_id]
            self.m_in_flight.set(len(self.running))
        if running.scope.cancelled_caught:
            await self._end_cancelled(delivery, progress)
            return
        await self._finish_alone(self._done(delivery, ctx, running.started))

    async def _end_cancelled(self, delivery: Delivery, progress: Progress) -> None:
        await self._record_cancelled(progress)
        await self._redis(self.broker.ack, delivery)
        await self._settled(progress.task)

    def _done(self, delivery: Delivery, ctx: TaskContext, started: float) -> Finished:
        seconds = time.monotonic() - started
        text = ctx.progress.note(f"Task done ({seconds:.2f}s)")
        return Finished(delivery, ctx.task, {**ctx.done_fields, "process_duration": seconds}, text)

    async def _finish_alone(self, finished: Finished) -> None:
        await self._db(self._finish, [finished])
        self._count_done([finished])

    def _count_done(self, finished: list[Finished]) -> None:
        self.dep_outage.recovered()
        for item in finished:
            self.counters.done += 1
            self.m_done.inc()
            self.m_duration.observe(item.fields["process_duration"])

    def _finish(self, finished: list[Finished]) -> None:
        """In a thread: record the tasks done with their fields and run their on_settled
        hooks in one transaction, then ack their entries in one round trip (one hop, not
        three per task: a short task's cost is mostly these round trips).

        If the ack fails, the entries are delivered again and acked without a re-run, since
        the tasks are already done.
        """
        with self.store.transaction():
            for item in finished:
                task = item.task
                self.store.set_progress(task["id"], 1.0, item.progress_msg, **item.fields)
                if hook := self.registry.on_settled(task.get("task_type") or ""):
                    self._run_settled_hook(hook, task)
        self.broker.ack_all([item.delivery for item in finished])

    async def _settled(self, task: dict[str, Any]) -> None:
        if hook := self.registry.on_settled(task.get("task_type") or ""):
            await self._db(self._run_settled_hook, hook, task)

    def _run_settled_hook(self, hook: SettledHook, task: dict[str, Any]) -> None:
        """In a thread: the task type's on_settled *hook*; its failure is logged, never the
        task's."""
        try:
            hook(task)
        except Exception:
            self.log.exception("on_settled hook of task %s failed", task["id"])

    async def _fail(self, delivery: Delivery, progress: Progress, exc: Exception) -> None:
        text = str(exc) if isinstance(exc, TaskInputError) else f"{type(exc).__name__}: {exc}"
        self.log.error(
            "task %s failed: %s",
            progress.task["id"],
            text,
            exc_info=not isinstance(exc, TaskInputError),
        )
        await progress(-1, f"[Exception]: {text}")
        self.counters.failed += 1
        self.m_failed.inc()
        await self._redis(self.broker.ack, delivery)
        await self._settled(progress.task)

    async def _record_cancelled(self, progress: Progress) -> None:
        self.log.info("task %s cancelled", progress.task["id"])
        await progress(-1, CANCELLED_MESSAGE)
        self.counters.failed += 1  # upstream counts cancelled tasks as failed
        self.m_cancelled.inc()

    async def _dead_letter(self, delivery: Delivery, task: dict[str, Any]) -> None:
        reason = (
            f"Task is abandoned after {self.config.max_deliveries} deliveries "
            f"(max_deliveries={self.config.max_deliveries}); see `ragfleet dlq list`."
        )
        self.log.error("task %s dead-lettered: %s", task["id"], reason)
        progress = Progress(task, self._db, self.store.set_progress)
        await progress(-1, f"[ragfleet]: {reason}")
        await self._redis(self.broker.dead_letter, delivery, reason)
        self.counters.failed += 1
        self.m_dead.inc()
        await self._settled(task)

    async def _set_aside(self, delivery: Delivery, exc: Exception) -> None:
        """An error outside the task's handler that is no outage (a bug in the executor):
        move the entry to the dead-letter stream with the error and fail the task, so this
        worker and its other tasks carry on. ``ragfleet dlq retry`` runs it again once the
        cause is fixed. If Redis refuses, the entry stays pending and comes back."""
        reason = (
            f"[ragfleet]: executor error: {type(exc).__name__}: {exc}; see `ragfleet dlq list`."
        )
        self.log.error(
            "entry %s of %s set aside: %s",
            delivery.entry_id,
            delivery.queue,
            reason,
            exc_info=None if isinstance(exc, TaskNotInDatabase) else exc,
        )
        try:
            await self._redis(self.broker.dead_letter, delivery, reason)
        except REDIS_REFUSED as error:
            self.log.error("entry %s stays pending: %s", delivery.entry_id, error)
            return
        self.counters.failed += 1
        self.m_dead.inc()
        try:
            task = await self._db(self.store.get_task, wire.decode_message(delivery.fields)["id"])
            if task is not None and 0 <= task["progress"] < 1:  # not if it settled already
                await Progress(task, self._db, self.store.set_progress)(-1, reason)
                await self._settled(task)
        except Exception as error:  # the same bug may stop this too: the DLQ has the entry
            self.log.error("task of entry %s not marked failed: %s", delivery.entry_id, error)

    async def _note_interrupted(self, progress: Progress) -> None:
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

    # -- heartbeats and cancellation ---------------------------------------------------------

    def _alive(self) -> bool:
        """For the systemd watchdog: the heartbeat loop has come round recently.

        A blocked event loop stops the pings by itself; this also catches a heartbeat stuck
        in a call that never returns.
        """
        limit = max(30.0, 3 * self.config.heartbeat_interval)
        return time.monotonic() - self._last_beat < limit

    async def _heartbeats(self) -> None:
        """Every heartbeat_interval: report, keep running entries fresh, clean up the dead."""
        while True:
            self._last_beat = time.monotonic()
            try:
                entries = list(self._held.values())
                await self._redis(self._beat, self._heartbeat(), entries)
                self.redis_outage.recovered()
            except REDIS_REFUSED as exc:
                self.redis_outage.failed(exc)
            await trio.sleep(self.config.heartbeat_interval)

    async def _renew_leases(self) -> None:
        """Every heartbeat_interval: stamp the rows of the tasks this executor holds
        (running, or fetched and waiting for their slots) in the database, which tells an
        executor that takes over their entries that they are held here, even when this one
        cannot reach Redis (see :meth:`_held_elsewhere`)."""
        while True:
            await trio.sleep(self.config.heartbeat_interval)
            if not self._held:
                continue
            try:
                await self._db(self.store.renew_leases, list(self._current_tasks()))
            except DatabaseUnavailable:
                pass  # the running tasks meet it too, and wait it out
            except Exception:
                self.log.exception("could not renew the held tasks' stamps")

    def _beat(self, heartbeat: dict[str, Any], held: list[Delivery]) -> None:
        """In a thread: the heartbeat's Redis round trips, then the keep-alive and cleanup."""
        heartbeat["pending"], heartbeat["lag"] = self.broker.queue_info()
        now = time.time()
        self.broker.heartbeat(json.dumps(heartbeat, default=str), now)
        self.broker.keep_alive(held)
        removed = self.broker.remove_expired_executors(self.config.worker_heartbeat_timeout, now)
        for name in removed:
            self.log.warning(
                "removed executor %s: no heartbeat for %.0f s",
                name,
                self.config.worker_heartbeat_timeout,
            )

    def _heartbeat(self) -> dict[str, Any]:
        """Upstream's heartbeat fields; pending and lag are filled in by :meth:`_beat`."""
        return {
            "name": self.name,
            "now": wire.iso_now(),
            "boot_at": self.boot_at,
            "pending": 0,
            "lag": 0,
            "done": self.counters.done,
            "failed": self.counters.failed,
            "current": self._current_tasks(),
            "ip_address": self.ip_address,
            "pid": self.pid,
        }

    def _current_tasks(self) -> dict[str, Any]:
        """The tasks this executor holds: those running, and those fetched that wait for
        their slots (an entry taken over, to run alone once the running tasks finish),
        marked ``"waiting": true``. A pass re-enqueuing the tasks Redis lost spares what a
        heartbeat names, and must spare these too, or they would run twice (see
        executor.lost_tasks)."""
        current: dict[str, Any] = {}
        for delivery in self._held.values():
            with suppress(wire.MalformedMessage):
                message = wire.decode_message(delivery.fields)
                current[message["id"]] = {**message, "waiting": True}
        current.update((task_id, r.task) for task_id, r in self.running.items())
        return current

    async def _cancel_watcher(self) -> None:
        while True:
            await trio.sleep(CANCEL_POLL_SECONDS)
            if not self.running or self.redis_outage.down:
                continue
            try:
                flagged = await self._redis(self.broker.cancelled, list(self.running))
            except REDIS_UNAVAILABLE:
                continue
            for task_id in flagged:
                running = self.running.get(task_id)
                if running and not running.cancel_requested:
                    running.cancel_requested = True
                    running.scope.cancel()

    # -- plumbing ----------------------------------------------------------------------------

    async def _redis(self, fn: Callable[..., T], *args: Any) -> T:
        return await trio.to_thread.run_sync(functools.partial(fn, *args))

    async def _db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await trio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))

    def _health(self) -> tuple[bool, str]:
        if self.stopping:
            return False, "stopping"
        for outage in (self.redis_outage, self.db_outage, self.executor_errors):
            if outage.down:
                return False, f"{outage.name} unavailable"
        return True, "ok"

    def _define_metrics(self) -> None:
        m = self.metrics
        self.m_done = m.counter("ragfleet_tasks_done_total", "Tasks finished successfully.")
        self.m_failed = m.counter("ragfleet_tasks_failed_total", "Tasks failed by their handler.")
        self.m_cancelled = m.counter("ragfleet_tasks_cancelled_total", "Tasks cancelled.")
        self.m_dead = m.counter("ragfleet_tasks_dead_lettered_total", "Tasks dead-lettered.")
        self.m_reclaimed = m.counter("ragfleet_reclaimed_total", "Entries reclaimed from others.")
        self.m_grouped = m.counter(
            "ragfleet_grouped_tasks_total", "Tasks run in a group with others fetched with them."
        )
        self.m_left_to_holder = m.counter(
            "ragfleet_reclaimed_left_to_holder_total",
            "Entries reclaimed whose task another executor still runs, left to it.",
        )
        self.m_requeued = m.counter(
            "ragfleet_lost_tasks_requeued_total", "Unfinished tasks no queue held, re-enqueued."
        )
        self.m_malformed = m.counter("ragfleet_malformed_messages_total", "Entries dropped.")
        self.m_redis_errors = m.counter("ragfleet_redis_errors_total", "Redis call failures.")
        self.m_db_errors = m.counter("ragfleet_db_errors_total", "Database call failures.")
        self.m_in_flight = m.gauge("ragfleet_tasks_in_flight", "Tasks running now.")
        self.m_duration = m.histogram("ragfleet_task_duration_seconds", "Task run time.")
        for counter in (
            self.m_done,
            self.m_failed,
            self.m_cancelled,
            self.m_dead,
            self.m_reclaimed,
            self.m_grouped,
            self.m_left_to_holder,
            self.m_requeued,
            self.m_malformed,
            self.m_redis_errors,
            self.m_db_errors,
        ):
            counter.inc(0)  # export zeros from the start, so rate() and absent() behave


async def _raise(exc: Exception) -> None:
    """A group member's settle: meet the error its group met."""
    raise exc


def _is_outage(exc: Exception) -> bool:
    """Whether *exc* means a service is unavailable for now (retry the task later), rather
    than something wrong with the task or the executor."""
    outages = (DatabaseUnavailable, DependencyUnavailable, *REDIS_UNAVAILABLE)
    return isinstance(exc, outages) or refuses_writes(exc)


def metrics_port(settings: Settings, instance: int) -> int | None:
    base = settings.executor.metrics_port_base
    return None if base <= 0 else base + instance
