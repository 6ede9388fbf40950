"""Operator views of the fleet in Redis: executors' heartbeats, the dead-letter stream, and
unfinished tasks that no queue holds."""

from __future__ import annotations

import time
from collections.abc import Set
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .queue import wire
from .queue.producer import task_message
from .queue.roster import Roster
from .store.database import TaskStore

HEARTBEAT_KEYS = tuple(
    key for key in (*wire.HEARTBEAT_FIELDS, *wire.RAGFLEET_HEARTBEAT_FIELDS) if key != "current"
)
"""The heartbeat fields a status row copies (None where an older executor sent none)."""


def fleet_status(roster: Roster, timeout: float, now: float | None = None) -> list[dict]:
    """One row per member of TASKEXE, ``state`` alive or stale (no heartbeat in *timeout*);
    ``running`` counts the tasks it runs, ``waiting`` those it has fetched and holds until a
    slot is free, ``current`` names both; ``version`` and ``commit`` say what the executor
    runs (executor.version)."""
    now = time.time() if now is None else now
    rows = []
    for member in roster.executors():
        beat = roster.latest_heartbeat(member)
        score, data = beat if beat else (0.0, {})
        age = now - score if beat else None
        current = data.get("current") or {}
        waiting = sum(1 for task in current.values() if _waiting(task))
        rows.append(
            {
                **{key: data.get(key) for key in HEARTBEAT_KEYS},
                "name": member,
                "age": f"{age:.0f}s" if age is not None else "never",
                "running": len(current) - waiting,
                "waiting": waiting,  # fetched, waiting for a slot (see Heartbeats.current_tasks)
                "current": sorted(current),
                "state": "alive" if age is not None and age <= timeout else "stale",
            }
        )
    return rows


def _waiting(task: Any) -> bool:
    return isinstance(task, dict) and bool(task.get("waiting"))


def requeue_dead_letter(roster: Roster, store: TaskStore, entry: dict[str, Any]) -> bool:
    """Reset the entry's task, put it back on its queue, and drop the dead-letter entry;
    False (the entry kept) if the database has no such task: a database restored from a
    backup older than the task, say, or an entry that names none."""
    note = f"{datetime.now():%H:%M:%S} Re-enqueued from the dead-letter stream by an operator."
    task = store.reset_task(entry["task_id"], note) if entry["task_id"] else None
    if task is None:
        return False
    roster.enqueue([task_message(task)])
    roster.drop_dead_letter(entry["dlq_id"])
    return True


@dataclass(frozen=True)
class LostTaskFilter:
    """Which of the unfinished tasks that no queue holds count as lost.

    *running*: ids a live executor's heartbeat names (Redis lost their entries while they
    ran: they finish where they are). *created_before_ms*: only tasks recorded before then
    (a producer records a task, then enqueues it). *unchanged_since_ms*: only tasks whose
    row has not changed since then (a task just recorded or reset is about to be enqueued).
    """

    running: Set[str] = frozenset()
    created_before_ms: int | None = None
    unchanged_since_ms: int | None = None

    def keeps(self, row: dict[str, Any]) -> bool:
        if row["id"] in self.running or (row["priority"] or 0) not in wire.PRIORITIES:
            return False  # another producer's priority: no worker reads its stream
        if (
            self.created_before_ms is not None
            and (row["create_time"] or 0) >= self.created_before_ms
        ):
            return False
        changed = row["update_time"] or row["create_time"] or 0
        return self.unchanged_since_ms is None or changed < self.unchanged_since_ms


def tasks_in_no_queue(
    roster: Roster, store: TaskStore, lost: LostTaskFilter = LostTaskFilter()
) -> tuple[list[dict], int]:
    """Unfinished tasks (by the database) that no queue stream and no dead-letter entry
    holds and *lost* keeps, and how many tasks are unfinished in all.

    A dead-lettered task the database still calls unfinished (its failure could not be
    written) is the operator's: `ragfleet dlq retry` puts it back.
    """
    stamps = store.unfinished_task_stamps(
        created_before_ms=lost.created_before_ms, changed_before_ms=lost.unchanged_since_ms
    )
    narrowed = lost.created_before_ms is not None or lost.unchanged_since_ms is not None
    unfinished = store.unfinished_count() if narrowed else len(stamps)
    kept = [row["id"] for row in stamps if lost.keeps(row)]
    if not kept:
        # Nothing could be lost: the streams are not read. An executor's pass after it
        # created the consumer groups (every start on a new Redis) would otherwise copy
        # every queued entry into memory for nothing (docs/benchmarks.md, memory soak).
        return [], unfinished
    held = roster.queued_task_ids() | {entry["task_id"] for entry in roster.dead_letters()}
    candidates = [task_id for task_id in kept if task_id not in held]
    # Read again: a task that finished (its entry deleted) between the two reads is not lost.
    missing = [row for row in store.unfinished_tasks(among=candidates) if lost.keeps(row)]
    return missing, unfinished


def requeue_lost(
    roster: Roster, store: TaskStore, lost: LostTaskFilter = LostTaskFilter()
) -> tuple[list[str], int]:
    """Re-enqueue the tasks :func:`tasks_in_no_queue` finds; returns their ids, and how many
    tasks are unfinished. Idempotent: a task already in a stream is left alone."""
    missing, unfinished = tasks_in_no_queue(roster, store, lost)
    roster.enqueue(task_message(t) for t in missing)
    return [t["id"] for t in missing], unfinished


def running_task_ids(roster: Roster, timeout: float) -> set[str]:
    """The tasks that live executors (a heartbeat within *timeout*) say they are running."""
    rows = fleet_status(roster, timeout)
    return {task_id for row in rows if row["state"] == "alive" for task_id in row["current"]}
