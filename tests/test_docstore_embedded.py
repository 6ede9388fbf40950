"""The embedded document store (SQLite FTS5): the DocStore protocol, BM25 and hybrid ranking,
and several writer processes on one file, including one killed with SIGKILL mid-write."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

import pytest
from executors import fill_disk

from executor.ingest.docstore import open_doc_store
from executor.ingest.docstore.embedded import EmbeddedDocStore
from executor.ingest.docstore.embedded_query import (
    cosine_to_blobs,
    default_tokenizer,
    fts_query,
    hybrid_scores,
)
from executor.ingest.docstore.embedded_schema import max_rows_per_statement, vector_blob
from executor.ingest.errors import DocStoreUnavailable
from executor.ingest.types import Chunk

INDEX = "ragflow_tenant1"
TOKENIZE = default_tokenizer()


def make_chunk(
    chunk_id: str,
    text: str,
    *,
    kb_id: str = "kb1",
    doc_id: str = "doc1",
    vector: list[float] | None = None,
    pages: list[int] | None = None,
) -> Chunk:
    tokens = TOKENIZE(text)
    return Chunk(
        id=chunk_id,
        doc_id=doc_id,
        kb_id=kb_id,
        doc_name=f"{doc_id}.txt",
        content=text,
        tokens=tokens.split() if isinstance(tokens, str) else list(tokens),
        pages=pages or [],
        vector=vector,
    )


@pytest.fixture
def store(tmp_path: Path):
    with EmbeddedDocStore(tmp_path / "docstore.db") as s:
        s.create_index(INDEX, None)
        yield s


# --- opening ---------------------------------------------------------------------------------


def test_open_doc_store_embedded_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "store.db"
    s = open_doc_store({"engine": "embedded", "path": str(path)})
    try:
        assert isinstance(s, EmbeddedDocStore)
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        s.close()


def test_open_doc_store_rejects_infinity_and_unknown_engines(tmp_path: Path) -> None:
    with pytest.raises(NotImplementedError, match="'infinity' is not supported yet"):
        open_doc_store({"engine": "infinity", "uri": "localhost:23817"})
    with pytest.raises(ValueError, match="unknown doc_store engine 'milvus'"):
        open_doc_store({"engine": "milvus"})
    with pytest.raises(ValueError, match="needs a 'path'"):
        open_doc_store({"engine": "embedded"})


def test_closed_store_refuses_use(tmp_path: Path) -> None:
    s = EmbeddedDocStore(tmp_path / "x.db")
    s.close()
    s.close()  # idempotent
    with pytest.raises(RuntimeError, match="is closed"):
        s.count(INDEX)


# --- the protocol ----------------------------------------------------------------------------


def test_upsert_search_delete_and_delete_doc(store: EmbeddedDocStore) -> None:
    store.upsert(
        INDEX,
        [
            make_chunk("a1", "The quick brown fox", doc_id="docA", pages=[1, 2]),
            make_chunk("a2", "jumps over the lazy dog", doc_id="docA", pages=[2]),
            make_chunk("b1", "a fox in a box", doc_id="docB"),
        ],
    )
    assert store.count(INDEX) == 3
    hits = store.search(INDEX, "fox", kb_ids=["kb1"])
    assert {h.chunk_id for h in hits} == {"a1", "b1"}
    a1 = next(h for h in hits if h.chunk_id == "a1")
    assert (a1.doc_id, a1.kb_id, a1.doc_name, a1.content, a1.pages) == (
        "docA",
        "kb1",
        "docA.txt",
        "The quick brown fox",
        (1, 2),
    )
    assert a1.score > 0

    assert store.delete(INDEX, ["a2", "a2", "missing"]) == 1
    assert store.search(INDEX, "lazy dog", kb_ids=["kb1"]) == []
    assert store.delete_doc(INDEX, "docA") == 1
    assert store.delete_doc(INDEX, "docA") == 0
    assert [h.chunk_id for h in store.search(INDEX, "fox", kb_ids=["kb1"])] == ["b1"]
    assert store.integrity_check() == []


def test_upsert_is_idempotent_and_replaces_content(store: EmbeddedDocStore) -> None:
    chunks = [make_chunk(f"c{i}", f"chunk number {i} about apples") for i in range(50)]
    store.upsert(INDEX, chunks)
    store.upsert(INDEX, chunks)
    assert store.count(INDEX) == 50
    assert len(store.search(INDEX, "apples", kb_ids=["kb1"], top_k=100)) == 50

    store.upsert(INDEX, [make_chunk("c7", "now about pears")])
    assert store.count(INDEX) == 50
    assert [h.chunk_id for h in store.search(INDEX, "pears", kb_ids=["kb1"])] == ["c7"]
    assert "c7" not in {h.chunk_id for h in store.search(INDEX, "apples", kb_ids=["kb1"], top_k=99)}
    assert store.integrity_check() == []


def test_replacing_a_chunk_leaves_no_stale_index_entry(tmp_path: Path) -> None:
    """A re-upsert replaces the row in one statement (INSERT OR REPLACE); the old row's FTS
    entry must go with it, which needs SQLite's recursive_triggers."""
    with EmbeddedDocStore(tmp_path / "docstore.db") as store:
        store.create_index(INDEX, None)
        store.upsert(INDEX, [make_chunk("c1", "alpha beta"), make_chunk("c2", "other")])
        store.upsert(INDEX, [make_chunk("c1", "gamma delta")])
        assert store.integrity_check() == []
        with closing(sqlite3.connect(tmp_path / "docstore.db")) as raw:
            stale = raw.execute("SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH 'alpha'")
            assert stale.fetchall() == []
            # integrity_check itself finds such an entry
            raw.execute("PRAGMA recursive_triggers = OFF")
            raw.execute(
                "INSERT OR REPLACE INTO chunks (idx, id, kb_id, doc_id, doc_name, content,"
                " tokens, pages, create_time) VALUES (?, 'c2', 'kb1', 'd', 'd', 'x', 'x', '[]', 0)",
                (INDEX,),
            )
            raw.commit()
        assert store.integrity_check() == ["chunks_fts: 1 indexed rows have no chunk"]


