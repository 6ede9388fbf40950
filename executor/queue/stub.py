"""An in-memory stand-in for :class:`~executor.queue.broker.Broker`, for worker unit tests.

The idea is Dramatiq's StubBroker: the worker runs unchanged against queues held in
memory, so its logic is testable in milliseconds, and faults are injected through an
explicit seam (:class:`Faults`), not by stopping a server or patching private methods.
:class:`StubRedis` is the shared server (streams, consumer group, pending entries, hashes,
locks, heartbeats); a :class:`StubBroker` is one consumer's view of it, with the Broker's
method names and semantics. tests/test_broker_contract.py runs the same assertions against
both, so the stub cannot drift from Redis. Thread-safe: the worker calls it from threads.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from . import wire
from .broker import Delivery


class Faults:
    """Errors to raise from broker methods, by method name: the next *times* calls
    (:meth:`fail_next`) or every call until :meth:`heal` (:meth:`fail_always`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next: dict[str, list[BaseException]] = {}
        self._always: dict[str, BaseException] = {}
        self.raised: list[str] = []  # method names, in the order their faults were raised

    def fail_next(self, method: str, exc: BaseException, times: int = 1) -> None:
        with self._lock:
            self._next.setdefault(method, []).extend([exc] * times)

    def fail_always(self, method: str, exc: BaseException) -> None:
        with self._lock:
            self._always[method] = exc

    def heal(self, method: str | None = None) -> None:
        """Stop failing *method* (every method if None)."""
        with self._lock:
            for table in (self._next, self._always):
                if method is None:
                    table.clear()
                else:
                    table.pop(method, None)

    def check(self, method: str) -> None:
        with self._lock:
            queued = self._next.get(method)
            exc = queued.pop(0) if queued else self._always.get(method)
            if exc is not None:
                self.raised.append(method)
        if exc is not None:
            raise exc


@dataclass
class Pending:
    """One pending entry of the group: its owner, times delivered, last delivery time."""

    consumer: str
    deliveries: int
    delivered_at: float


@dataclass
class StubRedis:
    """The state one Redis holds for the fleet; *clock* (seconds) times idle entries,
    heartbeats and locks, so a test can age them without waiting."""

    clock: Callable[[], float] = time.time
    streams: dict[str, dict[str, dict[bytes, bytes]]] = field(default_factory=dict)
    groups: set[str] = field(default_factory=set)  # queues with the consumer group
    read_up_to: dict[str, int] = field(default_factory=dict)  # the group's ">" cursor
    pending: dict[str, dict[str, Pending]] = field(default_factory=dict)  # queue -> id ->
    outage_deliveries: dict[str, int] = field(default_factory=dict)
    dead_letters: list[dict[str, str]] = field(default_factory=list)
    cancelled: set[str] = field(default_factory=set)
    clean_stops: dict[str, str] = field(default_factory=dict)
    executors: set[str] = field(default_factory=set)
    heartbeats: dict[str, dict[str, float]] = field(default_factory=dict)
    locks: dict[str, tuple[str, float]] = field(default_factory=dict)  # key -> holder, until
    queues_lost_at: float | None = None
    faults: Faults = field(default_factory=Faults)
    lock: threading.Condition = field(default_factory=threading.Condition)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def enqueue(self, fields: dict[str, str], priority: int = 0) -> str:
        """XADD: append an entry (as the producer does); returns its id."""
        queue = wire.queue_name(priority)
        with self.lock:
            entry_id = f"{next(self._ids)}-0"
            encoded = {k.encode(): v.encode() for k, v in fields.items()}
            self.streams.setdefault(queue, {})[entry_id] = encoded
            self.lock.notify_all()
        return entry_id

    def enqueue_task(self, task: dict[str, Any], priority: int = 0) -> str:
        return self.enqueue(wire.encode_message(task), priority)

    def cancel(self, task_id: str) -> None:
        """Set the task's cancel flag, as ``ragfleet cancel`` does."""
        with self.lock:
            self.cancelled.add(task_id)

    def flush(self) -> None:
        """FLUSHALL: Redis lost its data."""
        with self.lock:
            for table in (self.streams, self.read_up_to, self.pending, self.outage_deliveries):
                table.clear()
            self.groups.clear()
            self.dead_letters.clear()
            self.clean_stops.clear()

    def pending_of(self, consumer: str) -> list[str]:
        """Entry ids pending for *consumer*, in every queue."""
        with self.lock:
            return [
                i for q in self.pending.values() for i, p in q.items() if p.consumer == consumer
            ]

    def entries(self, priority: int = 0) -> list[str]:
        with self.lock:
            return list(self.streams.get(wire.queue_name(priority), {}))


def _seq(entry_id: str) -> int:
    return int(entry_id.partition("-")[0])


class StubBroker:
    """The queue operations of one consumer, ``consumer``, on *redis* (see Broker)."""

    def __init__(
        self,
        redis: StubRedis,
        consumer: str,
        priorities: Sequence[int] = wire.PRIORITIES,
        *,
        address: str = "127.0.0.1",
    ) -> None:
        self.redis = redis
        self.consumer = consumer
        self.queues = [wire.queue_name(p) for p in priorities]
        self.address = address

    def __getattr__(self, name: str) -> Any:
        # Only for names not found: a Broker method the stub lacks must fail loudly.
        raise AttributeError(f"StubBroker has no {name!r}: add it (and to the contract test)")

    def _call(self, method: str) -> StubRedis:
        self.redis.faults.check(method)
        return self.redis

    def _now_ms(self) -> float:
        return self.redis.clock() * 1000

    # -- setup -------------------------------------------------------------------------------

    def ensure_groups(self) -> list[str]:
        r = self._call("ensure_groups")
        with r.lock:
            created = [q for q in self.queues if q not in r.groups]
            for queue in created:
                r.groups.add(queue)
                r.streams.setdefault(queue, {})
                r.read_up_to[queue] = 0
            if created and r.queues_lost_at is None:
                r.queues_lost_at = r.clock()
        return created

    def groups_missing(self) -> bool:
        r = self._call("groups_missing")
        with r.lock:
            return any(q not in r.groups for q in self.queues)

    def queues_lost_at(self) -> float | None:
        return self._call("queues_lost_at").queues_lost_at

    def take_requeue_turn(self) -> bool:
        return self._take_lock("take_requeue_turn", wire.REQUEUE_LOCK, 60)

    def give_back_requeue_turn(self) -> None:
        r = self._call("give_back_requeue_turn")
        with r.lock:
            if r.locks.get(wire.REQUEUE_LOCK, ("", 0))[0] == self.consumer:
                del r.locks[wire.REQUEUE_LOCK]

    def take_sweep_turn(self, period: int) -> bool:
        return self._take_lock("take_sweep_turn", wire.SWEEP_LOCK, period)

    def _take_lock(self, method: str, key: str, ttl: float) -> bool:
        r = self._call(method)
        with r.lock:
            holder = r.locks.get(key)
            if holder and holder[1] > r.clock():
                return False
            r.locks[key] = (self.consumer, r.clock() + ttl)
            return True

    # -- reading -----------------------------------------------------------------------------

    def read_new(self, count: int, block_ms: int) -> list[Delivery]:
        """Never-delivered entries, priority 1 first; blocks (on a condition, woken by an
        enqueue) up to *block_ms* when there are none."""
        r = self._call("read_new")
        deadline = time.monotonic() + block_ms / 1000
        with r.lock:
            while True:
                self._require_groups()
                got = self._read(count)
                wait = deadline - time.monotonic()
                if got or wait <= 0:
                    return got
                r.lock.wait(wait)

    def _require_groups(self) -> None:
        for queue in self.queues:
            if queue not in self.redis.groups:
                raise redis.ResponseError(  # as Redis: the worker's NOGROUP path
                    f"NOGROUP No such key '{queue}' or consumer group"
                )

    def _read(self, count: int) -> list[Delivery]:
        r = self.redis
        got: list[Delivery] = []
        for queue in self.queues:
            fresh = [i for i in r.streams[queue] if _seq(i) > r.read_up_to[queue]]
            for entry_id in fresh[: count - len(got)]:
                r.read_up_to[queue] = _seq(entry_id)
                r.pending.setdefault(queue, {})[entry_id] = Pending(
                    self.consumer, 1, self._now_ms()
                )
                got.append(Delivery(queue, entry_id, r.streams[queue][entry_id], 1))
        return got

    def replay_own(self, exclude: set[str], count: int) -> list[Delivery]:
        r = self._call("replay_own")
        with r.lock:
            return self._claim(lambda i, p: p.consumer == self.consumer and i not in exclude, count)

    def reclaim(self, min_idle_ms: int, count: int) -> list[Delivery]:
        r = self._call("reclaim")
        with r.lock:
            now = self._now_ms()
            return self._claim(lambda i, p: now - p.delivered_at >= min_idle_ms, count)

    def _claim(self, wanted: Callable[[str, Pending], bool], count: int) -> list[Delivery]:
        """XCLAIM the pending entries *wanted* picks, up to *count*: each is delivered once
        more, to this consumer. An entry deleted meanwhile comes without fields (XCLAIM) or
        is dropped from the pending entries (XAUTOCLAIM): neither happens to the worker's
        entries, which it alone deletes, so the stub returns it without fields."""
        r = self.redis
        claimed: list[Delivery] = []
        for queue in self.queues:
            for entry_id, entry in sorted(r.pending.get(queue, {}).items()):
                if len(claimed) >= count:
                    break
                if wanted(entry_id, entry):
                    entry.consumer, entry.delivered_at = self.consumer, self._now_ms()
                    entry.deliveries += 1
                    fields = r.streams[queue].get(entry_id)
                    outages = r.outage_deliveries.get(f"{queue} {entry_id}", 0)
                    claimed.append(Delivery(queue, entry_id, fields, entry.deliveries, outages))
        return claimed

    def note_clean_stop(self) -> None:
        r = self._call("note_clean_stop")
        with r.lock:
            r.clean_stops[self.consumer] = wire.iso_now()

    def take_clean_stop(self) -> bool:
        r = self._call("take_clean_stop")
        with r.lock:
            return r.clean_stops.pop(self.consumer, None) is not None

    # -- settling ----------------------------------------------------------------------------

    def note_outage(self, delivery: Delivery) -> None:
        r = self._call("note_outage")
        with r.lock:
            r.outage_deliveries[delivery.key] = r.outage_deliveries.get(delivery.key, 0) + 1

    def leave_to_holder(self, delivery: Delivery) -> None:
        r = self._call("leave_to_holder")
        with r.lock:
            entry = r.pending.get(delivery.queue, {}).get(delivery.entry_id)
            if entry is not None:  # JUSTID: no delivery counted
                entry.consumer, entry.delivered_at = wire.HELD_ELSEWHERE, self._now_ms()
            r.outage_deliveries[delivery.key] = r.outage_deliveries.get(delivery.key, 0) + 1

    def ack(self, delivery: Delivery) -> None:
        self._call("ack")
        self._settle([delivery])

    def ack_all(self, deliveries: Iterable[Delivery]) -> None:
        self._call("ack_all")
        self._settle(list(deliveries))

    def _settle(self, deliveries: list[Delivery]) -> None:
        r = self.redis
        with r.lock:
            for d in deliveries:
                r.pending.get(d.queue, {}).pop(d.entry_id, None)
                r.streams.get(d.queue, {}).pop(d.entry_id, None)
                r.outage_deliveries.pop(d.key, None)

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        r = self._call("dead_letter")
        fields = {k.decode(): v.decode() for k, v in (delivery.fields or {}).items()}
        record = {
            **fields,
            "queue": delivery.queue,
            "entry_id": delivery.entry_id,
            "deliveries": str(delivery.deliveries),
            "reason": reason,
            "consumer": self.consumer,
            "at": wire.iso_now(),
        }
        with r.lock:
            r.dead_letters.append(record)
            self._settle([delivery])

    def keep_alive(self, deliveries: Iterable[Delivery]) -> None:
        r = self._call("keep_alive")
        with r.lock:
            for d in deliveries:
                entry = r.pending.get(d.queue, {}).get(d.entry_id)
                if entry is not None:  # XCLAIM JUSTID: now its, idle 0, not counted
                    entry.consumer, entry.delivered_at = self.consumer, self._now_ms()

    # -- cancellation ------------------------------------------------------------------------

    def cancelled(self, task_ids: Sequence[str]) -> set[str]:
        r = self._call("cancelled")
        with r.lock:
            return {t for t in task_ids if t in r.cancelled}

    # -- fleet bookkeeping -------------------------------------------------------------------

    def local_address(self) -> str:
        self._call("local_address")
        return self.address

    def latest_heartbeat(self, name: str) -> tuple[float, dict[str, Any]] | None:
        r = self._call("latest_heartbeat")
        with r.lock:
            beats = r.heartbeats.get(name)
            if not beats:
                return None
            payload, score = max(beats.items(), key=lambda item: item[1])
        try:
            return score, json.loads(payload)
        except ValueError:
            return score, {}

    def queue_info(self) -> tuple[int, int]:
        r = self._call("queue_info")
        with r.lock:
            pending = sum(len(r.pending.get(q, {})) for q in self.queues if q in r.groups)
            lag = sum(
                sum(1 for i in r.streams[q] if _seq(i) > r.read_up_to[q])
                for q in self.queues
                if q in r.groups
            )
        return pending, lag

    def heartbeat(self, payload: str, now: float) -> None:
        r = self._call("heartbeat")
        with r.lock:
            r.executors.add(self.consumer)
            beats = r.heartbeats.setdefault(self.consumer, {})
            beats[payload] = now
            for old in [p for p, t in beats.items() if t < now - wire.HEARTBEAT_RETENTION]:
                del beats[old]

    def remove_expired_executors(self, timeout: float, now: float | None = None) -> list[str]:
        """Drop executors silent for *timeout* seconds, under the cleanup lock. (Consumers
        are not kept in the stub's group, so there are none to delete.)"""
        now = self.redis.clock() if now is None else now
        if not self._take_lock("remove_expired_executors", wire.CLEANUP_LOCK, 60):
            return []
        r = self.redis
        with r.lock:
            removed = sorted(
                m
                for m in r.executors
                if m != self.consumer
                and not any(t >= now - timeout for t in r.heartbeats.get(m, {}).values())
            )
            for member in removed:
                r.executors.discard(member)
                r.heartbeats.pop(member, None)
            r.locks.pop(wire.CLEANUP_LOCK, None)
        return removed
