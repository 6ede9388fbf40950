"""systemd notifications, received on real AF_UNIX datagram sockets."""

from __future__ import annotations

import logging
import os
import secrets
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from executor.sdnotify import Notifier, run_watchdog


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # AF_UNIX paths are limited to 107 bytes; pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="sdnotify-") as path:
        yield Path(path)


@pytest.fixture
def receiver(short_dir: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket, standing in for systemd, and its NOTIFY_SOCKET value."""
    path = short_dir / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(5)
        yield sock, str(path)


def received(sock: socket.socket) -> list[bytes]:
    """Every datagram waiting on ``sock``, in order."""
    messages = []
    sock.setblocking(False)
    try:
        while True:
            messages.append(sock.recv(4096))
    except BlockingIOError:
        return messages
    finally:
        sock.settimeout(5)


def test_messages(receiver):
    sock, path = receiver
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    notifier.ready()
    notifier.ready("serving 4 workers")
    notifier.status("draining\nREADY=0")  # a newline cannot smuggle in another assignment
    notifier.watchdog()
    notifier.stopping()
    assert received(sock) == [
        b"READY=1",
        b"READY=1\nSTATUS=serving 4 workers",
        b"STATUS=draining READY=0",
        b"WATCHDOG=1",
        b"STOPPING=1",
    ]
    notifier.close()
    notifier.close()


def test_abstract_namespace_socket():
    name = f"ragfleet-test-{os.getpid()}-{secrets.token_hex(4)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        notifier = Notifier.from_environ({"NOTIFY_SOCKET": "@" + name})
        assert notifier.address == "\0" + name
        notifier.ready("up")
        assert sock.recv(4096) == b"READY=1\nSTATUS=up"
        notifier.close()


def test_no_socket_is_a_no_op():
    notifier = Notifier.from_environ({"WATCHDOG_USEC": "1000000"})
    assert not notifier.enabled
    assert notifier.watchdog_interval is None
    notifier.ready("x")
    notifier.status("x")
    notifier.watchdog()
    notifier.stopping()
    assert notifier._socket is None  # not even a socket was made


def test_unsupported_address_is_a_no_op(caplog):
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": "vsock:2:1234"})
    assert not notifier.enabled
    assert "unsupported NOTIFY_SOCKET" in caplog.text


def test_send_failure_is_logged_once_and_never_raises(short_dir, caplog):
    caplog.set_level(logging.DEBUG, logger="executor.sdnotify")
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": str(short_dir / "nobody-listens")})
    for _ in range(3):
        notifier.ready()
        notifier.watchdog()
    failures = [r for r in caplog.records if "cannot notify systemd" in r.getMessage()]
    assert len(failures) == 1
    notifier.close()


@pytest.mark.parametrize(
    ("environ", "interval"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "100000"}, 0.05),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "<own pid>"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": ""}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(receiver, environ, interval):
    environ = {k: str(os.getpid()) if v == "<own pid>" else v for k, v in environ.items()}
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": receiver[1], **environ})
    assert notifier.watchdog_interval == interval


def test_run_watchdog_without_watchdog_returns_at_once(receiver):
    async def main() -> None:
        with trio.fail_after(1):
            await run_watchdog(Notifier.from_environ({"NOTIFY_SOCKET": receiver[1]}), lambda: True)
            await run_watchdog(Notifier.from_environ({}), lambda: True)

    trio.run(main)
    assert received(receiver[0]) == []


def test_run_watchdog_pings_only_while_alive(receiver, caplog):
    sock, path = receiver
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"})
    alive = True
    pings: dict[str, list[bytes]] = {}

    async def main() -> None:
        nonlocal alive
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_watchdog, notifier, lambda: alive)
            await trio.sleep(0.5)  # ten intervals of 0.05 s
            pings["alive"] = received(sock)
            alive = False  # one trio thread: no ping can be under way as this changes
            await trio.sleep(0.3)
            pings["stuck"] = received(sock)
            alive = True
            await trio.sleep(0.3)
            pings["recovered"] = received(sock)
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert len(pings["alive"]) >= 4
    assert set(pings["alive"]) == {b"WATCHDOG=1"}
    assert pings["stuck"] == []
    assert len(pings["recovered"]) >= 2
    assert "withholding watchdog pings" in caplog.text
    assert "resuming watchdog pings" in caplog.text
    notifier.close()
