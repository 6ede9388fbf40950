"""What RAGFlow's API server writes, and what its UI and status page read (v0.21.1).

Each function cites the upstream code it plays. Nothing here comes from ragfleet's code:
the rows are written with RAGFlow's own models (ragflow_tables), the queue entries with a
plain Redis client, as upstream's RedisDB does.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import peewee as pw
import redis
import xxhash
from ragflow_tables import CANCEL, RUNNING, models

QUEUE = "rag_flow_svr_queue"  # rag/settings.py get_svr_queue_name(0)
NAIVE_PARSER_CONFIG = {  # api/utils/api_utils.py get_parser_config("naive"), lines 424-425
    "chunk_token_num": 512,
    "delimiter": r"\n",
    "html4excel": False,
    "layout_recognize": "DeepDOC",
    "raptor": {"use_raptor": False},
    "graphrag": {"use_graphrag": False},
}


def uuid1_hex() -> str:
    return uuid.uuid1().hex  # api/utils get_uuid()


def now_ms() -> int:
    return int(time.time() * 1000)  # api/utils current_timestamp()


def stamps(moment: int | None = None) -> dict[str, Any]:
    """create/update time and date, as bulk_insert_into_db and BaseModel.insert set them."""
    moment = moment or now_ms()
    date = datetime.fromtimestamp(moment / 1000).strftime("%Y-%m-%d %H:%M:%S")
    return {"create_time": moment, "create_date": date, "update_time": moment, "update_date": date}


class RAGFlow:
    """RAGFlow's API server over one database, one Redis and one object store."""

    def __init__(self, database: pw.Database, client: redis.Redis, files: Path) -> None:
        self.database = database
        self.redis = client
        self.files = files  # the MinIO stand-in: <files>/<bucket>/<name>
        self.models = models(database)
        self.kb, self.doc, self.task = (
            self.models[t] for t in ("knowledgebase", "document", "task")
        )

    def create_tables(self) -> None:
        """db_models.init_database_tables: create_table(safe=True) for each model."""
        with self.database.connection_context():
            for model in self.models.values():
                model.create_table(safe=True)

    def create_knowledge_base(self, name: str, tenant_id: str) -> str:
        """kb_app.create (KnowledgebaseService.save): a naive knowledge base, no embedding."""
        kb_id = uuid1_hex()
        with self.database.connection_context():
            self.kb.insert(
                id=kb_id,
                name=name,
                tenant_id=tenant_id,
                created_by=tenant_id,
                embd_id="",
                parser_id="naive",
                parser_config=json.dumps(NAIVE_PARSER_CONFIG),
                **stamps(),
            ).execute()
        return kb_id

    def upload(self, kb_id: str, filename: str, blob: bytes) -> str:
        """FileService.upload_document (file_service.py lines 440-472): the blob into the
        bucket kb_id under its file name, then the document row (DocumentService.insert,
        which also counts it in the knowledge base)."""
        doc_id = uuid1_hex()
        target = self.files / kb_id / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(blob)
        suffix = Path(filename).suffix.lstrip(".")
        with self.database.connection_context():
            self.doc.insert(
                id=doc_id,
                kb_id=kb_id,
                parser_id="naive",
                pipeline_id=None,
                parser_config=json.dumps(NAIVE_PARSER_CONFIG),
                created_by="user",
                type="pdf" if suffix == "pdf" else "doc",
                name=filename,
                suffix=suffix,
                location=filename,
                size=len(blob),
                thumbnail=None,
                **stamps(),
            ).execute()
            self.kb.update(doc_num=self.kb.doc_num + 1).where(self.kb.id == kb_id).execute()
        return doc_id

    def parse(self, doc_id: str) -> list[str]:
        """document_app.run with run=1 (lines 438-492) and task_service.queue_tasks (lines
        326-430) for a non-PDF document: run RUNNING, one task with its digest, inserted by
        bulk_insert_into_db (which adds the stamps to the dict), begin2parse, then the task
        dict itself as the queue message."""
        with self.database.connection_context():
            self.doc.update(run=RUNNING, progress=0).where(self.doc.id == doc_id).execute()
            task = {
                "id": uuid1_hex(),
                "doc_id": doc_id,
                "progress": 0.0,
                "from_page": 0,
                "to_page": 100000000,
                "begin_at": datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
            }
            hasher = xxhash.xxh64()
            for field in ("doc_id", "from_page", "to_page"):
                hasher.update(str(task[field]).encode("utf-8"))
            task |= {"digest": hasher.hexdigest(), "priority": 0}
            task |= stamps()
            self.task.insert_many([task]).execute()
            self.doc.update(  # DocumentService.begin2parse
                progress=0.001, progress_msg="Task is queued...", process_begin_at=datetime.now()
            ).where(self.doc.id == doc_id).execute()
        self.redis.xadd(QUEUE, {"message": json.dumps(task)})  # RedisDB.queue_product
        return [task["id"]]

    def cancel(self, doc_id: str) -> None:
        """document_app.run with run=2: cancel_all_task_of (a cancel flag per task), then
        run CANCEL and progress 0."""
        with self.database.connection_context():
            tasks = self.task.select(self.task.id).where(self.task.doc_id == doc_id)
            for (task_id,) in tasks.tuples():
                self.redis.set(f"{task_id}-cancel", "x")
            self.doc.update(run=CANCEL, progress=0).where(self.doc.id == doc_id).execute()

    # -- what the UI and the status page read ------------------------------------------------

    def document(self, doc_id: str) -> dict[str, Any]:
        with self.database.connection_context():
            return self.doc.select().where(self.doc.id == doc_id).dicts().get()

    def knowledge_base(self, kb_id: str) -> dict[str, Any]:
        with self.database.connection_context():
            return self.kb.select().where(self.kb.id == kb_id).dicts().get()

    def tasks(self, doc_id: str) -> list[dict[str, Any]]:
        """TaskService.query(doc_id=...): every column RAGFlow knows, nothing else."""
        with self.database.connection_context():
            return list(self.task.select().where(self.task.doc_id == doc_id).dicts())

    def heartbeats(self) -> dict[str, list[dict[str, Any]]]:
        """system_app.status's executor list: SMEMBERS TASKEXE, then each consumer's
        heartbeats of the last 30 minutes (ZRANGEBYSCORE name now-1800 now)."""
        now = time.time()
        return {
            name.decode(): [
                json.loads(raw) for raw in self.redis.zrangebyscore(name, now - 1800, now)
            ]
            for name in self.redis.smembers("TASKEXE")
        }
