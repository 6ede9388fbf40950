"""The no-op handler every system in bench/peers.py runs: note the task id and the time.

One append-only file per process (named by pid, so forked pool children get their own), in
the directory named by $PEERS_RECORD_DIR. Each line has the same length (a 32-hex task id,
a space, the Unix time with 6 decimals, a newline: 51 bytes), so the parent counts handled
tasks from the files' sizes without reading them, and reads them once at the end to check
that every task was handled exactly once and to take the first and last handler start.
One os.write per task (a few microseconds) is the whole handler, the same for every system.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

LINE = 51  # len(f"{32 hex} {time.time():.6f}\n") until the year 2286
_lock = threading.Lock()
_fd: int | None = None
_pid = 0


def record(task_id: str) -> None:
    """Append "<task id> <now>" to this process's record file."""
    fd = _fd if _pid == os.getpid() else _open()
    os.write(fd, f"{task_id} {time.time():.6f}\n".encode())


def _open() -> int:
    global _fd, _pid
    with _lock:  # Dramatiq's worker threads may call record() at once
        if _pid != os.getpid():
            path = Path(os.environ["PEERS_RECORD_DIR"]) / f"{os.getpid()}.rec"
            _fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            _pid = os.getpid()
        assert _fd is not None
        return _fd


def handled(directory: Path) -> int:
    """How many tasks the processes recording into *directory* have handled so far."""
    return sum(path.stat().st_size for path in directory.glob("*.rec")) // LINE


def records(directory: Path) -> list[tuple[str, float]]:
    """Every (task id, handler start) recorded in *directory*."""
    out = []
    for path in directory.glob("*.rec"):
        for line in path.read_text().splitlines():
            task_id, at = line.split()
            out.append((task_id, float(at)))
    return out
