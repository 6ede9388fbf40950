"""The systems bench/peers.py compares: how each is reset, fed, started, watched, stopped."""

from __future__ import annotations

import importlib
import os
import signal
import sqlite3
import subprocess
import time
import uuid
from collections import Counter
from contextlib import suppress
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import executor_throughput as et
import record

from executor.queue.producer import enqueue, task_message

APPS = Path(record.__file__).resolve().parent
OURS = ["ragfleet-queue", "ragfleet-full-sqlite", "ragfleet-full-mariadb"]
# name -> (module in bench/peer_apps, distribution for the version, worker_commands kwargs)
PEERS: dict[str, tuple[str, str, dict[str, str]]] = {
    "taskiq": ("taskiq_app", "taskiq-redis", {}),
    "dramatiq": ("dramatiq_app", "dramatiq", {}),
    "celery-prefork": ("celery_app", "celery", {"pool": "prefork"}),
    "celery-solo": ("celery_app", "celery", {"pool": "solo"}),
    "rq": ("rq_app", "rq", {}),
    "arq": ("arq_app", "arq", {}),
}
ALL = [*OURS, *PEERS]


class System:
    """One queue system: its workers are started and stopped once per measurement."""

    name = ""
    settings = ""
    version = ""
    pickup = True  # whether the handler start is precise enough for pickup latency

    def __init__(self, bench: et.Bench, work: Path) -> None:
        self.bench = bench
        self.work = work
        self.procs: list[et.Proc] = []
        self.resets = 0

    def reset(self) -> None:
        """Empty Redis (and the system's records) before a measurement."""
        raise NotImplementedError

    def enqueue(self, count: int) -> list[str]:
        raise NotImplementedError

    def enqueue_one_timed(self) -> tuple[str, float]:
        """Queue one task; its id and when it was queued (Unix time, taken just before the
        system's own queue write: what a producer does first, as creating a row, is not
        the worker's pickup)."""
        sent = time.time()
        return self.enqueue(1)[0], sent

    def start(self, procs: int) -> None:
        raise NotImplementedError

    def handled(self) -> int:
        raise NotImplementedError

    def wait_handled(self, task_id: str) -> float:
        """Wait until *task_id* was handled; when its handler started (Unix time)."""
        raise NotImplementedError

    def check(self, ids: list[str]) -> dict[str, Any]:
        """active_s (first -> last handler start), handled, duplicates, missing."""
        raise NotImplementedError

    def memory(self) -> dict[str, int]:
        return tree_memory([p.process.pid for p in self.procs])

    def stop(self) -> None:
        for proc in self.procs:
            stop_group(proc.process)
        self.procs.clear()

    def close(self) -> None:
        self.stop()


class RecordSystem(System):
    """A system whose handler is record.record (the peers and ragfleet's queue path)."""

    def reset(self) -> None:
        self.resets += 1
        self.records = self.work / f"{self.name}-{self.resets}"
        self.records.mkdir()
        self.expected = 0

    def new_ids(self, count: int) -> list[str]:
        self.expected += count
        return [uuid.uuid4().hex for _ in range(count)]

    def handled(self) -> int:
        return record.handled(self.records)

    def wait_handled(self, task_id: str) -> float:
        et.wait_until(lambda: self.handled() >= self.expected, self.procs, every=0.001)
        return dict(record.records(self.records))[task_id]

    def check(self, ids: list[str]) -> dict[str, Any]:
        seen = Counter(task_id for task_id, _ in record.records(self.records))
        times = [at for _, at in record.records(self.records)]
        return {
            "active_s": max(times) - min(times),
            "handled": sum(seen.values()),
            "duplicates": sum(n - 1 for n in seen.values()),
            "missing": len(set(ids) - set(seen)),
            "unknown": len(set(seen) - set(ids)),
        }


