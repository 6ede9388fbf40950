"""KeyedRows, the task path's precompiled statements, against the three real databases:
what it reads is what peewee reads, and what it writes peewee reads back the same."""

from __future__ import annotations

from datetime import datetime

import peewee as pw
import pytest

from executor.store.database import TaskStore
from executor.store.keyed_rows import ROWS_PER_STATEMENT


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


def test_set_progress_many_writes_each_row_in_one_transaction(store):
    """Outcomes.finish records a batch done with one statement per set of columns."""
    ids = [new_task(store) for _ in range(3)]
    with store.transaction():
        store.set_progress_many(
            [
                (ids[0], 1.0, "a\nb", {"process_duration": 0.5}),
                (ids[1], 1.0, "c", {"process_duration": 0.25, "token_num": 7}),
                (ids[2], None, "d", {"process_duration": 0.125}),
                ("no-such-task", 1.0, "e", {"process_duration": 0.5}),
            ]
        )
    rows = [peewee_row(store, store.Task, task_id) for task_id in ids]
    assert [(r["progress"], r["progress_msg"], r["process_duration"]) for r in rows] == [
        (1.0, "a\nb", 0.5),
        (1.0, "c", 0.25),
        (0, "d", 0.125),
    ]
    assert rows[1]["token_num"] == 7
    assert rows[0]["update_time"] == rows[1]["update_time"] == rows[2]["update_time"]


def test_update_many_keeps_the_order_of_its_rows(store):
    """Two writes of one row with different columns: the later one wins, as it would in
    two updates one after the other."""
    task_id = new_task(store)
    with store.transaction():
        store.task_rows.update_many(
            [
                (task_id, {"progress_msg": "first", "token_num": 1}),
                (task_id, {"progress_msg": "second"}),
                (task_id, {"progress_msg": "third", "token_num": 3}),
            ]
        )
    row = peewee_row(store, store.Task, task_id)
    assert (row["progress_msg"], row["token_num"]) == ("third", 3)
    with store.transaction():
        store.task_rows.update_many([(task_id, {"token_num": 4}), (task_id, {"progress_msg": "x"})])
    row = peewee_row(store, store.Task, task_id)
    assert (row["progress_msg"], row["token_num"]) == ("x", 4)


def test_update_many_writes_a_batch_longer_than_one_statement(store):
    """A run of rows with the same columns longer than ROWS_PER_STATEMENT, NULLs, dates
    and quotes among its values, and a key given twice in the run: each row ends with
    the values of its last write, on every database (MySQL takes it as UPDATE ... CASE
    statements, the others as executemany)."""
    count = ROWS_PER_STATEMENT * 2 + 5
    with store.transaction():
        ids = [t["id"] for t in store.create_tasks([{"doc_id": "d"}] * count)]
    moment = datetime(2026, 12, 7, 12, 0, 1)
    rows = [
        (key, {"progress_msg": f"it's {i}", "begin_at": moment if i % 2 else None, "token_num": i})
        for i, key in enumerate(ids)
    ]
    # In the first statement's rows, after the key's first write.
    rows.insert(50, (ids[3], {"progress_msg": "again", "begin_at": None, "token_num": -1}))
    with store.transaction():
        store.task_rows.update_many(rows)
    written = {key: peewee_row(store, store.Task, key) for key in ids}
    expected = {key: values for key, values in rows}  # the last write of each key
    assert {
        key: {name: written[key][name] for name in values} for key, values in expected.items()
    } == expected
    assert written[ids[3]]["token_num"] == -1


def test_begin_tasks_is_one_statement_on_mysql(store):
    """A batch begun together costs one UPDATE on MySQL/MariaDB, whose driver would send
    one per row (a round trip each); SQLite and PostgreSQL run one per row in-process or
    in the driver."""
    with store.transaction():
        ids = [t["id"] for t in store.create_tasks([{"doc_id": "d"}] * 5)]
    sent: list[str] = []
    execute_sql = store.database.execute_sql

    def counted(sql, *args, **kwargs):
        sent.append(sql)
        return execute_sql(sql, *args, **kwargs)

    store.database.execute_sql = counted
    try:
        store.begin_tasks([(key, 1, f"received {key}") for key in ids])
    finally:
        store.database.execute_sql = execute_sql
    updates = [sql for sql in sent if sql.startswith("UPDATE")]
    assert len(updates) == (1 if isinstance(store.database, pw.MySQLDatabase) else 0)
    rows = [peewee_row(store, store.Task, key) for key in ids]
    assert [(r["retry_count"], r["progress_msg"]) for r in rows] == [
        (1, f"received {key}") for key in ids
    ]
    assert all(r["begin_at"] is not None for r in rows)