def test_replacing_a_chunk_with_a_vector_replaces_the_vector_and_its_index_entry(
    store: EmbeddedDocStore,
) -> None:
    """Rows with vectors take the same one-statement path: the blob is bound as it is."""
    store.upsert(INDEX, [make_chunk("v", "alpha words", vector=[1.0, 0.0])])
    store.upsert(INDEX, [make_chunk("v", "gamma words", vector=[0.0, 2.0]), make_chunk("p", "x")])
    assert store.count(INDEX) == 2 and store.integrity_check() == []
    assert store.search(INDEX, "alpha", kb_ids=["kb1"]) == []
    with closing(sqlite3.connect(store.path)) as raw:
        blob = raw.execute("SELECT vector FROM chunks WHERE id = 'v'").fetchone()[0]
    assert blob == vector_blob([0.0, 2.0])


def test_batch_size_is_bounded_by_what_one_statement_can_bind(tmp_path: Path) -> None:
    most = max_rows_per_statement()
    assert most >= 99  # 999 bound values (SQLite before 3.32) / 10 columns
    with pytest.raises(ValueError, match=rf"batch_size must be within \[1, {most}\]"):
        EmbeddedDocStore(tmp_path / "x.db", batch_size=most + 1)
    with pytest.raises(ValueError, match="batch_size"):
        EmbeddedDocStore(tmp_path / "x.db", batch_size=0)


def test_duplicate_ids_in_one_upsert_keep_the_last(store: EmbeddedDocStore) -> None:
    store.upsert(INDEX, [make_chunk("d", "first version"), make_chunk("d", "second version")])
    assert store.count(INDEX) == 1
    assert [h.content for h in store.search(INDEX, "version", kb_ids=["kb1"])] == ["second version"]


def test_create_index_is_idempotent(store: EmbeddedDocStore) -> None:
    for _ in range(3):
        store.create_index(INDEX, 384)
        store.create_index(INDEX, None)
    store.create_index(INDEX, 768)  # a second embedding model in the same tenant index
    with closing(sqlite3.connect(store.path)) as conn:
        rows = conn.execute("SELECT vector_dim FROM indexes WHERE name = ? ORDER BY 1", (INDEX,))
        assert [r[0] for r in rows] == [0, 384, 768]


