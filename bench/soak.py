"""Memory soak: many no-op tasks through one executor, its RSS sampled over time.

Issue 21's target: over 50,000 no-op tasks, the executor's resident memory grows less than
5% from the end of the warm-up to the end. The full path, as bench/executor_throughput.py's
"full path": task rows in SQLite (WAL), the real ``ragfleet run`` process (production
defaults: 5 task slots, log level INFO), its own redis-server (tests/servers.py:
loopback, password, AOF everysec), all in a temp dir removed at the end.

The rows are created and their entries queued in waves of ``--wave`` tasks, the next wave
once the queue holds less than one wave, so the queue and the database grow as under a
steady producer, not as one flood. Every ``--every`` seconds the bench reads the
executor's VmRSS from /proc and counts the done rows (one SQLite COUNT). "Warm-up" ends at
``--warmup`` of the tasks done (default 10%): the RSS sampled first after that is the
baseline; the end is the RSS once every task is done; growth = end / baseline - 1.

Every task must be done exactly once: progress 1, one "Task has been received." line and
one "Task done" line each, no entry left in the streams, none pending, no dead letter.

``--tracemalloc`` sends the executor SIGUSR1 (executor/memtrace.py: start tracemalloc
and write a snapshot) at the end of the warm-up and again at the end, and prints the top
allocation growth between the two snapshots ("lineno"); tracing slows the executor.

    .venv/bin/python bench/soak.py [--tasks 50000] [--every 1] [--json FILE] [--tracemalloc]

It prints a report (the command, run facts, a table) and, with ``--json FILE``, writes
the figures (``-`` for stdout) for tests/test_bench_soak.py.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
import tracemalloc
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

import run_facts  # noqa: E402

from executor.queue import wire  # noqa: E402
from executor.queue.producer import enqueue, task_message  # noqa: E402

EXECUTOR = {"drain_timeout": 5, "metrics_port_base": 0}  # over the production defaults
TIMEOUT_PER_TASK = 0.05  # seconds; a run slower than 20 tasks/s is stuck, not slow


@dataclass
class Sample:
    seconds: float  # since the executor was resumed with the first wave
    rss_kib: int
    done: int


@dataclass
class Soak:
    tasks: int
    warmup_tasks: int
    samples: list[Sample] = field(default_factory=list)
    seconds: float = 0.0
    check: dict[str, Any] = field(default_factory=dict)
    snapshots: list[str] = field(default_factory=list)

    @property
    def warm(self) -> Sample:
        return next(s for s in self.samples if s.done >= self.warmup_tasks)

    @property
    def end(self) -> Sample:
        return self.samples[-1]

    def figures(self) -> dict[str, Any]:
        warm, end = self.warm, self.end
        return {
            "tasks": self.tasks,
            "warmup_tasks": self.warmup_tasks,
            "seconds": round(self.seconds, 2),
            "tasks_per_second": round(self.tasks / self.seconds, 1),
            "rss_kib": {
                "start": self.samples[0].rss_kib,
                "warm": warm.rss_kib,
                "end": end.rss_kib,
                "max": max(s.rss_kib for s in self.samples),
            },
            "growth": round(end.rss_kib / warm.rss_kib - 1, 4),
            "check": self.check,
            "samples": [asdict(s) for s in self.samples],
        }


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def done_count(db: sqlite3.Connection) -> int:
    return db.execute("SELECT COUNT(*) FROM task WHERE progress >= 1").fetchone()[0]


def queued(client: Any) -> int:
    return sum(client.xlen(wire.queue_name(p)) for p in (0, 1))


def run_soak(args: argparse.Namespace, work: Path) -> Soak:
    from executors import PRODUCTION, Fleet, sqlite_database, write_config
    from servers import RedisServer

    soak = Soak(args.tasks, max(1, int(args.tasks * args.warmup)))
    redis_server = RedisServer(work / "redis")
    redis_server.start()
    try:
        overrides = {k: json.loads(v) for k, v in (i.split("=", 1) for i in args.set)}
        executor_keys = {**PRODUCTION, **EXECUTOR, **overrides}
        config = write_config(work, redis_server, sqlite_database(work), **executor_keys)
        fleet = Fleet(config)
        try:
            executor = fleet.start(env=dict(item.split("=", 1) for item in args.env))
            db = sqlite3.connect(f"file:{fleet.settings.database['path']}?mode=ro", uri=True)
            try:
                drive(args, soak, fleet, executor, db)
                soak.check = exactly_once(fleet, db)
            finally:
                db.close()
            soak.snapshots = sorted(
                str(p) for p in (Path(fleet.settings.executor.state_dir) / "tracemalloc").glob("*")
            )
            if args.tracemalloc and len(soak.snapshots) >= 2:
                print_growth(soak.snapshots[0], soak.snapshots[-1])
            executor.terminate()
        finally:
            fleet.close()
    finally:
        redis_server.close()
    return soak


def drive(
    args: argparse.Namespace, soak: Soak, fleet: Any, executor: Any, db: sqlite3.Connection
) -> None:
    """Feed the tasks in waves and sample until every one is done."""
    pid = executor.process.pid
    created = 0
    traced = False
    started = next_sample = time.monotonic()
    deadline = started + 60 + args.tasks * TIMEOUT_PER_TASK
    soak.samples.append(Sample(0.0, rss_kib(pid), 0))  # idle, before the first wave
    next_sample += args.every
    while True:
        if created < args.tasks and queued(fleet.redis) < args.wave:
            count = min(args.wave, args.tasks - created)
            rows = fleet.store.create_tasks([{"task_type": "noop"}] * count)
            enqueue(fleet.redis, (task_message(t) for t in rows))
            created += count
        now = time.monotonic()
        if now >= next_sample:
            done = done_count(db)
            soak.samples.append(Sample(round(now - started, 2), rss_kib(pid), done))
            next_sample += args.every
            if args.tracemalloc and not traced and done >= soak.warmup_tasks:
                executor.signal(signal.SIGUSR1)
                traced = True
            if done >= args.tasks:
                break
        if executor.process.poll() is not None:
            raise SystemExit(f"the executor exited ({executor.process.returncode})")
        if now > deadline:
            raise SystemExit(
                f"{done_count(db)} of {args.tasks} tasks done in {now - started:.0f} s"
            )
        time.sleep(min(0.05, max(0.0, next_sample - time.monotonic())))
    soak.seconds = time.monotonic() - started
    time.sleep(args.every)  # what the last tasks left behind settles: one more sample
    soak.samples.append(Sample(round(time.monotonic() - started, 2), rss_kib(pid), done_count(db)))
    if args.tracemalloc:
        executor.signal(signal.SIGUSR1)
        time.sleep(3)  # the snapshot is written in a thread


def exactly_once(fleet: Any, db: sqlite3.Connection) -> dict[str, Any]:
    """Each task done once: one received line, one done line, progress 1; Redis empty."""
    rows = db.execute("SELECT progress, progress_msg FROM task").fetchall()
    once = sum(
        1
        for progress, msg in rows
        if progress == 1
        and msg.count("Task has been received.") == 1
        and msg.count("Task done") == 1
    )
    pending = 0
    for priority in (0, 1):
        for group in fleet.redis.xinfo_groups(wire.queue_name(priority)):
            pending += int(group["pending"])
    return {
        "rows": len(rows),
        "done_exactly_once": once,
        "queued": queued(fleet.redis),
        "pending": pending,
        "dead_letters": fleet.redis.xlen(wire.DEAD_LETTER_STREAM),
    }


def print_growth(first: str, last: str, top: int = 15) -> None:
    old, new = (tracemalloc.Snapshot.load(p) for p in (first, last))
    print(f"\ntracemalloc, top {top} growth from warm-up to end (lineno):")
    for stat in new.compare_to(old, "lineno")[:top]:
        print(f"  {stat}")


def report(command: str, facts: list[str], figures: dict[str, Any]) -> list[str]:
    rss = figures["rss_kib"]
    check = figures["check"]
    return [
        "",
        f"    {command}",
        "",
        *facts,
        "",
        "| tasks | seconds | tasks/s | RSS start | RSS after warm-up | RSS end | RSS max "
        "| growth |",
        "|--:|--:|--:|--:|--:|--:|--:|--:|",
        f"| {figures['tasks']:,} | {figures['seconds']:.1f} | {figures['tasks_per_second']:,.0f} "
        f"| {mib(rss['start'])} | {mib(rss['warm'])} | {mib(rss['end'])} | {mib(rss['max'])} "
        f"| {figures['growth']:+.1%} |",
        "",
        f"warm-up: the first {figures['warmup_tasks']:,} tasks; done exactly once: "
        f"{check['done_exactly_once']:,} of {check['rows']:,}; left queued {check['queued']}, "
        f"pending {check['pending']}, dead letters {check['dead_letters']}",
        "RSS over time (seconds: MiB, tasks done): "
        + ", ".join(
            f"{s['seconds']:.0f}: {mib(s['rss_kib'])} ({s['done']:,})"
            for s in figures["samples"][:: max(1, len(figures["samples"]) // 12)]
        ),
    ]


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f} MiB"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=50_000, help="no-op tasks to run")
    parser.add_argument("--wave", type=int, default=2_000, help="tasks created and queued at once")
    parser.add_argument("--every", type=float, default=1.0, help="seconds between RSS samples")
    parser.add_argument(
        "--warmup", type=float, default=0.1, help="share of the tasks that warms up"
    )
    parser.add_argument(
        "--set", action="append", default=[], help="executor KEY=JSON over the defaults"
    )
    parser.add_argument(
        "--env", action="append", default=[], help="KEY=VALUE for the executor (repeatable)"
    )
    parser.add_argument("--json", default="", help="write the figures here (- for stdout)")
    parser.add_argument(
        "--tracemalloc", action="store_true", help="snapshot at warm-up and end, print growth"
    )
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    command = " ".join([".venv/bin/python", "bench/soak.py", *argv])
    facts = run_facts.machine_facts()
    work = Path(tempfile.mkdtemp(prefix="rf-bench-soak-"))
    started = time.perf_counter()
    try:
        soak = run_soak(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    facts.append(f"total run time: {time.perf_counter() - started:.0f} s")
    figures = soak.figures()
    if args.json == "-":
        print(json.dumps(figures))
    else:
        print("\n".join(report(command, facts, figures)))
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
