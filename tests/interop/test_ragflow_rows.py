"""ragfleet as a drop-in executor for RAGFlow v0.21.1, seen from RAGFlow's side only.

RAGFlow creates its tables, ``ragfleet db init`` adds to them, RAGFlow's API server inserts
rows and queues tasks exactly as its own code does, real ``ragfleet`` executors work them,
and the test reads back what RAGFlow's UI and status page read. Then the other direction:
tables ragfleet created take RAGFlow's rows. On SQLite, MariaDB in strict mode, and
PostgreSQL (the ``site`` fixture). Nothing of ragfleet is imported: it runs as a program.
"""

from __future__ import annotations

import json
import re
import urllib.request
from datetime import datetime

import peewee as pw
from playhouse.migrate import SchemaMigrator, migrate
from ragflow_tables import CANCEL, DONE, FAIL, RUNNING, columns
from site_under_test import wait_for

LINE = re.compile(r"^\d\d:\d\d:\d\d \S")  # a progress line: "HH:MM:SS message"
ALICE = "Alice was beginning to get very tired of sitting by her sister on the bank.\n" * 30
PLANETS = "# Planets\n\nJupiter is the largest planet in the Solar System.\n" * 20


def test_ragflow_still_inserts_its_rows_after_db_init_migrates_its_tables(site):
    site.ragflow.create_tables()
    init = site.ragfleet("db", "init")
    assert init.returncode == 0, init.stderr
    assert "added column task.token_num" in init.stdout
    assert "added column task.payload" in init.stdout
    again = site.ragfleet("db", "init")
    assert "(0 changes)" in again.stdout, again.stdout

    # RAGFlow's INSERTs name only its own columns: ours must take NULL or a default.
    kb_id = site.ragflow.create_knowledge_base("interop", tenant_id="tenant1")
    doc_id = site.ragflow.upload(kb_id, "alice.txt", ALICE.encode())
    (task_id,) = site.ragflow.parse(doc_id)
    assert site.ragflow.tasks(doc_id)[0]["id"] == task_id

    # RAGFlow stamps begin_at when it queues: the task is queued until an executor has it.
    listed = site.ragfleet("tasks", "--state", "queued", "--json")
    assert [t["id"] for t in json.loads(listed.stdout)] == [task_id], listed.stderr


def test_documents_ragflow_queued_read_as_done_failed_or_cancelled(site):
    ragflow = site.ragflow
    ragflow.create_tables()
    assert site.ragfleet("db", "init").returncode == 0
    kb_id = ragflow.create_knowledge_base("interop", tenant_id="tenant1")
    done = [
        ragflow.upload(kb_id, name, text.encode())
        for name, text in (("alice.txt", ALICE), ("planets.md", PLANETS))
    ]
    failed = ragflow.upload(kb_id, "broken.docx", b"PK\x03\x04 not really a docx")
    cancelled = ragflow.upload(kb_id, "cancelled.txt", ALICE.encode())
    for doc_id in [*done, failed, cancelled]:
        ragflow.parse(doc_id)
        assert ragflow.document(doc_id)["run"] == RUNNING
    ragflow.cancel(cancelled)

    site.start_executor(1)
    site.start_executor(2)
    for doc_id in done:
        doc = site.wait_document(doc_id)
        # api/db/services/document_service.py _sync_progress: DONE once every task ended.
        assert (doc["run"], doc["progress"]) == (DONE, 1)
        (task,) = ragflow.tasks(doc_id)
        assert task["progress"] == 1
        chunk_ids = task["chunk_ids"].split()
        assert doc["chunk_num"] == len(set(chunk_ids)) > 0
        assert doc["token_num"] > 0
        lines = task["progress_msg"].splitlines()
        assert all(LINE.match(line) for line in lines), lines
        assert "Task done" in lines[-1]
        assert doc["progress_msg"] == task["progress_msg"].strip()
        assert doc["process_duration"] > 0

    doc = site.wait_document(failed)
    assert (doc["run"], doc["progress"]) == (FAIL, -1)
    (task,) = ragflow.tasks(failed)
    assert task["progress"] == -1
    assert "[Exception]" in task["progress_msg"]

    # Cancelled from RAGFlow's UI: the task ends at -1, the document stays CANCEL.
    assert wait_task_settled(site, cancelled) == -1
    doc = ragflow.document(cancelled)
    assert doc["run"] == CANCEL, doc

    kb = ragflow.knowledge_base(kb_id)
    assert kb["chunk_num"] == sum(ragflow.document(d)["chunk_num"] for d in done)
    assert kb["doc_num"] == 4

    # What RAGFlow's status page reads of each executor (system_app.status).
    beats = ragflow.heartbeats()
    assert set(beats) == {"task_executor_interop_1", "task_executor_interop_2"}
    for name, entries in beats.items():
        beat = entries[-1]
        assert beat["name"] == name
        assert {"now", "boot_at", "pending", "lag", "done", "failed", "current"} <= set(beat)
        assert datetime.fromisoformat(beat["now"]).tzinfo is not None
        assert re.search(r"\.\d{3}[+-]\d\d:\d\d$", beat["now"]), beat["now"]
    site.stop_executors()

    # The chunks are searchable by their words.
    found = site.ragfleet("search", "largest planet", "--kb", "interop", "--json")
    assert found.returncode == 0, found.stderr
    assert {hit["doc_id"] for hit in json.loads(found.stdout)} >= {done[1]}


