"""Ingestion of tasks fetched together: the group handler of upstream's parsing tasks.

A small document's own work (parse, chunk, write its chunks) costs about as much CPU as
its task's bookkeeping: thread hops, statements, round trips (docs/benchmarks.md). Run as
a group, the tasks share them: one builder hop reads, parses and chunks every document,
the chunks of every task whose knowledge base embeds go to its embedding model together
(:mod:`executor.ingest.embed_together`), and one hop writes all their chunks in one store
call; the worker has looked them up and begun them in one hop, and records them done in
one.

Each task stays its own: its progress lines are the same milestones as
:class:`pipeline.Ingestion`'s, a document that cannot be used fails its task alone, and a
task cancelled between two steps stops there, leaving no chunk of its own behind; an
embedding call the model refuses is made again task by task, failing only the task(s)
whose own call fails. A document larger than GROUP_MAX_BYTES is handed back to run alone:
its parse of seconds would hold the group up, and it gains nothing from sharing (run
alone, its chunks still go to the embedder EMBED_SLICE at a time).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from ..errors import TaskInputError
from ..handlers import Outcome, TaskContext
from .catalog import KnowledgeBase
from .embed_together import embed_parts, slices
from .pipeline import (
    Built,
    IngestServices,
    build_chunks_of,
    chunk_record,
    embed_call,
    forget_chunks,
    generated_milestone,
    load_document,
    parsed_milestone,
    recorded_chunk_ids,
    store_call,
    write_chunks,
)
from .types import Chunk, Embedder

GROUP_MAX_BYTES = 1 << 20
"""A larger document runs alone: a parse of seconds would hold its group up, and a
cancel of it would wait for the parse (a task run alone abandons it at once)."""


@dataclass
class Member:
    """One task of a group, and what the group has made of it so far."""

    ctx: TaskContext
    doc: dict[str, Any] = field(default_factory=dict)
    kb: KnowledgeBase | None = None
    data: bytes = b""
    built: Built | None = None
    embedder: Embedder | None = None

    @property
    def going(self) -> bool:
        return self.ctx.outcome is Outcome.DONE

    @property
    def old_ids(self) -> set[str]:
        return recorded_chunk_ids(self.ctx.task)

    @property
    def new_ids(self) -> list[str]:
        return [c.id for c in self.built.chunks] if self.built else []

    def stale_ids(self) -> set[str]:
        """The last run's chunks that this one no longer makes."""
        return self.old_ids - set(self.new_ids)

    def new_ids_only(self) -> list[str]:
        """This run's chunks that the last run did not make."""
        old = self.old_ids
        return [i for i in self.new_ids if i not in old]


def ingest_group_handler(services: IngestServices) -> Callable[[list[TaskContext]], Any]:
    async def ingest_group(ctxs: list[TaskContext]) -> None:
        await IngestionGroup(services, ctxs).run()

    return ingest_group


