"""An executor closes its MariaDB connections with the protocol's goodbye (COM_QUIT),
when a worker thread ends and when the process stops: otherwise MariaDB counts each in
Aborted_clients and logs an "Aborted connection" warning, at every restart of every
executor (executor/store/connections.py). A real MariaDB, its own error log; each
test connects as a user of its own, so that the log's lines are this test's."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from executors import Fleet, mysql_database, wait_for, write_config
from servers import MariaDBServer

from executor.store.database import TaskStore
from executor.store.opening import open_database


@pytest.fixture
def own_user(mariadb_server: MariaDBServer) -> Iterator[dict[str, Any]]:
    """The ``database`` section of a MariaDB user made for this test."""
    mariadb_server.start()
    user, password = f"bye_{secrets.token_hex(4)}", secrets.token_hex(12)
    admin = mariadb_server.admin_connect()
    try:
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY '{password}'")
            cursor.execute(f"GRANT ALL ON `{mariadb_server.database}`.* TO '{user}'@'127.0.0.1'")
        yield mysql_database(mariadb_server, user=user, password=password)
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP USER IF EXISTS '{user}'@'127.0.0.1'")
        admin.close()


def _sessions(server: MariaDBServer, user: str) -> int:
    admin = server.admin_connect()
    try:
        with admin.cursor() as cursor:
            cursor.execute(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = %s", (user,)
            )
            return int(cursor.fetchone()[0])
    finally:
        admin.close()


def _aborted(server: MariaDBServer, user: str) -> list[str]:
    return [
        line
        for line in server.log_path.read_text(errors="replace").splitlines()
        if "Aborted connection" in line and f"user: '{user}'" in line
    ]


def test_a_stopped_executor_leaves_no_aborted_connection(
    tmp_path, redis_server, mariadb_server, own_user
):
    user = own_user["user"]
    fleet = Fleet(write_config(tmp_path, redis_server, own_user))
    try:
        fleet.store.database.close()  # the test's own connection: only the executor's count
        executor = fleet.start()
        task_ids = fleet.submit(count=20)
        fleet.wait_done(task_ids)
        fleet.store.database.close()
        assert _sessions(mariadb_server, user) >= 2  # the executor's threads' connections
        assert executor.terminate() == 0
        wait_for(lambda: _sessions(mariadb_server, user) == 0, 10, "the sessions to end")
        time.sleep(0.5)  # the server logs an aborted connection as the session ends
        assert _aborted(mariadb_server, user) == []
    finally:
        fleet.close()


def test_a_thread_that_ends_closes_its_connection(mariadb_server, own_user):
    """trio retires a worker thread after 10 s idle: the connection it opened closes
    with it, and the server sees the goodbye."""
    user = own_user["user"]
    store = TaskStore(open_database(own_user))
    pinged, release = threading.Event(), threading.Event()

    def ping_then_end() -> None:
        store.ping()
        pinged.set()
        release.wait(10)

    thread = threading.Thread(target=ping_then_end)
    thread.start()
    try:
        assert pinged.wait(10)
        assert _sessions(mariadb_server, user) == 1  # the thread's connection
    finally:
        release.set()
        thread.join()
    wait_for(lambda: _sessions(mariadb_server, user) == 0, 10, "the thread's session to end")
    time.sleep(0.5)
    assert _aborted(mariadb_server, user) == []


def test_an_operator_command_leaves_no_aborted_connection(
    tmp_path, redis_server, mariadb_server, own_user
):
    """`ragfleet tasks` against MariaDB, as an operator's script runs it."""
    fleet = Fleet(write_config(tmp_path, redis_server, own_user))
    try:
        task_ids = fleet.submit(count=2)
        fleet.store.database.close()
        result = fleet.cli("tasks", "--json")
        assert result.returncode == 0, result.stderr
        assert set(task_ids) <= {task["id"] for task in json.loads(result.stdout)}
        user = own_user["user"]
        wait_for(lambda: _sessions(mariadb_server, user) == 0, 10, "the session to end")
        time.sleep(0.5)
        assert _aborted(mariadb_server, user) == []
    finally:
        fleet.close()