def wait_task_settled(site, doc_id: str) -> float:
    def settled():
        (task,) = site.ragflow.tasks(doc_id)
        return task["progress"] if task["progress"] < 0 or task["progress"] >= 1 else None

    return wait_for(settled, 60, f"the task of {doc_id} to settle")


def test_tables_ragfleet_created_take_ragflow_rows_and_read_back(site, tmp_path):
    """The other direction: ragfleet creates the tables and writes a document; RAGFlow's
    models read every column they know and insert their own rows (strict mode too)."""
    assert site.ragfleet("db", "init").returncode == 0
    sample = tmp_path / "planets.md"
    sample.write_text(PLANETS)
    submitted = site.ragfleet("submit", str(sample), "--kb", "mine")
    assert submitted.returncode == 0, submitted.stderr

    ragflow = site.ragflow
    with ragflow.database.connection_context():
        (doc,) = ragflow.doc.select().dicts()
        kb = ragflow.kb.select().where(ragflow.kb.id == doc["kb_id"]).dicts().get()
        (task,) = ragflow.task.select().where(ragflow.task.doc_id == doc["id"]).dicts()
    assert set(columns("document")) <= set(doc)
    assert (doc["name"], doc["suffix"], doc["type"], doc["run"]) == (
        "planets.md",
        "md",
        "doc",
        RUNNING,
    )
    assert json.loads(kb["parser_config"])  # RAGFlow's JSONField parses it
    assert kb["created_by"] is not None and kb["embd_id"] is not None
    assert task["progress"] == 0 and task["task_type"] == ""

    kb_id = ragflow.create_knowledge_base("theirs", tenant_id="tenant1")
    doc_id = ragflow.upload(kb_id, "alice.txt", ALICE.encode())
    ragflow.parse(doc_id)
    site.start_executor(1)
    for each in (doc["id"], doc_id):
        assert site.wait_document(each)["run"] == DONE
    site.stop_executors()


def test_db_init_lets_null_into_token_num_an_older_ragfleet_made_not_null(site):
    """ragfleet before this fix added task.token_num NOT NULL with no database default;
    ``db init`` relaxes it, and RAGFlow's INSERT goes through."""
    site.ragflow.create_tables()
    database = site.ragflow.database
    with database.connection_context():
        # What ragfleet's migration did: peewee's add_column of NOT NULL fields with a
        # Python default adds them, fills them, then sets NOT NULL, leaving no DEFAULT.
        migrator = SchemaMigrator.from_database(database)
        migrate(
            migrator.add_column("task", "payload", pw.TextField(null=True, default="")),
            migrator.add_column("task", "token_num", pw.IntegerField(default=0)),
        )
        token_num = {c.name: c for c in database.get_columns("task")}["token_num"]
        assert not token_num.null
    init = site.ragfleet("db", "init")
    assert init.returncode == 0, init.stderr
    assert "task.token_num" in init.stdout
    kb_id = site.ragflow.create_knowledge_base("interop", tenant_id="tenant1")
    doc_id = site.ragflow.upload(kb_id, "alice.txt", ALICE.encode())
    site.ragflow.parse(doc_id)  # the INSERT that failed with error 1364 / NOT NULL


def test_chunks_of_a_document_ragflow_queued_are_in_its_index(search_site):
    """The chunks land in RAGFlow's index for the tenant, ragflow_<tenant_id>, with the
    fields RAGFlow's chunk list and retrieval filter on (rag/nlp/search.py), one per id
    the task recorded."""
    ragflow = search_site.ragflow
    ragflow.create_tables()
    assert search_site.ragfleet("db", "init").returncode == 0
    kb_id = ragflow.create_knowledge_base("interop", tenant_id="tenant1")
    doc_id = ragflow.upload(kb_id, "planets.md", PLANETS.encode())
    ragflow.parse(doc_id)
    search_site.start_executor(1)
    doc = search_site.wait_document(doc_id)
    search_site.stop_executors()
    (task,) = ragflow.tasks(doc_id)

    url = search_site.doc_store_url() + "/ragflow_tenant1/_search"
    query = {"query": {"term": {"doc_id": doc_id}}, "size": 1000}
    hits = _post(url, query)["hits"]["hits"]
    # PLANETS repeats its text: equal chunks share one id and one place in the index, and
    # the document counts each once (task_executor.py line 928: len(set(ids))).
    recorded = task["chunk_ids"].split()
    assert len(recorded) > len(set(recorded))
    assert sorted(h["_id"] for h in hits) == sorted(set(recorded))
    assert len(hits) == doc["chunk_num"] > 0
    for hit in hits:
        chunk = hit["_source"]
        assert (chunk["doc_id"], chunk["kb_id"], chunk["docnm_kwd"]) == (
            doc_id,
            kb_id,
            "planets.md",
        )
        assert chunk["available_int"] == 1
        assert chunk["content_with_weight"].strip()
        assert chunk["content_ltks"].strip()


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)
