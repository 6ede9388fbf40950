"""Putting back on their queues the unfinished tasks that no queue holds.

A producer records a task before it enqueues it, and a worker deletes an entry only once
its task is recorded finished, so an unfinished task without an entry was lost on the way:
Redis came back without its data (its consumer groups gone, which an executor sees), lost
the last second of its append-only file in a crash (nothing shows), or a producer died
between its two writes. Two passes put such tasks back:

- **after a loss seen**: an executor that had to create a consumer group re-enqueues the
  tasks recorded before then, once every live executor has said again in a heartbeat which
  tasks it runs (:meth:`LostTasks.after_loss`);
- **the sweep**: every ``lost_task_sweep`` seconds one executor of the fleet re-enqueues the
  tasks whose row has not changed for ``worker_heartbeat_timeout`` (:meth:`LostTasks.sweep`),
  which finds what no executor saw go.

Both leave alone a task a live executor's heartbeat names (it runs there, its entry lost)
and a dead-lettered one, and take the fleet's turn (:meth:`Broker.take_requeue_turn`), so
that two passes never both find a task missing and enqueue it twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace

import trio

from .errors import not_now
from .fleet import LostTaskFilter, requeue_lost, running_task_ids
from .queue.broker import Broker
from .settings import ExecutorSettings
from .store.database import TaskStore

REQUEUE_GRACE = 5.0
"""Seconds a producer may take between recording a task and enqueuing it: the tasks
recorded before Redis lost its queues are re-enqueued no sooner than this after the loss
is seen (and no sooner than 1.5 heartbeats, so that every live executor has said again
which tasks it runs)."""
HEARTBEATS_AFTER_LOSS = 1.5
"""Heartbeat intervals after Redis came back (with or without its data) within which every
live executor has heartbeated again: named its tasks and refreshed its entries."""
REQUEUE_TURN_WAIT = 10.0
"""Seconds to wait for another executor's pass to end before giving up."""
SHOWN_IDS = 5
"""Task ids a pass names in its log line; the rest are counted."""


class LostTasks:
    """The two passes of one executor; *on_requeued* is told (on the event loop) how
    many tasks each put back."""

    def __init__(
        self,
        broker: Broker,
        store: TaskStore,
        config: ExecutorSettings,
        log: logging.Logger,
        on_requeued: Callable[[int], None] = lambda count: None,
    ) -> None:
        self.broker = broker
        self.store = store
        self.config = config
        self.log = log
        self.on_requeued = on_requeued

    @property
    def delay_after_loss(self) -> float:
        return delay_after_loss(self.config.heartbeat_interval)

    async def after_loss(self, lost_at_ms: int) -> None:
        """Re-enqueue, after :attr:`delay_after_loss`, the tasks recorded before
        *lost_at_ms* that no queue holds. Every executor that saw the loss makes this pass,
        one at a time: the later ones find nothing left to do."""
        await trio.sleep(self.delay_after_loss)
        lost = LostTaskFilter(created_before_ms=lost_at_ms)
        try:
            self.on_requeued(await trio.to_thread.run_sync(self._requeue_in_turn, lost))
        except Exception as exc:  # an outage, or worse: the worker goes on either way
            self.log.error(
                "could not re-enqueue the tasks Redis lost (%s): run `ragfleet reconcile`",
                exc,
                exc_info=not not_now(exc),
            )

    async def sweep(self) -> None:
        """Every ``lost_task_sweep`` seconds (0: never), if no other executor of the fleet
        has swept in that time, re-enqueue the unfinished tasks that no queue holds and
        whose row has not changed for ``worker_heartbeat_timeout``: longer than any
        producer takes between its two writes, and than a running task goes without a
        heartbeat naming it."""
        period = self.config.lost_task_sweep
        if not period:
            return
        while True:
            await trio.sleep(period)
            try:
                self.on_requeued(await trio.to_thread.run_sync(self._sweep_once, period))
            except Exception as exc:  # unless not_now, a bug: the next sweep tries again
                if not_now(exc):
                    self.log.info("lost-task sweep skipped: %s", exc)
                else:
                    self.log.exception("lost-task sweep failed")

    def _sweep_once(self, period: int) -> int:
        """In a thread: one sweep, unless another executor swept less than *period* ago;
        returns how many tasks it re-enqueued."""
        if not self.broker.take_sweep_turn(period):
            return 0
        cutoff = time.time() - self.config.worker_heartbeat_timeout
        found = self._requeue_in_turn(LostTaskFilter(unchanged_since_ms=int(cutoff * 1000)))
        if not found:
            self.log.debug("lost-task sweep: every unfinished task is queued or running")
        return found

    def _requeue_in_turn(self, lost: LostTaskFilter) -> int:
        """In a thread: requeue_in_turn; logs and returns how many were re-enqueued."""
        ids, unfinished = requeue_in_turn(
            self.broker, self.store, lost, self.config.worker_heartbeat_timeout
        )
        if ids or lost.created_before_ms is not None:
            self.log.warning(
                "re-enqueued %d of %d unfinished tasks that no queue held%s",
                len(ids),
                unfinished,
                _named(ids),
            )
        return len(ids)


def delay_after_loss(heartbeat_interval: float) -> float:
    """Seconds after Redis lost its data before an executor's pass may trust the
    heartbeats, and a producer has enqueued what it had recorded: see REQUEUE_GRACE."""
    return max(REQUEUE_GRACE, HEARTBEATS_AFTER_LOSS * heartbeat_interval)


def heartbeats_due_after_loss(broker: Broker, heartbeat_interval: float) -> float:
    """Seconds until every live executor has heartbeated since Redis last lost its data (0
    if it has, or no loss is known). Until then the heartbeats, lost with the data, do not
    name the tasks the executors run, and a pass would enqueue those a second time."""
    window = HEARTBEATS_AFTER_LOSS * heartbeat_interval
    if broker.groups_missing():  # lost, and no executor has noticed yet
        return window
    lost_at = broker.queues_lost_at()
    return max(0.0, lost_at + window - time.time()) if lost_at else 0.0


def requeue_in_turn(
    broker: Broker, store: TaskStore, lost: LostTaskFilter, heartbeat_timeout: float
) -> tuple[list[str], int]:
    """Blocking: requeue_lost in the fleet's turn (waited for up to REQUEUE_TURN_WAIT,
    else TimeoutError), sparing the tasks that live executors' heartbeats name. Two passes
    never both find a task missing and enqueue it twice."""
    deadline = time.monotonic() + REQUEUE_TURN_WAIT
    while not broker.take_requeue_turn():
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"another pass (an executor's, or a reconcile) kept the turn to re-enqueue "
                f"for {REQUEUE_TURN_WAIT:.0f} s"
            )
        time.sleep(0.2)  # never on the event loop
    try:
        roster = broker.roster()
        running = running_task_ids(roster, heartbeat_timeout)
        return requeue_lost(roster, store, replace(lost, running=running))
    finally:
        broker.give_back_requeue_turn()


def _named(ids: list[str]) -> str:
    if not ids:
        return ""
    more = f" and {len(ids) - SHOWN_IDS} more" if len(ids) > SHOWN_IDS else ""
    return f": {', '.join(ids[:SHOWN_IDS])}{more}"
