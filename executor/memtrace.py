"""Memory tracing on demand, driven by signals as in upstream RAGFlow's task executor.

SIGUSR1 starts tracemalloc if it is not running and writes a snapshot; SIGUSR2 stops it.
The first snapshot after starting holds almost nothing, since only allocations made while
tracing are traced: send SIGUSR1 again later and compare the two, for example::

    old, new = (tracemalloc.Snapshot.load(p) for p in paths)
    for stat in new.compare_to(old, "lineno")[:20]:
        print(stat)
"""

from __future__ import annotations

import logging
import os
import signal
import tracemalloc
from datetime import datetime
from pathlib import Path

import trio

_MIB = 1024 * 1024


class MemoryTracer:
    """Starts, snapshots and stops tracemalloc, writing snapshots under ``snapshot_dir``.

    tracemalloc is process-wide: ``stop`` stops it whoever started it.
    """

    def __init__(self, snapshot_dir: Path, log: logging.Logger) -> None:
        self.snapshot_dir = snapshot_dir
        self.log = log
        # One signal at a time: two overlapping dumps would compete for the GIL and the disk.
        self._lock = trio.Lock()

    def start_and_snapshot(self) -> Path:
        """Start tracing if needed, dump a snapshot, log memory use; return the file written.

        Blocking (it pickles every trace to disk): call it from a thread, as handle_signal does.
        """
        if not tracemalloc.is_tracing():
            tracemalloc.start()
            self.log.info("tracemalloc started")
        snapshot = tracemalloc.take_snapshot()
        path = self._create_snapshot_file()
        try:
            snapshot.dump(str(path))  # reopens our 0600 file "wb", which keeps its mode
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        current, peak = tracemalloc.get_traced_memory()
        rss = read_rss_bytes()
        self.log.info(
            "tracemalloc snapshot %s: RSS %s, traced current %.1f MiB, peak %.1f MiB",
            path,
            "unknown" if rss is None else f"{rss / _MIB:.1f} MiB",
            current / _MIB,
            peak / _MIB,
        )
        return path

    def stop(self) -> None:
        """Stop tracing and free its traces; a no-op (logged) if it is not running."""
        if tracemalloc.is_tracing():
            tracemalloc.stop()
            self.log.info("tracemalloc stopped")
        else:
            self.log.info("tracemalloc is not running")

    async def handle_signal(self, signum: int) -> None:
        """Act on SIGUSR1 or SIGUSR2 in a worker thread; failures are logged, not raised.

        Raises ValueError for any other signal.
        """
        if signum == signal.SIGUSR1:
            action = self.start_and_snapshot
        elif signum == signal.SIGUSR2:
            action = self.stop  # freeing many traces takes a while too
        else:
            raise ValueError(f"MemoryTracer does not handle signal {signum}")
        async with self._lock:
            try:
                await trio.to_thread.run_sync(action)
            except Exception:  # e.g. a full disk: a diagnostic aid must not stop the executor
                self.log.exception("tracemalloc %s failed", action.__name__)

    def _create_snapshot_file(self) -> Path:
        """A new, empty file readable by its owner only, named after the pid and the time."""
        self.snapshot_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        stem = f"{os.getpid()}_snapshot_{datetime.now():%Y%m%dT%H%M%S}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        for attempt in range(100):
            # Two snapshots within a second get -1, -2... rather than overwrite each other.
            path = self.snapshot_dir / (
                f"{stem}.trace" if not attempt else f"{stem}-{attempt}.trace"
            )
            try:
                os.close(os.open(path, flags, 0o600))
            except FileExistsError:
                continue
            return path
        raise FileExistsError(f"too many snapshots named {stem}*.trace")


def read_rss_bytes(status: Path = Path("/proc/self/status")) -> int | None:
    """The resident set size from VmRSS in ``status``; None where it cannot be read."""
    try:
        text = status.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            fields = line.split()
            if len(fields) == 3 and fields[1].isdigit() and fields[2] == "kB":
                return int(fields[1]) * 1024
    return None