def test_delete_doc_spans_several_batches(tmp_path: Path) -> None:
    with EmbeddedDocStore(tmp_path / "b.db", batch_size=7) as s:
        s.upsert(INDEX, [make_chunk(f"x{i}", f"text {i}", doc_id="big") for i in range(30)])
        s.upsert(INDEX, [make_chunk("keep", "text kept", doc_id="other")])
        assert s.count(INDEX, doc_id="big") == 30
        assert s.delete_doc(INDEX, "big") == 30
        assert s.count(INDEX) == 1
        assert s.delete(INDEX, [f"x{i}" for i in range(30)]) == 0


# --- ranking and filtering -------------------------------------------------------------------


def test_bm25_ranks_the_chunk_with_the_query_terms_first(store: EmbeddedDocStore) -> None:
    store.upsert(
        INDEX,
        [
            make_chunk("weather", "the weather today is sunny and warm in the city"),
            make_chunk("kernel", "the linux kernel scheduler balances tasks across cpu cores"),
            make_chunk("mention", "a kernel of corn, and the city market"),
            make_chunk("noise", "nothing relevant here at all, just filler words"),
        ],
    )
    hits = store.search(INDEX, "Linux kernel scheduler", kb_ids=["kb1"])
    assert [h.chunk_id for h in hits] == ["kernel", "mention"]
    assert hits[0].score > hits[1].score
    assert len(store.search(INDEX, "the", kb_ids=["kb1"], top_k=2)) == 2


def test_search_filters_by_kb_and_index(store: EmbeddedDocStore) -> None:
    store.upsert(INDEX, [make_chunk("k1", "shared words", kb_id="kb1")])
    store.upsert(INDEX, [make_chunk("k2", "shared words", kb_id="kb2")])
    store.upsert("ragflow_other", [make_chunk("k3", "shared words", kb_id="kb1")])
    assert [h.chunk_id for h in store.search(INDEX, "shared", kb_ids=["kb1"])] == ["k1"]
    assert [h.chunk_id for h in store.search(INDEX, "shared", kb_ids=["kb2"])] == ["k2"]
    assert {h.chunk_id for h in store.search(INDEX, "shared", kb_ids=["kb1", "kb2"])} == {
        "k1",
        "k2",
    }
    assert store.search(INDEX, "shared", kb_ids=[]) == []
    assert store.search(INDEX, "shared", kb_ids=["kb3"]) == []
    assert store.search("ragflow_nowhere", "shared", kb_ids=["kb1"]) == []


def test_query_text_is_never_fts_syntax(store: EmbeddedDocStore) -> None:
    store.upsert(INDEX, [make_chunk("q", 'quotes "and" NOT operators OR (parens) near*')])
    for query in ['"', "AND OR NOT", "(parens", "near*", "-", "col:umn", "'", "…"]:
        store.search(INDEX, query, kb_ids=["kb1"])  # no sqlite3.OperationalError
    assert [h.chunk_id for h in store.search(INDEX, "(PARENS)", kb_ids=["kb1"])] == ["q"]
    assert fts_query(["a", 'b"c', "a", "--"]) == '"a" OR "b""c"'


def test_hybrid_uses_the_vector_among_bm25_candidates(store: EmbeddedDocStore) -> None:
    store.create_index(INDEX, 3)
    store.upsert(
        INDEX,
        [
            make_chunk("orchard", "apple orchard apple harvest", vector=[1.0, 0.0, 0.0]),
            make_chunk("pie", "apple pie recipe", vector=[0.0, 1.0, 0.0]),
            make_chunk("plain", "apple without a vector"),
            make_chunk("banana", "banana bread", vector=[0.0, 1.0, 0.0]),
        ],
    )
    bm25_only = [h.chunk_id for h in store.search(INDEX, "apple", kb_ids=["kb1"])]
    assert bm25_only[0] == "orchard"
    hybrid = store.search(INDEX, "apple", kb_ids=["kb1"], vector=[0.0, 2.0, 0.0])
    assert hybrid[0].chunk_id == "pie"
    assert "banana" not in {h.chunk_id for h in hybrid}  # not a BM25 candidate
    assert all(0.0 <= h.score <= 1.0 + 1e-9 for h in hybrid)
    # a vector of another dimension matches no chunk vector: plain BM25 order
    other_dim = store.search(INDEX, "apple", kb_ids=["kb1"], vector=[1.0, 0.0])
    assert [h.chunk_id for h in other_dim] == bm25_only


