"""The StubBroker keeps the real Broker's word: every test here runs against the Broker on
the suite's redis-server and against the StubBroker, with the same assertions, for each
method the worker and LostTasks call. A behaviour the stub gets wrong fails here, not in a
worker test that trusts it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from executor.queue import wire
from executor.queue.broker import Broker, Delivery
from executor.queue.stub import StubBroker, StubRedis


@dataclass
class Side:
    """One implementation: brokers by consumer name, and Redis as a test writes it."""

    broker: Callable[[str], Any]
    enqueue: Callable[[dict[str, str], int], str]
    cancel: Callable[[str], None]
    age: Callable[[float], None]  # let seconds pass, for idle times
    dead_letters: Callable[[], list[dict[str, str]]]


def _real(client) -> Side:
    def enqueue(fields: dict[str, str], priority: int) -> str:
        return client.xadd(wire.queue_name(priority), fields).decode()

    def dead_letters() -> list[dict[str, str]]:
        entries = client.xrange(wire.DEAD_LETTER_STREAM)
        return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in entries]

    return Side(
        broker=lambda name: Broker(client, name),
        enqueue=enqueue,
        cancel=lambda task_id: client.set(wire.cancel_key(task_id), 1),
        age=time.sleep,
        dead_letters=dead_letters,
    )


def _stub() -> Side:
    now = [1_000_000.0]

    def age(seconds: float) -> None:
        now[0] += seconds

    redis = StubRedis(clock=lambda: now[0])
    return Side(
        broker=lambda name: StubBroker(redis, name),
        enqueue=redis.enqueue,
        cancel=redis.cancel,
        age=age,
        dead_letters=lambda: list(redis.dead_letters),
    )


@pytest.fixture(params=["redis", "stub"])
def side(request) -> Side:
    if request.param == "stub":
        return _stub()
    return _real(request.getfixturevalue("redis_client"))


A, B = "task_executor_a_1", "task_executor_b_1"


def _task(n: int) -> dict[str, str]:
    return wire.encode_message({"id": f"t{n}"})


def _ids(deliveries: list[Delivery]) -> list[str]:
    return [json.loads(d.fields[b"message"])["id"] if d.fields else "-" for d in deliveries]


def _counts(deliveries: list[Delivery]) -> list[tuple[int, int]]:
    return [(d.deliveries, d.outage_deliveries) for d in deliveries]


def test_groups_are_created_once_and_missing_until_then(side):
    a = side.broker(A)
    assert a.groups_missing()
    assert a.queues_lost_at() is None
    assert a.ensure_groups() == [wire.queue_name(1), wire.queue_name(0)]
    assert a.queues_lost_at() is not None
    assert not a.groups_missing()
    assert side.broker(B).ensure_groups() == []


def test_read_new_takes_priority_one_first_and_only_what_is_free(side):
    a = side.broker(A)
    a.ensure_groups()
    for n, priority in enumerate([0, 1, 0, 1]):
        side.enqueue(_task(n), priority)
    assert _ids(a.read_new(3, 0)) == ["t1", "t3", "t0"]
    assert _ids(side.broker(B).read_new(5, 0)) == ["t2"]  # each entry to one consumer
    assert a.read_new(5, 0) == []
    assert a.queue_info() == (4, 0)  # (pending, lag)


def test_read_new_blocks_for_at_most_its_timeout_and_misses_no_group(side):
    a = side.broker(A)
    a.ensure_groups()
    started = time.monotonic()
    assert a.read_new(1, 50) == []
    assert 0.04 <= time.monotonic() - started < 1


def test_queue_info_counts_entries_not_read_yet_as_lag(side):
    a = side.broker(A)
    a.ensure_groups()
    for n in range(3):
        side.enqueue(_task(n), 0)
    a.read_new(1, 0)
    assert a.queue_info() == (1, 2)


def test_replay_own_counts_a_delivery_and_skips_excluded_and_others(side):
    a, b = side.broker(A), side.broker(B)
    a.ensure_groups()
    for n in range(3):
        side.enqueue(_task(n), 0)
    first, _ = a.read_new(2, 0)
    b.read_new(1, 0)
    replayed = a.replay_own({first.entry_id}, 5)
    assert (_ids(replayed), _counts(replayed)) == (["t1"], [(2, 0)])
    assert _counts(a.replay_own(set(), 1)) == [(2, 0)]  # t0, its second delivery
    assert a.replay_own(set(), 0) == []


def test_reclaim_takes_only_entries_idle_long_enough(side):
    a, b = side.broker(A), side.broker(B)
    a.ensure_groups()
    side.enqueue(_task(0), 0)
    side.enqueue(_task(1), 0)
    a.read_new(1, 0)
    side.age(0.2)
    a.read_new(1, 0)  # t1: fresh
    taken = b.reclaim(150, 5)
    assert (_ids(taken), _counts(taken)) == (["t0"], [(2, 0)])
    assert a.replay_own(set(), 5)[0].entry_id != taken[0].entry_id  # t0 is b's now
    assert b.reclaim(150, 5) == []  # claiming made it fresh


def test_keep_alive_keeps_an_entry_from_being_reclaimed(side):
    a = side.broker(A)
    a.ensure_groups()
    side.enqueue(_task(0), 0)
    (held,) = a.read_new(1, 0)
    side.age(0.2)
    a.keep_alive([held])
    assert side.broker(B).reclaim(150, 5) == []
    assert _counts(a.replay_own(set(), 5)) == [(2, 0)]  # keep_alive counted no delivery


def test_outage_deliveries_are_noted_and_go_with_the_ack(side):
    a = side.broker(A)
    a.ensure_groups()
    side.enqueue(_task(0), 0)
    (delivery,) = a.read_new(1, 0)
    a.note_outage(delivery)
    a.note_outage(delivery)
    (replayed,) = a.replay_own(set(), 1)
    assert _counts([replayed]) == [(2, 2)]
    a.ack(replayed)
    assert a.queue_info() == (0, 0)
    assert a.replay_own(set(), 5) == []
    side.enqueue(_task(1), 0)
    (again,) = a.read_new(1, 0)
    assert _counts(a.replay_own(set(), 1)) == [(2, 0)]  # no note left behind
    a.ack_all([again])


def test_ack_all_settles_every_delivery(side):
    a = side.broker(A)
    a.ensure_groups()
    for n in range(3):
        side.enqueue(_task(n), n % 2)
    a.ack_all(a.read_new(3, 0))
    assert a.queue_info() == (0, 0)
    assert a.replay_own(set(), 5) == []


def test_ack_all_of_a_batch_forgets_its_outage_notes_and_of_none_does_nothing(side):
    a = side.broker(A)
    a.ensure_groups()
    a.ack_all([])
    for n in range(4):
        side.enqueue(_task(n), n % 2)
    batch = a.read_new(4, 0)
    for delivery in batch:
        a.note_outage(delivery)
    a.ack_all(batch[:3])
    (left,) = a.replay_own(set(), 5)
    assert left.entry_id == batch[3].entry_id and _counts([left]) == [(2, 1)]
    a.ack_all([left])
    assert a.queue_info() == (0, 0)
    side.enqueue(_task(9), 0)
    assert _counts(a.read_new(1, 0)) == [(1, 0)]


def test_leave_to_holder_moves_the_entry_out_of_the_consumers_pending(side):
    a, b = side.broker(A), side.broker(B)
    a.ensure_groups()
    side.enqueue(_task(0), 0)
    (delivery,) = a.read_new(1, 0)
    a.leave_to_holder(delivery)
    assert a.replay_own(set(), 5) == []
    assert a.queue_info() == (1, 0)  # still pending, held elsewhere
    assert b.reclaim(150, 5) == []  # idle time reset
    side.age(0.2)
    (taken,) = b.reclaim(150, 5)
    assert _counts([taken]) == [(2, 1)]  # this delivery is the outage's, not the task's


def test_dead_letter_records_why_and_settles_the_entry(side):
    a = side.broker(A)
    a.ensure_groups()
    side.enqueue(_task(0), 1)
    (delivery,) = a.replay_own(set(), 1) or a.read_new(1, 0)
    a.note_outage(delivery)
    a.dead_letter(delivery, "too many deliveries")
    (record,) = side.dead_letters()
    assert {k: v for k, v in record.items() if k != "at"} == {
        "message": _task(0)["message"],
        "queue": wire.queue_name(1),
        "entry_id": delivery.entry_id,
        "deliveries": "1",
        "reason": "too many deliveries",
        "consumer": A,
    }
    assert a.queue_info() == (0, 0)


def test_cancel_flags_are_read_for_the_ids_asked(side):
    a = side.broker(A)
    side.cancel("t1")
    assert a.cancelled(["t0", "t1"]) == {"t1"}
    assert a.cancelled([]) == set()


def test_a_clean_stop_mark_is_taken_once_and_only_by_its_consumer(side):
    a, b = side.broker(A), side.broker(B)
    assert not a.take_clean_stop()
    a.note_clean_stop()
    assert not b.take_clean_stop()
    assert a.take_clean_stop()
    assert not a.take_clean_stop()


def test_heartbeats_name_the_latest_and_silent_executors_are_removed(side):
    a, b = side.broker(A), side.broker(B)
    a.ensure_groups()  # the cleanup deletes drained consumers from the groups
    assert a.latest_heartbeat(A) is None
    now = time.time()
    a.heartbeat(json.dumps({"n": 1}), now - 10)
    a.heartbeat(json.dumps({"n": 2}), now - 5)
    b.heartbeat(json.dumps({"n": 3}), now)
    assert a.latest_heartbeat(A) == (now - 5, {"n": 2})
    assert b.remove_expired_executors(3, now) == [A]
    assert b.latest_heartbeat(A) is None
    assert a.remove_expired_executors(3, now) == []  # b is alive
    assert isinstance(a.local_address(), str)


def test_turns_are_one_at_a_time(side):
    a, b = side.broker(A), side.broker(B)
    assert a.take_requeue_turn()
    assert not b.take_requeue_turn()
    b.give_back_requeue_turn()  # not b's to give back
    assert not b.take_requeue_turn()
    a.give_back_requeue_turn()
    assert b.take_requeue_turn()
    assert a.take_sweep_turn(60)
    assert not b.take_sweep_turn(60)


def test_the_stub_fails_loudly_on_what_it_does_not_implement():
    broker = StubBroker(StubRedis(), A)
    with pytest.raises(AttributeError, match="client"):
        broker.client  # noqa: B018
