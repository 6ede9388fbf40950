"""Outage: what it logs and how it paces retries, on a clock the test moves."""

from __future__ import annotations

import logging

import pytest

from executor.outage import Outage


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _outage(clock: Clock) -> Outage:
    return Outage("database", logging.getLogger("test.outage"), settle=10.0, clock=clock)


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records]


def test_an_outage_is_logged_when_it_begins_and_when_it_ends(clock, caplog):
    outage = _outage(clock)
    delays = []
    for _ in range(6):  # each try fails, once the last back-off has run out
        delays.append(outage.failed(OSError("down")))
        clock.now += delays[-1]
    assert delays == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0]
    clock.now += 7.5 - sum(delays)
    outage.recovered()
    outage.recovered()
    assert _lines(caplog) == [
        "database unavailable: down; retrying until it is back",
        "database available again after 7.5 s",
    ]
    assert not outage.down


def test_one_that_comes_and_goes_is_logged_once_and_backed_off_across_its_turns(clock, caplog):
    outage = _outage(clock)
    delays = []
    for _ in range(8):  # down for a second, up for a second, eight times
        delays.append(outage.failed(OSError("read-only")))
        clock.now += 1
        outage.recovered()
        clock.now += 1
    assert delays == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0]  # not 0.2 at each turn
    assert _lines(caplog) == [
        "database unavailable: read-only; retrying until it is back",
        "database available again after 1.0 s",
        "database unavailable again 1.0 s after it came back: read-only; it comes and goes: "
        "logged again once it has held for 10 s",
    ]
    clock.now += 9  # held for 10 s since the last recovery
    outage.recovered()
    assert _lines(caplog)[3:] == [
        "database available again: it has held for 10 s, after 7 relapses"
    ]
    clock.now += 30
    assert outage.failed(OSError("down")) == 0.2  # a new outage, logged as one
    assert _lines(caplog)[4:] == ["database unavailable: down; retrying until it is back"]


def test_a_failure_long_after_the_last_one_is_a_new_outage(clock, caplog):
    outage = _outage(clock)
    outage.failed(OSError("down"))
    outage.recovered()
    clock.now += 10
    assert outage.failed(OSError("down again")) == 0.2
    assert _lines(caplog)[-1] == "database unavailable: down again; retrying until it is back"
    assert outage.holds() and outage.until_retry() == pytest.approx(0.2)


def test_a_new_outage_after_a_relapsing_one_says_the_last_one_ended(clock, caplog):
    """Nothing came to see the relapsing outage hold (no success in between): its end is
    logged when the next outage begins."""
    outage = _outage(clock)
    for _ in range(3):
        outage.failed(OSError("read-only"))
        clock.now += 1
        outage.recovered()
    clock.now += 60
    outage.failed(OSError("down"))
    assert _lines(caplog)[-2:] == [
        "database available again: it has held for 60 s, after 2 relapses",
        "database unavailable: down; retrying until it is back",
    ]


def test_the_failures_of_one_round_grow_the_back_off_once(clock):
    """Four tasks in flight meet the outage at once: one failed try, not four."""
    outage = _outage(clock)
    assert [outage.failed(OSError("down")) for _ in range(4)] == pytest.approx([0.2] * 4)
    clock.now += 0.1
    assert outage.failed(OSError("down")) == pytest.approx(0.1)  # the same round, late
    clock.now += 0.1
    assert [outage.failed(OSError("down")) for _ in range(4)] == pytest.approx([0.4] * 4)
    assert outage.until_retry() == pytest.approx(0.4)


def test_an_outage_logs_the_error_in_the_words_it_is_given(clock, caplog):
    outage = Outage(
        "Redis", logging.getLogger("test.outage"), clock=clock, describe=lambda e: "MISCONF"
    )
    outage.failed(OSError("Command # 1 (XCLAIM ...) of pipeline caused error: MISCONF"))
    assert _lines(caplog) == ["Redis unavailable: MISCONF; retrying until it is back"]


def test_up_for_counts_from_the_end_of_the_last_outage(clock):
    outage = _outage(clock)
    assert outage.up_for() == float("inf")  # never down
    outage.failed(OSError("down"))
    clock.now += 3
    assert outage.up_for() == 0.0
    outage.recovered()
    clock.now += 2
    assert outage.up_for() == 2.0


def test_a_failure_noticed_on_the_side_begins_an_outage_unless_it_is_the_last_ones(clock, caplog):
    """A lease renewal or a read's look-up that finds its connection broken has nothing that
    retries it: noticed, it begins an outage (logged, paced). During an outage, or within
    *settle* of its end (a connection it broke, found only now), it adds nothing."""
    outage = _outage(clock)
    outage.noticed(OSError("lost connection"))
    assert outage.down and outage.until_retry() == pytest.approx(0.2)
    clock.now += 0.2
    outage.noticed(OSError("lost connection"))  # during it: not a failed try
    assert outage.until_retry() == 0.0
    outage.recovered()
    clock.now += 9.9
    outage.noticed(OSError("lost connection"))  # its leftover
    assert not outage.down
    clock.now += 0.1
    outage.noticed(OSError("lost connection"))
    assert outage.down
    assert _lines(caplog) == [
        "database unavailable: lost connection; retrying until it is back",
        "database available again after 0.2 s",
        "database unavailable: lost connection; retrying until it is back",
    ]
