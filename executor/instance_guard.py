"""One live process per executor instance.

``task_executor_<host_id>_<N>`` is a consumer name: two processes under it would take each
other's pending entries as their own (a "restart replay" of live tasks) and overwrite each
other's heartbeat. ``ragfleet run`` therefore refuses to start (exit 2) while the instance
lives:

* on this host, from a lock on ``<state_dir>/instance-<N>.lock``: the kernel releases an
  flock when its process dies, however it dies, so a killed instance never blocks its
  restart;
* anywhere (another machine given the same host id, or another state dir), from its
  heartbeat: a fresh one is a live twin's only if a newer one follows within two heartbeat
  intervals. A heartbeat sent from this machine's address by a process that no longer
  exists (a kill -9 just before a restart) is known dead at once, without the wait.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import trio

from .errors import InstanceRunning
from .settings import opening

# How long a heartbeat may stay the newest while its sender lives, in heartbeat intervals:
# one interval, plus the time its round of Redis calls takes.
TWIN_WATCH = 2.0


class HeartbeatReader(Protocol):
    """What the twin check needs of the queue (the Broker)."""

    def latest_heartbeat(self, name: str) -> tuple[float, dict[str, Any]] | None: ...


@contextmanager
def instance_lock(state_dir: str, instance: int) -> Iterator[Path]:
    """Hold this host's lock of *instance* (the state dir is made if missing); raises
    InstanceRunning, naming the holder's pid, while another process holds it."""
    path = Path(state_dir) / f"instance-{instance}.lock"
    with opening("the state dir", state_dir):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, writable = _open_lock_file(path)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InstanceRunning(
                f"instance {instance} already runs on this host ({_holder(fd)}, which holds {path})"
            ) from None
        if writable:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # the lock goes with it; the file stays, for the next run to lock


def _open_lock_file(path: Path) -> tuple[int, bool]:
    """The lock file, and whether this process may record its pid in it: one left by
    another user (``ragfleet run`` by hand as root) is still locked, read-only."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644), True
    except PermissionError:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC), False


def _holder(fd: int) -> str:
    """The holder's pid, as it recorded it (one that could not left an older pid)."""
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    pid = int(text) if text.isdigit() else 0
    return f"pid {pid}" if pid and _alive(pid) else "its pid is not recorded"


async def refuse_a_live_twin(
    broker: HeartbeatReader, name: str, *, address: str, interval: float, timeout: float
) -> None:
    """Raise InstanceRunning if another live process heartbeats as *name*. Called before
    this process's first heartbeat, which would overwrite the twin's."""
    seen = await trio.to_thread.run_sync(broker.latest_heartbeat, name)
    if seen is None or not _may_live(*seen, address=address, timeout=timeout):
        return
    await trio.sleep(TWIN_WATCH * interval)
    newest = await trio.to_thread.run_sync(broker.latest_heartbeat, name)
    if newest is not None and newest[0] > seen[0]:
        score, beat = newest
        raise InstanceRunning(
            f"{name} already runs: pid {beat.get('pid')} at {beat.get('ip_address') or '?'} "
            f"sent a heartbeat {max(0.0, time.time() - score):.1f} s ago; two executors "
            "under one name take each other's tasks (give each host its own host_id)"
        )


def _may_live(score: float, beat: dict[str, Any], *, address: str, timeout: float) -> bool:
    """Whether the sender of heartbeat *beat* may still live: not if it is older than
    *timeout*, nor if it came from this machine's address and a process not alive here
    (or this very one: an in-process restart, or a container's fixed pid)."""
    if time.time() - score > timeout:
        return False
    pid = beat.get("pid")
    ours = beat.get("ip_address") == address
    return not (ours and (pid == os.getpid() or not _alive(pid)))


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return True  # cannot tell: assume it lives, and watch its heartbeats
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
