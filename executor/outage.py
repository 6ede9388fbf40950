"""Infrastructure outages: log once when a dependency goes away and once when it is back."""

from __future__ import annotations

import logging
import time

import trio


class DependencyUnavailable(ConnectionError):
    """A service a task needs (document store, embedding endpoint) cannot be reached: the task
    is retried later, never failed."""


class Outage:
    """Tracks one dependency (Redis, the database) and paces retries while it is down.

    ``failed()`` logs only the first failure of an outage and returns the back-off delay;
    ``recovered()`` logs the end of the outage with its length. Nothing here marks a task
    failed: an outage is the infrastructure's problem, not the task's.
    """

    def __init__(self, name: str, log: logging.Logger, first: float = 0.2, cap: float = 5.0):
        self.name = name
        self.log = log
        self.first = first
        self.cap = cap
        self.errors = 0
        self._since: float | None = None
        self._delay = first
        self.retry_at = 0.0  # monotonic time before which a retry is pointless

    @property
    def down(self) -> bool:
        return self._since is not None

    def failed(self, exc: BaseException) -> float:
        self.errors += 1
        if self._since is None:
            self._since = time.monotonic()
            self._delay = self.first
            self.log.warning("%s unavailable: %s; retrying until it is back", self.name, exc)
        else:
            self._delay = min(self.cap, self._delay * 2)
        self.retry_at = time.monotonic() + self._delay
        return self._delay

    def holds(self) -> bool:
        """Whether work that needs the dependency should wait: it is down and the back-off
        before the next try has not run out."""
        return self.down and time.monotonic() < self.retry_at

    def until_retry(self) -> float:
        """Seconds until the next try is due (0 if it is)."""
        return max(0.0, self.retry_at - time.monotonic())

    def recovered(self) -> None:
        if self._since is not None:
            lasted = time.monotonic() - self._since
            self.log.warning("%s available again after %.1f s", self.name, lasted)
            self._since = None

    async def back_off(self, exc: BaseException) -> None:
        await trio.sleep(self.failed(exc))
