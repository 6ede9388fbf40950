"""``ragfleet status``'s queue figures, ``--json`` and ``--watch``, as a subprocess on the
suite's real Redis (no executor runs: the entries stay where the test puts them)."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import time

from executors import RAGFLEET

from executor.queue import wire
from executor.queue.broker import Broker

Q0, Q1 = wire.queue_name(0), wire.queue_name(1)


def _fill(fleet) -> Broker:
    """Five tasks in the priority-0 queue, one of them taken by consumer c1, one other
    dead-lettered; one in the priority-1 queue, not taken."""
    fleet.submit("noop", count=5)
    consumer = Broker(fleet.redis, "c1", priorities=(0,))
    consumer.ensure_groups()
    _, second = consumer.read_new(2, 0)
    consumer.dead_letter(second, "test")
    fleet.submit("noop", priority=1)
    return consumer


def test_status_shows_the_queues_and_dead_letters(fleet):
    _fill(fleet)
    result = fleet.cli("status", "--json")
    assert result.returncode == 1  # no executor is registered
    report = json.loads(result.stdout)
    assert report["executors"] == [] and report["dead_letters"] == 1
    q1, q0 = report["queues"]
    assert (q1["queue"], q1["length"], q1["waiting"], q1["pending"]) == (Q1, 1, 1, 0)
    assert (q0["queue"], q0["length"], q0["waiting"], q0["pending"]) == (Q0, 4, 3, 1)
    assert q0["consumers"] == {"c1": 1} and 0 <= q0["oldest_age"] < 30
    assert abs(report["taken_at"] - time.time()) < 30

    table = fleet.cli("status").stdout
    assert "QUEUE" in table and "OLDEST" in table and "dead letters: 1" in table
    (row,) = [line for line in table.splitlines() if line.startswith(Q0 + " ")]
    assert row.split()[1:4] == ["4", "3", "1"] and row.endswith("c1=1")


def _watch(fleet, *args: str, **popen) -> subprocess.Popen:
    argv = [str(RAGFLEET), "--config", str(fleet.config), "status", "--watch", *args]
    return subprocess.Popen(argv, **popen)


def test_watch_on_a_pipe_prints_snapshots_one_after_another_until_ctrl_c(fleet):
    _fill(fleet)
    process = _watch(fleet, "--json", "--interval", "0.2", stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    first = json.loads(process.stdout.readline())
    fleet.submit("noop", count=2)  # the next snapshots see them
    deadline = time.monotonic() + 10
    while json.loads(process.stdout.readline())["queues"][1]["waiting"] != 5:
        assert time.monotonic() < deadline, "no snapshot saw the new entries"
    assert first["queues"][1]["waiting"] == 3
    process.send_signal(signal.SIGINT)
    assert process.wait(10) == 0


def test_watch_on_a_terminal_redraws_in_place(fleet):
    _fill(fleet)
    leader, follower = pty.openpty()
    process = _watch(fleet, "--interval", "0.2", stdout=follower, stderr=follower)
    os.close(follower)
    output = b""
    deadline = time.monotonic() + 15
    while output.count(b"\x1b[H\x1b[2J") < 2:
        assert time.monotonic() < deadline, output
        if select.select([leader], [], [], 0.5)[0]:
            output += os.read(leader, 65536)
    process.send_signal(signal.SIGINT)
    assert process.wait(10) == 0
    os.close(leader)
    frame = output.split(b"\x1b[H\x1b[2J")[1].decode()
    assert "dead letters: 1" in frame and Q0 in frame
