"""Knowledge bases and documents in the task database: what ingestion reads and updates.

Synchronous (peewee), like :class:`executor.store.database.TaskStore`, whose models and connection
handling it shares; the executor calls it from worker threads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..store.database import TaskStore, new_id, stamp_fields
from ..store.tables import RunStatus

DEFAULT_TENANT = "ragfleet"
DEFAULT_PARSER_CONFIG = {
    "chunk_token_num": 128,  # upstream naive's default budget
    "delimiter": "\n!?。；！？",  # noqa: RUF001 (upstream's CJK sentence ends, on purpose)
    "overlap_percent": 0,
    "pages_per_task": 12,  # upstream splits PDFs into tasks of 12 pages
}


DOCUMENT_TOTALS = ("kb_id", "chunk_num", "token_num", "run", "process_begin_at")
TASK_TOTALS = ("chunk_ids", "token_num", "progress", "progress_msg")


@dataclass(frozen=True)
class KnowledgeBase:
    id: str
    tenant_id: str
    name: str
    embd_id: str
    parser_config: dict[str, Any]

    @property
    def index(self) -> str:
        """The document store index of this knowledge base's tenant, as upstream names it."""
        return f"ragflow_{self.tenant_id}"


class Catalog:
    def __init__(self, store: TaskStore) -> None:
        self.store = store
        self.kb = store.Knowledgebase
        self.knowledge_bases = store.knowledge_base_rows
        self.documents = store.document_rows
        self.tasks = store.task_rows

    # -- knowledge bases ---------------------------------------------------------------------

    def knowledge_base(self, kb_id: str) -> KnowledgeBase | None:
        with self.store.session():
            row = self.knowledge_bases.get(kb_id)
        return _kb(row) if row else None

    def knowledge_base_named(self, name: str) -> KnowledgeBase | None:
        with self.store.session():
            row = self.kb.select().where(self.kb.name == name).dicts().first()
        return _kb(row) if row else None

    def ensure_knowledge_base(
        self,
        name: str,
        *,
        embd_id: str = "",
        tenant_id: str = DEFAULT_TENANT,
        parser_config: dict[str, Any] | None = None,
    ) -> KnowledgeBase:
        """The knowledge base called *name*, created with these settings if missing."""
        existing = self.knowledge_base_named(name)
        if existing:
            return existing
        row = {
            "id": new_id(),
            "tenant_id": tenant_id,
            "name": name,
            "embd_id": embd_id,
            "parser_config": json.dumps({**DEFAULT_PARSER_CONFIG, **(parser_config or {})}),
            **stamp_fields("create"),
            **stamp_fields("update"),
        }
        with self.store.writing():
            self.kb.insert(**row).execute()
        return _kb(row)

    # -- documents ---------------------------------------------------------------------------

    def document(self, doc_id: str) -> dict[str, Any] | None:
        with self.store.session():
            return self.documents.get(doc_id)

    def add_document(self, kb: KnowledgeBase, **fields: Any) -> dict[str, Any]:
        row = self.store.create_document(kb_id=kb.id, **fields)
        with self.store.writing():
            self.kb.update(doc_num=self.kb.doc_num + 1).where(self.kb.id == kb.id).execute()
        return row

    def cancel_document(self, doc_id: str) -> bool:
        """Mark a running document cancelled (``run`` CANCEL), as RAGFlow's UI does when it
        cancels one; a document not running is left as it is (RAGFlow refuses those).
        Whether it was marked."""
        doc = self.store.Document
        with self.store.writing():
            changed = (
                doc.update(run=RunStatus.CANCEL.value, **stamp_fields("update"))
                .where((doc.id == doc_id) & (doc.run == RunStatus.RUNNING.value))
                .execute()
            )
        return bool(changed)

    def settle_document(self, doc_id: str) -> None:
        """Recount the document from its tasks (chunks, tokens, progress, status) and move
        its knowledge base's totals by the document's change, in one transaction: totals
        stay exact however often a task runs, at a cost that does not grow with the base.

        Progress, ``run`` and the progress log follow RAGFlow's own progress updater
        (api/db/services/document_service.py ``_sync_progress``, v0.21.1), so its UI reads
        them as its own: see :func:`document_status`. The worker calls this when a task
        settles, in the transaction that records a done task's state and chunk ids."""
        with self.store.transaction():
            doc = self.documents.get(doc_id, DOCUMENT_TOTALS, for_update=True)
            if doc is None:
                return
            tasks = self.tasks.where_equal("doc_id", doc_id, TASK_TOTALS)
            # Chunks of equal text share an id (hash of text and document), and so one
            # place in the index: count each once, as RAGFlow's executor does.
            chunks = sum(len(set((t["chunk_ids"] or "").split())) for t in tasks)
            tokens = sum(t["token_num"] or 0 for t in tasks)
            updated = stamp_fields("update")
            self.documents.update(
                doc_id,
                {
                    "chunk_num": chunks,
                    "token_num": tokens,
                    **document_status(doc, tasks),
                    **updated,
                },
            )
            self.knowledge_bases.update(
                doc["kb_id"],
                updated,
                increments={
                    "chunk_num": chunks - (doc["chunk_num"] or 0),
                    "token_num": tokens - (doc["token_num"] or 0),
                },
            )


def document_status(doc: dict[str, Any], tasks: list[dict[str, Any]]) -> dict[str, Any]:
    """A document's progress, ``run`` code and progress log from its tasks, as RAGFlow's
    updater writes them: while a task runs, the mean progress of the others not failed and
    ``run`` RUNNING; once none runs, 1 and DONE, or -1 and FAIL if any failed. A document
    cancelled (``run`` CANCEL, as RAGFlow's UI and ``ragfleet cancel --doc`` set it) stays
    cancelled. The log is every task's log, sorted (each starts with its first HH:MM:SS)."""
    values = [t["progress"] or 0.0 for t in tasks] or [0.0]
    finished = bool(tasks) and not any(0 <= v < 1 for v in values)
    failed = any(v < 0 for v in values)
    if finished:
        progress, run = (-1.0, RunStatus.FAIL) if failed else (1.0, RunStatus.DONE)
    else:
        progress, run = sum(max(v, 0.0) for v in values) / len(values), RunStatus.RUNNING
    if doc.get("run") == RunStatus.CANCEL:
        run = RunStatus.CANCEL
    status: dict[str, Any] = {"progress": progress, "run": run.value}
    logs = sorted(m for t in tasks if (m := (t.get("progress_msg") or "").strip()))
    if logs:
        status["progress_msg"] = "\n".join(logs)
    if isinstance(begun := doc.get("process_begin_at"), datetime):
        status["process_duration"] = (datetime.now() - begun).total_seconds()
    return status


def _kb(row: dict[str, Any]) -> KnowledgeBase:
    config = row.get("parser_config") or "{}"
    parsed = json.loads(config) if isinstance(config, str) else dict(config)
    return KnowledgeBase(
        id=row["id"],
        tenant_id=row["tenant_id"],
        name=row["name"],
        embd_id=row["embd_id"] or "",
        parser_config={**DEFAULT_PARSER_CONFIG, **parsed},
    )