class Peer(RecordSystem):
    """A peer from bench/peer_apps, its workers in their own process groups."""

    def __init__(self, name: str, bench: et.Bench, work: Path) -> None:
        super().__init__(bench, work)
        module, dist, self.kwargs = PEERS[name]
        self.name = name
        self.app: ModuleType = importlib.import_module(module)
        settings = self.app.SETTINGS
        self.settings = settings[name] if isinstance(settings, dict) else settings
        self.version = f"{dist} {metadata.version(dist)}"
        self.producer: Any = None

    def reset(self) -> None:
        super().reset()
        self.bench.client.flushall()
        self.bench.client.config_set("hz", 10)
        if self.producer is None:
            self.producer = self.app.Producer()

    def enqueue(self, count: int) -> list[str]:
        ids = self.new_ids(count)
        self.producer.send(ids)
        return ids

    def start(self, procs: int) -> None:
        env = {**os.environ, "PYTHONPATH": str(APPS), "PEERS_RECORD_DIR": str(self.records)}
        for i, command in enumerate(self.app.worker_commands(procs, **self.kwargs)):
            log = self.records / f"worker-{i}.log"
            with log.open("ab") as out:
                process = subprocess.Popen(
                    [*et.pdeathsig(), *command],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=APPS,
                    env=env,
                    start_new_session=True,  # its own group: stop() ends pool children too
                )
            self.procs.append(et.Proc(process, log, None))

    def close(self) -> None:
        super().close()
        if self.producer is not None:
            self.producer.close()


def with_slots(name: str, slots: int) -> str:
    """A ragfleet system's name: ``ragfleet-queue``, or ``ragfleet-queue@32`` for 32
    task slots a process (max_concurrent_tasks) instead of the bench's 5."""
    return name if slots == et.SLOTS else f"{name}@{slots}"


class RagfleetQueue(RecordSystem):
    version = "this checkout"

    def __init__(self, bench: et.Bench, work: Path, slots: int = et.SLOTS) -> None:
        super().__init__(bench, work)
        self.slots = slots
        self.name = with_slots("ragfleet-queue", slots)
        self.settings = (
            "bench/executor_throughput.py's queue-only harness: the Worker's fetch loop on "
            f"executor.queue.broker.Broker, {slots} task slots a process, XREADGROUP (block "
            f"{et.IDLE_BLOCK_MS} ms when idle), handler on the trio loop, then MULTI XACK XDEL "
            "EXEC in a thread; P processes"
        )

    def reset(self) -> None:
        super().reset()
        self.config, _, store = self.bench.fresh("sqlite", slots=self.slots)  # empties Redis
        store.database.close()

    def enqueue(self, count: int) -> list[str]:
        ids = self.new_ids(count)
        enqueue(self.bench.client, ({"id": i, "task_type": "noop"} for i in ids))
        return ids

    def start(self, procs: int) -> None:
        extra = ["--record", str(self.records), "--slots", str(self.slots)]
        for i in range(procs):
            self.procs.append(self.bench.spawn("ours-queue", self.config, i + 1, extra))


class RagfleetFull(System):
    """`ragfleet run` processes on SQLite or MariaDB; the rows tell what was handled."""

    def __init__(self, db: str, bench: et.Bench, work: Path, slots: int = et.SLOTS) -> None:
        super().__init__(bench, work)
        self.db = db
        self.slots = slots
        self.name = with_slots(f"ragfleet-full-{'sqlite' if db == 'sqlite' else 'mariadb'}", slots)
        where = "SQLite (WAL)" if db == "sqlite" else "MariaDB"
        self.settings = (
            f"P `ragfleet run --instance N` processes on {where}, production settings but "
            f"max_concurrent_tasks {slots} and no metrics port; each task: row read, "
            "cancel check, begin_at, 'received' and 'done' progress, XACK+XDEL"
        )
        self.version = "this checkout"
        self.pickup = db == "sqlite"  # MariaDB's begin_at has whole seconds
        self.store: Any = None
        self.rows: sqlite3.Connection | None = None

    def reset(self) -> None:
        self.close()
        self.config, settings, self.store = self.bench.fresh(self.db, slots=self.slots)
        if self.db == "sqlite":
            self.rows = sqlite3.connect(settings.database["path"], isolation_level=None)

    def enqueue(self, count: int) -> list[str]:
        rows = self.store.create_tasks([{"task_type": "noop"}] * count)
        enqueue(self.bench.client, (task_message(t) for t in rows))
        return [row["id"] for row in rows]

    def enqueue_one_timed(self) -> tuple[str, float]:
        """The task row first (RAGFlow's API inserts it before it queues the message), then
        the clock, then the XADD."""
        (row,) = self.store.create_tasks([{"task_type": "noop"}])
        sent = time.time()
        enqueue(self.bench.client, [task_message(row)])
        return row["id"], sent

    def start(self, procs: int) -> None:
        for i in range(procs):
            self.procs.append(self.bench.spawn("ours-full", self.config, i + 1))

    def handled(self) -> int:
        return et.done_count(self.store)

    def wait_handled(self, task_id: str) -> float:
        assert self.rows is not None
        return et.wait_begun(self.rows, task_id, self.procs[0])

    def check(self, ids: list[str]) -> dict[str, Any]:
        first, last = et.task_window(self.store, self.db)
        done = self.handled()
        # A second run of a task would rewrite its row: not visible here, so not counted.
        return {
            "active_s": last - first,
            "handled": done,
            "duplicates": 0,
            "missing": len(ids) - done,
            "unknown": 0,
        }

    def close(self) -> None:
        super().close()
        if self.rows is not None:
            self.rows.close()
            self.rows = None
        if self.store is not None:
            self.store.database.close()
            self.store = None


