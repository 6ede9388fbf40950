"""Embeddings across tasks: ingestion with an embedding model against the model's own rate.

Issue 21's target: ingesting the bundled corpus (samples/corpus) repeated to 500 documents
with the local all-MiniLM-L6-v2 reaches at least 80% of the model's own encode rate on
the same chunks in the same run. Everything runs in one invocation, in a temp dir removed
at the end, with one redis-server (tests/servers.py), as bench/ingest_throughput.py:

1. **model alone**: the pipeline's chunks of the same documents (parsed and chunked the
   pipeline's way with the knowledge base defaults, in this process), then
   sentence-transformers ``encode`` on the list of all their texts, ``batch_size`` 16
   (the executor's), normalized, in this process with nothing else of the bench running.
   Run before and after the pipeline cases; the median is the denominator.
2. **pipeline, local**: ``ragfleet run`` (1 process, production defaults: 5 task slots)
   with ``models.embedding_model`` = ``all-MiniLM-L6-v2@local``; warmed up (which loads
   the model), paused, the documents submitted with ``ragfleet submit``, resumed; time =
   first task's ``begin_at`` to last task's ``update_time`` (bench/ingest_throughput.py's
   ``Bench.pipeline``). ``--alone`` runs the same with ``group_tasks: false`` (each task
   embeds its own chunks: the code before cross-task batching did so for every task of a
   knowledge base with an embedding model).
3. **pipeline, HTTP** (``--http``): the same through the OpenAI-compatible embedder against
   a real HTTP server in this process (``http.server``, loopback), answering
   ``/v1/embeddings`` with deterministic 384-dimensional vectors (a hash of each text
   seeds them): what the executor's side of the HTTP path costs, without a model's time.
   With ``--alone``, again with ``group_tasks: false``.

Run from the repository root:

    .venv/bin/python bench/embed_throughput.py [--docs 500] [--alone] [--http]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

import ingest_throughput as ingest  # noqa: E402
import numpy as np  # noqa: E402
import run_facts  # noqa: E402
from fake_openai import Answer, FakeOpenAI, Request, serve_fake_openai  # noqa: E402

from executor.ingest.catalog import DEFAULT_PARSER_CONFIG  # noqa: E402
from executor.ingest.chunking import chunk  # noqa: E402
from executor.ingest.embeddings import EMBEDDING_BATCH_SIZE  # noqa: E402
from executor.ingest.intake import page_ranges  # noqa: E402
from executor.ingest.parsers import parser_for  # noqa: E402

CORPUS = ROOT / "samples" / "corpus"
LOCAL_MODEL = {"model": "all-MiniLM-L6-v2@local", "factory": "local"}
HTTP_DIM = 384
CASE_TIMEOUT = 3600.0
MODEL = "model alone (encode)"


def corpus_copies(directory: Path, count: int) -> list[Path]:
    """samples/corpus repeated to *count* documents, each copy under a name of its own."""
    directory.mkdir(parents=True)
    originals = sorted(p for p in CORPUS.iterdir() if p.is_file())
    paths = []
    for n in range(count):
        original = originals[n % len(originals)]
        path = directory / f"{n:04d}-{original.name}"
        shutil.copyfile(original, path)
        paths.append(path)
    return paths


def chunk_texts(paths: list[Path]) -> list[str]:
    """The texts the pipeline embeds: each document cut into its tasks' page ranges as
    ``ragfleet submit`` does (a PDF: 12 pages a task), each range parsed and chunked as
    build_chunks_of does, with the knowledge base defaults."""
    config = DEFAULT_PARSER_CONFIG
    texts: list[str] = []
    for path in paths:
        data = path.read_bytes()
        _, parse = parser_for(path.name, None)
        for first, last in page_ranges(data, path.name, int(config["pages_per_task"])):
            sections = parse(data, filename=path.name, from_page=first, to_page=last)
            pieces = chunk(
                sections,
                chunk_token_num=int(config["chunk_token_num"]),
                delimiter=str(config["delimiter"]),
                overlap_percent=int(config["overlap_percent"]),
            )
            texts += [piece.text for piece in pieces]
    return texts


def submit(fleet: Any, files: list[Path]) -> list[str]:
    """``ragfleet submit FILE... --kb bench``: the new task ids (a PDF may make several)."""
    command = [str(ingest.RAGFLEET), "--config", str(fleet.config), "submit", "--kb", ingest.KB]
    result = subprocess.run(
        [*command, *map(str, files)],
        capture_output=True,
        text=True,
        timeout=CASE_TIMEOUT,
    )
    if result.returncode != 0:
        raise SystemExit(f"ragfleet submit failed ({result.returncode}):\n{result.stderr}")
    return result.stdout.split()


def model_alone(model: Any, texts: list[str]) -> ingest.Result:
    """sentence-transformers ``encode`` on the whole list, the executor's batch size."""
    model.encode(texts[:EMBEDDING_BATCH_SIZE], batch_size=EMBEDDING_BATCH_SIZE)  # warm-up
    cpu, began = time.process_time(), time.perf_counter()
    vectors = model.encode(
        texts,
        batch_size=EMBEDDING_BATCH_SIZE,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    )
    seconds = time.perf_counter() - began
    assert len(vectors) == len(texts)
    return ingest.Result(MODEL, "-", 0, len(texts), seconds, time.process_time() - cpu)


