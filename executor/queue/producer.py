"""Putting tasks on the queues: what `submit`, `reconcile` and `dlq retry` share.

The database row is written first and the stream entry second, so a crash in between
leaves a task the database knows and no queue holds; `ragfleet reconcile` re-enqueues
exactly those. The reverse order could leave entries pointing at no task.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

import redis

from ..errors import MalformedMessage
from . import wire


def enqueue(client: redis.Redis, tasks: Iterable[dict[str, Any]], batch: int = 500) -> int:
    """XADD each task to its priority's stream (pipelined); returns how many were added."""
    added = 0
    pipe = client.pipeline(transaction=False)
    for task in tasks:
        pipe.xadd(wire.queue_name(int(task.get("priority") or 0)), wire.encode_message(task))
        added += 1
        if added % batch == 0:
            pipe.execute()
    pipe.execute()
    if added:
        wait_for_replica(client)
    return added


REPLICA_WAIT_MS = 1000


def wait_for_replica(client: redis.Redis) -> int:
    """Under Sentinel, WAIT until a replica has the writes so far (at most REPLICA_WAIT_MS):
    a failover right after then loses none of them. Returns the replicas that acknowledged
    (0 without Sentinel, where no replica is expected and WAIT would only sleep). What a
    failover still loses (WAIT timed out) the lost-task sweep and `ragfleet reconcile`
    re-enqueue from the database, which was written first."""
    if not getattr(client.connection_pool, "is_master", False):  # a SentinelConnectionPool's
        return 0
    return int(client.wait(1, REPLICA_WAIT_MS))


def queued_task_ids(client: redis.Redis, priorities: Iterable[int] = wire.PRIORITIES) -> set[str]:
    """Ids of every task that has an entry in a queue stream (pending or not yet read)."""
    ids: set[str] = set()
    for priority in priorities:
        for _entry_id, fields in scan_stream(client, wire.queue_name(priority)):
            try:
                ids.add(wire.decode_message(fields)["id"])
            except MalformedMessage:
                continue
    return ids


def scan_stream(client: redis.Redis, stream: str, page: int = 1000) -> Iterator[tuple[str, dict]]:
    """Every entry of *stream*, oldest first, fetched *page* at a time."""
    start = "-"
    while True:
        entries = client.xrange(stream, min=start, max="+", count=page)
        for entry_id, fields in entries:
            yield entry_id.decode(), fields
        if len(entries) < page:
            return
        start = "(" + entries[-1][0].decode()


def task_message(task: dict[str, Any]) -> dict[str, Any]:
    """The JSON a queue entry carries: the task row (payload kept as JSON text)."""
    message = dict(task)
    if isinstance(message.get("payload"), dict):
        message["payload"] = json.dumps(message["payload"])
    return message


def request_cancel(client: redis.Redis, task_ids: Iterable[str]) -> None:
    """Set upstream's cancel flag, ``<task_id>-cancel``, for each task (for an hour, as
    upstream): a running task stops within a second, a queued one is never run."""
    pipe = client.pipeline(transaction=False)
    for task_id in task_ids:
        pipe.set(wire.cancel_key(task_id), 1, ex=wire.CANCEL_TTL)
    pipe.execute()
