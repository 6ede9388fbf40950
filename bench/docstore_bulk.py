"""Raw bulk-insert rate of the embedded document store (SQLite FTS5), in chunks/s.

This is the ceiling the ingestion pipeline is measured against (issue 4: the pipeline should
reach at least 80% of it): only ``EmbeddedDocStore.upsert`` is timed. Chunks (~100 words of
Zipf-distributed synthetic vocabulary, tokenized, ids = xxh64(content + doc_id) as upstream)
are built before the clock starts. For each writer count the same total number of chunks is
split between that many processes, which start together and each write through their own
store on one shared file, so the figures compare directly. Each repeat uses a fresh file.

    .venv/bin/python bench/docstore_bulk.py --chunks 40000 --writers 1,4 --repeat 3
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import shlex
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from executor.ingest.chunking import chunk_id
from executor.ingest.docstore.embedded import EmbeddedDocStore
from executor.ingest.docstore.embedded_query import default_tokenizer
from executor.ingest.types import Chunk

INDEX = "ragflow_bench"
VOCABULARY = 20_000


@dataclass(frozen=True)
class Job:
    path: str
    writer: int
    count: int
    words: int
    batch: int
    call_size: int
    dim: int
    seed: int


def vocabulary(seed: int) -> list[str]:
    """Synthetic words of 3 to 10 letters (the same list in every writer of a run)."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    lengths = rng.integers(3, 11, size=VOCABULARY)
    return ["".join(rng.choice(letters, size=n)) for n in lengths]


def make_chunks(job: Job) -> list[Chunk]:
    """``job.count`` chunks of about ``job.words`` words each, Zipf-distributed like prose."""
    vocab = vocabulary(job.seed)
    rng = np.random.default_rng(job.seed * 1000 + job.writer)
    ranks = np.arange(1, VOCABULARY + 1)
    weights = 1.0 / ranks
    weights /= weights.sum()
    lengths = rng.integers(job.words * 8 // 10, job.words * 12 // 10 + 1, size=job.count)
    drawn = rng.choice(VOCABULARY, size=int(lengths.sum()), p=weights)
    ends = np.cumsum(lengths)
    tokenize = default_tokenizer()
    chunks = []
    for n in range(job.count):
        doc_id = f"doc-{job.writer}-{n // 50}"  # 50 chunks per document
        text = " ".join(vocab[i] for i in drawn[ends[n] - lengths[n] : ends[n]]) + "."
        tokens = tokenize(text)
        vector = rng.standard_normal(job.dim).astype(np.float32).tolist() if job.dim else None
        chunks.append(
            Chunk(
                id=chunk_id(text, doc_id),
                doc_id=doc_id,
                kb_id="kb-bench",
                doc_name=f"{doc_id}.txt",
                content=text,
                tokens=tokens.split() if isinstance(tokens, str) else list(tokens),
                pages=[],
                vector=vector,
                create_time=time.time(),
            )
        )
    return chunks


def writer(job: Job, barrier: Any, results: Any) -> None:
    """One writer process: build its chunks, wait for the others, time the upserts."""
    chunks = make_chunks(job)
    store = EmbeddedDocStore(job.path, batch_size=job.batch)
    barrier.wait()
    began = time.perf_counter()
    for start in range(0, len(chunks), job.call_size):
        store.upsert(INDEX, chunks[start : start + job.call_size])
    elapsed = time.perf_counter() - began
    store.close()
    results.put((job.writer, elapsed))


def run_once(args: argparse.Namespace, writers: int, repeat: int, workdir: Path) -> float:
    """Wall time for ``writers`` processes to insert ``args.chunks`` chunks together."""
    path = workdir / f"bench-{writers}-{repeat}.db"
    per_writer = args.chunks // writers
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(writers + 1), ctx.Queue()
    procs = [
        ctx.Process(
            target=writer,
            args=(
                Job(
                    str(path),
                    n,
                    per_writer,
                    args.words,
                    args.batch,
                    args.call_size,
                    args.dim,
                    args.seed + repeat,
                ),
                barrier,
                results,
            ),
        )
        for n in range(writers)
    ]
    for proc in procs:
        proc.start()
    barrier.wait()
    began = time.perf_counter()
    for _ in procs:
        results.get()
    wall = time.perf_counter() - began
    for proc in procs:
        proc.join()
        if proc.exitcode:
            raise SystemExit(f"a writer failed with exit code {proc.exitcode}")
    check(path, per_writer * writers)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return wall


def check(path: Path, expected: int) -> None:
    """Every chunk is there once (xxh64 ids of distinct texts cannot collide in practice)."""
    with EmbeddedDocStore(path) as store:
        count = store.count(INDEX)
        if count != expected:
            raise SystemExit(f"{path}: {count} chunks instead of {expected}")


def table(args: argparse.Namespace, walls: dict[int, list[float]]) -> str:
    lines = [
        "| writers | chunks | best (s) | median (s) | best chunks/s | median chunks/s |",
        "|--------:|-------:|---------:|-----------:|--------------:|----------------:|",
    ]
    total = args.chunks
    for writers, times in walls.items():
        n = (total // writers) * writers
        best, median = min(times), statistics.median(times)
        lines.append(
            f"| {writers} | {n:,} | {best:.2f} | {median:.2f} "
            f"| {n / best:,.0f} | {n / median:,.0f} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=40_000, help="total chunks per run")
    parser.add_argument("--writers", default="1,4", help="writer process counts, comma-separated")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--words", type=int, default=100, help="mean words per chunk")
    parser.add_argument("--batch", type=int, default=200, help="chunks per write transaction")
    parser.add_argument("--call-size", type=int, default=1000, help="chunks per upsert call")
    parser.add_argument("--dim", type=int, default=0, help="vector dimension (0: BM25 only)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dir", default=None, help="where the database files go (a temp dir)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    counts = [int(w) for w in args.writers.split(",")]
    print("$", shlex.join([".venv/bin/python", "bench/docstore_bulk.py", *sys.argv[1:]]))
    print(
        f"# {os.cpu_count()} CPUs, Python {platform.python_version()}, SQLite "
        f"{sqlite3.sqlite_version}, {args.words} words/chunk, batch {args.batch}, "
        f"dim {args.dim or 'none'}"
    )
    walls: dict[int, list[float]] = {n: [] for n in counts}
    with tempfile.TemporaryDirectory(prefix="docstore-bench-", dir=args.dir) as tmp:
        for repeat in range(args.repeat):
            order = counts if repeat % 2 == 0 else counts[::-1]  # alternate against drift
            for writers in order:
                wall = run_once(args, writers, repeat, Path(tmp))
                walls[writers].append(wall)
                print(f"# repeat {repeat + 1}: {writers} writer(s) {wall:.2f} s", flush=True)
    print(table(args, walls))


if __name__ == "__main__":
    main()
