"""The ingestion handler: one task = one document (or one page range of a PDF) turned into
indexed chunks, with upstream's progress milestones and no duplicates on a re-run.

    fetch bytes -> parse -> chunk -> embed (optional) -> index
    -> (the worker) record chunk ids with the done state, recount document and base

CPU-heavy steps (parsing, chunking) run in threads under ``max_concurrent_chunk_builders``;
every step is a cancellation point, and a cancelled task removes the chunks it had
written that were not there before, so nothing is half-recorded.

Each thread hop costs about 0.2 ms of CPU here, as much as chunking a page, so blocking
calls that always run together share one: reading the document, its knowledge base and
its bytes; parsing and chunking; preparing the index and writing the first batch.

This handler runs one task; tasks fetched together run as a group instead, sharing their
hops and their store write (:mod:`executor.ingest.grouped`, built from the same steps).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, TypeVar

import trio

from ..errors import (
    DatabaseUnavailable,
    DependencyUnavailable,
    SettingsError,
    TaskInputError,
    unreachable,
)
from ..handlers import TaskContext
from ..settings import Settings
from ..store.database import TaskStore
from .catalog import Catalog, KnowledgeBase
from .chunking import chunk, chunk_id
from .docstore import open_configured_doc_store
from .embed_together import embed_parts, slices
from .embedders import open_embedder
from .embeddings import embedding_config
from .errors import DocumentError, EmbeddingError, EmbeddingUnavailable, TokenizerUnavailable
from .parsers import parser_for
from .ragtokens import check_installed, shared_tokenizer
from .storage_open import open_configured_storage
from .types import BlobStorage, Chunk, DocStore, Embedder, Section

T = TypeVar("T")

INDEX_BATCH = 64
"""Chunks per bulk request; progress and cancellation are checked between batches."""


@dataclass
class IngestServices:
    """What ingestion needs, built once per executor process from its settings."""

    settings: Settings
    store: TaskStore
    catalog: Catalog
    blobs: BlobStorage
    doc_store: DocStore
    chunk_builders: trio.CapacityLimiter
    _embedders: dict[str, Embedder | None] = field(default_factory=dict)
    _embedders_lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_settings(cls, settings: Settings, store: TaskStore) -> IngestServices:
        """Open the storage and the document store the config names (a SettingsError says
        which cannot be opened)."""
        blobs = open_configured_storage(settings.storage, database=store.database)
        doc_store = open_configured_doc_store(settings.doc_store)
        try:  # a missing install stops the executor at its start; loading waits for a task
            check_installed()
        except TokenizerUnavailable as exc:
            raise SettingsError(str(exc)) from None
        return cls(
            settings=settings,
            store=store,
            catalog=Catalog(store),
            blobs=blobs,
            doc_store=doc_store,
            chunk_builders=trio.CapacityLimiter(settings.executor.max_concurrent_chunk_builders),
        )

    def embedder(self, kb: KnowledgeBase) -> Embedder | None:
        """In a thread (a local model loads for seconds): the knowledge base's embedding
        model, opened once per process; its endpoint comes from the compiled config. A
        model that cannot be opened is a TaskInputError."""
        with self._embedders_lock:  # group builders and tasks alone may ask at once
            if kb.embd_id not in self._embedders:
                config = embedding_config(self.settings.models, kb.embd_id)
                try:
                    opened = open_embedder(config) if kb.embd_id else None
                except EmbeddingError as exc:
                    raise TaskInputError(f"embedding model {kb.embd_id!r}: {exc}") from None
                self._embedders[kb.embd_id] = opened
            return self._embedders[kb.embd_id]


def ingest_handler(services: IngestServices) -> Callable[[TaskContext], Any]:
    async def ingest(ctx: TaskContext) -> None:
        await Ingestion(services, ctx).run()

    return ingest


class Ingestion:
    """One run of one ingestion task."""

    def __init__(self, services: IngestServices, ctx: TaskContext) -> None:
        self.services = services
        self.ctx = ctx
        self.task = ctx.task
        self.progress = ctx.progress

    async def run(self) -> None:
        doc, kb, data = await self._thread(load_document, self.services, self.task)
        chunks = await self._build_chunks(doc, kb, data)
        embedder = await self._thread(self.services.embedder, kb)
        if embedder and chunks:
            await self._embed(embedder, chunks)
        await self._index(kb, chunks)

    async def _build_chunks(
        self, doc: dict[str, Any], kb: KnowledgeBase, data: bytes
    ) -> list[Chunk]:
        await self.progress(0.1, f"Start to parse {doc['name']}.")
        built = await self._build(build_chunks_of, self.task, doc, kb, data)
        await self.progress(*parsed_milestone(built))
        await self.progress(*generated_milestone(built))
        return built.chunks

    async def _embed(self, embedder: Embedder, chunks: list[Chunk]) -> None:
        """EMBED_SLICE chunks per embedder call (which cuts them into its batches): a
        long document's chunks share calls, and progress and cancellation are checked
        between them."""
        started, done = time.monotonic(), 0
        for part in slices(chunks):
            (error,) = await embed_call(embed_parts, embedder, [part])
            if error is not None:
                raise TaskInputError(f"embedding failed: {error}")
            done += len(part)
            await self.progress(0.5 + 0.2 * done / len(chunks))
        await self.progress(0.7, f"Embedding chunks ({time.monotonic() - started:.2f}s).")

    async def _index(self, kb: KnowledgeBase, chunks: list[Chunk]) -> None:
        """Replace this task's previous chunks with *chunks*. Their ids are recorded with the
        task's done state (``ctx.done_fields``), so a task cancelled or failed here first
        removes the new chunks it wrote; if the done write itself fails, the task runs again
        and writes the same ids."""
        started = time.monotonic()
        store = self.services.doc_store
        old_ids = recorded_chunk_ids(self.task)
        stale = sorted(old_ids - {c.id for c in chunks})
        written: list[str] = []
        try:
            for start in range(0, max(len(chunks), 1), INDEX_BATCH):
                part = chunks[start : start + INDEX_BATCH]
                if start == 0:  # with the index made and the stale chunks removed
                    await store_call(write_chunks, store, kb.index, stale, part)
                else:
                    await store_call(store.upsert, kb.index, part)
                written += [c.id for c in part]
                await self.progress(0.8 + 0.1 * len(written) / max(len(chunks), 1))
            await self.progress(0.9, f"Indexing done ({time.monotonic() - started:.2f}s).")
        except BaseException:
            await forget_chunks(store, kb.index, [i for i in written if i not in old_ids])
            raise
        self.ctx.done_fields.update(chunk_record(chunks))

    async def _build(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run CPU work (parsing, chunking) in a builder thread. It has no side effects, so a
        cancelled task does not wait for it: the thread runs on, keeping its builder slot
        until it ends, and its result is dropped (a large document takes seconds)."""
        call = functools.partial(fn, *args, **kwargs)
        limiter = self.services.chunk_builders
        return await trio.to_thread.run_sync(call, limiter=limiter, abandon_on_cancel=True)

    async def _thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await trio.to_thread.run_sync(functools.partial(fn, *args))


