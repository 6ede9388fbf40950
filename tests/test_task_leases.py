"""``TaskStore.renew_leases`` on every supported database: one statement stamps the
unfinished tasks among the ids given, and no other row (see TaskStore.lease_stamp)."""

from __future__ import annotations

import time

from executor.store.database import TaskStore


def test_renew_leases_stamps_only_the_unfinished_tasks_named(task_store: TaskStore) -> None:
    progress = {"running": 0.5, "waiting": 0.0, "done": 1.0, "failed": -1.0, "other": 0.5}
    with task_store.writing():
        task_store.Task.insert_many(
            [{"id": i, "progress": p, "update_time": 1000} for i, p in progress.items()]
        ).execute()
    before = int(time.time() * 1000)
    task_store.renew_leases(["running", "waiting", "done", "failed"])
    with task_store.session():
        stamped = {
            r.id for r in task_store.Task.select().where(task_store.Task.update_time >= before)
        }
    assert stamped == {"running", "waiting"}
