"""Coalesced (executor/worker/coalesce.py): the done-writes of tasks ending together share
one hop; each caller still meets only its own item's error. Pure trio, no servers: the hop
is a function that records what it was given."""

from __future__ import annotations

import pytest
import redis
import trio

from executor.worker.coalesce import Coalesced


class Hop:
    def __init__(self, fail: dict[str, BaseException] | None = None) -> None:
        self.calls: list[list[str]] = []
        self.fail = fail or {}

    async def __call__(self, items: list[str]) -> None:
        self.calls.append(list(items))
        await trio.sleep(0.01)  # a thread hop takes a while: others come meanwhile
        for item in items:
            if item in self.fail:
                raise self.fail[item]


def _run_all(coalesced: Coalesced[str], items: list[str]) -> dict[str, BaseException | None]:
    results: dict[str, BaseException | None] = {}

    async def one(item: str) -> None:
        try:
            await coalesced(item)
        except Exception as exc:
            results[item] = exc
        else:
            results[item] = None

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for item in items:
                nursery.start_soon(one, item)

    trio.run(main)
    return results


def test_callers_ending_together_share_one_hop():
    hop = Hop()
    assert _run_all(Coalesced(hop), list("abcde")) == dict.fromkeys("abcde")
    assert [sorted(c) for c in hop.calls] == [list("abcde")]


def test_callers_coming_while_a_hop_runs_share_the_next():
    hop = Hop()
    coalesced = Coalesced(hop)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(coalesced, "a")
            await trio.sleep(0.002)  # the first hop runs
            for item in "bcd":
                nursery.start_soon(coalesced, item)

    trio.run(main)
    assert [sorted(c) for c in hop.calls] == [["a"], ["b", "c", "d"]]


def test_an_error_of_one_item_is_that_callers_alone():
    bug = ValueError("bad row")
    hop = Hop(fail={"c": bug})
    results = _run_all(Coalesced(hop), list("abcd"))
    assert results == {"a": None, "b": None, "c": bug, "d": None}
    assert sorted(hop.calls[0]) == list("abcd")  # together first, then each alone
    assert sorted(hop.calls[1:]) == [["a"], ["b"], ["c"], ["d"]]


def test_an_outage_is_every_callers():
    down = redis.ConnectionError("Connection refused")
    hop = Hop(fail={"b": down})
    results = _run_all(Coalesced(hop), list("abc"))
    assert results == dict.fromkeys("abc", down)
    assert len(hop.calls) == 1  # not retried item by item: each leaves its entry pending


def test_a_caller_cancelled_while_waiting_still_sees_its_item_written():
    hop = Hop()
    coalesced = Coalesced(hop)
    finished = []

    async def main() -> None:
        with trio.move_on_after(0.001):
            await coalesced("a")
            finished.append("a")

    trio.run(main)
    assert hop.calls == [["a"]] and finished == ["a"]  # shielded, as the thread hop is


@pytest.mark.parametrize("idle", [True, False])
def test_until_idle_waits_for_the_running_hop_only(idle):
    hop = Hop()
    coalesced = Coalesced(hop)
    seen = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            if not idle:
                nursery.start_soon(coalesced, "a")
                await trio.sleep(0.002)
            await coalesced.until_idle()
            seen.append(list(hop.calls))

    trio.run(main)
    assert seen == ([[]] if idle else [[["a"]]])