class Deterministic(FakeOpenAI):
    """/v1/embeddings answered with a unit vector of HTTP_DIM per text, seeded by its hash."""

    def respond(self, request: Request) -> Answer:
        texts = request.body.get("input") or []
        data = [
            {"object": "embedding", "index": i, "embedding": vector(t)} for i, t in enumerate(texts)
        ]
        return Answer(200, {"object": "list", "data": data, "model": request.body.get("model")})


def vector(text: str) -> list[float]:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    v = np.random.default_rng(seed).standard_normal(HTTP_DIM)
    return (v / np.linalg.norm(v)).round(6).tolist()


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=500, help="corpus copies to ingest")
    parser.add_argument(
        "--alone", action="store_true", help="each case also with group_tasks: false"
    )
    parser.add_argument("--http", action="store_true", help="also the OpenAI-compatible path")
    parser.add_argument("--no-local", action="store_true", help="skip the local model's cases")
    return parser.parse_args(argv)


def measure(args: argparse.Namespace, work: Path) -> list[ingest.Result]:
    from servers import RedisServer

    from executor.ingest.embedders import open_embedder

    files = corpus_copies(work / "docs", args.docs)
    warm = corpus_copies(work / "warm", 2)
    texts = chunk_texts(files)
    print(f"# {len(files)} documents, {len(texts):,} chunks", flush=True)
    results: list[ingest.Result] = []
    embedder = open_embedder(LOCAL_MODEL) if not args.no_local else None
    model = getattr(embedder, "_model", None)
    alone = [{}, {"group_tasks": False}] if args.alone else [{}]
    redis_server = RedisServer(work / "redis")
    try:
        redis_server.start()
        bench = ingest.Bench(work, redis_server, warm)
        try:
            if model is not None:
                results.append(record(model_alone(model, texts)))
                for executor in alone:
                    label = "pipeline, local" + (", group_tasks: false" if executor else "")
                    models = {"embedding_model": LOCAL_MODEL}
                    results.append(
                        record(bench.pipeline(label, files, 1, models=models, executor=executor))
                    )
                results.append(record(model_alone(model, texts)))
            if args.http:
                with serve_fake_openai(Deterministic()) as url:
                    models = {
                        "embedding_model": {
                            "model": "bench-embed@OpenAI-API-Compatible",
                            "factory": "OpenAI-API-Compatible",
                            "base_url": f"{url}/v1",
                        }
                    }
                    for executor in alone:
                        label = "pipeline, HTTP" + (", group_tasks: false" if executor else "")
                        results.append(
                            record(
                                bench.pipeline(label, files, 1, models=models, executor=executor)
                            )
                        )
        finally:
            bench.close()
    finally:
        redis_server.close()
    return results


def record(result: ingest.Result) -> ingest.Result:
    print(
        f"  {result.label}: {result.chunks:,} chunks in {result.seconds:.2f} s = "
        f"{result.chunk_rate:,.1f} chunks/s",
        flush=True,
    )
    return result


def table(results: list[ingest.Result]) -> list[str]:
    models = [r.chunk_rate for r in results if r.label == MODEL]
    model = statistics.median(models) if models else None
    lines = [
        "| case | docs | chunks | seconds | chunks/s | % of the model alone | CPU s |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for r in results:
        share = f"{r.chunk_rate / model:.0%}" if model and "HTTP" not in r.label else "-"
        cpu = f"{r.cpu:.1f}" if r.cpu is not None else "-"
        docs = f"{r.docs:,}" if r.docs else "-"
        lines.append(
            f"| {r.label} | {docs} | {r.chunks:,} | {r.seconds:.2f} | {r.chunk_rate:,.1f} "
            f"| {share} | {cpu} |"
        )
    if model:
        lines.append(f"\nModel alone (median of {len(models)}): {model:,.1f} chunks/s.")
    return lines


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    ingest.CASE_TIMEOUT = CASE_TIMEOUT  # 500 documents through a CPU model take minutes
    ingest.submit = submit  # Bench.pipeline's: the corpus's PDFs make several tasks
    command = " ".join([".venv/bin/python", "bench/embed_throughput.py", *argv])
    facts = run_facts.machine_facts()
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="rf-bench-embed-"))
    try:
        results = measure(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    facts.append(f"total run time: {time.perf_counter() - started:.0f} s")
    print("\n".join(["", f"    {command}", "", *facts, "", *table(results)]))


if __name__ == "__main__":
    main(sys.argv[1:])
