"""PostgreSQL for real: the test server itself (start, stop, kill -9, restart) and how its
driver's errors are classified. Executors on PostgreSQL are tested with MariaDB's, in
tests/test_executor_recovery.py (the sql_fleet fixture runs them on both).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import peewee
import psycopg2
import pytest
from executors import postgres_database, wait_for
from servers import PostgresServer, ServerStartError, child_pids, process_alive

from executor.errors import DatabaseUnavailable
from executor.store.database import TaskStore
from executor.store.opening import open_database

TESTS_DIR = Path(__file__).resolve().parent


def _query(server: PostgresServer, sql: str, params: tuple = (), **connect: object) -> list:
    with closing(server.connect(**connect)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []


# --- the server ----------------------------------------------------------------------------


def test_postgres_round_trip_as_ragfleet(postgres_server: PostgresServer) -> None:
    postgres_server.start()
    name = "doc \u6587\u6863 \U0001f680"  # 4-byte UTF-8
    _query(postgres_server, "DROP TABLE IF EXISTS svr_round_trip")
    _query(postgres_server, "CREATE TABLE svr_round_trip (id INT PRIMARY KEY, name TEXT)")
    _query(postgres_server, "INSERT INTO svr_round_trip VALUES (%s, %s)", (1, name))
    assert _query(postgres_server, "SELECT id, name FROM svr_round_trip") == [(1, name)]
    assert _query(
        postgres_server,
        "SELECT current_user, current_database(), pg_encoding_to_char(encoding), "
        "rolsuper, current_setting('fsync'), current_setting('listen_addresses') "
        "FROM pg_database, pg_roles WHERE datname = current_database() AND rolname = current_user",
    ) == [("ragfleet", "ragfleet_test", "UTF8", False, "on", "127.0.0.1")]
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):  # not a superuser
        _query(postgres_server, "SELECT rolpassword FROM pg_authid")
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        postgres_server.connect(password="wrong")
    assert _query(
        postgres_server,
        "SELECT current_user",
        dbname="postgres",
        user="postgres",
        password=postgres_server.admin_password,
    ) == [("postgres",)]


def test_postgres_stop_refuses_connections_and_restart_keeps_data(
    postgres_server: PostgresServer,
) -> None:
    postgres_server.start()
    _query(postgres_server, "DROP TABLE IF EXISTS svr_restart")
    _query(postgres_server, "CREATE TABLE svr_restart (id INT PRIMARY KEY)")
    _query(postgres_server, "INSERT INTO svr_restart VALUES (1), (2)")
    held = postgres_server.connect()  # an idle client does not hold the (fast) stop up
    port, pid = postgres_server.port, postgres_server.pid
    try:
        postgres_server.stop(timeout=10)
        assert not postgres_server.is_running
        with pytest.raises(psycopg2.OperationalError, match="Connection refused"):
            postgres_server.connect(connect_timeout=2)
        postgres_server.stop()  # idempotent
    finally:
        held.close()
        postgres_server.start()
    assert postgres_server.port == port and postgres_server.pid != pid
    assert _query(postgres_server, "SELECT id FROM svr_restart ORDER BY id") == [(1,), (2,)]


def test_postgres_kill9_keeps_committed_rows_and_leaves_no_backend(
    postgres_server: PostgresServer,
) -> None:
    postgres_server.start()
    _query(postgres_server, "DROP TABLE IF EXISTS svr_crash")
    _query(postgres_server, "CREATE TABLE svr_crash (id INT PRIMARY KEY)")
    _query(postgres_server, "INSERT INTO svr_crash VALUES (1)")
    conn = postgres_server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO svr_crash VALUES (2)")  # never committed
        assert postgres_server.pid is not None
        before = [postgres_server.pid, *child_pids(postgres_server.pid)]
        assert len(before) > 3  # postmaster, checkpointer, ..., our backend
        postgres_server.kill()
        assert not [pid for pid in before if process_alive(pid)]  # dead when kill() returns
    finally:
        conn.close()
        postgres_server.start()
    assert _query(postgres_server, "SELECT id FROM svr_crash") == [(1,)]


def test_postgres_dies_with_a_killed_test_process(tmp_path: Path) -> None:
    """The parent-death signal survives the switch to the postgres user."""
    script = (
        "import os, signal, sys\n"
        f"sys.path.insert(0, {str(TESTS_DIR)!r})\n"
        "from servers import PostgresServer\n"
        f"server = PostgresServer({str(tmp_path)!r}).start()\n"
        "print(server.pid, server.cluster_dir, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == -signal.SIGKILL, result.stderr
    pid_text, cluster_dir = result.stdout.split()
    pid = int(pid_text)
    try:
        wait_for(
            lambda: not process_alive(pid), 15, f"postgres {pid} to die with its killed parent"
        )
    finally:
        if process_alive(pid):
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(cluster_dir, ignore_errors=True)  # nobody left to remove it


def test_postgres_close_removes_its_cluster_and_refuses_to_start(tmp_path: Path) -> None:
    with PostgresServer(tmp_path) as server:
        assert server.cluster_dir is not None
        cluster_dir, pid = server.cluster_dir, server.pid
        assert pid is not None
        assert (server.workdir / "postgres.log").exists()
    assert not process_alive(pid)
    assert not cluster_dir.exists()
    with pytest.raises(ServerStartError, match="closed"):
        server.start()


# --- executors on PostgreSQL -----------------------------------------------------------------


def test_lost_and_refused_connections_are_outages(postgres_server: PostgresServer) -> None:
    """psycopg2's errors for a server that went away, was killed or is down become
    DatabaseUnavailable (an outage: retry, fail nothing), and the store recovers."""
    postgres_server.start()
    store = TaskStore(open_database(postgres_database(postgres_server)))
    try:
        store.ping()
        for crash in (postgres_server.stop, postgres_server.kill):
            crash()  # the store's open connection dies with the server
            with pytest.raises(DatabaseUnavailable, match="server closed the connection"):
                store.ping()
            with pytest.raises(DatabaseUnavailable, match="Connection refused"):
                store.ping()  # reconnecting to a server that is down
            postgres_server.start()
            store.ping()
        store.database.connection().close()  # psycopg2's InterfaceError, not peewee's state
        with pytest.raises(DatabaseUnavailable, match="connection already closed"):
            store.ping()
        store.ping()
        with pytest.raises(peewee.ProgrammingError):  # a real SQL error stays one
            store.database.execute_sql("SELECT * FROM no_such_table")
    finally:
        store.database.close()
        postgres_server.start()
