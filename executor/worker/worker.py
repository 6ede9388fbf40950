"""The executor: one trio nursery that fetches tasks from Redis Streams and runs them.

The Worker owns the nurseries and the dispatch loop; its components (this package's other
modules) do the rest. The structure and the life of a delivery are in
docs/architecture.md; the failure rules in docs/reliability.md.
"""

from __future__ import annotations

import logging
import os
import signal
from contextlib import suppress
from pathlib import Path

import trio

from ..errors import REDIS_DENIED, REDIS_REFUSED, REDIS_UNAVAILABLE, RedisAnswer
from ..handlers import HandlerRegistry
from ..instance_guard import refuse_a_live_twin
from ..lost_tasks import LostTasks
from ..memtrace import MemoryTracer
from ..metrics import Metrics, serve_metrics_on
from ..queue import wire
from ..queue.broker import Broker
from ..sdnotify import Notifier, run_watchdog
from ..settings import Settings
from ..store.database import TaskStore
from ..version import build_info
from .clock import SYSTEM_CLOCK, Clock, in_thread
from .fetch import Fetched, Fetcher
from .gauges import HealthGauges, start_queue_gauges
from .groups import Groups
from .health import Health
from .heartbeat import Heartbeats, Identity
from .ledger import Ledger, Ledgers
from .listen import listen_for_metrics
from .lookup import TaskLookup
from .meters import Meters
from .outcomes import Outcomes
from .own_thread import OwnThread
from .running import Counters, LookedUp, Running
from .settle import Settler
from .slots import Slots
from .steps import Process, Step


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
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.settings = settings
        self.config = c = settings.executor
        self.instance = instance
        self.broker = broker
        self.store = store
        self.registry = registry
        self.name = broker.consumer
        self.notifier = notifier or Notifier.from_environ({})
        self.metrics_port = metrics_port
        self.log = log = log or logging.getLogger(f"ragfleet.{self.name}")
        self.clock = clock
        self.health = health = Health(log, c.heartbeat_interval)
        self.redis_outage = health.redis
        self.db_outage = health.db
        self.dep_outage = health.dep
        self.refused_reads = health.refused_reads
        self.executor_errors = health.executor_errors
        self.counters = Counters()
        build = build_info()  # before trio.run: a checkout asks git
        self.identity = Identity(
            self.name, wire.iso_now(), os.getpid(), version=build.version, commit=build.commit
        )
        self.running: dict[str, Running] = {}
        self.stopping = False
        self.ledgers = Ledgers()
        self.slots = Slots(c.max_concurrent_tasks)
        self._fetch_scope = trio.CancelScope()
        self._drain_scope = trio.CancelScope()
        self._tasks: trio.Nursery | None = None
        self._services: trio.Nursery | None = None
        self._queues_lost_at: int | None = None  # ms; set when Redis had no groups
        self.memory = MemoryTracer(Path(c.state_dir) / "tracemalloc", log)
        self.metrics = Metrics(process=True)
        self.meters = meters = Meters.define(self.metrics, registry.types())
        self.metrics.build_info()
        self.metrics.register(HealthGauges(health))
        self.lost_tasks = LostTasks(broker, store, c, log, meters.requeued.inc)
        shared = dict(health=health, meters=meters, log=log)
        lookup = TaskLookup(broker, store, registry, c)
        self.fetcher = Fetcher(
            broker=broker,
            store=store,
            config=c,
            ledgers=self.ledgers,
            clock=clock,
            on_queues_lost=self.note_queues_lost,
            lookup=lookup,
            **shared,
        )
        self.batch_thread = OwnThread(f"{self.name} batches")
        self.outcomes = outcomes = Outcomes(
            broker=broker,
            store=store,
            registry=registry,
            settings=settings,
            counters=self.counters,
            running=self.running,
            clock=clock,
            hop=self.batch_thread.run,
            **shared,
        )
        self.settler = Settler(
            broker=broker,
            store=store,
            config=c,
            lookup=lookup,
            outcomes=outcomes,
            ledgers=self.ledgers,
            slots=self.slots,
            fetcher=self.fetcher,
            counters=self.counters,
            **shared,
        )
        self.groups = Groups(
            registry=registry,
            settings=settings,
            lookup=lookup,
            outcomes=outcomes,
            ledgers=self.ledgers,
            slots=self.slots,
            clock=clock,
            hand_over=self._hand_over,
            hop=self.batch_thread.run,
            **shared,
        )
        self.heartbeats = Heartbeats(
            identity=self.identity,
            broker=broker,
            store=store,
            config=c,
            ledgers=self.ledgers,
            running=self.running,
            counters=self.counters,
            health=health,
            clock=clock,
            log=log,
        )

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until stopped (SIGTERM/SIGINT or :meth:`stop`), then drain and return."""
        try:
            await self._run(task_status)
        finally:
            self.batch_thread.close()

    async def _run(self, task_status: trio.TaskStatus[None]) -> None:
        listeners = await listen_for_metrics(self.config, self.metrics_port, self.instance)
        await self._connect()
        beats = self.heartbeats
        async with trio.open_nursery() as services:
            self._services = services
            if self._queues_lost_at is not None:
                services.start_soon(self.lost_tasks.after_loss, self._queues_lost_at)
            services.start_soon(self.lost_tasks.sweep)
            await services.start(self._signals)  # handlers in place before READY is sent
            services.start_soon(beats.heartbeats)
            services.start_soon(beats.renew_leases)
            services.start_soon(beats.cancel_watcher)
            services.start_soon(run_watchdog, self.notifier, beats.alive)
            if listeners:
                roster, period = self.broker.roster(), self.config.heartbeat_interval
                await start_queue_gauges(services, self.metrics, roster, period, self.log)
                await services.start(serve_metrics_on, listeners, self.metrics, self.healthz)
            self.notifier.ready(f"consuming as {self.name}")
            self.log.info(
                "started as %s (pid %d, up to %d tasks at once)",
                self.name,
                self.identity.pid,
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
            self.identity.boot_at,
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

    def healthz(self) -> tuple[bool, str]:
        """What /healthz answers: ok, or why not."""
        return self.health.answer(self.stopping)

    async def _note_clean_stop(self) -> None:
        """Drained (or gave up on the drain): what this worker leaves pending did not kill
        it, so the next run may replay it all at once. Not while entries it was to run
        alone are left (the crash replay was not over, or a reclaimed entry was cut
        short), nor if Redis is out of reach: the next run then replays one entry at a
        time, which is slower, never wrong."""
        if self.fetcher.after_crash or self.ledgers.any_alone() or self.redis_outage.down:
            return
        with suppress(*REDIS_REFUSED):
            await in_thread(self.broker.note_clean_stop)

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
                if await in_thread(self.broker.ensure_groups):
                    self.note_queues_lost()
                self.ip_address = await trio.to_thread.run_sync(self.broker.local_address)
                await refuse_a_live_twin(
                    self.broker,
                    self.name,
                    address=self.ip_address,
                    interval=self.config.heartbeat_interval,
                    timeout=self.config.worker_heartbeat_timeout,
                )
                await self.heartbeats.beat([])
                await in_thread(self.broker.cancelled, ["-"])
                self.fetcher.after_crash = not await in_thread(self.broker.take_clean_stop)
                return
            except REDIS_DENIED:
                raise
            except REDIS_REFUSED as exc:  # MISCONF, say
                await self.redis_outage.back_off(exc)

    @property
    def ip_address(self) -> str:
        return self.identity.ip_address

    @ip_address.setter
    def ip_address(self, address: str) -> None:
        self.identity.ip_address = address

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

    # -- dispatch ----------------------------------------------------------------------------

    async def _collect(self) -> None:
        """Fetch as many tasks as there are free slots; block on Redis when there are none."""
        health, slots_of = self.health, self.slots
        while True:
            await self.fetcher.until_healthy()
            slots = await slots_of.take(lambda: health.executor_errors.down)
            if slots < slots_of.total:  # tasks being recorded done free theirs in a moment:
                await self.outcomes.until_recorded()  # fetch for them too, in one batch
                await trio.lowlevel.checkpoint()  # (those woken with ours, too)
                slots += slots_of.take_free()
            if health.paused():  # an outage began, or a probe failed, while we waited
                slots_of.give_back(slots)
                continue
            probing = health.executor_errors.down
            try:
                fetched = await self.fetcher.fetch(1 if probing else slots, look_up=not probing)
            except REDIS_UNAVAILABLE as exc:
                slots_of.give_back(slots)
                health.redis.failed(exc)
                self.meters.redis_errors.inc()
                continue
            except RedisAnswer as exc:
                slots_of.give_back(slots)
                await self.fetcher.recover_from(exc)
                continue
            health.redis.recovered()
            health.refused_reads.recovered()
            if not fetched.deliveries and not self.ledgers.held:  # nothing to try the db with
                health.db.recovered()
            await self._dispatch(fetched, probing, slots)

    async def _dispatch(self, fetched: Fetched, probing: bool, slots: int) -> None:
        """Start settling a *fetched* batch that holds *slots*: one to run alone (a suspect
        or a probe) once every slot is free, else each delivery or group in a child."""
        batch, alone = fetched.deliveries, fetched.alone
        with self.ledgers.holding(batch, fetched.ledgers) as ledgers:
            if probing and len(ledgers) > 1:  # a woken read returned one more than asked
                ledgers = ledgers[:1]
                self.fetcher.spare = batch[1:]
            if (alone or probing) and len(ledgers) == 1:
                (ledger,) = ledgers
                if alone:  # from now: a stop writes no clean mark
                    ledger.alone = True
                slots = await self.slots.take_every(slots)
                self._spawn(ledger, slots)
                return
            for _ in range(len(ledgers) - slots):
                await self.slots.take_one()  # a woken read may return one more than asked
            self._start(ledgers, fetched.looked_up)
            self.slots.give_back(slots - len(ledgers))

    def _start(self, batch: list[Ledger], looked_up: dict[str, LookedUp]) -> None:
        """Settle a batch fetched together. Two or more well-formed deliveries settle
        together (Groups: those whose type has a group handler run as one group, each
        other delivery settles in a child of its own), looked up and begun in one hop
        unless the fetch's hop did it (*looked_up*, by entry id). A malformed delivery,
        or one alone, settles in a child of its own."""
        assert self._tasks is not None
        read_found = [ledger for ledger in batch if ledger.entry_id in looked_up]
        not_yet = [
            ledger for ledger in batch if ledger.message is not None and ledger not in read_found
        ]
        rows = [looked_up[ledger.entry_id] for ledger in read_found]
        together: list[Ledger] = []
        for members, members_rows in ((read_found, rows), (not_yet, None)):
            if len(members) > 1:
                self._tasks.start_soon(self.groups.settle_batch, members, members_rows)
                together += members
        for ledger in batch:
            if ledger not in together:
                row = looked_up.get(ledger.entry_id)
                self._spawn(ledger, 1, None if row is None else Process(row))

    def _spawn(self, ledger: Ledger, slots: int, step: Step | None = None) -> None:
        """Settle *ledger* in a child of its own, holding *slots*."""
        assert self._tasks is not None
        self._tasks.start_soon(self.settler.settle, ledger, slots, step)

    def _hand_over(self, ledger: Ledger, step: Step) -> None:
        self._spawn(ledger, 1, step)

    def note_queues_lost(self) -> None:
        """Redis had no consumer group: it lost its data (a restart without persistence, a
        FLUSHALL) or is new. The groups are back; the tasks it held are re-enqueued from
        the database after a grace period (see LostTasks.after_loss)."""
        self._queues_lost_at = int(self.clock.time() * 1000)
        self.log.warning(
            "Redis had no consumer groups (it lost its data, or is new): created them; "
            "unfinished tasks that no queue holds are re-enqueued in %.0f s",
            self.lost_tasks.delay_after_loss,
        )
        if self._services is not None:
            self._services.start_soon(self.lost_tasks.after_loss, self._queues_lost_at)
