"""What the worker does every heartbeat: report itself, keep its entries fresh, renew its
tasks' leases, and watch for cancel flags; and whether its heartbeat loop is alive."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import trio

from ..errors import (
    REDIS_REFUSED,
    REDIS_UNAVAILABLE,
    DatabaseConnectionFailed,
    DatabaseUnavailable,
)
from ..queue import wire
from ..queue.broker import Broker, Delivery
from ..settings import ExecutorSettings
from ..store.database import TaskStore
from .clock import Clock, in_thread
from .health import Health
from .ledger import Ledgers
from .running import Counters, Running

CANCEL_POLL_SECONDS = 0.2
"""How often running tasks' cancel flags are checked: cancellation lands within ~0.3 s."""


@dataclass
class Identity:
    """Who sends the heartbeats: upstream's fields about the executor itself, and ours
    (wire.RAGFLEET_HEARTBEAT_FIELDS: what runs, for ``ragfleet status``)."""

    name: str
    boot_at: str
    pid: int
    ip_address: str = ""
    version: str = ""
    commit: str = ""


class Heartbeats:
    """The heartbeat, lease and cancel loops (children of the services nursery)."""

    def __init__(
        self,
        *,
        identity: Identity,
        broker: Broker,
        store: TaskStore,
        config: ExecutorSettings,
        ledgers: Ledgers,
        running: dict[str, Running],
        counters: Counters,
        health: Health,
        clock: Clock,
        log: logging.Logger,
    ) -> None:
        self.identity = identity
        self.broker = broker
        self.store = store
        self.config = config
        self.ledgers = ledgers
        self.running = running
        self.counters = counters
        self.health = health
        self.clock = clock
        self.log = log
        self._last_beat = clock.monotonic()

    def alive(self) -> bool:
        """For the systemd watchdog: the heartbeat loop has come round recently.

        A blocked event loop stops the pings by itself; this also catches a heartbeat stuck
        in a call that never returns.
        """
        limit = max(30.0, 3 * self.config.heartbeat_interval)
        return self.clock.monotonic() - self._last_beat < limit

    async def beat(self, held: list[Delivery]) -> None:
        """One heartbeat: report, keep the *held* entries fresh, clean up the dead."""
        await in_thread(self._beat, self._heartbeat(), held)

    async def heartbeats(self) -> None:
        """Every heartbeat_interval: a heartbeat for the entries held then."""
        while True:
            self._last_beat = self.clock.monotonic()
            try:
                await self.beat([ledger.delivery for ledger in self.ledgers.held_ledgers()])
                self.health.redis.recovered()
            except REDIS_REFUSED as exc:
                self.health.redis.failed(exc)
            await trio.sleep(self.config.heartbeat_interval)

    async def renew_leases(self) -> None:
        """Every heartbeat_interval: stamp the rows of the tasks this executor holds
        (running, or fetched and waiting for their slots) in the database, which tells an
        executor that takes over their entries that they are held here, even when this one
        cannot reach Redis (see docs/reliability.md)."""
        while True:
            await trio.sleep(self.config.heartbeat_interval)
            if not self.ledgers.held_ledgers():
                continue
            try:
                await in_thread(self.store.renew_leases, list(self.current_tasks()))
            except DatabaseConnectionFailed as exc:
                # Its connection is replaced: the tasks may never meet the failure.
                self.health.db.noticed(exc)
            except DatabaseUnavailable:
                pass  # a refusal of the moment: the running tasks meet it too
            except Exception:
                self.log.exception("could not renew the held tasks' stamps")

    def _beat(self, heartbeat: dict[str, Any], held: list[Delivery]) -> None:
        """In a thread: the heartbeat's Redis round trips, then the keep-alive and cleanup."""
        heartbeat["pending"], heartbeat["lag"] = self.broker.queue_info()
        now = self.clock.time()
        self.broker.heartbeat(json.dumps(heartbeat, default=str), now)
        self.broker.keep_alive(held)
        timeout = self.config.worker_heartbeat_timeout
        for name in self.broker.remove_expired_executors(timeout, now):
            self.log.warning("removed executor %s: no heartbeat for %.0f s", name, timeout)

    def _heartbeat(self) -> dict[str, Any]:
        """Upstream's heartbeat fields, then ours (version, commit), which upstream's status
        page ignores; pending and lag are filled in by :meth:`_beat`."""
        me = self.identity
        return {
            "name": me.name,
            "now": wire.iso_now(),
            "boot_at": me.boot_at,
            "pending": 0,
            "lag": 0,
            "done": self.counters.done,
            "failed": self.counters.failed,
            "current": self.current_tasks(),
            "ip_address": me.ip_address,
            "pid": me.pid,
            "version": me.version,
            "commit": me.commit,
        }

    def current_tasks(self) -> dict[str, Any]:
        """The tasks this executor holds: those running, and those fetched that wait for
        their slots, marked ``"waiting": true``. A pass re-enqueuing the tasks Redis lost
        spares what a heartbeat names, and must spare these too, or they would run twice
        (see executor.lost_tasks)."""
        current: dict[str, Any] = {}
        for ledger in self.ledgers.held_ledgers():
            if ledger.message is not None:
                current[ledger.message["id"]] = {**ledger.message, "waiting": True}
        current.update((task_id, r.task) for task_id, r in self.running.items())
        return current

    async def cancel_watcher(self) -> None:
        while True:
            await trio.sleep(CANCEL_POLL_SECONDS)
            if not self.running or self.health.redis.down:
                continue
            try:
                flagged = await in_thread(self.broker.cancelled, list(self.running))
            except REDIS_UNAVAILABLE:
                continue
            for task_id in flagged:
                running = self.running.get(task_id)
                if running and not running.cancel_requested:
                    running.cancel_requested = True
                    running.scope.cancel()
