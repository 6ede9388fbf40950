"""The queues as an operator watches them (``rq info``'s view): per stream, the entries no
executor has taken yet, those taken and not acked (per consumer), the age of the oldest
entry; and the dead-letter stream's size. Read in one round trip; blocking."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from . import wire


@dataclass(frozen=True)
class QueueStats:
    """One priority stream."""

    queue: str
    length: int  # entries it holds (acked ones are deleted: waiting + pending)
    waiting: int  # not delivered to any executor yet (the group's lag)
    pending: int  # delivered, not acked
    oldest_age: float  # seconds since the oldest entry it holds was added; 0 when empty
    consumers: dict[str, int] = field(default_factory=dict)  # pending entries per consumer


@dataclass(frozen=True)
class QueuesSnapshot:
    """Every priority stream and the dead-letter stream, at Redis's time ``taken_at``."""

    queues: list[QueueStats]
    dead_letters: int
    taken_at: float  # Unix seconds, by Redis's clock (ages are measured with it too)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_snapshot(
    client: redis.Redis, priorities: tuple[int, ...] = wire.PRIORITIES
) -> QueuesSnapshot:
    """Every figure of :class:`QueuesSnapshot` in one pipelined round trip."""
    queues = [wire.queue_name(p) for p in priorities]
    pipe = client.pipeline(transaction=False)
    pipe.time()
    pipe.xlen(wire.DEAD_LETTER_STREAM)
    for queue in queues:
        pipe.xlen(queue)
        pipe.xrange(queue, "-", "+", count=1)
        pipe.xinfo_groups(queue)
        pipe.xinfo_consumers(queue, wire.GROUP)
    # A stream or group Redis does not have (yet) answers an error: read as empty.
    replies = pipe.execute(raise_on_error=False)
    (seconds, micros), dead = replies[0], replies[1]
    if isinstance(dead, Exception):
        raise dead  # an error on the first key is a real one (down, ACL): no figures at all
    now = seconds + micros / 1e6
    stats = [_queue(queue, now, *replies[2 + 4 * i : 6 + 4 * i]) for i, queue in enumerate(queues)]
    return QueuesSnapshot(stats, int(dead), now)


def _queue(
    queue: str, now: float, length: Any, first: Any, groups: Any, consumers: Any
) -> QueueStats:
    length = 0 if isinstance(length, Exception) else int(length)
    oldest = 0.0
    if first and not isinstance(first, Exception):
        added_ms = int(_text(first[0][0]).split("-")[0])
        oldest = max(0.0, now - added_ms / 1000)
    per_consumer: dict[str, int] = {}
    if not isinstance(consumers, Exception):
        per_consumer = {_text(c["name"]): int(c.get("pending") or 0) for c in consumers}
    group = None
    if not isinstance(groups, Exception):
        group = next((g for g in groups if _text(g["name"]) == wire.GROUP), None)
    pending = int(group.get("pending") or 0) if group else 0
    lag = group.get("lag") if group else None
    # Redis cannot always tell the lag (entries deleted in the range): then what the stream
    # holds less what is pending, an estimate that holds while acked entries are deleted.
    waiting = int(lag) if lag is not None else max(0, length - pending)
    return QueueStats(queue, length, waiting, pending, oldest, per_consumer)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
