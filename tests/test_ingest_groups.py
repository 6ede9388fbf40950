"""Ingestion tasks fetched together run as one group (executor.ingest.grouped): real files,
the embedded store, the SQLite task database and Redis, in one in-process worker (so that
the test can see which way each task went)."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest
import trio
from executors import Fleet
from fake_openai import Answer, FakeOpenAI, Request, serve_fake_openai

from executor.errors import TaskInputError
from executor.handlers import Outcome, TaskContext
from executor.ingest import grouped
from executor.ingest.catalog import Catalog
from executor.ingest.docstore import open_doc_store
from executor.ingest.grouped import IngestionGroup
from executor.ingest.pipeline import Ingestion, IngestServices, build_chunks_of, load_document
from executor.progress import Progress

STAMP = re.compile(r"^\d\d:\d\d:\d\d (Page\(\d+~\d+\): )?")
CORPUS = Path(__file__).resolve().parent.parent / "samples" / "corpus"
SMALL = ("analects-book-1-excerpt.txt", "planets-of-the-solar-system.csv", "gettysburg-address.pdf")


def submit(fleet: Fleet, *files: Path) -> list[str]:
    result = fleet.cli("submit", *map(str, files), "--kb", "samples")
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


@pytest.fixture
def five_slots(make_fleet) -> Fleet:
    return make_fleet(max_concurrent_tasks=5)


def chunks_of(fleet: Fleet, doc_id: str) -> int:
    kb = Catalog(fleet.store).knowledge_base_named("samples")
    assert kb is not None
    return open_doc_store(fleet.settings.doc_store).count(kb.index, doc_id=doc_id)


def test_documents_fetched_together_are_ingested_as_one_group(five_slots, tmp_path, monkeypatch):
    """Three small documents share one store write; a corrupt one fails alone with a
    readable message; one over the size limit is handed back and runs alone."""
    fleet = five_slots
    corrupt = tmp_path / "corrupt.pdf"
    corrupt.write_bytes(b"%PDF-1.4 this is not really a PDF")
    large = CORPUS / "declaration-of-independence.txt"
    monkeypatch.setattr(grouped, "GROUP_MAX_BYTES", large.stat().st_size - 1)
    writes: list[int] = []
    write_all = IngestionGroup._write_all

    def counted(self, members):
        writes.append(len(members))
        return write_all(self, members)

    monkeypatch.setattr(IngestionGroup, "_write_all", counted)
    alone: list[str] = []
    run = Ingestion.run

    async def run_alone(self):
        alone.append(self.task["id"])
        await run(self)

    monkeypatch.setattr(Ingestion, "run", run_alone)
    ids = submit(fleet, *(CORPUS / name for name in SMALL), corrupt, large)
    with fleet.in_process_worker() as worker:

        async def main() -> None:
            async with trio.open_nursery() as nursery:
                await nursery.start(worker.run)
                with trio.fail_after(60):
                    while worker.counters.done + worker.counters.failed < len(ids):
                        await trio.sleep(0.05)
                worker.stop()

        trio.run(main)
    assert writes == [3] and alone == [ids[4]]
    rows = [fleet.task(task_id) for task_id in ids]
    assert [r["progress"] for r in rows] == [1, 1, 1, -1, 1]
    assert "[Exception]: " in rows[3]["progress_msg"] and "corrupt.pdf" in rows[3]["progress_msg"]
    for row in rows[:3]:
        lines = [STAMP.sub("", line) for line in row["progress_msg"].splitlines()]
        assert lines[0] == "Task has been received."
        assert lines[1].startswith("Start to parse ") and lines[2].startswith("Finished parsing")
        assert lines[3].startswith("Generated ") and lines[4].startswith("Indexing done (")
        assert lines[5].startswith("Task done (") and len(lines) == 6
    for row in rows[:3] + rows[4:]:
        chunk_ids = row["chunk_ids"].split()
        assert chunk_ids and chunks_of(fleet, row["doc_id"]) == len(chunk_ids)
        assert fleet.store.Document.get_by_id(row["doc_id"]).chunk_num == len(chunk_ids)


async def in_thread(fn, *args, **kwargs):
    return await trio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))


def run_group(
    fleet: Fleet, tasks: list[dict], cancelled: set[str], *, from_start: bool = False
) -> list[Outcome]:
    """Run IngestionGroup over *tasks* as the worker would (their rows, their progress);
    a task whose doc_id is in *cancelled* is cancelled once the group's write begins (or
    from the start)."""
    services = IngestServices.from_settings(fleet.settings, fleet.store)
    writing = {"began": from_start}

    async def main() -> list[Outcome]:
        ctxs = [
            TaskContext(
                task,
                Progress(task, in_thread, fleet.store.set_progress),
                fleet.settings,
                cancel_requested=lambda t=task: writing["began"] and t["doc_id"] in cancelled,
            )
            for task in tasks
        ]
        group = IngestionGroup(services, ctxs)
        write_all = group._write_all

        def write_then_cancel(members):
            writing["began"] = True
            write_all(members)

        group._write_all = write_then_cancel  # type: ignore[method-assign]
        await group.run()
        for ctx in ctxs:
            if ctx.outcome is Outcome.DONE:
                fleet.store.set_progress(ctx.task["id"], 1.0, "", **ctx.done_fields)
        return [ctx.outcome for ctx in ctxs]

    try:
        return trio.run(main)
    finally:
        services.doc_store.close()


def test_a_task_cancelled_while_its_group_writes_leaves_no_chunk_behind(fleet):
    ids = submit(fleet, *(CORPUS / name for name in SMALL[:2]))
    tasks = [fleet.task(task_id) for task_id in ids]
    outcomes = run_group(fleet, tasks, cancelled={tasks[1]["doc_id"]})
    assert outcomes == [Outcome.DONE, Outcome.CANCELLED]
    first = fleet.task(ids[0])
    assert chunks_of(fleet, tasks[0]["doc_id"]) == len(first["chunk_ids"].split()) > 0
    assert chunks_of(fleet, tasks[1]["doc_id"]) == 0


def test_a_task_cancelled_before_its_group_parses_is_neither_parsed_nor_written(fleet):
    ids = submit(fleet, *(CORPUS / name for name in SMALL[:2]))
    tasks = [fleet.task(task_id) for task_id in ids]
    outcomes = run_group(fleet, tasks, cancelled={tasks[0]["doc_id"]}, from_start=True)
    assert outcomes == [Outcome.CANCELLED, Outcome.DONE]
    assert chunks_of(fleet, tasks[0]["doc_id"]) == 0
    assert chunks_of(fleet, tasks[1]["doc_id"]) == len(fleet.task(ids[1])["chunk_ids"].split())


def test_a_group_run_again_replaces_its_chunks_without_duplicates(fleet):
    """A second run of the same tasks (a redelivery after a crash) writes the same chunk
    ids; a chunk an earlier run made that this one no longer makes is removed."""
    ids = submit(fleet, *(CORPUS / name for name in SMALL))
    first = run_group(fleet, [fleet.task(task_id) for task_id in ids], cancelled=set())
    assert first == [Outcome.DONE] * 3
    done = [fleet.task(task_id) for task_id in ids]
    counts = [chunks_of(fleet, row["doc_id"]) for row in done]
    # An earlier run's chunk that this one does not make: recorded, and in the store.
    stale = "f" * 32
    services = IngestServices.from_settings(fleet.settings, fleet.store)
    kb = Catalog(fleet.store).knowledge_base_named("samples")
    assert kb is not None
    doc, _, data = load_document(services, done[0])
    chunk = build_chunks_of(done[0], doc, kb, data).chunks[0]
    chunk.id = stale
    services.doc_store.upsert(kb.index, [chunk])
    services.doc_store.close()
    fleet.store.set_progress(ids[0], 1.0, "", chunk_ids=done[0]["chunk_ids"] + " " + stale)
    again = run_group(fleet, [fleet.task(task_id) for task_id in ids], cancelled=set())
    assert again == [Outcome.DONE] * 3
    rows = [fleet.task(task_id) for task_id in ids]
    assert [r["chunk_ids"] for r in rows] == [r["chunk_ids"] for r in done]
    assert [chunks_of(fleet, row["doc_id"]) for row in rows] == counts


class RejectsOneText(FakeOpenAI):
    """An endpoint that refuses (HTTP 400) any request holding a text with *marker*: as a
    real one refuses an input it cannot take, whichever task's chunks share the request."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker

    def respond(self, request: Request) -> Answer:
        if any(self.marker in text for text in request.body.get("input", [])):
            with self.lock:
                self.requests.append(request)
            return Answer(400, {"error": {"message": "input rejected"}})
        return super().respond(request)


