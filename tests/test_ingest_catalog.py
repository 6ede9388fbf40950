"""Catalog.settle_document on the three real databases: a document's totals and progress
are recounted from its tasks, its knowledge base's totals move by the change only, and a
settle that fails inside the worker's done transaction undoes only its own writes."""

from __future__ import annotations

import pytest

from executor.ingest.catalog import Catalog
from executor.store.database import TaskStore


@pytest.fixture
def catalog(task_store: TaskStore) -> Catalog:
    return Catalog(task_store)


def add_document(catalog: Catalog, kb_name: str, pages: int) -> tuple[str, list[str]]:
    kb = catalog.ensure_knowledge_base(kb_name)
    doc = catalog.add_document(kb, name="a.pdf", location="a.pdf")
    tasks = catalog.store.create_tasks(
        [{"doc_id": doc["id"], "from_page": p, "to_page": p + 1} for p in range(pages)]
    )
    return doc["id"], [t["id"] for t in tasks]


def finish(catalog: Catalog, task_id: str, progress: float, chunk_ids: str, tokens: int) -> None:
    catalog.store.set_progress(task_id, progress, "", chunk_ids=chunk_ids, token_num=tokens)


def totals(catalog: Catalog, doc_id: str, kb_name: str) -> tuple:
    with catalog.store.session():
        doc = catalog.documents.get(doc_id, ["chunk_num", "token_num", "progress", "run"])
    kb = catalog.knowledge_bases.get(catalog.knowledge_base_named(kb_name).id)
    return tuple(doc.values()), (kb["chunk_num"], kb["token_num"], kb["doc_num"])


def test_settle_recounts_the_document_and_moves_the_base_by_the_change(catalog):
    doc_id, (first, second) = add_document(catalog, "kb1", pages=2)
    other_id, (other,) = add_document(catalog, "kb1", pages=1)
    finish(catalog, other, 1.0, "x y z", 30)
    catalog.settle_document(other_id)

    finish(catalog, first, 1.0, "a b", 20)
    catalog.settle_document(doc_id)
    # run uses RAGFlow's TaskStatus codes: RUNNING "1", DONE "3", FAIL "4".
    assert totals(catalog, doc_id, "kb1") == ((2, 20, 0.5, "1"), (5, 50, 2))

    finish(catalog, second, 1.0, "c", 7)
    catalog.settle_document(doc_id)
    catalog.settle_document(doc_id)  # settling again changes nothing
    assert totals(catalog, doc_id, "kb1") == ((3, 27, 1.0, "3"), (6, 57, 2))

    # A re-run with fewer chunks moves the base down; a failed page fails the document.
    finish(catalog, first, -1.0, "a", 10)
    catalog.settle_document(doc_id)
    assert totals(catalog, doc_id, "kb1") == ((2, 17, -1.0, "4"), (5, 47, 2))


def test_a_failed_task_fails_the_document_only_once_no_task_runs(catalog):
    """As RAGFlow's updater: while a task runs, progress is the mean of the others not
    failed; -1 and FAIL once every task has ended."""
    doc_id, (first, second, third) = add_document(catalog, "kb3", pages=3)
    finish(catalog, first, -1.0, "", 0)
    finish(catalog, second, 1.0, "a", 5)
    catalog.settle_document(doc_id)
    assert totals(catalog, doc_id, "kb3")[0][2:] == (pytest.approx(1 / 3), "1")
    finish(catalog, third, 1.0, "b", 5)
    catalog.settle_document(doc_id)
    assert totals(catalog, doc_id, "kb3")[0][2:] == (-1.0, "4")


def test_a_cancelled_document_stays_cancelled(catalog):
    doc_id, (task_id,) = add_document(catalog, "kb4", pages=1)
    with catalog.store.writing():
        catalog.documents.update(doc_id, {"run": "2"})  # RAGFlow's CANCEL
    catalog.store.set_progress(task_id, -1.0, "12:00:00 Task has been canceled.")
    catalog.settle_document(doc_id)
    assert totals(catalog, doc_id, "kb4")[0][2:] == (-1.0, "2")
    assert catalog.document(doc_id)["progress_msg"] == "12:00:00 Task has been canceled."


def test_settle_of_a_missing_document_does_nothing(catalog):
    catalog.settle_document("no-such-document")


def test_a_failed_settle_inside_the_done_transaction_undoes_only_its_own_writes(catalog):
    doc_id, (task_id,) = add_document(catalog, "kb2", pages=1)
    store = catalog.store

    def broken_settle() -> None:
        with store.transaction():
            store.document_rows.update(doc_id, {"chunk_num": 99})
            store.database.execute_sql("SELECT no_such_column FROM task")

    # What Outcomes.finish does: the done write and the hook in one transaction, the hook's
    # failure caught (and logged) inside it.
    with store.transaction():
        finish(catalog, task_id, 1.0, "a b", 20)
        with pytest.raises(Exception, match="no_such_column"):
            broken_settle()
    row = store.get_task(task_id)
    assert (row["progress"], row["chunk_ids"], row["token_num"]) == (1.0, "a b", 20)
    assert totals(catalog, doc_id, "kb2")[0][0] == 0


def test_cancel_marks_a_running_document_only(catalog):
    """RAGFlow's UI cancels only a RUNNING document (document_app.run, v0.21.1 line 461)."""
    doc_id, _ = add_document(catalog, "kb5", pages=1)
    with catalog.store.writing():
        catalog.documents.update(doc_id, {"run": "1"})
    assert catalog.cancel_document(doc_id)
    assert catalog.document(doc_id)["run"] == "2"
    with catalog.store.writing():
        catalog.documents.update(doc_id, {"run": "3"})
    assert not catalog.cancel_document(doc_id)
    assert catalog.document(doc_id)["run"] == "3"
