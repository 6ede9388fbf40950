"""``TaskStore.renew_leases`` on every supported database: one statement stamps the
unfinished tasks among the ids given, and no other row (see Worker._held_elsewhere)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from executors import mysql_database, postgres_database, sqlite_database

from executor.db import TaskStore, open_database


@pytest.fixture(params=["sqlite", "mariadb", "postgres"])
def store(request, tmp_path) -> Iterator[TaskStore]:
    if request.param == "sqlite":
        config = sqlite_database(tmp_path)
    else:
        server = request.getfixturevalue(f"{request.param}_server")
        server.start()
        config = (mysql_database if request.param == "mariadb" else postgres_database)(server)
    store = TaskStore(open_database(config))
    store.init_schema()
    with store.writing():
        store.Task.delete().execute()
    try:
        yield store
    finally:
        store.database.close()


def test_renew_leases_stamps_only_the_unfinished_tasks_named(store: TaskStore) -> None:
    progress = {"running": 0.5, "waiting": 0.0, "done": 1.0, "failed": -1.0, "other": 0.5}
    with store.writing():
        store.Task.insert_many(
            [{"id": i, "progress": p, "update_time": 1000} for i, p in progress.items()]
        ).execute()
    before = int(time.time() * 1000)
    store.renew_leases(["running", "waiting", "done", "failed"])
    with store.session():
        stamped = {r.id for r in store.Task.select().where(store.Task.update_time >= before)}
    assert stamped == {"running", "waiting"}
    store.renew_leases([])  # nothing held: no statement at all
