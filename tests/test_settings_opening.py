"""settings.opening: which failures to open what the config names are the config's to fix
(exit 2, no restart) and which are the machine's for now (raised as they are, so systemd
restarts the executor). Every error here is provoked for real."""

from __future__ import annotations

import errno
import sqlite3
import subprocess
import sys
from contextlib import closing

import pytest

from executor.errors import SettingsError
from executor.settings import opening


def test_a_path_under_a_regular_file_is_the_configs_to_fix(tmp_path):
    (tmp_path / "file").write_text("")
    refused = pytest.raises(SettingsError, match=r"^cannot open the store \(.*/file/st.*Not a")
    with refused, opening("the store", tmp_path / "file/store"):
        (tmp_path / "file/store").mkdir(parents=True)


def test_a_file_that_is_no_database_is_the_configs_to_fix(tmp_path):
    path = tmp_path / "notes.db"
    path.write_text("not a database " * 100)
    refused = pytest.raises(SettingsError, match="file is not a database")
    with refused, opening("the task database", path), closing(sqlite3.connect(path)) as db:
        db.execute("SELECT * FROM sqlite_master").fetchall()


def test_a_database_locked_by_another_connection_is_raised_as_it_is(tmp_path):
    path = tmp_path / "busy.db"
    with closing(sqlite3.connect(path, isolation_level=None)) as holder:
        holder.execute("BEGIN EXCLUSIVE")
        passes = pytest.raises(sqlite3.OperationalError, match="database is locked")
        with passes, opening("the task database", path), closing(sqlite3.connect(path, 0)) as db:
            db.execute("CREATE TABLE t (x)")


def test_running_out_of_descriptors_is_raised_as_it_is(tmp_path):
    """EMFILE (a process limit reached at start) passes, so the unit restarts instead of
    staying failed. In a child process: the limit is lowered for real."""
    script = f"""
import errno, os, resource
from executor.settings import SettingsError, opening
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
held = []
resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
try:
    with opening("the store", {str(tmp_path)!r}):
        while True:
            held.append(os.open({str(tmp_path)!r}, os.O_RDONLY))
except SettingsError as exc:
    print("SettingsError", exc)
except OSError as exc:
    print("OSError", errno.errorcode[exc.errno])
"""
    child = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True
    )
    assert child.stdout.strip() == f"OSError {errno.errorcode[errno.EMFILE]}", child.stderr