def recorded_chunk_ids(task: dict[str, Any]) -> set[str]:
    """The chunks the task's last recorded run made."""
    return set((task.get("chunk_ids") or "").split())


def chunk_record(chunks: list[Chunk]) -> dict[str, Any]:
    """The task columns that record *chunks*, written with the task's done state."""
    return {
        "chunk_ids": " ".join(c.id for c in chunks),
        "token_num": sum(len(c.tokens) for c in chunks),
    }


def write_chunks(store: DocStore, index: str, stale: list[str], chunks: list[Chunk]) -> None:
    """In a thread: create the index, remove the *stale* chunks (a previous run made them,
    this one does not), and write *chunks*."""
    first = chunks[0] if chunks else None
    store.create_index(index, len(first.vector) if first and first.vector else None)
    if stale:
        store.delete(index, stale)
    if chunks:
        store.upsert(index, chunks)


async def forget_chunks(store: DocStore, index: str, chunk_ids: list[str]) -> None:
    """Undo a cancelled or failed indexing run's new chunks (shielded: it must finish)."""
    if not chunk_ids:
        return
    # If the store is down, the chunks stay as orphans until a re-run replaces them.
    with trio.CancelScope(shield=True), trio.move_on_after(30), suppress(Exception):
        await store_call(store.delete, index, chunk_ids)


async def embed_call(fn: Callable[..., T], *args: Any) -> T:
    """A blocking embedder call, in a thread; the endpoint out of reach is an outage."""
    try:
        return await trio.to_thread.run_sync(functools.partial(fn, *args))
    except EmbeddingUnavailable as exc:
        raise DependencyUnavailable(f"embedding endpoint: {exc}", "embedding_endpoint") from exc