@dataclass
class Systems:
    available: list[System] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)

    def close(self) -> None:
        for system in self.available:
            system.close()


def make_systems(names: str, bench: et.Bench, work: Path) -> Systems:
    """The systems named (comma-separated, or "all"); a peer that cannot be imported is
    listed as unavailable with the reason, not measured."""
    os.environ["PEERS_REDIS_URL"] = bench.redis_server.url  # read by the peer apps
    wanted = ALL if names == "all" else names.split(",")
    systems = Systems()
    for name in wanted:
        base, _, slots = name.partition("@")  # ragfleet-queue@32: 32 slots, not 5
        if slots and (base not in OURS or not slots.isdigit() or int(slots) < 1):
            raise SystemExit(f"bad system {name!r}: only ragfleet's take @SLOTS, a number")
        n = int(slots) if slots else et.SLOTS
        if base == "ragfleet-queue":
            systems.available.append(RagfleetQueue(bench, work, n))
        elif base.startswith("ragfleet-full-"):
            db = "sqlite" if base.endswith("sqlite") else "mysql"
            if db == "mysql" and bench.mariadb is None:
                systems.unavailable[name] = "not asked for (--mariadb)"
                continue
            systems.available.append(RagfleetFull(db, bench, work, n))
        elif name in PEERS:
            try:
                systems.available.append(Peer(name, bench, work))
            except ImportError as error:
                systems.unavailable[name] = f"not installed ({error}); pip install -e '.[bench]'"
        else:
            raise SystemExit(f"unknown system {name!r}; known: {', '.join(ALL)}")
    return systems


def stop_group(process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """SIGTERM the process's group (pool children included), SIGKILL what is left."""
    try:
        group = os.getpgid(process.pid)
    except ProcessLookupError:
        return
    own = group == os.getpgid(0)  # spawned by et.Bench: not a group of its own
    send = (lambda sig: process.send_signal(sig)) if own else (lambda sig: os.killpg(group, sig))
    try:
        send(signal.SIGTERM)
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass
    if not own:
        with suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)  # stragglers of the pool


def tree_memory(roots: list[int]) -> dict[str, int]:
    """Processes, RSS and PSS (KiB) of *roots* and all their descendants."""
    pids, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        pids.append(pid)
        for children in Path(f"/proc/{pid}/task").glob("*/children"):
            with suppress(FileNotFoundError):
                todo += [int(c) for c in children.read_text().split()]
    total = {"processes": 0, "rss_kib": 0, "pss_kib": 0}
    for pid in pids:
        try:
            lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
        except (FileNotFoundError, ProcessLookupError):
            continue
        fields = {line.split(":")[0]: line.split()[1] for line in lines[1:]}
        total["processes"] += 1
        total["rss_kib"] += int(fields["Rss"])
        total["pss_kib"] += int(fields["Pss"])
    return total
