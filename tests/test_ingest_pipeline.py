"""Ingestion end to end: `ragfleet submit FILE --kb`, real executor processes, the embedded
store, `ragfleet search`. Real Redis; task database SQLite (and MariaDB in one test)."""

from __future__ import annotations

import io
import json
import random
import re
import signal
import time
from pathlib import Path

import docx
import pytest
import zip_bombs
from executors import Fleet, fill_disk, mysql_database, sqlite_database, wait_for, write_config
from fake_openai import DIM, FakeOpenAI, serve_fake_openai
from servers import EmulatorServer
from test_ingest_html_article import semantic_page
from test_ingest_parsers import encrypt_pdf, make_pdf

from executor.ingest.catalog import Catalog
from executor.ingest.docstore import open_doc_store
from executor.queue import wire

CORPUS = Path(__file__).resolve().parent.parent / "samples" / "corpus"


def submit(fleet: Fleet, *files: Path, kb: str = "samples") -> list[str]:
    result = fleet.cli("submit", *map(str, files), "--kb", kb)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def search(fleet: Fleet, query: str, kb: str = "samples", top: int = 3) -> list[dict]:
    result = fleet.cli("search", query, "--kb", kb, "--top", str(top), "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def doc_store(fleet: Fleet):
    return open_doc_store(fleet.settings.doc_store)


def test_the_sample_corpus_is_ingested_and_searchable(fleet):
    files = sorted(CORPUS.iterdir())
    ids = submit(fleet, *files)
    assert len(ids) == len(files) + 1  # the 20-page PDF is two tasks of 12 pages
    fleet.start()
    rows = fleet.wait_done(ids, timeout=120)
    assert [r["progress"] for r in rows] == [1.0] * len(ids), [r["progress_msg"] for r in rows]
    messages = "\n".join(r["progress_msg"] for r in rows)
    for milestone in (
        "Start to parse",
        "Finished parsing",
        "Generated",
        "Indexing done",
        "Task done",
    ):
        assert milestone in messages
    assert "Page(13~21): Start to parse constitution-of-the-united-states.pdf." in messages
    hits = search(fleet, "rabbit hole")
    assert hits[0]["doc_name"] == "alice-down-the-rabbit-hole.md"
    hits = search(fleet, "king of the Roman gods")
    assert hits[0]["doc_name"] == "planets-of-the-solar-system.csv"
    hits = search(fleet, "volcanically active")
    assert hits[0]["doc_name"] == "moons-of-mars-and-jupiter.jsonl"
    # chunk counts recorded on the documents and the knowledge base match the store
    catalog = Catalog(fleet.store)
    kb = catalog.knowledge_base_named("samples")
    store = doc_store(fleet)
    total = store.count(kb.index, kb_id=kb.id)
    assert total > len(files)
    docs = list(fleet.store.Document.select().dicts())
    assert sum(d["chunk_num"] for d in docs) == total
    for doc in docs:
        assert doc["chunk_num"] == store.count(kb.index, doc_id=doc["id"])
        assert doc["progress"] == 1 and doc["token_num"] > 0
    assert fleet.store.Knowledgebase.get_by_id(kb.id).chunk_num == total


def test_running_a_task_again_gives_the_same_chunks(fleet):
    (task_id,) = submit(fleet, CORPUS / "declaration-of-independence.txt")
    fleet.start()
    first = fleet.wait_done([task_id])[0]
    kb = Catalog(fleet.store).knowledge_base_named("samples")
    before = doc_store(fleet).count(kb.index, kb_id=kb.id)
    fleet.store.reset_task(task_id, "")
    # reconcile puts the reset task back on the queue, once the executor's heartbeat no longer
    # names it as running (the first task of a process takes seconds: it loads the tokenizer)
    wait_for(
        lambda: "re-enqueued 1 of 1" in fleet.cli("reconcile", "--min-age", "0").stdout,
        10,
        "reconcile to re-enqueue the reset task",
    )
    second = wait_for(lambda: (t := fleet.task(task_id))["progress"] == 1 and t, 30, "re-run")
    assert second["chunk_ids"] == first["chunk_ids"]
    assert doc_store(fleet).count(kb.index, kb_id=kb.id) == before
    doc = fleet.store.Document.get_by_id(first["doc_id"])
    assert doc.chunk_num == before == len(first["chunk_ids"].split())


def test_bad_documents_fail_their_task_readably_and_the_rest_goes_on(fleet, tmp_path):
    corrupt = tmp_path / "broken.pdf"
    corrupt.write_bytes(b"%PDF-1.7\nthis is not really a pdf")
    unsupported = tmp_path / "program.exe"
    unsupported.write_bytes(b"MZ\x90\x00")
    noise = tmp_path / "noise.txt"  # no encoding fits: decoding it would index garbage
    noise.write_bytes(bytes(b for b in random.Random(16).randbytes(3000) if b))
    locked = tmp_path / "locked.pdf"
    pdf = make_pdf(["Secret text."])
    locked.write_bytes(encrypt_pdf(pdf, user_password="secret", algorithm="AES-256"))
    bomb = tmp_path / "bomb.docx"  # 0.4 MiB: 4 GiB of memory in 10 s when it was parsed
    document = io.BytesIO()
    docx.Document().save(document)
    bomb.write_bytes(zip_bombs.padded(document.getvalue(), "DOCX", 257))
    good = CORPUS / "gettysburg-address.pdf"
    ids = submit(fleet, corrupt, unsupported, noise, bomb, locked, good)
    worker = fleet.start()
    rows = fleet.wait_done(ids, timeout=60)
    assert [r["progress"] for r in rows] == [-1, -1, -1, -1, -1, 1]
    assert "[Exception]: broken.pdf: " in rows[0]["progress_msg"]
    assert "[Exception]: program.exe: " in rows[1]["progress_msg"]
    assert "[Exception]: noise.txt: not text in any encoding" in rows[2]["progress_msg"]
    assert "[Exception]: locked.pdf: the PDF is encrypted" in rows[4]["progress_msg"]
    assert "[Exception]: bomb.docx: its XML unpacks to 25" in rows[3]["progress_msg"]
    assert "MiB, more than the 64 MiB a DOCX may (a zip bomb" in rows[3]["progress_msg"]
    assert "Traceback" not in "".join(r["progress_msg"] for r in rows)
    assert worker.process.poll() is None
    assert search(fleet, "four score and seven years")[0]["doc_name"] == good.name


def test_the_file_types_upstream_reads_are_ingested(fleet, tmp_path):
    """Issue 16: JSON Lines, an owner-password AES PDF, legacy encodings, an HTML page whose
    menus and footer stay out of the index."""
    kuiper = make_pdf(["The Kuiper belt lies beyond Neptune."])
    files = {
        "moons.jsonl": b'{"moon": "Phobos", "of": "Mars"}\n{"moon": "Titan", "of": "Saturn"}\n',
        "moons.json": b'{"moon": "Europa", "of": "Jupiter"}\n{"moon": "Triton", "of": "Neptune"}\n',
        "restricted.pdf": encrypt_pdf(kuiper, user_password="", algorithm="AES-256"),
        "menu.txt": "Crème brûlée, café au lait and a soufflé.\n".encode("cp1252"),
        "lunyu.txt": "学而时习之，不亦说乎？有朋自远方来，不亦乐乎？\n".encode("gbk"),  # noqa: RUF001
        "hubble.html": semantic_page(),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    ids = submit(fleet, *(tmp_path / name for name in files))
    fleet.start()
    rows = fleet.wait_done(ids, timeout=60)
    assert [r["progress"] for r in rows] == [1.0] * len(files), [r["progress_msg"] for r in rows]
    for query, name in [
        ("Titan", "moons.jsonl"),
        ("Triton", "moons.json"),
        ("Kuiper belt", "restricted.pdf"),
        ("soufflé", "menu.txt"),
        ("有朋自远方来", "lunyu.txt"),
        ("Hubble constant", "hubble.html"),
    ]:
        assert search(fleet, query)[0]["doc_name"] == name, query
    hits = search(fleet, "Hubble telescope Stargazer Newsroom Careers Copyright", top=50)
    page = "\n".join(h["content"] for h in hits if h["doc_name"] == "hubble.html")
    assert "Hubble constant" in page
    assert not any(word in page for word in ("Stargazer", "Newsroom", "Careers", "Copyright"))


def test_oversized_file_is_refused_at_submit_with_a_clear_error(fleet, tmp_path):
    big = tmp_path / "huge.txt"
    with big.open("wb") as stream:  # sparse: 129 MiB on paper, nothing written
        stream.truncate(129 * 1024 * 1024)
    small = CORPUS / "declaration-of-independence.txt"
    result = fleet.cli("submit", str(big), str(small), "--kb", "samples")
    assert result.returncode == 1
    assert (
        "huge.txt: not submitted: huge.txt is 129 MiB; the limit is 128 MiB "
        "(MAX_CONTENT_LENGTH)" in result.stderr
    )
    assert "1 of 2 documents submitted" in result.stderr
    assert len(result.stdout.split()) == 1  # the small one went through


def test_embeddings_from_an_openai_compatible_endpoint(make_fleet):
    api = FakeOpenAI()
    with serve_fake_openai(api) as url:
        models = {
            "embedding_model": {
                "model": "fake-embed@OpenAI-API-Compatible",
                "factory": "OpenAI-API-Compatible",
                "api_key": "k",
                "base_url": f"{url}/v1",
            }
        }
        fleet = make_fleet(models=models)
        ids = submit(
            fleet,
            CORPUS / "alice-down-the-rabbit-hole.md",
            CORPUS / "declaration-of-independence.txt",
        )
        fleet.start()
        rows = fleet.wait_done(ids, timeout=60)
        assert [r["progress"] for r in rows] == [1, 1], [r["progress_msg"] for r in rows]
        assert "Embedding chunks" in rows[0]["progress_msg"]
        assert api.requests and all(len(r.body["input"]) <= 16 for r in api.requests)
        assert api.requests[0].body["model"] == "fake-embed"
        kb = Catalog(fleet.store).knowledge_base_named("samples")
        assert kb.embd_id == "fake-embed@OpenAI-API-Compatible"
        hits = search(fleet, "rabbit")  # hybrid: the query is embedded too
        assert hits[0]["doc_name"] == "alice-down-the-rabbit-hole.md"
        assert api.requests[-1].body["input"] == ["rabbit"]
        store = doc_store(fleet)
        assert store.count(kb.index, kb_id=kb.id) > 0
        hits = store.search(kb.index, "rabbit", kb_ids=[kb.id], top_k=1, vector=[0.1] * DIM)
        assert hits, "hybrid search over stored vectors of the endpoint's dimension"


def test_an_unreachable_document_store_pauses_ingestion_and_loses_nothing(make_fleet, tmp_path):
    """OpenSearch through opensearch-py, against the osmem-server EMULATOR (no OpenSearch
    runs here). The store is down when the tasks run: they wait as an outage, never failed;
    once the store answers, they are indexed and searchable."""
    emulator = EmulatorServer(tmp_path / "osmem")  # not started yet: its port refuses
    try:
        fleet = make_fleet(doc_store={"engine": "opensearch", "hosts": [emulator.url]})
        files = [CORPUS / "declaration-of-independence.txt", CORPUS / "gettysburg-address.pdf"]
        ids = submit(fleet, *files)
        executor = fleet.start()
        # The first run loads the tokenizer and parses a PDF before it meets the store: on a
        # loaded machine (CI's e2e beside it) that took over 20 s once.
        executor.wait_log(
            r"a task dependency unavailable: document store: opensearch unreachable", timeout=60
        )
        # Each run of a task adds a "received" line. Three runs while the store is down: the
        # outage is retried, and its deliveries do not count against max_deliveries.
        wait_for(
            lambda: max(runs(fleet.task(i)) for i in ids) >= 3,
            30,
            "a task to run three times during the outage",
            executor,
            interval=0.1,
        )
        # Never failed. A run may have recorded "Start to parse" (0.1) before the outage
        # stopped it: a process's first run is slow enough (it loads the tokenizer) for that
        # progress write to land.
        for task in map(fleet.task, ids):
            assert task["progress"] in (0.0, 0.1), task["progress_msg"]
            assert task["retry_count"] == 0, task["progress_msg"]
        emulator.start()
        rows = fleet.wait_done(ids, timeout=90)
        assert [r["progress"] for r in rows] == [1, 1], [r["progress_msg"] for r in rows]
        assert "[Exception]" not in "".join(r["progress_msg"] for r in rows)
        executor.wait_log(r"a task dependency available again after")
        assert search(fleet, "four score")[0]["doc_name"] == "gettysburg-address.pdf"
        assert executor.process.poll() is None
    finally:
        emulator.close()


def runs(task: dict) -> int:
    """How many times the task has begun: one "received" line each."""
    return (task["progress_msg"] or "").count("Task has been received.")


def test_four_worker_processes_write_the_embedded_store_at_once(make_fleet, tmp_path):
    fleet = make_fleet(max_concurrent_tasks=2)
    texts = []
    for i in range(24):
        path = tmp_path / f"doc{i:02d}.txt"
        path.write_text(
            "\n".join(f"Document {i} line {j}: " + "lorem ipsum dolor " * 30 for j in range(40))
        )
        texts.append(path)
    workers = [fleet.start(instance=i) for i in range(1, 5)]  # all waiting before any task
    ids = submit(fleet, *texts, kb="many")
    rows = fleet.wait_done(ids, timeout=180)
    assert [r["progress"] for r in rows] == [1] * len(ids)
    kb = Catalog(fleet.store).knowledge_base_named("many")
    expected = sum(len(r["chunk_ids"].split()) for r in rows)
    assert doc_store(fleet).count(kb.index, kb_id=kb.id) == expected
    assert doc_store(fleet).integrity_check() == []
    assert all(w.process.poll() is None for w in workers)

    def done_per_worker():
        rows = json.loads(fleet.cli("status", "--json").stdout)["executors"]
        counts = [r["done"] or 0 for r in rows]
        return sum(counts) == len(ids) and counts

    counts = wait_for(done_per_worker, 15, "heartbeats to count every task")
    assert len([c for c in counts if c]) >= 2, counts  # the writers really were concurrent


@pytest.fixture
def mysql_fleet(tmp_path, redis_client, redis_server, mariadb_server):
    mariadb_server.start()
    with mariadb_server.connect() as connection, connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS task, document, knowledgebase, `blob`")
    fleet = Fleet(
        write_config(
            tmp_path, redis_server, mysql_database(mariadb_server), storage={"backend": "database"}
        )
    )
    assert fleet.cli("db", "init").returncode == 0
    yield fleet
    fleet.close()


def test_ingestion_with_mariadb_tasks_and_documents_stored_in_the_database(mysql_fleet):
    ids = submit(
        mysql_fleet,
        CORPUS / "chemical-elements.xlsx",
        CORPUS / "origin-of-species-introduction.docx",
    )
    mysql_fleet.start()
    rows = mysql_fleet.wait_done(ids, timeout=60)
    assert [r["progress"] for r in rows] == [1, 1], [r["progress_msg"] for r in rows]
    hits = search(mysql_fleet, "natural selection")
    assert hits[0]["doc_name"] == "origin-of-species-introduction.docx"
    assert not (Path(mysql_fleet.config).parent / "files").exists()  # bytes are in MariaDB


def test_submit_without_kb_and_search_of_unknown_kb(fleet):
    result = fleet.cli("submit", str(CORPUS / "gettysburg-address.pdf"))
    assert result.returncode == 2 and "--kb NAME is required" in result.stderr
    result = fleet.cli("search", "x", "--kb", "nope")
    assert result.returncode == 4 and "no knowledge base named 'nope'" in result.stderr


def test_a_full_disk_pauses_ingestion_and_loses_nothing(
    tmp_path, small_disk, redis_client, redis_server
):
    """The single-host default keeps the task database, the documents and the embedded store
    on one disk. While it is full, `ragfleet submit` says so (exit 3) and stores nothing,
    and tasks wait as an outage, logged once (none failed or dead-lettered); once space is
    freed they finish, and the executor lived through it."""
    config = write_config(
        tmp_path,  # the config and the executor's log stay off the small disk
        redis_server,
        sqlite_database(small_disk),
        doc_store={"engine": "embedded", "path": str(small_disk / "docstore.db")},
        storage={"backend": "local", "path": str(small_disk / "files")},
    )
    fleet = Fleet(config)
    try:
        executor = fleet.start()
        executor.signal(signal.SIGSTOP)  # the tasks wait for the disk to be full
        ids = submit(fleet, *sorted(CORPUS.iterdir()))
        stored = sorted((small_disk / "files").rglob("*"))
        filler = fill_disk(small_disk)
        try:
            refused = fleet.cli("submit", str(CORPUS / "gettysburg-address.pdf"), "--kb", "samples")
            assert refused.returncode == 3, refused.stderr
            assert "unavailable" in refused.stderr and "full" in refused.stderr, refused.stderr
            assert "0 of 1 documents submitted" in refused.stderr
            assert sorted((small_disk / "files").rglob("*")) == stored  # no bytes left behind
            executor.signal(signal.SIGCONT)
            executor.wait_log(r"unavailable: .*full")
            time.sleep(3)  # tasks are retried meanwhile, at the outage's pace
            assert executor.process.poll() is None, executor.log[-3000:]
            assert len(re.findall(r"unavailable: ", executor.log)) == 1, executor.log[-3000:]
            assert all(fleet.task(i)["progress"] >= 0 for i in ids)
            assert executor.terminate() == 0  # an operator restarts it, the disk still full
            executor = fleet.start()
            executor.wait_log(r"unavailable: .*full")
        finally:
            filler.unlink()
        rows = fleet.wait_done(ids, timeout=60)
        assert [r["progress"] for r in rows] == [1.0] * len(ids), [r["progress_msg"] for r in rows]
        executor.wait_log(r"available again after")
        assert "set aside" not in executor.log
        assert fleet.redis.xlen(wire.DEAD_LETTER_STREAM) == 0
        documents = len(ids) - 1  # the PDF is two tasks
        assert fleet.store.Document.select().count() == documents  # none of the refused one
        kb = Catalog(fleet.store).knowledge_base_named("samples")
        store = doc_store(fleet)
        chunks = sum(len(r["chunk_ids"].split()) for r in rows)
        assert store.count(kb.index, kb_id=kb.id) == chunks
        assert store.integrity_check() == []
        assert executor.process.poll() is None
    finally:
        fleet.close()


def test_a_submit_meeting_a_full_database_leaves_nothing_behind(
    tmp_path, small_disk, redis_client, redis_server
):
    """The file is stored, then recording its document fails (the task database's disk is
    full): the bytes are removed again, no document or task is left, and the exit code says
    unavailable (3), not refused (1)."""
    fleet = Fleet(write_config(tmp_path, redis_server, sqlite_database(small_disk)))
    try:
        submit(fleet, CORPUS / "gettysburg-address.pdf")
        files = sorted((tmp_path / "files").rglob("*"))
        tasks = fleet.store.Task.select().count()
        filler = fill_disk(small_disk)
        try:
            refused = fleet.cli(
                "submit", str(CORPUS / "analects-book-1-excerpt.txt"), "--kb", "samples"
            )
        finally:
            filler.unlink()
        assert refused.returncode == 3, refused.stderr
        assert "database unavailable: database or disk is full" in refused.stderr
        assert sorted((tmp_path / "files").rglob("*")) == files
        assert (fleet.store.Document.select().count(), fleet.store.Task.select().count()) == (
            1,
            tasks,
        )
    finally:
        fleet.close()


def test_cancel_during_a_long_parse_lands_within_a_second(fleet, tmp_path):
    """Parsing and chunking a large document take seconds in a builder thread; a cancel
    must not wait for them (they have no side effects: the thread's result is dropped)."""
    big = tmp_path / "big.csv"
    with big.open("w") as out:  # 16 MB, 300,000 rows: about 3 s of parsing and chunking
        out.write("id,name,value,note\n")
        out.writelines(f"{i},name {i},{i * 3.14},some text here {i}\n" for i in range(300_000))
    (task_id,) = submit(fleet, big, kb="big")
    executor = fleet.start()
    wait_for(lambda: fleet.task(task_id)["begin_at"], 30, "the task to begin", executor)
    time.sleep(0.5)  # the bytes are read; parsing and chunking are under way
    assert fleet.cli("cancel", task_id).returncode == 0
    requested = time.monotonic()
    row = wait_for(lambda: (r := fleet.task(task_id))["progress"] < 0 and r, 30, "cancellation")
    took = time.monotonic() - requested
    assert row["progress_msg"].endswith("Task has been canceled."), row["progress_msg"]
    assert took < 1.0, took


def test_cancel_of_a_document_marks_it_cancelled_as_ragflow_does(fleet):
    """`cancel --doc` writes RAGFlow's CANCEL code to the document (its UI's cancel), which
    the settling of its cancelled task keeps."""
    (task_id,) = submit(fleet, CORPUS / "gettysburg-address.pdf", kb="samples")
    doc_id = fleet.task(task_id)["doc_id"]
    assert Catalog(fleet.store).document(doc_id)["run"] == "1"  # RUNNING from submit
    assert fleet.cli("cancel", "--doc", doc_id).returncode == 0
    fleet.start()
    (row,) = fleet.wait_done([task_id])
    assert row["progress"] == -1
    doc = wait_for(
        lambda: (d := Catalog(fleet.store).document(doc_id))["progress"] == -1 and d,
        10,
        "the document to settle",
    )
    assert doc["run"] == "2", doc


def test_a_dead_lettered_task_fails_its_document(fleet):
    """A task abandoned after max_deliveries settles its document as FAIL, so RAGFlow's UI
    does not show it parsing forever."""
    (task_id,) = submit(fleet, CORPUS / "gettysburg-address.pdf", kb="samples")
    doc_id = fleet.task(task_id)["doc_id"]
    queue, consumer = wire.queue_name(0), wire.consumer_name("test", 1)
    fleet.redis.xgroup_create(queue, wire.GROUP, id="0")  # as the executor makes it
    ((_, ((entry_id, _),)),) = fleet.redis.xreadgroup(wire.GROUP, consumer, {queue: ">"}, 1)
    # As if it had been delivered ten times to this consumer, each killing it.
    fleet.redis.xclaim(queue, wire.GROUP, consumer, 0, [entry_id], retrycount=10)
    fleet.start()
    (row,) = fleet.wait_done([task_id])
    assert "abandoned" in row["progress_msg"], row["progress_msg"]
    doc = wait_for(
        lambda: (d := Catalog(fleet.store).document(doc_id))["progress"] == -1 and d,
        10,
        "the document to settle",
    )
    assert doc["run"] == "4", doc


def test_a_submit_with_redis_down_records_nothing(fleet, redis_server):
    """Redis is asked before anything is recorded: down, the submit stops at once (exit 3)
    and leaves no document, task or stored file behind to reconcile."""
    redis_server.stop()
    try:
        result = fleet.cli("submit", str(CORPUS / "gettysburg-address.pdf"), "--kb", "samples")
    finally:
        redis_server.start()
    assert result.returncode == 3, result.stderr
    assert result.stderr.startswith("ragfleet: Redis unavailable: "), result.stderr
    assert (fleet.store.Document.select().count(), fleet.store.Task.select().count()) == (0, 0)
    assert not list((fleet.config.parent / "files").rglob("*.*"))


def test_a_submit_meeting_a_redis_refusal_says_what_reconcile_will_queue(fleet):
    """The document and its tasks are recorded before they are enqueued: when Redis answers
    and then refuses the enqueue (full: maxmemory), the submit says which document is
    recorded but not queued (exit 3), and `ragfleet reconcile` (or the executors' sweep)
    queues it once Redis takes writes again, without submitting it twice."""
    fleet.redis.config_set("maxmemory", "1")
    try:
        result = fleet.cli("submit", str(CORPUS / "gettysburg-address.pdf"), "--kb", "samples")
    finally:
        fleet.redis.config_set("maxmemory", "0")
    assert result.returncode == 3, result.stderr
    assert "gettysburg-address.pdf: recorded but not queued; the executors' lost-task" in (
        result.stderr
    )
    assert "Redis unavailable: command not allowed when used memory > 'maxmemory'" in (
        result.stderr
    )
    reconciled = fleet.cli("reconcile", "--min-age", "0")
    assert "re-enqueued 1 of 1 unfinished tasks" in reconciled.stdout, reconciled.stderr
    fleet.start()
    (task,) = fleet.store.Task.select().dicts()
    assert [r["progress"] for r in fleet.wait_done([task["id"]])] == [1.0]
    assert search(fleet, "four score")[0]["doc_name"] == "gettysburg-address.pdf"
