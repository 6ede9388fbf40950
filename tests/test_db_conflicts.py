"""Refusals by MariaDB and PostgreSQL that a retry resolves (a deadlock, a lock wait
timeout, a server in read-only mode), and SQLite's full disk, are outages of the moment,
DatabaseUnavailable: the worker retries the task. Any other SQL error stays one (the worker
then sets the task aside, see test_executor_recovery).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import peewee
import pytest
from executors import fill_disk, mysql_database, postgres_database, sqlite_database

from executor.errors import DatabaseUnavailable
from executor.store.database import TaskStore
from executor.store.opening import open_database


@pytest.fixture(params=["mariadb", "postgres"])
def stores(request) -> Iterator[tuple[str, TaskStore, TaskStore]]:
    """Two stores (two connections) on one server database, with the schema and two tasks."""
    server = request.getfixturevalue(f"{request.param}_server")
    server.start()
    config = (mysql_database if request.param == "mariadb" else postgres_database)(server)
    first, second = (TaskStore(open_database(config)) for _ in range(2))
    first.init_schema()
    with first.writing():
        first.Task.delete().execute()
        first.Task.insert_many([{"id": "x"}, {"id": "y"}]).execute()
    try:
        yield request.param, first, second
    finally:
        first.database.close()
        second.database.close()


def touch(store: TaskStore, task_id: str) -> None:
    store.Task.update(priority=store.Task.priority + 1).where(store.Task.id == task_id).execute()


def test_a_deadlock_is_an_outage_of_the_moment(stores) -> None:
    """Two transactions lock x and y in opposite orders: the server kills one of them."""
    _, first, second = stores
    both_hold_one = threading.Barrier(2, timeout=10)
    outcomes: dict[str, BaseException | None] = {}

    def transaction(store: TaskStore, name: str, order: tuple[str, str]) -> None:
        try:
            with store.transaction():
                touch(store, order[0])
                both_hold_one.wait()
                touch(store, order[1])
            outcomes[name] = None
        except BaseException as exc:
            outcomes[name] = exc

    threads = [
        threading.Thread(target=transaction, args=(first, "first", ("x", "y"))),
        threading.Thread(target=transaction, args=(second, "second", ("y", "x"))),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    errors = [exc for exc in outcomes.values() if exc is not None]
    assert len(outcomes) == 2 and len(errors) == 1, outcomes
    assert isinstance(errors[0], DatabaseUnavailable), repr(errors[0])
    assert "deadlock" in str(errors[0]).lower()
    first.ping()
    second.ping()  # both stores go on


def test_a_lock_wait_timeout_is_an_outage_of_the_moment(stores) -> None:
    kind, first, second = stores
    if kind == "mariadb":
        second.database.execute_sql("SET SESSION innodb_lock_wait_timeout = 1")
    else:
        second.database.execute_sql("SET lock_timeout = '1s'")
    with first.transaction():
        touch(first, "x")  # held until the other has given up
        timed_out = pytest.raises(DatabaseUnavailable, match=r"(?i)lock wait timeout|lock timeout")
        with timed_out, second.transaction():
            touch(second, "x")
    second.ping()


@pytest.fixture
def read_only(request, stores) -> Iterator[TaskStore]:
    """The second store, on a server that refuses writes as a replica or a server put in
    read-only mode would: MariaDB's global read_only (set as root), PostgreSQL's read-only
    transactions (for the store's own session)."""
    kind, _, second = stores
    if kind == "postgres":
        second.database.execute_sql("SET default_transaction_read_only = on")
        yield second
        return
    server = request.getfixturevalue("mariadb_server")
    with closing(server.connect(user="root", password=server.root_password)) as root:
        root.cursor().execute("SET GLOBAL read_only = 1")
        try:
            yield second
        finally:
            root.cursor().execute("SET GLOBAL read_only = 0")


def test_a_read_only_server_is_an_outage_of_the_moment(read_only: TaskStore) -> None:
    with pytest.raises(DatabaseUnavailable, match=r"(?i)read.only"), read_only.transaction():
        touch(read_only, "x")
    read_only.ping()


def test_another_sql_error_stays_one(stores) -> None:
    _, first, _ = stores
    with pytest.raises(peewee.ProgrammingError), first.session():
        first.database.execute_sql("SELECT * FROM no_such_table")


def test_a_full_disk_under_sqlite_is_an_outage_of_the_moment(small_disk: Path) -> None:
    """SQLite refuses a write on a full disk, at the statement or at COMMIT (after which it
    has rolled the transaction back itself, and peewee's ROLLBACK fails with "no transaction
    is active", which must not hide the cause). Nothing of the transaction is kept."""
    store = TaskStore(open_database(sqlite_database(small_disk)))
    try:
        store.init_schema()
        store.create_tasks([{"task_type": "noop"}])
        filler = fill_disk(small_disk)
        try:
            rows = [{"task_type": "noop", "payload": "x" * 4096}] * 200
            with pytest.raises(DatabaseUnavailable, match="database or disk is full"):
                store.create_tasks(rows)
            store.ping()
        finally:
            filler.unlink()
        with store.session():
            assert store.Task.select().count() == 1
        assert len(store.create_tasks(rows)) == 200
    finally:
        store.database.close()


def test_a_mariadb_connection_closed_under_the_store_is_an_outage(mariadb_server):
    """PyMySQL says a connection it already closed (after a server went away mid-query) with
    InterfaceError(0, ''): an outage like the server being down, never a task's failure or
    an executor error (it dead-lettered tasks during a MariaDB outage)."""
    mariadb_server.start()
    store = TaskStore(open_database(mysql_database(mariadb_server)))
    try:
        store.ping()
        store.database.connection().close()  # PyMySQL's own state: closed, peewee's: open
        with pytest.raises(DatabaseUnavailable):
            store.ping()
        store.ping()  # the broken connection was dropped: the next call reconnects
    finally:
        store.database.close()