def test_hybrid_formula() -> None:
    bm25 = [4.0, 2.0, 1.0]
    blobs = [vector_blob([1, 0]), vector_blob([0, 3]), None]
    cosine = cosine_to_blobs([0.0, 1.0], blobs)
    assert cosine.tolist() == pytest.approx([0.0, 1.0, 0.0])
    import numpy as np

    scores = hybrid_scores(np.array(bm25), cosine, 0.3)
    assert scores.tolist() == pytest.approx([0.7 * 1.0, 0.7 * 0.5 + 0.3, 0.7 * 0.25])


def test_weight_zero_is_pure_bm25(tmp_path: Path) -> None:
    with EmbeddedDocStore(tmp_path / "w.db", vector_similarity_weight=0.0) as s:
        s.upsert(
            INDEX,
            [
                make_chunk("strong", "zebra zebra zebra", vector=[1.0, 0.0]),
                make_chunk("weak", "zebra and many other words here", vector=[0.0, 1.0]),
            ],
        )
        hits = s.search(INDEX, "zebra", kb_ids=["kb1"], vector=[0.0, 1.0])
        assert [h.chunk_id for h in hits] == ["strong", "weak"]


# --- concurrency -----------------------------------------------------------------------------


def test_threads_share_one_store(store: EmbeddedDocStore) -> None:
    def work(n: int) -> int:
        chunks = [make_chunk(f"t{n}-{i}", f"thread {n} item {i} tword{n}") for i in range(300)]
        store.upsert(INDEX, chunks)
        return len(store.search(INDEX, f"tword{n}", kb_ids=["kb1"], top_k=1000))

    with ThreadPoolExecutor(max_workers=6) as pool:
        assert list(pool.map(work, range(6))) == [300] * 6
    assert store.count(INDEX) == 1800
    assert store.integrity_check() == []


WRITER = """
import sys, time
from pathlib import Path
from executor.ingest.docstore.embedded import EmbeddedDocStore
from executor.ingest.docstore.embedded_query import default_tokenizer
from executor.ingest.types import Chunk

path, index, name, count, shared, go = sys.argv[1:7]
tokenize = default_tokenizer()

def chunk(chunk_id, doc_id, text):
    return Chunk(id=chunk_id, doc_id=doc_id, kb_id="kb1", doc_name=doc_id, content=text,
                 tokens=list(tokenize(text)), pages=[1])

words = " ".join(f"w{i % 97}" for i in range(40))
own = [chunk(f"{name}-{i}", name, f"{name}word chunk {i} {words}") for i in range(int(count))]
common = [chunk(f"shared-{i}", "shared", f"sharedword {i} {words}") for i in range(int(shared))]
store = EmbeddedDocStore(path)  # every writer creates the schema at once
while not Path(go).exists():
    time.sleep(0.005)
for start in range(0, len(own), 1000):
    store.upsert(index, own[start:start + 1000])  # 5 transactions of 200 chunks
    if start == 0:
        store.upsert(index, common)  # every writer replaces the same ids
store.close()
print("done", flush=True)
"""


def test_four_writer_processes_at_once(tmp_path: Path) -> None:
    path, go = tmp_path / "shared.db", tmp_path / "go"
    per_writer, shared = 5000, 500
    writers = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WRITER,
                str(path),
                INDEX,
                f"w{n}",
                *map(str, (per_writer, shared, go)),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    try:
        time.sleep(1.0)  # let them all import, open the file and build their chunks
        go.touch()
        results = [w.communicate(timeout=240) for w in writers]
    finally:
        for w in writers:
            if w.poll() is None:
                w.kill()
                w.wait()
    for w, (out, err) in zip(writers, results, strict=True):
        assert (w.returncode, out.strip()) == (0, "done"), err

    with EmbeddedDocStore(path) as s:
        assert s.count(INDEX) == 4 * per_writer + shared
        for n in range(4):
            assert s.count(INDEX, doc_id=f"w{n}") == per_writer
            assert len(s.search(INDEX, f"w{n}word", kb_ids=["kb1"], top_k=10_000)) == per_writer
        assert s.count(INDEX, doc_id="shared") == shared
        assert len(s.search(INDEX, "sharedword", kb_ids=["kb1"], top_k=10_000)) == shared
        assert s.integrity_check() == []


