"""Infrastructure outages: log once when a dependency goes away and once when it is back."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import trio

# A failure this close before the next try is due is taken for that try: a sleep until it
# may wake a little early by this clock.
_SAME_ROUND = 0.01


class Outage:
    """Tracks one dependency (Redis, the database) and paces retries while it is down.

    ``failed()`` logs only the first failure of an outage and returns the back-off delay;
    ``recovered()`` logs the end of the outage with its length. Nothing here marks a task
    failed: an outage is the infrastructure's problem, not the task's.

    A dependency that comes and goes (a failover flapping, a disk full for some writes and
    not others) would log both lines at every turn and, with the back-off starting over
    each time, be retried at the shortest pace. A failure within *settle* seconds of the
    last recovery is therefore a relapse of the same outage: its back-off goes on growing,
    the first relapse is logged, the next ones are not, and the end is logged once the
    dependency has held for *settle* seconds (seen at the first ``recovered()`` after that).
    """

    def __init__(
        self,
        name: str,
        log: logging.Logger,
        first: float = 0.2,
        cap: float = 5.0,
        settle: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        describe: Callable[[BaseException], str] = str,
    ):
        self.name = name
        self.describe = describe  # the words of an error, for the log
        self.log = log
        self.first = first
        self.cap = cap
        self.settle = settle
        self.errors = 0
        self.outages = 0  # begun, relapses included: ragfleet_dependency_outages_total
        self._clock = clock
        self._since: float | None = None  # the current outage began
        self._up_at: float | None = None  # the last outage ended
        self._relapses = 0  # since the last outage whose end was logged
        self._delay = first
        self.retry_at = 0.0  # monotonic time before which a retry is pointless

    @property
    def down(self) -> bool:
        return self._since is not None

    def failed(self, exc: BaseException) -> float:
        """Note a failure; return the seconds until the next try is due.

        While the dependency is down, only a failed try grows the back-off: failures that
        come before the next try is due are the rest of the round already in flight (each
        of the tasks a worker was running meets the outage), and do not."""
        self.errors += 1
        now = self._clock()
        if self._since is not None:
            if now < self.retry_at - _SAME_ROUND:
                return self.retry_at - now
            self._delay = min(self.cap, self._delay * 2)
        elif self._up_at is not None and now - self._up_at < self.settle:
            self._relapse(exc, now - self._up_at)
            self._since = now
            self.outages += 1
        else:
            self._log_held(now)  # if the end of a relapsing outage went unlogged
            self._delay = self.first
            self.log.warning(
                "%s unavailable: %s; retrying until it is back", self.name, self.describe(exc)
            )
            self._since = now
            self.outages += 1
        self.retry_at = now + self._delay
        return self._delay

    def noticed(self, exc: BaseException) -> None:
        """A failure met on the side, where nothing retries (a lease renewal, a look-up that
        each task repeats): it begins an outage, logged and paced like any, unless one goes
        on or ended less than *settle* seconds ago (then it is that outage's leftover: a
        connection broken in it and found only now)."""
        if not self.down and self.up_for() >= self.settle:
            self.failed(exc)

    def _relapse(self, exc: BaseException, up_for: float) -> None:
        self._relapses += 1
        self._delay = min(self.cap, self._delay * 2)
        if self._relapses == 1:
            self.log.warning(
                "%s unavailable again %.1f s after it came back: %s; it comes and goes: "
                "logged again once it has held for %.0f s",
                self.name,
                up_for,
                self.describe(exc),
                self.settle,
            )

    def holds(self) -> bool:
        """Whether work that needs the dependency should wait: it is down and the back-off
        before the next try has not run out."""
        return self.down and self._clock() < self.retry_at

    def up_for(self) -> float:
        """Seconds since the last outage ended: 0 while one goes on, infinity if none has
        happened."""
        if self._since is not None:
            return 0.0
        return math.inf if self._up_at is None else self._clock() - self._up_at

    def until_retry(self) -> float:
        """Seconds until the next try is due (0 if it is)."""
        return max(0.0, self.retry_at - self._clock())

    def recovered(self) -> None:
        now = self._clock()
        if self._since is not None:
            if not self._relapses:
                self.log.warning("%s available again after %.1f s", self.name, now - self._since)
            self._since = None
            self._up_at = now
        elif self._up_at is not None and now - self._up_at >= self.settle:
            self._log_held(now)

    def _log_held(self, now: float) -> None:
        """Log the end of a relapsing outage (its recoveries were not logged), if any."""
        if self._relapses and self._up_at is not None:
            self.log.warning(
                "%s available again: it has held for %.0f s, after %d relapses",
                self.name,
                now - self._up_at,
                self._relapses,
            )
        self._relapses = 0

    async def back_off(self, exc: BaseException) -> None:
        await trio.sleep(self.failed(exc))
