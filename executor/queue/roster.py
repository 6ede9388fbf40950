"""The fleet as Redis holds it, read for operators and for the lost-task passes: the
executors and their heartbeats, the dead-letter stream, the task ids the queues hold.
Blocking, like the broker; :mod:`executor.fleet` composes it with the task store."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import redis

from ..errors import MalformedMessage
from . import wire
from .producer import enqueue, queued_task_ids, request_cancel, scan_stream
from .stats import QueuesSnapshot, read_snapshot


def latest_heartbeat(client: redis.Redis, name: str) -> tuple[float, dict[str, Any]] | None:
    """The newest heartbeat of executor *name* and its timestamp, or None."""
    newest = client.zrevrangebyscore(name, "+inf", "-inf", start=0, num=1, withscores=True)
    if not newest:
        return None
    payload, score = newest[0]
    try:
        return score, json.loads(payload)
    except ValueError:
        return score, {}


class Roster:
    """Fleet-wide reads and operator writes on one Redis client."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    def ping(self) -> None:
        """Raise if Redis is down or refuses our login."""
        self._client.ping()

    def executors(self) -> list[str]:
        """The members of TASKEXE, sorted."""
        return sorted(m.decode() for m in self._client.smembers(wire.EXECUTORS_SET))

    def latest_heartbeat(self, name: str) -> tuple[float, dict[str, Any]] | None:
        return latest_heartbeat(self._client, name)

    def enqueue(self, tasks: Iterable[dict[str, Any]]) -> int:
        return enqueue(self._client, tasks)

    def queued_task_ids(self) -> set[str]:
        return queued_task_ids(self._client)

    def request_cancel(self, task_ids: Iterable[str]) -> None:
        request_cancel(self._client, task_ids)

    def dead_letters(self) -> list[dict[str, Any]]:
        """The dead-letter stream, oldest first, with the task id pulled out of each message."""
        entries = []
        for entry_id, fields in scan_stream(self._client, wire.DEAD_LETTER_STREAM):
            record = {k.decode(): v.decode(errors="replace") for k, v in fields.items()}
            try:
                task_id = wire.decode_message(fields)["id"]
            except MalformedMessage:
                task_id = ""
            entries.append({"dlq_id": entry_id, "task_id": task_id, **record})
        return entries

    def drop_dead_letter(self, dlq_id: str) -> None:
        self._client.xdel(wire.DEAD_LETTER_STREAM, dlq_id)

    def purge_dead_letters(self) -> int:
        """Delete the dead-letter stream; how many entries it held."""
        pipe = self._client.pipeline(transaction=True)
        pipe.xlen(wire.DEAD_LETTER_STREAM)
        pipe.delete(wire.DEAD_LETTER_STREAM)
        count, _ = pipe.execute()
        return int(count)

    def dead_letter_count(self) -> int:
        return int(self._client.xlen(wire.DEAD_LETTER_STREAM))

    def queues(self) -> QueuesSnapshot:
        """Per priority stream: depth, pending per consumer, oldest entry's age; and the
        dead-letter count (``ragfleet status``, the executor's queue gauges)."""
        return read_snapshot(self._client)