KILLED_WRITER = """
import sys
from executor.ingest.docstore.embedded import EmbeddedDocStore
from executor.ingest.types import Chunk

path, index, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = EmbeddedDocStore(path, batch_size=size)  # one transaction per upsert call
words = [f"filler{i}" for i in range(100)]
n = 0
while True:
    batch = [Chunk(id=f"b{n}-{i}", doc_id=f"batch-{n}", kb_id="kb1", doc_name="d",
                   content="x", tokens=[f"batch{n}", *words]) for i in range(size)]
    store.upsert(index, batch)
    print(n, flush=True)  # printed only once the batch is committed
    n += 1
"""


def test_kill_9_mid_batch_keeps_every_committed_batch(tmp_path: Path) -> None:
    path, size = tmp_path / "killed.db", 1000
    writer = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(path), INDEX, str(size)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None
        for _ in range(6):
            line = writer.stdout.readline()
            assert line, writer.stderr.read() if writer.stderr else ""
        time.sleep(random.uniform(0.02, 0.08))  # most of a writer's time is inside a batch
        os.kill(writer.pid, signal.SIGKILL)
        rest, _ = writer.communicate(timeout=30)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    assert writer.returncode == -signal.SIGKILL
    committed = 6 + len(rest.split())

    with EmbeddedDocStore(path) as s:
        total = s.count(INDEX)
        assert total % size == 0, f"a partial batch survived: {total} chunks"
        assert total >= committed * size
        for n in range(committed):
            assert s.count(INDEX, doc_id=f"batch-{n}") == size
        assert len(s.search(INDEX, f"batch{committed - 1}", kb_ids=["kb1"], top_k=5000)) == size
        assert s.integrity_check() == []
        s.upsert(INDEX, [make_chunk("after", "written after the crash")])  # lock not stuck
        assert s.count(INDEX) == total + 1


# ---------------------------------------------------------------- group commit


def queue_while_the_turn_is_held(store: EmbeddedDocStore, calls: list[tuple[str, list[Chunk]]]):
    """Start one thread per upsert call while this thread holds the write turn, wait until
    all their batches are queued, then let them go: the first to get the turn writes the
    whole queue. Returns each call's outcome (None or its exception) in order."""
    outcomes: list[BaseException | None] = [None] * len(calls)

    def call(n: int) -> None:
        try:
            store.upsert(*calls[n])
        except Exception as exc:
            outcomes[n] = exc

    with ThreadPoolExecutor(len(calls)) as pool:
        with store.write_turns.thread_turn():
            futures = []
            for n in range(len(calls)):  # one at a time: the queue keeps the calls' order
                futures.append(pool.submit(call, n))
                deadline = time.monotonic() + 10
                while len(store._group_commit._queue) <= n:
                    assert time.monotonic() < deadline, "the upsert did not queue"
                    time.sleep(0.005)
        for future in futures:
            future.result(30)
    return outcomes


def count_group_writes(store: EmbeddedDocStore) -> list[int]:
    sizes: list[int] = []
    write = store._group_commit.write

    def counted(group):
        sizes.append(len(group))
        return write(group)

    store._group_commit.write = counted
    return sizes


def test_concurrent_upserts_share_one_transaction(store: EmbeddedDocStore) -> None:
    sizes = count_group_writes(store)
    calls = [
        (INDEX, [make_chunk(f"d{d}c{c}", f"doc {d} chunk {c}", doc_id=f"d{d}") for c in range(30)])
        for d in range(5)
    ]
    assert queue_while_the_turn_is_held(store, calls) == [None] * 5
    assert sizes == [5]
    assert store.count(INDEX) == 150
    assert store.integrity_check() == []
    assert store.search(INDEX, "doc 3 chunk 29", kb_ids=["kb1"], top_k=1)[0].chunk_id == "d3c29"


