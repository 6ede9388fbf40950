"""Taking documents in: store the bytes, record the document, create and enqueue its tasks.

What ``ragfleet submit FILE... --kb NAME`` does. The document's bytes are stored and its
rows written before anything is enqueued, so a task never points at a missing document.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ..handlers import INGEST_TASK_TYPE
from ..queue.producer import task_message
from ..queue.roster import Roster
from ..store.database import TaskStore, new_id
from ..store.tables import RunStatus
from .catalog import Catalog, KnowledgeBase
from .errors import DocumentError
from .parsers import pdf_page_count
from .storage import MAX_CONTENT_LENGTH, check_size
from .types import BlobStorage

WHOLE_DOCUMENT = (0, 100_000_000)  # upstream's from_page/to_page for "all pages"


@dataclass(frozen=True)
class Submitted:
    path: Path
    doc_id: str = ""
    task_ids: tuple[str, ...] = ()
    error: str = ""


def page_ranges(data: bytes, filename: str, pages_per_task: int) -> list[tuple[int, int]]:
    """A PDF becomes tasks of *pages_per_task* pages; anything else one task. A PDF whose
    pages cannot be counted gets one task, which fails with the parser's message."""
    if not filename.lower().endswith(".pdf"):
        return [WHOLE_DOCUMENT]
    try:
        count = pdf_page_count(data)
    except DocumentError:
        return [WHOLE_DOCUMENT]
    step = max(1, pages_per_task)
    return [(p, min(p + step, count)) for p in range(0, count, step)] or [WHOLE_DOCUMENT]


class Intake:
    def __init__(
        self,
        store: TaskStore,
        blobs: BlobStorage,
        roster: Roster,
        limit: int = MAX_CONTENT_LENGTH,
    ) -> None:
        self.store = store
        self.catalog = Catalog(store)
        self.blobs = blobs
        self.roster = roster
        self.limit = limit

    def submit(self, kb: KnowledgeBase, paths: list[Path]) -> Iterator[Submitted]:
        """Submit each file; a file that cannot be taken in is reported, not raised. An
        outage (the database, the storage or Redis unavailable, a full disk) is raised:
        every file after it would meet it too."""
        for path in paths:
            try:
                yield self._submit_one(kb, path)
            except ConnectionError:
                raise  # DatabaseUnavailable, StorageUnavailable: before OSError, their base
            except (DocumentError, OSError) as exc:
                yield Submitted(path, error=str(exc))

    def _submit_one(self, kb: KnowledgeBase, path: Path) -> Submitted:
        status = path.stat()
        if not stat.S_ISREG(status.st_mode):  # a FIFO would block; /dev/zero never ends
            raise DocumentError(f"{path.name} is not a regular file")
        size = status.st_size
        check_size(size, self.limit, name=path.name)
        data = path.read_bytes()
        doc_id = new_id()
        location = f"{doc_id}{path.suffix.lower()}"
        ranges = page_ranges(data, path.name, int(kb.parser_config["pages_per_task"]))
        rows: list[dict[str, Any]] = [
            {"doc_id": doc_id, "from_page": a, "to_page": b, "task_type": INGEST_TASK_TYPE}
            for a, b in ranges
        ]
        self.blobs.put(kb.id, location, data)
        try:
            with self.store.transaction():  # the document with its tasks, or neither
                self.catalog.add_document(
                    kb,
                    id=doc_id,
                    name=path.name,
                    location=location,
                    size=size,
                    suffix=path.suffix.lower().lstrip("."),
                    type=_doc_type(path.suffix),
                    parser_id="naive",
                    parser_config="{}",
                    # What RAGFlow's "parse" writes (document_app.run, begin2parse).
                    run=RunStatus.RUNNING.value,
                    progress_msg="Task is queued...",
                    process_begin_at=datetime.now(),
                )
                tasks = self.store.create_tasks(rows)
        except BaseException:
            with suppress(Exception):  # no row points at the bytes: do not leave them behind
                self.blobs.delete(kb.id, location)
            raise
        # Tasks recorded but not enqueued (Redis unavailable) are what `ragfleet reconcile`
        # puts back on their queues.
        self.roster.enqueue(task_message(t) for t in tasks)
        return Submitted(path, doc_id, tuple(t["id"] for t in tasks))


def _doc_type(suffix: str) -> str:
    """Upstream's document type buckets."""
    suffix = suffix.lower()
    if suffix == ".pdf":
        return "pdf"
    if suffix in (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tiff"):
        return "visual"
    return "doc"
