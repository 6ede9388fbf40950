"""Benchmark the executor against a re-creation of upstream RAGFlow's consumption pattern.

Everything runs in one invocation, side by side, on one redis-server (tests/servers.py:
free loopback port, password, AOF everysec) and on SQLite in WAL mode, in a temp dir that
is removed at the end. Every case starts from an empty Redis (FLUSHALL) and a fresh
database. Measured:

1. No-op tasks per second with 1 and 4 consumer PROCESSES, each with 5 concurrent task slots
   (``max_concurrent_tasks: 5`` set explicitly; upstream's ``MAX_CONCURRENT_TASKS`` is 5 too),
   the queue pre-filled with N entries before the processes start:

   * queue-only: no database. "ours" is a small trio harness that drives
     ``executor.queue.broker.Broker`` the way the Worker does (take the free slots, ``read_new``
     in ``trio.to_thread``, then ``ack_all`` of the batch in one thread hop). The
     entries carry random task ids. "upstream" is the re-creation below without its
     database calls (XINFO GROUPS + XREADGROUP per queue, XACK). Both harnesses count
     acks and write the count to a file every 50 ms (no Redis traffic from the
     measurement itself: see "BLOCK 5 ms" below).
   * full path: ours is real ``ragfleet run --instance N`` processes (task read, begin,
     "received", "done" progress writes, ack, all through ``trio.to_thread``); upstream is
     the re-creation. The parent polls ``COUNT(*) ... WHERE progress >= 1`` every 50 ms.
     On SQLite the full path runs twice: with redis-server's default ``hz 10`` and with
     ``hz 100`` (CONFIG SET), because the upstream pattern's rate depends on it (see
     "BLOCK 5 ms" below); ours does not block while entries are waiting.

   Two rates per case: ``wall`` = N / (spawn of the processes -> all N seen done), start-up
   included; ``active`` = N / (first task picked -> last task done), from the tasks' own
   timestamps (full path: min ``begin_at`` -> max ``update_time``; on MariaDB, whose
   ``begin_at`` has whole seconds, the first ``update_time`` instead) or the harnesses'
   (queue-only: first entry read -> last ack).

2. Idle pickup latency, one process of each: tasks sent one at a time to an idle consumer
   (queue empty); for each, the parent waits until the previous task is done, then a random
   idle gap, writes the row, takes ``time.time()`` and XADDs the entry; the latency is the
   task's ``begin_at`` minus that time (same machine, same clock). Ours: 200 samples, gaps
   of 20-100 ms (it is back in its blocking XREADGROUP within a millisecond of finishing).
   Upstream: 25 samples, gaps of 0.3-5.3 s: right after a task, upstream starts a new task
   manager whose first reads (~0.2 s of BLOCK 5) would catch a task sent 20-100 ms later at
   once, which measures that window and not an idle executor; the longer gaps land
   anywhere in its 5 s sleep cycle, as a task arriving at an idle executor does.

3. Upstream pattern re-creation (written for this benchmark from the description in
   ../shared/notes/upstream-ragflow.md and the seed document; no upstream code): a trio
   process whose main loop takes one of 5 slots and starts a task manager; each manager
   collects one entry -- for each queue, priority 1 then 0: XINFO GROUPS (group check),
   then XREADGROUP COUNT 1 BLOCK 5 called synchronously ON the event loop with redis-py's
   sync client (blocking the loop: that is the pattern) -- re-reads the task from the same
   database (the same TaskStore calls as ours), GETs the cancel key, writes begin_at, the
   "received" and "done" progress (the same rows as ours, also on the loop), XACKs (no XDEL)
   and, when a read returned nothing, sleeps 5 s (``trio.sleep``). Its own unacked entries
   are replayed once at start, as upstream's iterator does. No heartbeat task (30 s).

BLOCK 5 ms: redis-server handles a blocked client's timeout when its event loop next wakes,
which on an otherwise idle server is the next ``serverCron`` tick (hz 10: every 100 ms).
The script measures this first (an XREADGROUP BLOCK 5 on an empty stream, idle server) and
prints it: it is what paces the upstream pattern, whose priority-1 read blocks on an empty
stream before every priority-0 read.

Run from the repository root (about 3.5 minutes; 4.5 with both flags: ``--mariadb`` adds
the full path on MariaDB, ``--breakdown`` times each per-task step of ours on its own):

    .venv/bin/python bench/executor_throughput.py [--tasks 2000] [--upstream-tasks 60]
        [--samples 200] [--upstream-samples 25] [--mariadb] [--breakdown]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

import redis  # noqa: E402
import run_facts  # noqa: E402
import trio  # noqa: E402

from executor.progress import stamp  # noqa: E402
from executor.queue import wire  # noqa: E402
from executor.queue.broker import Broker, Delivery  # noqa: E402
from executor.queue.connection import connect  # noqa: E402
from executor.queue.producer import enqueue, task_message  # noqa: E402
from executor.settings import Settings, load_settings  # noqa: E402
from executor.store.database import TaskStore  # noqa: E402
from executor.store.opening import open_database  # noqa: E402

RAGFLEET = Path(sys.executable).with_name("ragfleet")
SLOTS = 5
IDLE_BLOCK_MS = 1000  # ours: as executor.worker.IDLE_BLOCK_MS
UPSTREAM_BLOCK_MS = 5
UPSTREAM_IDLE_SLEEP = 5.0
POLL = 0.05
OURS_GAP = (0.02, 0.1)  # idle gap before each pickup-latency sample, seconds
UPSTREAM_GAP = (0.3, 5.3)  # longer than its 5 s sleep + reads: see the docstring
CASE_TIMEOUT = 90.0
from executors import PRODUCTION  # noqa: E402 (tests/ is put on sys.path above)

EXECUTOR = {  # production defaults, except a 5 s drain and no metrics port
    **PRODUCTION,
    "max_concurrent_tasks": SLOTS,
    "drain_timeout": 5,
    "metrics_port_base": 0,
}


# --- child processes: the two queue-only harnesses and the upstream re-creation -----------


@dataclass
class Stats:
    """What a harness process counts; written to its stats file every POLL seconds."""

    path: Path
    count: int = 0
    first: float = 0.0
    last: float = 0.0

    def picked(self) -> None:
        self.first = self.first or time.time()

    def done(self) -> None:
        self.count += 1
        self.last = time.time()

    def write(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"count": self.count, "first": self.first, "last": self.last}))
        os.replace(tmp, self.path)


async def write_stats_forever(stats: Stats) -> None:
    while True:
        stats.write()
        await trio.sleep(POLL)


async def run_child(main: Callable[[], Any], stats: Stats) -> None:
    """Run *main* until SIGTERM, writing *stats* periodically and once more at the end."""
    try:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(write_stats_forever, stats)
                nursery.start_soon(main)
                print("ready", flush=True)
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break
    finally:
        stats.write()


async def ours_broker_loop(
    broker: Broker,
    stats: Stats,
    handle: Callable[[Delivery], None] | None = None,
    slots_total: int = SLOTS,
) -> None:
    """Queue-only, ours: the Worker's fetch loop (free slots, read_new, then the batch
    acked together: ``ack_all`` in one thread hop, as the Worker records a batch done).
    *handle* (bench/peers.py's no-op handler: one small file append) runs on the loop for
    each entry before the ack, as a peer's no-op task runs in its worker."""
    slots = trio.Semaphore(slots_total)

    async def ack(batch: list[Delivery]) -> None:
        try:
            if handle is not None:
                for delivery in batch:
                    handle(delivery)
            await trio.to_thread.run_sync(broker.ack_all, batch)
            for _ in batch:
                stats.done()
        finally:
            for _ in batch:
                slots.release()

    await trio.to_thread.run_sync(broker.ensure_groups)
    async with trio.open_nursery() as nursery:
        while True:
            await slots.acquire()
            await trio.lowlevel.checkpoint()  # as the Worker: slots given back together
            wanted = 1 + take_free(slots)
            read = functools.partial(broker.read_new, wanted, IDLE_BLOCK_MS)
            batch = await trio.to_thread.run_sync(read, abandon_on_cancel=True)
            if batch:
                stats.picked()
            for _ in range(len(batch) - wanted):
                await slots.acquire()
            if batch:
                nursery.start_soon(ack, batch)
            for _ in range(wanted - len(batch)):
                slots.release()


def take_free(slots: trio.Semaphore) -> int:
    taken = 0
    while True:
        try:
            slots.acquire_nowait()
        except trio.WouldBlock:
            return taken
        taken += 1


@dataclass
class Upstream:
    """Upstream pattern re-creation: sync redis-py and DB calls made ON the event loop."""

    client: redis.Redis
    consumer: str
    store: TaskStore | None  # None: queue-only (no task re-read, no progress writes)
    stats: Stats
    queues: list[str] = field(default_factory=lambda: [wire.queue_name(p) for p in (1, 0)])
    unacked: Iterator[tuple[str, bytes, dict]] | None = None

    async def main(self) -> None:
        limiter = trio.Semaphore(SLOTS)
        async with trio.open_nursery() as nursery:
            while True:
                await limiter.acquire()
                nursery.start_soon(self.task_manager, limiter)

    async def task_manager(self, limiter: trio.Semaphore) -> None:
        try:
            await self.handle_task()
        finally:
            limiter.release()

    async def handle_task(self) -> None:
        entry, task = await self.collect()
        if entry is None:
            await trio.sleep(UPSTREAM_IDLE_SLEEP)
            return
        if self.store is not None and task is not None:
            await self.do_handle_task(task)
        queue, entry_id, _ = entry
        self.client.xack(queue, wire.GROUP, entry_id)  # no XDEL
        self.stats.done()

    async def do_handle_task(self, task: dict[str, Any]) -> None:
        assert self.store is not None
        started = time.monotonic()
        lines = [stamp("Task has been received.", task)]
        self.store.begin_tasks([(task["id"], task.get("retry_count", 0), "")])
        self.store.set_progress(task["id"], None, "\n".join(lines))
        seconds = time.monotonic() - started
        lines.append(stamp(f"Task done ({seconds:.2f}s)", task))
        self.store.set_progress(task["id"], 1.0, "\n".join(lines), process_duration=seconds)

    async def collect(self) -> tuple[tuple[str, bytes, dict] | None, dict[str, Any] | None]:
        if self.unacked is None:
            self.unacked = self.replay_own()
        entry = next(self.unacked, None)
        if entry is None:
            for queue in self.queues:
                entry = self.queue_consumer(queue, ">")
                if entry:
                    break
        if entry is None:
            return None, None
        self.stats.picked()
        if self.store is None:
            return entry, None
        message = json.loads(entry[2][b"message"])
        task = self.store.get_task(message["id"])
        if task is None or self.client.get(wire.cancel_key(task["id"])):
            return entry, None  # acked without running, as upstream
        return entry, task

    def queue_consumer(self, queue: str, entry_id: str) -> tuple[str, bytes, dict] | None:
        groups = self.client.xinfo_groups(queue)
        if not any(g["name"] in (wire.GROUP, wire.GROUP.encode()) for g in groups):
            self.client.xgroup_create(queue, wire.GROUP, id="0", mkstream=True)
        reply = self.client.xreadgroup(
            wire.GROUP, self.consumer, {queue: entry_id}, count=1, block=UPSTREAM_BLOCK_MS
        )
        if not reply or not reply[0][1]:
            return None
        found_id, fields = reply[0][1][0]
        return queue, found_id, fields

    def replay_own(self) -> Iterator[tuple[str, bytes, dict]]:
        for queue in self.queues:
            last: str | bytes = "0"
            while entry := self.queue_consumer(queue, last):
                last = entry[1]
                yield entry


def child_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="executor_throughput.py child")
    parser.add_argument("kind", choices=["ours-queue", "upstream-queue", "upstream-full"])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--instance", type=int, required=True)
    parser.add_argument("--stats", type=Path, required=True)
    parser.add_argument(
        "--record", type=Path, help="ours-queue: run bench/peers.py's handler, recording here"
    )
    parser.add_argument("--slots", type=int, default=SLOTS, help="ours-queue: task slots")
    args = parser.parse_args(argv)
    settings = load_settings(args.config, environ={})
    consumer = wire.consumer_name(settings.host_id, args.instance)
    client = connect(settings.redis)
    stats = Stats(args.stats)
    if args.kind == "ours-queue":
        handle = record_handler(args.record) if args.record else None
        broker = Broker(client, consumer)
        main = functools.partial(ours_broker_loop, broker, stats, handle, args.slots)
    else:
        full = args.kind == "upstream-full"
        store = TaskStore(open_database(settings.database)) if full else None
        main = Upstream(client, consumer, store, stats).main
    trio.run(run_child, main, stats)


