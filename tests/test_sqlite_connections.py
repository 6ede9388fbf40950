"""A thread's connection to the task database closes when the thread ends: peewee keeps one
per thread, and CPython 3.11's sqlite3 connection, in a reference cycle, would otherwise
stay open (file and page cache) until a full garbage collection."""

from __future__ import annotations

import gc
import os
import threading
from contextlib import suppress
from pathlib import Path

from executor.store.opening import open_database


def _open_files(path: Path) -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with suppress(OSError):  # the listing's own descriptor, closed already
            count += os.readlink(f"/proc/self/fd/{fd}") == str(path)
    return count


def test_a_threads_connection_closes_when_the_thread_ends(tmp_path):
    path = tmp_path / "tasks.db"
    database = open_database({"type": "sqlite", "path": str(path)})
    gc.disable()  # what is tested must not depend on a collection happening to run
    try:
        for _ in range(3):
            thread = threading.Thread(target=lambda: database.execute_sql("SELECT 1").fetchall())
            thread.start()
            thread.join()
            assert _open_files(path) == 0
        database.execute_sql("SELECT 1").fetchall()  # this thread's, kept between calls
        assert _open_files(path) == 1
        database.close()  # closed and opened again: one open, not two
        database.execute_sql("SELECT 1").fetchall()
        assert _open_files(path) == 1
        database.close()
        assert _open_files(path) == 0
    finally:
        gc.enable()