async def store_call(fn: Callable[..., T], *args: Any) -> T:
    """A blocking document store call, in a thread; the store out of reach is an outage."""
    try:
        return await trio.to_thread.run_sync(functools.partial(fn, *args))
    except Exception as exc:
        if unreachable(exc):
            raise DependencyUnavailable(f"document store: {exc}", "document_store") from exc
        raise


def load_document(
    services: IngestServices, task: dict[str, Any]
) -> tuple[dict[str, Any], KnowledgeBase, bytes]:
    """In a thread: the task's document row, its knowledge base, and its bytes."""
    catalog = services.catalog
    doc = catalog.document(task["doc_id"])
    if doc is None:
        raise TaskInputError(f"document {task['doc_id']!r} does not exist")
    kb = catalog.knowledge_base(doc["kb_id"])
    if kb is None:
        raise TaskInputError(f"knowledge base {doc['kb_id']!r} does not exist")
    try:
        return doc, kb, services.blobs.get(kb.id, doc["location"])
    except DocumentError as exc:
        raise TaskInputError(f"{doc['name']}: {exc}") from None
    except DatabaseUnavailable:
        raise  # the blob table's database: an outage, not the document store's
    except Exception as exc:
        if unreachable(exc):
            raise DependencyUnavailable(f"document storage: {exc}", "storage") from exc
        raise


@dataclass
class Built:
    chunks: list[Chunk]
    sections: int
    parse_seconds: float


def parsed_milestone(built: Built) -> tuple[float, str]:
    return 0.4, f"Finished parsing: {built.sections} sections ({built.parse_seconds:.2f}s)."


def generated_milestone(built: Built) -> tuple[float, str]:
    return 0.5, f"Generated {len(built.chunks)} chunks."


def build_chunks_of(
    task: dict[str, Any], doc: dict[str, Any], kb: KnowledgeBase, data: bytes
) -> Built:
    """In a builder thread: the task's document parsed and chunked with its knowledge
    base's parser_config; a document or config the task cannot use is a TaskInputError."""
    config = kb.parser_config
    try:
        _, parse = parser_for(doc["name"], doc.get("parser_id"))
        return _parse_and_chunk(
            parse,
            data,
            doc,
            kb,
            from_page=task["from_page"],
            to_page=task["to_page"],
            chunk_token_num=int(config["chunk_token_num"]),
            delimiter=str(config["delimiter"]),
            overlap_percent=int(config["overlap_percent"]),
        )
    except DocumentError as exc:
        raise TaskInputError(str(exc)) from None
    except ValueError as exc:
        raise TaskInputError(f"knowledge base {kb.name!r} parser_config: {exc}") from None


def _parse_and_chunk(
    parse: Callable[..., list[Section]],
    data: bytes,
    doc: dict[str, Any],
    kb: KnowledgeBase,
    *,
    from_page: int,
    to_page: int,
    **config: Any,
) -> Built:
    """Parse, chunk, tokenize and id a document: all CPU, so it runs in a builder thread,
    never on the event loop."""
    started = time.monotonic()
    sections = parse(data, filename=doc["name"], from_page=from_page, to_page=to_page)
    parse_seconds = time.monotonic() - started
    return Built(_chunks_of(doc, kb, sections, **config), len(sections), parse_seconds)


def _chunks_of(
    doc: dict[str, Any], kb: KnowledgeBase, sections: list[Section], **config: Any
) -> list[Chunk]:
    now = time.time()
    tokenizer = shared_tokenizer()
    title_tks, title_sm_tks = tokenizer.title_fields(doc["name"])
    chunks = []
    for position, piece in enumerate(chunk(sections, **config)):
        content_ltks, content_sm_ltks = tokenizer.content_fields(piece.text)
        chunks.append(
            Chunk(
                id=chunk_id(piece.text, doc["id"]),
                doc_id=doc["id"],
                kb_id=kb.id,
                doc_name=doc["name"],
                content=piece.text,
                tokens=piece.terms,
                pages=list(piece.pages),
                create_time=now,
                content_ltks=content_ltks,
                content_sm_ltks=content_sm_ltks,
                title_tks=title_tks,
                title_sm_tks=title_sm_tks,
                position=position,
            )
        )
    return chunks
