"""systemd service notifications (sd_notify(3)) without libsystemd.

Under ``Type=notify`` systemd passes a datagram socket in NOTIFY_SOCKET and, with
``WatchdogSec=``, a deadline in WATCHDOG_USEC. The service sends newline-separated
assignments to it: READY=1 once started, STOPPING=1 when shutting down, WATCHDOG=1 to prove
it is alive, STATUS=... for ``systemctl status``. Outside systemd every call is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Mapping

import trio

log = logging.getLogger(__name__)


class Notifier:
    """Sends notifications to systemd's NOTIFY_SOCKET, if there is one.

    Sending never raises: a notification is advice to the service manager, and failing to
    give it must not take the service down. The first failure is logged at debug level.
    """

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        """``address``: a socket path, or "\\0name" for the abstract namespace; None: no-op.

        ``watchdog_usec``: the watchdog deadline in microseconds; None: no watchdog.
        """
        self.address = address
        self.watchdog_usec = watchdog_usec
        self._socket: socket.socket | None = None
        self._failure_logged = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Notifier:
        """A Notifier configured as systemd configured this process (pass ``os.environ``)."""
        address = environ.get("NOTIFY_SOCKET") or None
        if address is not None:
            if address.startswith("@"):
                address = "\0" + address[1:]
            elif not address.startswith("/"):  # e.g. vsock:, which systemd also allows
                log.warning("unsupported NOTIFY_SOCKET %r; not notifying systemd", address)
                address = None
        return cls(address, watchdog_usec(environ))

    @property
    def enabled(self) -> bool:
        """Whether notifications go anywhere."""
        return self.address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between watchdog pings: half the deadline, as sd_watchdog_enabled(3) advises.

        None when there is no watchdog, or no socket to ping it through.
        """
        if self.address is None or self.watchdog_usec is None:
            return None
        return self.watchdog_usec / 2 / 1_000_000

    def ready(self, status: str | None = None) -> None:
        """Startup is complete; with ``status``, set the status text in the same datagram."""
        self._send("READY=1" if status is None else f"READY=1\nSTATUS={_one_line(status)}")

    def stopping(self) -> None:
        """Shutdown has begun."""
        self._send("STOPPING=1")

    def watchdog(self) -> None:
        """Reset the watchdog timer."""
        self._send("WATCHDOG=1")

    def status(self, text: str) -> None:
        """Set the free-form status shown by ``systemctl status``."""
        self._send(f"STATUS={_one_line(text)}")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def _send(self, message: str) -> None:
        if self.address is None:
            return
        try:
            if self._socket is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                # Non-blocking: a full receive queue drops a notification, never stalls trio.
                sock.setblocking(False)
                self._socket = sock
            self._socket.sendto(message.encode(), self.address)
        except OSError as exc:
            if not self._failure_logged:
                self._failure_logged = True
                log.debug("cannot notify systemd at %r: %s", self.address, exc)


def _one_line(text: str) -> str:
    # A newline would end the assignment and let the rest of the text set other variables.
    return " ".join(text.splitlines())


def watchdog_usec(environ: Mapping[str, str]) -> int | None:
    """WATCHDOG_USEC if it is set, valid, and meant for this process (WATCHDOG_PID)."""
    usec = environ.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = environ.get("WATCHDOG_PID")
    # A child that inherited its parent's environment must not ping on the parent's behalf.
    if pid and pid != str(os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        value = 0
    if value <= 0:
        log.warning("ignoring invalid WATCHDOG_USEC %r", usec)
        return None
    return value


async def run_watchdog(notifier: Notifier, is_alive: Callable[[], bool]) -> None:
    """Ping the watchdog every ``notifier.watchdog_interval`` seconds, forever.

    A ping is sent only while ``is_alive()`` returns True, so that systemd restarts a process
    whose event loop still turns but whose work is stuck. Returns at once if no watchdog is
    configured.
    """
    interval = notifier.watchdog_interval
    if interval is None:
        return
    alive = True
    while True:
        if is_alive():
            if not alive:
                log.warning("liveness restored; resuming watchdog pings")
            notifier.watchdog()
            alive = True
        elif alive:
            log.warning("liveness check failed; withholding watchdog pings")
            alive = False
        await trio.sleep(interval)
