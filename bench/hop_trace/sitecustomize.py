"""Bench-only: time every trio thread hop of the processes that import it, by function.

Put this directory on ``PYTHONPATH`` with ``HOP_TRACE=/some/prefix``; every process then
writes ``<prefix>.<pid>`` (rewritten every 200 hops, so a killed process leaves its last
table) with, per function run through ``trio.to_thread.run_sync``: calls, wall time per
call from the await to the result (queueing for a thread and the GIL included), and time
inside the function. It also times the embedded store's transactions (how long the
write lock is held: explicit transactions, and group commits, one statement each), its
group-commit batches, and the waits for other write turns.
Nothing here is imported by ragfleet itself.

    PYTHONPATH=bench/hop_trace HOP_TRACE=/tmp/hops \\
        .venv/bin/python bench/ingest_throughput.py --no-embed --docs 400
"""

from __future__ import annotations

import collections
import contextlib
import functools
import os
import time

PREFIX = os.environ.get("HOP_TRACE")


def _install() -> None:
    import trio
    import trio.to_thread

    from executor.ingest.docstore import embedded, group_commit

    stats: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0, 0.0])
    hops = [0]

    def record(name: str, wall: float, inner: float = 0.0) -> None:
        entry = stats[name]
        entry[0] += 1
        entry[1] += wall
        entry[2] += inner

    def dump() -> None:
        lines = [f"{'function':58s} {'calls':>7s} {'wall ms/call':>13s} {'inside ms/call':>15s}"]
        for name, (calls, wall, inner) in sorted(stats.items(), key=lambda kv: -kv[1][1]):
            lines.append(
                f"{name:58s} {calls:7.0f} {wall / calls * 1e3:13.2f} {inner / calls * 1e3:15.2f}"
            )
        with open(f"{PREFIX}.{os.getpid()}", "w") as out:
            out.write("\n".join(lines) + "\n")

    def name_of(fn: object) -> str:
        while isinstance(fn, functools.partial):
            fn = fn.func
        return getattr(fn, "__qualname__", repr(fn))

    run_sync = trio.to_thread.run_sync

    async def traced(fn, *args, **kwargs):
        began, inside = time.perf_counter(), [0.0]

        def timed(*a):
            start = time.perf_counter()
            try:
                return fn(*a)
            finally:
                inside[0] = time.perf_counter() - start

        try:
            return await run_sync(timed, *args, **kwargs)
        finally:
            record(name_of(fn), time.perf_counter() - began, inside[0])
            hops[0] += 1
            if hops[0] % 200 == 0:
                dump()

    trio.to_thread.run_sync = traced

    def timing(name: str, fn):
        @functools.wraps(fn)
        def timed(*args):
            start = time.perf_counter()
            try:
                return fn(*args)
            finally:
                record(name, time.perf_counter() - start)

        return timed

    store = embedded.EmbeddedDocStore
    store._attempt = staticmethod(timing("store: write transaction (lock held)", store._attempt))
    store._write_group = timing("store: group write, one statement (lock held)", store._write_group)
    commit = group_commit.GroupCommit
    commit.submit = timing("store: group-commit batch (wait + write)", commit.submit)
    turns = embedded.WriteTurns.__call__

    @contextlib.contextmanager
    def timed_turn(self):
        start = time.perf_counter()
        with turns(self):
            record(f"turn wait: {self.lock_path.name}", time.perf_counter() - start)
            yield

    embedded.WriteTurns.__call__ = timed_turn


if PREFIX:
    _install()
