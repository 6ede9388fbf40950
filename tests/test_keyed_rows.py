"""KeyedRows, the task path's precompiled statements, against the three real databases:
what it reads is what peewee reads, and what it writes peewee reads back the same."""

from __future__ import annotations

from datetime import datetime

import pytest

from executor.store.database import TaskStore


@pytest.fixture
def store(task_store: TaskStore) -> TaskStore:
    return task_store


def peewee_row(store: TaskStore, model, key: str) -> dict:
    with store.session():
        return model.select().where(model.id == key).dicts().first()


def new_task(store: TaskStore, **fields) -> str:
    doc = store.create_document(kb_id="kb", name="a.txt", location="a.txt")
    (task,) = store.create_tasks([{"doc_id": doc["id"], **fields}])
    return task["id"]


def test_get_reads_what_peewee_reads(store):
    task_id = new_task(store, progress_msg="line 1\nline 'two' %s", from_page=3)
    with store.writing():
        store.Task.update(begin_at=datetime(2026, 11, 28, 12, 30, 1)).where(
            store.Task.id == task_id
        ).execute()
    with store.session():
        row = store.task_rows.get(task_id)
    assert row == peewee_row(store, store.Task, task_id)
    assert row["begin_at"] == datetime(2026, 11, 28, 12, 30, 1)
    with store.session():
        assert store.task_rows.get(task_id, ["from_page", "progress"]) == {
            "from_page": 3,
            "progress": 0,
        }
        assert store.task_rows.get("no-such-task") is None


def test_update_writes_what_peewee_reads_back(store):
    task_id = new_task(store)
    moment = datetime(2026, 1, 2, 3, 4, 5)
    with store.writing():
        changed = store.task_rows.update(
            task_id,
            {"progress": 0.25, "progress_msg": "50% done; it's 'quoted'", "begin_at": moment},
            increments={"retry_count": 2, "token_num": 40},
        )
        store.task_rows.update(task_id, {}, increments={"token_num": -15})
        missing = store.task_rows.update("no-such-task", {"progress": 1.0})
    assert (changed, missing) == (1, 0)
    row = peewee_row(store, store.Task, task_id)
    assert (row["progress"], row["progress_msg"], row["begin_at"]) == (
        0.25,
        "50% done; it's 'quoted'",
        moment,
    )
    assert (row["retry_count"], row["token_num"]) == (2, 25)


def test_where_equal_and_a_locking_read_in_a_transaction(store):
    doc = store.create_document(kb_id="kb", name="b.txt", location="b.txt")
    ids = {
        t["id"] for t in store.create_tasks([{"doc_id": doc["id"], "to_page": n} for n in (1, 2)])
    }
    with store.transaction():
        locked = store.document_rows.get(doc["id"], ["kb_id", "chunk_num"], for_update=True)
        tasks = store.task_rows.where_equal("doc_id", doc["id"], ["id", "to_page"])
    assert locked == {"kb_id": "kb", "chunk_num": 0}
    assert {t["id"] for t in tasks} == ids
    assert sorted(t["to_page"] for t in tasks) == [1, 2]