def test_a_text_the_model_refuses_in_a_shared_embedding_call_fails_only_its_task(make_fleet):
    """The chunks of a group's tasks go to the embedding endpoint in one request; when the
    endpoint refuses it because of one task's text, each task's chunks are sent again on
    their own, and only that task fails."""
    api = RejectsOneText("Four score and seven years ago")  # the Gettysburg Address
    with serve_fake_openai(api) as url:
        fleet = make_fleet(
            models={
                "embedding_model": {
                    "model": "fake-embed@OpenAI-API-Compatible",
                    "factory": "OpenAI-API-Compatible",
                    "base_url": f"{url}/v1",
                }
            }
        )
        ids = submit(fleet, *(CORPUS / name for name in SMALL))
        tasks = [fleet.task(task_id) for task_id in ids]
        outcomes = run_group(fleet, tasks, cancelled=set())
    assert outcomes[:2] == [Outcome.DONE, Outcome.DONE]
    assert isinstance(outcomes[2], TaskInputError)
    assert "embedding failed" in str(outcomes[2]) and "input rejected" in str(outcomes[2])
    counts = [len(fleet.task(task_id)["chunk_ids"].split()) for task_id in ids[:2]]
    sizes = [len(request.body["input"]) for request in api.requests]  # the shared one first
    assert len(sizes) == 4 and sizes[1:3] == counts and sizes[0] == sum(sizes[1:])
    assert [chunks_of(fleet, task["doc_id"]) for task in tasks] == [*counts, 0]
    assert all(count > 0 for count in counts)