class IngestionGroup:
    """One run of a group of ingestion tasks (see the module's docstring)."""

    def __init__(self, services: IngestServices, ctxs: list[TaskContext]) -> None:
        self.services = services
        self.members = [Member(ctx) for ctx in ctxs]

    async def run(self) -> None:
        limiter = self.services.chunk_builders
        await trio.to_thread.run_sync(self._build_all, limiter=limiter, abandon_on_cancel=True)
        self._stop_cancelled(self._going())
        for member in self._going():
            assert member.built is not None
            await member.ctx.progress(0.1, f"Start to parse {member.doc['name']}.")
            await member.ctx.progress(*parsed_milestone(member.built))
            await member.ctx.progress(*generated_milestone(member.built))
        await self._embed_all()
        self._stop_cancelled(self._going())
        await self._index(self._going())

    def _going(self) -> list[Member]:
        return [m for m in self.members if m.going]

    def _build_all(self) -> None:
        """In a builder thread (one hop, not two: reading is short next to parsing): read
        each document, its knowledge base and its bytes, then parse and chunk it, unless it
        is to run alone or has been cancelled meanwhile (recorded so after this hop).

        A document that cannot be read, parsed or chunked fails its task alone, as it would
        fail it run alone; an outage is raised, as it is every task's."""
        for member in self.members:
            try:
                member.doc, member.kb, member.data = load_document(self.services, member.ctx.task)
            except TaskInputError as exc:
                member.ctx.outcome = exc
                continue
            if len(member.data) > GROUP_MAX_BYTES:
                member.ctx.outcome = Outcome.RUN_ALONE
            elif not member.ctx.cancel_requested():
                try:
                    member.embedder = self.services.embedder(member.kb)
                    member.built = build_chunks_of(
                        member.ctx.task, member.doc, member.kb, member.data
                    )
                except Exception as exc:
                    member.ctx.outcome = exc

    async def _embed_all(self) -> None:
        """The chunks of the members whose knowledge bases embed, to each embedding model
        together (see embed_together); then each member's "Embedding chunks" line."""
        by_model: dict[int, list[Member]] = {}
        for member in self._going():
            if member.embedder is not None and member.new_ids:
                by_model.setdefault(id(member.embedder), []).append(member)
        for members in by_model.values():
            started = time.monotonic()
            assert members[0].embedder is not None
            await self._embed(members[0].embedder, members)
            for member in members:
                if member.going:
                    seconds = time.monotonic() - started
                    await member.ctx.progress(0.7, f"Embedding chunks ({seconds:.2f}s).")

    async def _embed(self, embedder: Embedder, members: list[Member]) -> None:
        """EMBED_SLICE chunks per call, whichever tasks they belong to; between calls a
        task cancelled is recorded so, and its chunks left out. A task whose own call the
        model refuses fails here (TaskInputError, as run alone)."""
        owned = [(n, c) for n, m in enumerate(members) if m.built for c in m.built.chunks]
        for part in slices(owned):
            self._stop_cancelled([m for m in members if m.going])
            by_member: dict[int, list[Chunk]] = {}
            for n, item in part:
                if members[n].going:
                    by_member.setdefault(n, []).append(item)
            if not by_member:
                continue
            errors = await embed_call(embed_parts, embedder, list(by_member.values()))
            for n, error in zip(by_member, errors, strict=True):
                if error is not None:
                    members[n].ctx.outcome = TaskInputError(f"embedding failed: {error}")

    @staticmethod
    def _stop_cancelled(members: list[Member]) -> list[Member]:
        cancelled = [m for m in members if m.ctx.cancel_requested()]
        for member in cancelled:
            member.ctx.outcome = Outcome.CANCELLED
        return cancelled

    async def _index(self, members: list[Member]) -> None:
        """Replace each task's previous chunks with its new ones, all in one store call
        per index; then, as a task run alone does, record the new chunk ids with the done
        state (``done_fields``), and remove the new chunks of a task cancelled meanwhile
        (or of every task, if the write fails or the group is cancelled)."""
        if not members:
            return
        started = time.monotonic()
        try:
            await store_call(self._write_all, members)
            for member in members:
                await member.ctx.progress(
                    0.9, f"Indexing done ({time.monotonic() - started:.2f}s)."
                )
        except BaseException:
            await self._forget(members)
            raise
        await self._forget(self._stop_cancelled(members))
        for member in self._going():
            assert member.built is not None
            member.ctx.done_fields.update(chunk_record(member.built.chunks))

    def _write_all(self, members: list[Member]) -> None:
        """In a thread: per index, create it, remove the chunks earlier runs of these tasks
        left that this one no longer makes, and write every new chunk in one call."""
        store = self.services.doc_store
        for index, group in _by_index(members).items():
            stale = sorted({i for m in group for i in m.stale_ids()})
            chunks = [c for m in group if m.built for c in m.built.chunks]
            for dim in _vector_dims(chunks)[1:]:  # write_chunks creates the first one's
                store.create_index(index, dim)
            write_chunks(store, index, stale, chunks)

    async def _forget(self, members: list[Member]) -> None:
        """Remove the chunks *members* wrote that were not there before (see
        pipeline.forget_chunks)."""
        for index, group in _by_index(members).items():
            ids = [i for m in group for i in m.new_ids_only()]
            await forget_chunks(self.services.doc_store, index, ids)


def _vector_dims(chunks: list[Chunk]) -> list[int | None]:
    """The vector dimensions of *chunks* (None: no vector), the first chunk's first: the
    knowledge bases of one index may embed with different models."""
    dims = dict.fromkeys(len(c.vector) if c.vector else None for c in chunks)
    return list(dims)


def _by_index(members: list[Member]) -> dict[str, list[Member]]:
    by_index: dict[str, list[Member]] = {}
    for member in members:
        assert member.kb is not None
        by_index.setdefault(member.kb.index, []).append(member)
    return by_index