def record_handler(directory: Path) -> Callable[[Delivery], None]:
    """bench/peers.py's no-op handler, given the entry's task id, recording in *directory*."""
    os.environ["PEERS_RECORD_DIR"] = str(directory)
    sys.path.insert(0, str(ROOT / "bench" / "peer_apps"))
    from record import record

    return lambda delivery: record(wire.decode_message(delivery.fields or {})["id"])


# --- the parent: servers, processes, cases ------------------------------------------------


@dataclass
class Proc:
    """A consumer process started by the parent, with its log file and stats file."""

    process: subprocess.Popen[bytes]
    log: Path
    stats: Path | None

    def read_stats(self) -> dict[str, float]:
        if self.stats is None:
            return {}
        with suppress(FileNotFoundError, ValueError):
            return json.loads(self.stats.read_text())
        return {}

    def stop(self, timeout: float = 15) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def pdeathsig() -> list[str]:
    """Children die with the parent, even if it is killed (util-linux setpriv)."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []


@dataclass
class Case:
    impl: str  # "ours" | "upstream"
    path: str  # "queue-only" | "full"
    procs: int
    tasks: int
    db: str = "sqlite"
    hz: int = 10  # redis-server's hz (its default): paces BLOCK timeouts on an idle server

    @property
    def label(self) -> str:
        where = [self.db] if self.path == "full" else []
        where += [f"redis hz {self.hz}"] if self.hz != 10 else []
        return f"{self.path} ({', '.join(where)})" if where else self.path


@dataclass
class Result:
    case: Case
    wall: float  # seconds, spawn -> all done seen
    active: float  # seconds, first pick -> last done

    def rate(self, which: str) -> float:
        return self.case.tasks / getattr(self, which)


class Bench:
    """The servers and temp dir of one run; starts and stops consumer processes."""

    def __init__(self, work: Path, redis_server: Any, mariadb: Any | None) -> None:
        self.work = work
        self.redis_server = redis_server
        self.mariadb = mariadb
        self.client: redis.Redis = redis_server.client()
        self.procs: list[Proc] = []
        self.runs = 0

    # -- set-up ------------------------------------------------------------------------------

    def fresh(self, db: str, hz: int = 10, slots: int = SLOTS) -> tuple[Path, Settings, TaskStore]:
        """A new case dir, runtime config (*slots*: max_concurrent_tasks) and empty
        database; Redis emptied, its hz set."""
        from executors import mysql_database, sqlite_database, write_config

        self.runs += 1
        case_dir = self.work / f"case{self.runs:02d}"
        case_dir.mkdir()
        database = sqlite_database(case_dir) if db == "sqlite" else mysql_database(self.mariadb)
        executor = {**EXECUTOR, "max_concurrent_tasks": slots}
        config = write_config(case_dir, self.redis_server, database, **executor)
        settings = load_settings(config, environ={})
        store = TaskStore(open_database(settings.database))
        if db != "sqlite":
            store.database.drop_tables([store.Task, store.Document], safe=True)
        store.init_schema()
        self.client.flushall()
        self.client.config_set("hz", hz)
        Broker(self.client, "bench").ensure_groups()
        return config, settings, store

    def spawn(self, kind: str, config: Path, instance: int, extra: Sequence[str] = ()) -> Proc:
        log = config.parent / f"{kind}-{instance}.log"
        stats = None if kind == "ours-full" else config.parent / f"{kind}-{instance}.json"
        if kind == "ours-full":
            command = [str(RAGFLEET), "--config", str(config), "run", "--instance", str(instance)]
        else:
            command = [sys.executable, __file__, "child", kind, "--config", str(config)]
            command += ["--instance", str(instance), "--stats", str(stats), *extra]
        with log.open("ab") as out:
            process = subprocess.Popen(
                [*pdeathsig(), *command], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
            )
        proc = Proc(process, log, stats)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            proc.stop()
        self.procs.clear()

    # -- throughput ----------------------------------------------------------------------------

    def throughput(self, case: Case) -> Result:
        config, _, store = self.fresh(case.db, case.hz)
        try:
            if case.path == "queue-only":
                fill_queue(self.client, case.tasks)
            else:
                rows = store.create_tasks([{"task_type": "noop"}] * case.tasks)
                enqueue(self.client, (task_message(t) for t in rows))
            kind = f"{case.impl}-{'queue' if case.path == 'queue-only' else 'full'}"
            started = time.time()
            procs = [self.spawn(kind, config, i + 1) for i in range(case.procs)]
            if case.path == "queue-only":
                wait_until(lambda: sum_counts(procs) >= case.tasks, procs)
            else:
                wait_until(lambda: done_count(store) >= case.tasks, procs)
            wall = time.time() - started
            self.stop_all()
            if case.path == "queue-only":
                stats = [p.read_stats() for p in procs]
                first = min(s["first"] for s in stats if s.get("count"))
                last = max(s["last"] for s in stats if s.get("count"))
            else:
                first, last = task_window(store, case.db)
            return Result(case, wall, last - first)
        finally:
            self.stop_all()
            store.database.close()

    # -- idle pickup latency -------------------------------------------------------------------

    def latency(
        self, impl: str, samples: int, gap: tuple[float, float], rng: random.Random
    ) -> list[float]:
        """Seconds from XADD to begin_at, *samples* tasks sent one at a time to one idle
        consumer process: each once the previous is done and a random gap has passed."""
        _, settings, store = self.fresh("sqlite")
        rows = sqlite3.connect(settings.database["path"], isolation_level=None)
        try:
            kind = "ours-full" if impl == "ours" else "upstream-full"
            proc = self.spawn(kind, config_of(settings), 1)
            ready = "started as task_executor_" if impl == "ours" else "ready"
            wait_until(lambda: ready in proc.log.read_text(errors="replace"), [proc])
            time.sleep(1.0)  # let it settle into its idle read (or sleep)
            latencies = []
            for _ in range(samples):
                time.sleep(rng.uniform(*gap))
                task = store.create_tasks([{"task_type": "noop"}])[0]
                sent = time.time()
                enqueue(self.client, [task_message(task)])
                latencies.append(wait_begun(rows, task["id"], proc) - sent)
            return latencies
        finally:
            rows.close()
            self.stop_all()
            store.database.close()


def config_of(settings: Settings) -> Path:
    return Path(settings.source)


def wait_begun(rows: sqlite3.Connection, task_id: str, proc: Proc) -> float:
    """Poll the row (raw sqlite3, ~10 us a query) until the task is done; its begin_at."""
    query = "SELECT begin_at, progress FROM task WHERE id = ?"
    found: list[Any] = []

    def done() -> bool:
        found[:] = rows.execute(query, (task_id,)).fetchone()
        return found[1] >= 1

    wait_until(done, [proc], every=0.002)
    return to_epoch(found[0])


def fill_queue(client: redis.Redis, count: int) -> None:
    """Queue-only entries: task messages whose ids exist in no database."""
    tasks = ({"id": uuid.uuid4().hex, "task_type": "noop"} for _ in range(count))
    enqueue(client, tasks)


def sum_counts(procs: list[Proc]) -> int:
    return sum(int(p.read_stats().get("count", 0)) for p in procs)


def done_count(store: TaskStore) -> int:
    task = store.Task
    return task.select().where(task.progress >= 1).count()


def task_window(store: TaskStore, db: str) -> tuple[float, float]:
    """(first pick, last done) from the rows: min begin_at (SQLite keeps microseconds;
    MariaDB's DATETIME whole seconds, so there the first update_time), max update_time."""
    task = store.Task
    last_ms = task.select(pw_fn().MAX(task.update_time)).scalar()
    if db == "sqlite":
        first = to_epoch(task.select(pw_fn().MIN(task.begin_at)).scalar())
    else:
        first = task.select(pw_fn().MIN(task.update_time)).scalar() / 1000
    return first, last_ms / 1000


def pw_fn() -> Any:
    import peewee

    return peewee.fn


def begin_times(store: TaskStore) -> dict[str, float]:
    task = store.Task
    return {row.id: to_epoch(row.begin_at) for row in task.select(task.id, task.begin_at)}


def to_epoch(value: datetime | str) -> float:
    """begin_at (a naive local datetime, written by datetime.now()) as a Unix time."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.timestamp()


def wait_until(predicate: Callable[[], bool], procs: list[Proc], every: float = POLL) -> None:
    deadline = time.monotonic() + CASE_TIMEOUT
    while not predicate():
        for proc in procs:
            if proc.process.poll() is not None:
                tail = proc.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{proc.log.name} exited ({proc.process.returncode}):\n{tail}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"case did not finish within {CASE_TIMEOUT:.0f} s")
        time.sleep(every)


def block5_latency(client: redis.Redis, samples: int = 20) -> list[float]:
    """Seconds an XREADGROUP BLOCK 5 takes on an empty stream of an otherwise idle server."""
    client.flushall()
    client.xgroup_create("bench_empty", "g", id="0", mkstream=True)
    times = []
    for _ in range(samples):
        began = time.perf_counter()
        client.xreadgroup("g", "c", {"bench_empty": ">"}, count=1, block=UPSTREAM_BLOCK_MS)
        times.append(time.perf_counter() - began)
    return times


# --- per-call costs (--breakdown) ---------------------------------------------------------


def timed(fn: Callable[[int], Any], count: int) -> tuple[float, float]:
    """(CPU, wall) microseconds per call of fn(i), i in range(count)."""
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(count):
        fn(i)
    return (time.process_time() - cpu) / count * 1e6, (time.perf_counter() - wall) / count * 1e6


def op_costs(bench: Bench, count: int) -> list[tuple[str, float, float]]:
    """What each step of ours' per-task path costs, called serially in one thread (no
    contention), next to the raw SQL it runs: (step, CPU us, wall us) per call."""
    _, settings, store = bench.fresh("sqlite")
    try:
        rows = store.create_tasks([{"task_type": "noop"}] * count)
        ids = [row["id"] for row in rows]
        text = "\n".join([stamp("Task has been received.", rows[0])] * 2)
        broker = Broker(bench.client, "bench_breakdown")
        enqueue(bench.client, (task_message(t) for t in rows))
        held = broker.read_new(count, 0)
        raw = sqlite3.connect(settings.database["path"], isolation_level=None)
        update = "UPDATE task SET progress_msg = ?, update_time = ? WHERE id = ?"
        steps: list[tuple[str, Callable[[int], Any]]] = [
            ("TaskStore.get_task (peewee)", lambda i: store.get_task(ids[i])),
            (
                "  raw sqlite3 SELECT * by id",
                lambda i: raw.execute("SELECT * FROM task WHERE id = ?", (ids[i],)).fetchone(),
            ),
            ("TaskStore.begin_tasks, one", lambda i: store.begin_tasks([(ids[i], 0, text)])),
            ("TaskStore.set_progress (peewee)", lambda i: store.set_progress(ids[i], 1.0, text)),
            ("  raw sqlite3 UPDATE (autocommit)", lambda i: raw.execute(update, (text, i, ids[i]))),
            ("Broker.cancelled([id])", lambda i: broker.cancelled([ids[i]])),
            ("Broker.ack (MULTI XACK XDEL EXEC)", lambda i: broker.ack(held[i])),
            ("  redis PING", lambda i: bench.client.ping()),
            ("trio.to_thread.run_sync hop", lambda i: None),
        ]
        costs = [(name, *timed(fn, count)) for name, fn in steps[:-1]]
        costs.append((steps[-1][0], *thread_hop_cost(count)))
        raw.close()
        return costs
    finally:
        store.database.close()


def thread_hop_cost(count: int) -> tuple[float, float]:
    """(CPU, wall) microseconds of one ``await trio.to_thread.run_sync(f)`` with f trivial."""

    async def hops() -> None:
        for _ in range(count):
            await trio.to_thread.run_sync(int)

    cpu, wall = timed(lambda _: trio.run(hops), 1)
    return cpu / count, wall / count


# --- report ---------------------------------------------------------------------------------


def percentile(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


def machine_facts() -> list[str]:
    redis_version = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True
    ).stdout.strip()
    return run_facts.machine_facts(extra=[f"redis: {redis_version}"])


def throughput_table(results: list[Result]) -> list[str]:
    lines = [
        "| path | procs | N ours / upstream | ours wall | ours active | upstream wall "
        "| upstream active | ratio wall | ratio active |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    keys = dict.fromkeys((r.case.label, r.case.procs) for r in results)
    for label, procs in keys:
        pair = {r.case.impl: r for r in results if (r.case.label, r.case.procs) == (label, procs)}
        ours, up = pair.get("ours"), pair.get("upstream")
        cells = [label, str(procs), f"{n(ours)} / {n(up)}"]
        cells += [rate(ours, "wall"), rate(ours, "active"), rate(up, "wall"), rate(up, "active")]
        cells += [ratio(ours, up, "wall"), ratio(ours, up, "active")]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def n(result: Result | None) -> str:
    return f"{result.case.tasks:,}" if result else "-"


def rate(result: Result | None, which: str) -> str:
    return f"{result.rate(which):,.0f}/s" if result else "-"


def ratio(ours: Result | None, up: Result | None, which: str) -> str:
    return f"{ours.rate(which) / up.rate(which):.1f}x" if ours and up else "-"


def latency_table(latencies: dict[str, list[float]]) -> list[str]:
    lines = ["| consumer | samples | p50 | p90 | p99 | max |", "|---|--:|--:|--:|--:|--:|"]
    for impl, values in latencies.items():
        ms = [v * 1000 for v in values]
        cells = [f"{percentile(ms, p):,.1f} ms" for p in (50, 90, 99)] + [f"{max(ms):,.1f} ms"]
        lines.append(f"| {impl} | {len(ms)} | " + " | ".join(cells) + " |")
    return lines


def costs_table(costs: list[tuple[str, float, float]]) -> list[str]:
    lines = ["| step (one call, serial, one thread) | CPU us | wall us |", "|---|--:|--:|"]
    lines += [f"| {name} | {cpu:,.0f} | {wall:,.0f} |" for name, cpu, wall in costs]
    return lines


def verdicts(results: list[Result], latencies: dict[str, list[float]]) -> list[str]:
    lines = []
    for r in results:
        if r.case.impl != "ours" or r.case.path != "full":
            continue
        up = next(
            (
                u
                for u in results
                if u.case.impl == "upstream"
                and (u.case.label, u.case.procs) == (r.case.label, r.case.procs)
            ),
            None,
        )
        if up:
            x = r.rate("active") / up.rate("active")
            verdict = "MET" if x >= 10 else "NOT MET"
            lines.append(
                f"target full path >= 10x upstream, {r.case.label}, {r.case.procs} proc: "
                f"{x:.1f}x (active) -> {verdict}"
            )
    if "ours" in latencies:
        p50 = percentile(latencies["ours"], 50) * 1000
        verdict = "MET" if p50 <= 5 else "NOT MET"
        lines.append(f"target idle pickup p50 <= 5 ms (ours): {p50:.1f} ms -> {verdict}")
    return lines


# --- main -----------------------------------------------------------------------------------


@contextmanager
def servers(work: Path, with_mariadb: bool) -> Iterator[tuple[Any, Any | None]]:
    from servers import MariaDBServer, RedisServer

    redis_server = RedisServer(work / "redis")
    mariadb = MariaDBServer(work / "mariadb") if with_mariadb else None
    try:
        redis_server.start()
        if mariadb is not None:
            mariadb.start()
        yield redis_server, mariadb
    finally:
        redis_server.close()
        if mariadb is not None:
            mariadb.close()


def cases(args: argparse.Namespace) -> list[Case]:
    """Every (path, database, redis hz) for 1 and 4 processes, ours then upstream."""
    out = []
    paths = [("queue-only", "sqlite", 10), ("full", "sqlite", 10), ("full", "sqlite", 100)]
    if args.mariadb:
        paths.append(("full", "mysql", 10))
    for path, db, hz in paths:
        for procs in (1, 4):
            for impl in ("ours", "upstream"):
                tasks = case_tasks(args, impl, path, procs, db, hz)
                out.append(Case(impl, path, procs, tasks, db, hz))
    return out


def case_tasks(args: argparse.Namespace, impl: str, path: str, procs: int, db: str, hz: int) -> int:
    """N per case: a few seconds each at the rates this machine gives."""
    if impl == "ours":
        if path == "queue-only":
            return 4 * args.tasks
        return args.mariadb_tasks if db == "mysql" else args.tasks
    return args.upstream_tasks * procs * (3 if hz >= 100 else 1)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=2000, help="N for ours (queue-only: 4N)")
    parser.add_argument(
        "--upstream-tasks",
        type=int,
        default=60,
        help="N per process for the upstream pattern (3N at redis hz 100)",
    )
    parser.add_argument("--samples", type=int, default=200, help="idle pickup samples, ours")
    parser.add_argument(
        "--upstream-samples", type=int, default=25, help="idle pickup samples, upstream pattern"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mariadb", action="store_true", help="also the full path on MariaDB")
    parser.add_argument(
        "--breakdown", action="store_true", help="also time each per-task step on its own"
    )
    parser.add_argument("--mariadb-tasks", type=int, default=1000, help="N for ours on MariaDB")
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    command = " ".join([".venv/bin/python", "bench/executor_throughput.py", *argv])
    facts = machine_facts()
    work = Path(tempfile.mkdtemp(prefix="rf-bench-exec-"))
    try:
        with servers(work, args.mariadb) as (redis_server, mariadb):
            bench = Bench(work, redis_server, mariadb)
            try:
                block5 = [t * 1000 for t in block5_latency(bench.client)]
                results = []
                for case in cases(args):
                    result = bench.throughput(case)
                    results.append(result)
                    print(
                        f"  {case.impl:8} {case.label:18} procs={case.procs} N={case.tasks}: "
                        f"wall {result.wall:.2f} s, active {result.active:.2f} s",
                        flush=True,
                    )
                rng = random.Random(args.seed)
                latencies = {
                    "ours": bench.latency("ours", args.samples, OURS_GAP, rng),
                    "upstream": bench.latency("upstream", args.upstream_samples, UPSTREAM_GAP, rng),
                }
                costs = op_costs(bench, 1000) if args.breakdown else []
            finally:
                bench.stop_all()
                bench.client.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = [
        f"command: {command}",
        *facts,
        "idle redis, XREADGROUP BLOCK 5 on an empty stream: "
        f"p50 {statistics.median(block5):.1f} ms, max {max(block5):.1f} ms",
        "",
        f"no-op tasks/s, {SLOTS} slots per process (ratio = ours / upstream pattern re-creation)",
        *throughput_table(results),
        "",
        "idle pickup latency (XADD -> begin_at), 1 process",
        *latency_table(latencies),
        "",
        *verdicts(results, latencies),
    ]
    if costs:
        report += ["", "per-call cost of ours' per-task steps", *costs_table(costs)]
    print("\n".join(report))


if __name__ == "__main__":
    if sys.argv[1:2] == ["child"]:
        child_main(sys.argv[2:])
    else:
        main(sys.argv[1:])