def test_a_bad_batch_in_a_group_fails_only_its_own_upsert(store: EmbeddedDocStore) -> None:
    sizes = count_group_writes(store)
    bad = make_chunk("bad", "fine text")
    bad.content = "a lone surrogate \ud800 cannot be stored"
    calls = [
        (INDEX, [make_chunk("a1", "alpha one"), make_chunk("a2", "alpha two")]),
        (INDEX, [make_chunk("b1", "beta one"), bad]),
        (INDEX, [make_chunk("c1", "gamma one")]),
    ]
    outcomes = queue_while_the_turn_is_held(store, calls)
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], UnicodeEncodeError)
    assert sizes == [3, 1, 1, 1]  # the group failed, then each batch alone
    assert store.count(INDEX) == 3  # a1, a2, c1: the bad batch is rolled back whole


def test_a_group_keeps_the_order_of_writes_to_one_chunk_id(store: EmbeddedDocStore) -> None:
    sizes = count_group_writes(store)
    calls = [
        (INDEX, [make_chunk("same", "first version")]),
        (INDEX, [make_chunk("other", "unrelated")]),
        (INDEX, [make_chunk("same", "second version")]),
    ]
    assert queue_while_the_turn_is_held(store, calls) == [None] * 3
    assert sizes == [2, 1]  # the second write of "same" waited for the next group
    assert store.search(INDEX, "version", kb_ids=["kb1"], top_k=5)[0].content == "second version"
    assert store.count(INDEX) == 2


def test_a_lock_held_past_lock_timeout_is_an_outage_not_a_task_error(tmp_path: Path) -> None:
    store = EmbeddedDocStore(tmp_path / "chunks.db", busy_timeout=0.05, lock_timeout=0.3)
    store.create_index(INDEX, None)
    sizes = count_group_writes(store)
    # A writer outside the executor's turns (an operator's sqlite3 shell, say) holds the lock.
    holder = sqlite3.connect(tmp_path / "chunks.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    started = time.monotonic()
    calls = [(INDEX, [make_chunk(f"c{n}", f"hello {n}")]) for n in range(3)]
    outcomes = queue_while_the_turn_is_held(store, calls)
    assert time.monotonic() - started >= 0.3
    # The writer of the group waited out the lock; the others, queued behind it for the
    # turn, may give up first (NoTurnToWrite). Both are ConnectionErrors: outages, which
    # the pipeline retries, not task errors.
    assert all(isinstance(outcome, ConnectionError) for outcome in outcomes), outcomes
    locked = [o for o in outcomes if isinstance(o, DocStoreUnavailable)]
    assert locked and "still locked after 0.3 s" in str(locked[0])
    assert sizes == [3]  # one wait for the whole group, not one more per batch
    holder.execute("ROLLBACK")
    store.upsert(INDEX, [make_chunk("c1", "hello world")])
    assert [h.chunk_id for h in store.search(INDEX, "hello", kb_ids=["kb1"])] == ["c1"]
    holder.close()
    store.close()


def test_a_full_disk_is_an_outage_and_writes_nothing(small_disk: Path) -> None:
    """SQLite refuses a write on a full disk (SQLITE_FULL) and keeps the file whole: the
    store says unavailable (the executor waits it out), and writes again once space is
    freed."""
    with EmbeddedDocStore(small_disk / "docstore.db") as store:
        store.upsert(INDEX, [make_chunk("a", "alpha beta")])
        filler = fill_disk(small_disk)
        try:
            words = [f"word{random.randrange(10**9)}" for _ in range(20_000)]
            big = [make_chunk(f"b{i}", " ".join(words[i::50])) for i in range(50)]
            with pytest.raises(DocStoreUnavailable, match="full"):
                store.upsert(INDEX, big)
            assert store.count(INDEX) == 1
        finally:
            filler.unlink()
        store.upsert(INDEX, big)
        assert store.count(INDEX) == 51
        assert store.integrity_check() == []
