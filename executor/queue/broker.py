"""The Redis Streams side of the executor: one synchronous method per protocol step.

redis-py is synchronous, so the worker calls every method here through
``trio.to_thread.run_sync``; nothing here knows about trio. Redis failing to take commands
(down, loading, out of memory, a read-only replica) is what :func:`executor.errors.is_outage`
calls an outage: the worker backs off and acks nothing.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from typing import Any

import redis

from ..errors import RedisAnswer
from . import wire
from .deliveries import READ_IN_ORDER, Delivery, as_read_reply, deliveries_of, id_key, text
from .roster import Roster, latest_heartbeat

_PEL_SCAN_LIMIT = 10_000


def redis_error_text(exc: BaseException) -> str:
    """Redis's own words: redis-py prefixes an error met inside a pipeline with the command
    (an XADD with its whole message), which says nothing an operator needs."""
    return _PIPELINE_PREFIX.sub("", str(exc))


_PIPELINE_PREFIX = re.compile(r"^Command # \d+ \(.*\) of pipeline caused error: ", re.DOTALL)


# Compare-and-delete: release the cleanup lock only if we still hold it.
_RELEASE_LOCK = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class Broker:
    """Queue operations of one consumer, ``consumer``, on the priority streams."""

    def __init__(
        self, client: redis.Redis, consumer: str, priorities: Sequence[int] = wire.PRIORITIES
    ) -> None:
        self.client = client
        self.consumer = consumer
        self.queues = [wire.queue_name(p) for p in priorities]

    def local_address(self) -> str:
        """This host's address on its connection to Redis: the one heartbeats carry."""
        pool = self.client.connection_pool
        connection = pool.get_connection()
        try:
            return connection._sock.getsockname()[0] if connection._sock else ""
        finally:
            pool.release(connection)

    def latest_heartbeat(self, name: str) -> tuple[float, dict[str, Any]] | None:
        """The newest heartbeat of executor *name* and its timestamp, or None."""
        return latest_heartbeat(self.client, name)

    def roster(self) -> Roster:
        """The fleet-wide reads (heartbeats, dead letters, queued ids) on this connection."""
        return Roster(self.client)

    # -- setup -------------------------------------------------------------------------------

    def ensure_groups(self) -> list[str]:
        """Create each stream's consumer group if missing (also after Redis lost its data);
        returns the queues whose group had to be created."""
        created = []
        for queue in self.queues:
            try:
                self.client.xgroup_create(queue, wire.GROUP, id="0", mkstream=True)
            except RedisAnswer as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            else:
                created.append(queue)
        if created:  # the first to see the loss sets the time (see queues_lost_at)
            now_ms = int(time.time() * 1000)
            self.client.set(wire.QUEUES_LOST_AT, now_ms, nx=True, ex=wire.QUEUES_LOST_TTL)
        return created

    def groups_missing(self) -> bool:
        """Whether a queue lacks its consumer group: Redis lost its data, and no executor
        has noticed yet."""
        for queue in self.queues:
            try:
                groups = self.client.xinfo_groups(queue)
            except RedisAnswer:  # no such stream
                return True
            if not any(text(g["name"]) == wire.GROUP for g in groups):
                return True
        return False

    def queues_lost_at(self) -> float | None:
        """When (epoch seconds) the first executor found Redis without its groups after
        its last loss, if within the last hour (QUEUES_LOST_TTL)."""
        value = self.client.get(wire.QUEUES_LOST_AT)
        return int(value) / 1000 if value else None

    def take_requeue_turn(self) -> bool:
        """Take the fleet's turn to re-enqueue lost tasks, if free (held a minute at most)."""
        return self._take_lock(wire.REQUEUE_LOCK, 60)

    def give_back_requeue_turn(self) -> None:
        self._release_lock(wire.REQUEUE_LOCK)

    def take_sweep_turn(self, period: int) -> bool:
        """Whether this consumer is the fleet's to sweep for lost tasks now: no other has in
        the last *period* seconds (the key is never released, only left to expire)."""
        return self._take_lock(wire.SWEEP_LOCK, period)

    def _take_lock(self, key: str, ttl: int) -> bool:
        """A fleet-wide lock held by this consumer, if free; it expires after *ttl* seconds."""
        return bool(self.client.set(key, self.consumer, nx=True, ex=ttl))

    def _release_lock(self, key: str) -> None:
        """Release *key* if this consumer still holds it (it may have expired meanwhile)."""
        self.client.eval(_RELEASE_LOCK, 1, key, self.consumer)

    # -- reading -----------------------------------------------------------------------------

    def read_new(self, count: int, block_ms: int) -> list[Delivery]:
        """Never-delivered entries, priority 1 first.

        Reads each stream in priority order for exactly what is free (*count*), in one
        round trip (a script); when all are empty, blocks up to *block_ms* on all of them
        at once for one entry each, so a new task wakes the read at once. That read can
        return one entry more than *count*: Redis 7.2 and later, woken, run the read
        again over both streams (7.0 answers from the stream that woke it). The caller
        finds a slot for the extra entry, or holds it; an entry read is never dropped.
        """
        try:
            reply = self.client.eval(
                READ_IN_ORDER, len(self.queues), *self.queues, wire.GROUP, self.consumer, count
            )
        except RedisAnswer:
            # Inside a script Redis words a refusal its own way ("The user executing the
            # script can't run this command"): read again without it, for the error in
            # Redis's own words and class (NOPERM, NOGROUP, MISCONF...) or, if only EVAL
            # is refused, the entries.
            got = self._read_each(count)
        else:
            got = deliveries_of(as_read_reply(reply), deliveries=1)
        if got or block_ms <= 0:
            return got
        streams = {queue: ">" for queue in self.queues}
        reply = self.client.xreadgroup(wire.GROUP, self.consumer, streams, count=1, block=block_ms)
        return self._ordered(deliveries_of(reply, deliveries=1))

    def _read_each(self, count: int) -> list[Delivery]:
        """:meth:`read_new`'s first step, one XREADGROUP per stream."""
        got: list[Delivery] = []
        for queue in self.queues:
            if len(got) >= count:
                break
            reply = self.client.xreadgroup(
                wire.GROUP, self.consumer, {queue: ">"}, count=count - len(got)
            )
            got += deliveries_of(reply, deliveries=1)
        return got

    def replay_own(self, exclude: set[str], count: int) -> list[Delivery]:
        """Up to *count* entries already delivered to this consumer and not in *exclude*.

        A restarted worker (same consumer name) finds here what it held when it died; a
        running one finds what an outage left unacknowledged. The entries are re-claimed
        (XCLAIM), which counts one more delivery of each.
        """
        replay: list[Delivery] = []
        for queue in self.queues:
            want = count - len(replay)
            if want <= 0:
                break
            pending = self.client.xpending_range(
                queue, wire.GROUP, "-", "+", _PEL_SCAN_LIMIT, consumername=self.consumer
            )
            ids = [text(p["message_id"]) for p in pending]
            ids = [entry_id for entry_id in ids if entry_id not in exclude][:want]
            if ids:
                for entry_id, fields in self.client.xclaim(
                    queue, wire.GROUP, self.consumer, 0, ids
                ):
                    replay.append(Delivery(queue, text(entry_id), fields or None))
        return self.with_delivery_counts(replay)

    def reclaim(self, min_idle_ms: int, count: int) -> list[Delivery]:
        """Take over entries idle longer than *min_idle_ms* from any consumer (XAUTOCLAIM)."""
        claimed: list[Delivery] = []
        for queue in self.queues:
            if len(claimed) >= count:
                break
            reply = self.client.xautoclaim(
                queue, wire.GROUP, self.consumer, min_idle_ms, "0-0", count=count - len(claimed)
            )
            for entry_id, fields in reply[1]:
                claimed.append(Delivery(queue, text(entry_id), fields))
        return self.with_delivery_counts(claimed)

    def with_delivery_counts(self, deliveries: list[Delivery]) -> list[Delivery]:
        """Fill in times-delivered from the PEL (XPENDING), and how many of those deliveries
        an outage cut short, for replayed or claimed entries."""
        if not deliveries:
            return []
        keys = [d.key for d in deliveries]
        outages = dict(zip(keys, self.client.hmget(wire.OUTAGE_DELIVERIES, keys), strict=True))
        counted = []
        for queue in self.queues:
            mine = [d for d in deliveries if d.queue == queue]
            if not mine:
                continue
            ids = sorted((d.entry_id for d in mine), key=id_key)
            pending = self.client.xpending_range(
                queue,
                wire.GROUP,
                min=ids[0],
                max=ids[-1],
                count=_PEL_SCAN_LIMIT,  # this consumer's PEL: running tasks plus this batch
                consumername=self.consumer,
            )
            times = {text(p["message_id"]): p["times_delivered"] for p in pending}
            counted += [
                Delivery(
                    d.queue,
                    d.entry_id,
                    d.fields,
                    times.get(d.entry_id, 1),
                    int(outages[d.key] or 0),
                )
                for d in mine
            ]
        return self._ordered(counted)

    def _ordered(self, deliveries: list[Delivery]) -> list[Delivery]:
        rank = {queue: index for index, queue in enumerate(self.queues)}
        return sorted(deliveries, key=lambda d: (rank[d.queue], id_key(d.entry_id)))

    def note_clean_stop(self) -> None:
        """Record that this consumer drained and stopped: nothing it holds killed it."""
        self.client.hset(wire.CLEAN_STOPS, self.consumer, wire.iso_now())

    def take_clean_stop(self) -> bool:
        """Whether this consumer's last run stopped cleanly; forgets it, for the next run."""
        pipe = self.client.pipeline(transaction=True)
        pipe.hget(wire.CLEAN_STOPS, self.consumer)
        pipe.hdel(wire.CLEAN_STOPS, self.consumer)
        stopped_at, _ = pipe.execute()
        return stopped_at is not None

    # -- settling ----------------------------------------------------------------------------

    def note_outage(self, delivery: Delivery) -> None:
        """Record that an outage cut this delivery short, so that the next one does not count
        against max_deliveries, even in an executor started since."""
        self.client.hincrby(wire.OUTAGE_DELIVERIES, delivery.key, 1)

    def leave_to_holder(self, delivery: Delivery) -> None:
        """Hand the entry to wire.HELD_ELSEWHERE (XCLAIM JUSTID: no delivery counted), out of
        this consumer's pending entries, which it would replay after a restart without
        checking; the delivery that found it held is recorded as an outage's."""
        pipe = self.client.pipeline(transaction=True)
        pipe.xclaim(
            delivery.queue, wire.GROUP, wire.HELD_ELSEWHERE, 0, [delivery.entry_id], justid=True
        )
        pipe.hincrby(wire.OUTAGE_DELIVERIES, delivery.key, 1)
        pipe.execute()

    def ack(self, delivery: Delivery) -> None:
        """Acknowledge and delete the entry, so the stream holds only unfinished work."""
        self.ack_all([delivery])

    def ack_all(self, deliveries: Iterable[Delivery]) -> None:
        """:meth:`ack` each of *deliveries*, in one round trip: one XACK and one XDEL per
        queue naming every entry, one HDEL, in one MULTI (all or none)."""
        by_queue: dict[str, list[str]] = {}
        keys = []
        for delivery in deliveries:
            by_queue.setdefault(delivery.queue, []).append(delivery.entry_id)
            keys.append(delivery.key)
        if not keys:
            return
        pipe = self.client.pipeline(transaction=True)
        for queue, ids in by_queue.items():
            pipe.xack(queue, wire.GROUP, *ids)
            pipe.xdel(queue, *ids)
        pipe.hdel(wire.OUTAGE_DELIVERIES, *keys)
        pipe.execute()

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Copy the entry to the dead-letter stream with why, then ack and delete it."""
        fields = {text(k): text(v) for k, v in (delivery.fields or {}).items()}
        record = {
            **fields,
            "queue": delivery.queue,
            "entry_id": delivery.entry_id,
            "deliveries": str(delivery.deliveries),
            "reason": reason,
            "consumer": self.consumer,
            "at": wire.iso_now(),
        }
        pipe = self.client.pipeline(transaction=True)
        pipe.xadd(wire.DEAD_LETTER_STREAM, record)
        pipe.xack(delivery.queue, wire.GROUP, delivery.entry_id)
        pipe.xdel(delivery.queue, delivery.entry_id)
        pipe.hdel(wire.OUTAGE_DELIVERIES, delivery.key)
        pipe.execute()

    def keep_alive(self, deliveries: Iterable[Delivery]) -> None:
        """Reset the idle time of running tasks' entries (XCLAIM JUSTID): none is reclaimed."""
        by_queue: dict[str, list[str]] = {}
        for delivery in deliveries:
            by_queue.setdefault(delivery.queue, []).append(delivery.entry_id)
        pipe = self.client.pipeline(transaction=False)
        for queue, ids in by_queue.items():
            pipe.xclaim(queue, wire.GROUP, self.consumer, 0, ids, justid=True)
        pipe.execute()

    # -- cancellation ------------------------------------------------------------------------

    def cancelled(self, task_ids: Sequence[str]) -> set[str]:
        if not task_ids:
            return set()
        pipe = self.client.pipeline(transaction=False)
        for task_id in task_ids:
            pipe.exists(wire.cancel_key(task_id))
        return {t for t, found in zip(task_ids, pipe.execute(), strict=True) if found}

    # -- fleet bookkeeping -------------------------------------------------------------------

    def queue_info(self) -> tuple[int, int]:
        """(pending, lag) of the group summed over the queues, as the heartbeat reports them."""
        pending = lag = 0
        for queue in self.queues:
            try:
                groups = self.client.xinfo_groups(queue)
            except RedisAnswer as exc:
                if "no such key" not in str(exc):
                    raise
                continue  # Redis lost the stream: no reason to go without a heartbeat
            for group in groups:
                if text(group["name"]) == wire.GROUP:
                    pending += group.get("pending") or 0
                    lag += group.get("lag") or 0
        return pending, lag

    def heartbeat(self, payload: str, now: float) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.sadd(wire.EXECUTORS_SET, self.consumer)
        pipe.zadd(self.consumer, {payload: now})
        pipe.zremrangebyscore(self.consumer, 0, now - wire.HEARTBEAT_RETENTION)
        pipe.execute()

    def remove_expired_executors(self, timeout: float, now: float | None = None) -> list[str]:
        """Under the cleanup lock, drop executors silent for *timeout* seconds.

        A silent executor leaves TASKEXE and loses its heartbeats at once (as upstream); its
        consumer is deleted from the groups only once it has no pending entries left, so
        its tasks are reclaimed first, never dropped.
        """
        now = time.time() if now is None else now
        if not self._take_lock(wire.CLEANUP_LOCK, wire.CLEANUP_LOCK_TTL):
            return []
        removed = []
        try:
            for member in sorted(text(m) for m in self.client.smembers(wire.EXECUTORS_SET)):
                if member == self.consumer:
                    continue
                if self.client.zcount(member, now - timeout, "+inf"):
                    continue
                self.client.srem(wire.EXECUTORS_SET, member)
                self.client.delete(member)
                removed.append(member)
            self._delete_drained_consumers()
        finally:
            self._release_lock(wire.CLEANUP_LOCK)
        return removed

    def _delete_drained_consumers(self) -> None:
        alive = {text(m) for m in self.client.smembers(wire.EXECUTORS_SET)} | {self.consumer}
        for queue in self.queues:
            for consumer in self.client.xinfo_consumers(queue, wire.GROUP):
                name = text(consumer["name"])
                if name not in alive and not consumer.get("pending"):
                    self.client.xgroup_delconsumer(queue, wire.GROUP, name)
