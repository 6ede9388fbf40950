"""The ceiling of BM25 ingestion into the embedded store on this machine: the pipeline's own
per-document work with none of a task's bookkeeping, against the store's raw bulk-insert
rate measured in the same run (the denominator of bench/ingest_throughput.py).

Issue 4 asks BM25 ingestion to reach 80% of the raw rate. This script asks how close any
executor design could come here. Each "ideal" process reads its share of the documents'
files and runs exactly the handler's CPU step (``executor.ingest.pipeline._parse_and_chunk``:
parse, chunk, tokenize, hash, with the knowledge base defaults), then writes the chunks with
``EmbeddedDocStore.upsert``: one call per *group* of documents, so one write transaction
per group (the store's group commit joins nothing here: each process has one writing
thread). No task database, no Redis, no trio, no progress: whatever a real executor adds
can only lower these rates.

Cases, side by side in one invocation (a fresh store file each, in a temp dir removed at the
end): raw bulk (1,000 chunks a call, transactions of 200) ``--raw-repeat`` times before and
as often after the ideal cases, whose median is the denominator; raw with one call per
document; then the ideal cases for each process count in ``--procs`` and each group size in
``--groups``. An ideal case's time runs from the first process's start (after all have
opened the store) to the last one's end; its CPU is the processes' own. ``--pipeline``
adds, between the ideal cases and the last raw runs, the real executors on the same files
(bench/ingest_throughput.py's BM25 case, for each count in ``--procs``), so the table shows
how much of the ceiling the executor reaches.

    .venv/bin/python bench/ingest_ceiling.py [--docs 400] [--procs 1,2] [--groups 1,2,5]
        [--pipeline]
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ingest_throughput import (
    BULK_CALL,
    INDEX,
    Bench,
    build_chunks,
    raw_case,
    write_documents,
)
from run_facts import machine_facts

from executor.ingest.catalog import DEFAULT_PARSER_CONFIG, KnowledgeBase
from executor.ingest.docstore.embedded import EmbeddedDocStore
from executor.ingest.parsers import parse_text
from executor.ingest.pipeline import _parse_and_chunk

KB = KnowledgeBase("kb-ceiling", "ragfleet", "ceiling", "", dict(DEFAULT_PARSER_CONFIG))


@dataclass
class Case:
    name: str
    procs: int
    group: int | None  # documents per write transaction; None: the executor decides
    chunks: int
    seconds: float
    cpu: float

    @property
    def rate(self) -> float:
        return self.chunks / self.seconds


def ideal_process(
    paths: list[Path],
    db: Path,
    group: int,
    ready: multiprocessing.Barrier,
    out: multiprocessing.Queue,
) -> None:
    """One process: read, parse and chunk each document as the handler does, write the
    chunks of every *group* documents in one upsert."""
    config = KB.parser_config
    options = {
        "chunk_token_num": int(config["chunk_token_num"]),
        "delimiter": str(config["delimiter"]),
        "overlap_percent": int(config["overlap_percent"]),
    }
    with EmbeddedDocStore(db) as store:
        store.create_index(INDEX, None)
        ready.wait()
        cpu, began = time.process_time(), time.perf_counter()
        pending, written = [], 0
        for n, path in enumerate(paths, 1):
            doc = {"id": f"ceiling-{path.stem}", "name": path.name}
            built = _parse_and_chunk(
                parse_text, path.read_bytes(), doc, KB, from_page=0, to_page=100000, **options
            )
            pending += built.chunks
            if n % group == 0 or n == len(paths):
                store.upsert(INDEX, pending)
                written += len(pending)
                pending = []
        out.put((began, time.perf_counter(), time.process_time() - cpu, written))


def ideal_case(paths: list[Path], work: Path, procs: int, group: int) -> Case:
    db = work / f"ideal-{procs}-{group}.db"
    EmbeddedDocStore(db).close()  # created once, so the processes do not race to create it
    ready = multiprocessing.Barrier(procs)
    out: multiprocessing.Queue = multiprocessing.Queue()
    workers = [
        multiprocessing.Process(target=ideal_process, args=(paths[i::procs], db, group, ready, out))
        for i in range(procs)
    ]
    for worker in workers:
        worker.start()
    results = [out.get(timeout=600) for _ in workers]
    for worker in workers:
        worker.join()
        if worker.exitcode:
            raise SystemExit(f"an ideal process exited with {worker.exitcode}")
    chunks = sum(r[3] for r in results)
    with EmbeddedDocStore(db) as store:
        if store.count(INDEX) != chunks:
            raise SystemExit(f"ideal: {store.count(INDEX)} chunks stored instead of {chunks}")
    span = max(r[1] for r in results) - min(r[0] for r in results)
    return Case("ideal", procs, group, chunks, span, sum(r[2] for r in results))


def pipeline_cases(args: argparse.Namespace, paths: list[Path], work: Path) -> list[Case]:
    """The real executors (``ragfleet run``, production defaults) on the same files."""
    from servers import RedisServer

    warm = write_documents(work / "warm", 2, 3, args.words, args.seed + 1, "warm")
    redis_server = RedisServer(work / "redis")
    redis_server.start()
    bench = Bench(work, redis_server, warm)
    results = []
    try:
        for procs in (int(p) for p in args.procs.split(",")):
            real = bench.pipeline("pipeline", paths, procs)
            results.append(
                Case("**executor, BM25**", procs, None, real.chunks, real.seconds, real.cpu or 0.0)
            )
            print(f"  executor, {procs} process(es): {real.chunk_rate:,.0f} chunks/s")
    finally:
        bench.close()
        redis_server.close()
    return results


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=400, help="documents")
    parser.add_argument("--paragraphs", type=int, default=40, help="paragraphs (chunks) per doc")
    parser.add_argument("--words", type=int, default=100, help="mean words per paragraph")
    parser.add_argument("--procs", default="1,2", help="process counts (ideal and executor cases)")
    parser.add_argument("--groups", default="1,2,5", help="documents per write transaction")
    parser.add_argument("--raw-repeat", type=int, default=2, help="raw bulk runs before/after")
    parser.add_argument("--pipeline", action="store_true", help="also the real executors")
    parser.add_argument("--seed", type=int, default=1)
    return parser.parse_args(argv)


def measure(args: argparse.Namespace, work: Path) -> tuple[list[float], float, list[Case]]:
    paths = write_documents(work / "docs", args.docs, args.paragraphs, args.words, args.seed, "doc")
    built = build_chunks(paths)
    raw_db = work / "raw.db"
    bulk = [raw_case(built, raw_db, per_document=False).chunk_rate for _ in range(args.raw_repeat)]
    per_doc = raw_case(built, raw_db, per_document=True).chunk_rate
    cases = []
    for procs in (int(p) for p in args.procs.split(",")):
        for group in (int(g) for g in args.groups.split(",")):
            cases.append(case := ideal_case(paths, work, procs, group))
            print(f"  ideal, {procs} process(es), {group} doc(s)/write: {case.rate:,.0f} chunks/s")
    if args.pipeline:
        cases += pipeline_cases(args, paths, work)
    bulk += [raw_case(built, raw_db, per_document=False).chunk_rate for _ in range(args.raw_repeat)]
    print("  raw bulk runs: " + ", ".join(f"{r:,.0f}" for r in bulk) + " chunks/s")
    return bulk, per_doc, cases


def report(args: argparse.Namespace, bulk: list[float], per_doc: float, cases: list[Case]) -> None:
    raw = statistics.median(bulk)
    print(
        f"\ndocuments: {args.docs} of {args.paragraphs} paragraphs of ~{args.words} words\n"
        f"raw = median of {len(bulk)} bulk runs ({BULK_CALL}/call): {raw:,.0f} chunks/s; "
        f"one call per document: {per_doc:,.0f} ({per_doc / raw:.0%})\n"
    )
    print("| case | procs | docs per write | chunks/s | % of raw | CPU µs/chunk |")
    print("|---|--:|--:|--:|--:|--:|")
    for case in cases:
        print(
            f"| {case.name} | {case.procs} | {case.group or '-'} | {case.rate:,.0f} "
            f"| {case.rate / raw:.0%} | {case.cpu / case.chunks * 1e6:.0f} |"
        )


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    print("command: " + " ".join([".venv/bin/python", "bench/ingest_ceiling.py", *argv]))
    print("\n".join(machine_facts()))
    work = Path(tempfile.mkdtemp(prefix="rf-bench-ceiling-"))
    try:
        report(args, *measure(args, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
