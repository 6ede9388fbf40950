"""Knowledge bases and documents in the task database: what ingestion reads and updates.

Synchronous (peewee), like :class:`executor.db.TaskStore`, whose models and connection
handling it shares; the executor calls it from worker threads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import peewee as pw

from ..db import TaskStore, new_id, stamp_fields

DEFAULT_TENANT = "ragfleet"
DEFAULT_PARSER_CONFIG = {
    "chunk_token_num": 128,  # upstream naive's default budget
    "delimiter": "\n!?。；！？",  # noqa: RUF001 (upstream's CJK sentence ends, on purpose)
    "overlap_percent": 0,
    "pages_per_task": 12,  # upstream splits PDFs into tasks of 12 pages
}


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
        self.doc = store.Document
        self.task = store.Task

    # -- knowledge bases ---------------------------------------------------------------------

    def knowledge_base(self, kb_id: str) -> KnowledgeBase | None:
        with self.store.session():
            row = self.kb.select().where(self.kb.id == kb_id).dicts().first()
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
            return self.doc.select().where(self.doc.id == doc_id).dicts().first()

    def add_document(self, kb: KnowledgeBase, **fields: Any) -> dict[str, Any]:
        row = self.store.create_document(kb_id=kb.id, **fields)
        with self.store.writing():
            self.kb.update(doc_num=self.kb.doc_num + 1).where(self.kb.id == kb.id).execute()
        return row

    def record_chunks(
        self, task_id: str, doc_id: str, chunk_ids: list[str], token_num: int
    ) -> None:
        """Store the task's chunks, recount its document from its tasks, and move the
        knowledge base's totals by the document's change, in one transaction: totals stay
        exact however often a task runs, at a cost that does not grow with the base."""
        with self.store.writing(), self.store.database.atomic():
            self.task.update(
                chunk_ids=" ".join(chunk_ids), token_num=token_num, **stamp_fields("update")
            ).where(self.task.id == task_id).execute()
            doc = self._locked_document(doc_id)
            tasks = self.task.select(self.task.chunk_ids, self.task.token_num).where(
                self.task.doc_id == doc.id
            )
            chunks = sum(len((t.chunk_ids or "").split()) for t in tasks)
            tokens = sum(t.token_num or 0 for t in tasks)
            self.doc.update(chunk_num=chunks, token_num=tokens, **stamp_fields("update")).where(
                self.doc.id == doc.id
            ).execute()
            self.kb.update(
                chunk_num=self.kb.chunk_num + (chunks - doc.chunk_num),
                token_num=self.kb.token_num + (tokens - doc.token_num),
                **stamp_fields("update"),
            ).where(self.kb.id == doc.kb_id).execute()

    def _locked_document(self, doc_id: str):
        """The document row, locked until the transaction ends where the database can lock
        a row (MySQL, PostgreSQL): two tasks of one PDF finishing at once must not both
        add their change to the knowledge base's totals. SQLite already serialises writers."""
        query = self.doc.select().where(self.doc.id == doc_id)
        if not isinstance(self.store.database, pw.SqliteDatabase):
            query = query.for_update()
        return query.get()

    def refresh_document_progress(self, doc_id: str) -> None:
        """Document progress = its tasks' (1 when all done, -1 if any failed), as the UI shows."""
        with self.store.writing():
            query = self.task.select(self.task.progress).where(self.task.doc_id == doc_id)
            values = [row.progress for row in query]
            if not values:
                return
            progress = -1.0 if min(values) < 0 else sum(values) / len(values)
            self.doc.update(
                progress=progress, run="1" if 0 <= progress < 1 else "0", **stamp_fields("update")
            ).where(self.doc.id == doc_id).execute()


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
