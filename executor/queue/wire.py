"""Names and formats shared with upstream RAGFlow (v0.21.1): keep these byte-compatible.

RAGFlow-format producers, status pages and tools read and write these keys, so none of
them may change. Our additions (the dead-letter stream, the outage deliveries) use names
upstream never reads.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from ..errors import MalformedMessage

QUEUE = "rag_flow_svr_queue"
"""Stream of priority 0; priority p > 0 is ``f"{QUEUE}_{p}"``."""
GROUP = "rag_flow_svr_task_broker"
EXECUTORS_SET = "TASKEXE"
CLEANUP_LOCK = "clean_task_executor"
CLEANUP_LOCK_TTL = 60
REQUEUE_LOCK = "ragfleet_requeue_lost"
"""Held by an executor, or ``ragfleet reconcile``, while it re-enqueues unfinished tasks
that no queue holds, so that two never do it at once (see executor.lost_tasks)."""
QUEUES_LOST_AT = "ragfleet_queues_lost_at"
"""When (ms) an executor first found Redis without its consumer groups, so that
``ragfleet reconcile`` can wait for the executors' heartbeats after it (it goes with the
next loss, as it is in the same Redis)."""
QUEUES_LOST_TTL = 60 * 60
SWEEP_LOCK = "ragfleet_lost_task_sweep"
"""Set, to expire after ``lost_task_sweep`` seconds, by the executor that sweeps for lost
tasks: the others skip their sweep while it exists."""
HEARTBEAT_RETENTION = 30 * 60
"""Heartbeats older than this are trimmed from an executor's sorted set (upstream: 30 min)."""
CANCEL_TTL = 60 * 60
DEAD_LETTER_STREAM = "ragfleet_dead_letter"
OUTAGE_DELIVERIES = "ragfleet_outage_deliveries"
"""Hash of ``"<queue> <entry id>"`` -> how many of the entry's deliveries an outage cut
short: those do not count against max_deliveries, whichever executor delivers it next."""
HELD_ELSEWHERE = "ragfleet-held-elsewhere"
"""The consumer that owns the entries an executor took over and left to the executor still
running their task (cut off from Redis: see executor.worker.fetch). Its entries go idle
and are taken over again after reclaim_idle, to be checked again; it is in no heartbeat,
and is deleted from a group only once it has no pending entry."""
CLEAN_STOPS = "ragfleet_clean_stops"
"""Hash of consumer -> when it last stopped cleanly (drained). A consumer that starts and
finds no entry of its own here died (or was killed) holding its entries, so it replays
them one at a time, each alone: see Fetcher.fetch in executor.worker.fetch."""
PRIORITIES = (1, 0)
"""Priorities in the order consumers read them: 1 before 0, as upstream."""

HEARTBEAT_FIELDS = (
    "name",
    "now",
    "boot_at",
    "pending",
    "lag",
    "done",
    "failed",
    "current",
    "ip_address",
    "pid",
)
"""What upstream's executors write in a heartbeat, and its status page reads."""
RAGFLEET_HEARTBEAT_FIELDS = ("version", "commit")
"""What ragfleet's heartbeats add (executor.version): upstream's readers ignore them."""


def queue_name(priority: int) -> str:
    return QUEUE if priority == 0 else f"{QUEUE}_{priority}"


def consumer_name(host_id: str, instance: int) -> str:
    """``task_executor_<host>_<n>``: stable across restarts, so a restart replays its own PEL."""
    return f"task_executor_{host_id}_{instance}"


def cancel_key(task_id: str) -> str:
    return f"{task_id}-cancel"


def encode_message(task: dict[str, Any]) -> dict[str, str]:
    """The stream entry for *task*: one field, ``message``, holding the task row as JSON."""
    return {"message": json.dumps(task, default=str, ensure_ascii=False)}


def iso_now(moment: datetime | None = None) -> str:
    """ISO-8601 with milliseconds and the local UTC offset, as upstream's heartbeats."""
    moment = moment or datetime.now().astimezone()
    return moment.isoformat(timespec="milliseconds")


def decode_message(fields: dict[bytes | str, bytes | str] | None) -> dict[str, Any]:
    """The task dict of a stream entry, or MalformedMessage saying what is wrong with it."""
    if not fields:
        raise MalformedMessage("entry has no fields (deleted, or written by something else)")
    raw = fields.get(b"message", fields.get("message"))
    if raw is None:
        raise MalformedMessage("entry has no 'message' field")
    try:
        task = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedMessage(f"'message' is not JSON: {exc}") from None
    if not isinstance(task, dict):
        raise MalformedMessage("'message' is JSON but not an object")
    if not isinstance(task.get("id"), str) or not task["id"]:
        raise MalformedMessage("'message' has no task 'id'")
    return task
