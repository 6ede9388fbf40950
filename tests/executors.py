"""Run real ``ragfleet`` executor processes against the test servers, and watch them work."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

import redis
from faults import Faulty
from ruamel.yaml import YAML
from servers import MariaDBServer, PostgresServer, RedisServer

from executor.app import build_worker
from executor.errors import DatabaseUnavailable
from executor.handlers import HandlerRegistry
from executor.queue import wire
from executor.queue.broker import Broker
from executor.queue.connection import connect
from executor.queue.producer import enqueue, task_message
from executor.settings import ExecutorSettings, Settings, load_settings
from executor.store.database import TaskStore
from executor.store.opening import open_database, open_task_store
from executor.worker import Worker

T = TypeVar("T")
RAGFLEET = Path(sys.executable).with_name("ragfleet")

# The executor settings a deployment gets by default (ExecutorSettings), without its state
# dir, which write_config always places under the test's own directory.
PRODUCTION = {k: v for k, v in asdict(ExecutorSettings()).items() if k != "state_dir"}

# Fast timings for tests: heartbeat 1 s, so a silent worker's tasks are reclaimed after 3 s.
FAST = {
    "max_concurrent_tasks": 4,
    "heartbeat_interval": 1,
    "worker_heartbeat_timeout": 3,
    "reclaim_idle": 3,
    "max_deliveries": 3,
    "drain_timeout": 5,
    "log_level": "DEBUG",
    "metrics_port_base": 0,
}


def sqlite_database(tmp_path: Path) -> dict[str, Any]:
    return {"type": "sqlite", "path": str(tmp_path / "ragfleet.db")}


def mysql_database(server: MariaDBServer, **extra: Any) -> dict[str, Any]:
    """The runtime config's ``database`` section for *server*, plus *extra* keys (ssl_ca)."""
    return {
        "type": "mysql",
        "host": server.host,
        "port": server.port,
        "name": server.database,
        "user": server.user,
        "password": server.password,
        **extra,
    }


def write_config(
    tmp_path: Path,
    redis_server: RedisServer,
    database: dict[str, Any],
    *,
    models: dict[str, Any] | None = None,
    storage: dict[str, Any] | None = None,
    doc_store: dict[str, Any] | None = None,
    redis_login: dict[str, Any] | None = None,
    **executor: Any,
) -> Path:
    """A runtime config as configc compiles it, pointing at the test servers: documents on
    the local filesystem and chunks in the embedded store under tmp_path, unless given.
    *redis_login* replaces keys of the redis section (an ACL user's username and password,
    tls and ca_cert)."""
    config = {
        "host_id": "test",
        "executor": {**FAST, "state_dir": str(tmp_path / "state"), **executor},
        "redis": {
            "host": redis_server.host,
            "port": redis_server.port,
            "db": 0,
            "password": redis_server.password,
            **(redis_login or {}),
        },
        "database": database,
        "doc_store": doc_store or {"engine": "embedded", "path": str(tmp_path / "docstore.db")},
        "storage": storage or {"backend": "local", "path": str(tmp_path / "files")},
        "models": models or {},
    }
    path = tmp_path / "ragfleet.yaml"
    with path.open("w") as stream:
        YAML(typ="safe", pure=True).dump(config, stream)
    return path


class Fleet:
    """The config, the database and Redis of one test; starts executors and submits tasks."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.settings: Settings = load_settings(config, environ={})
        self.store = TaskStore(open_database(self.settings.database))
        self.store.init_schema()
        self.redis: redis.Redis = connect(self.settings.redis)
        self.processes: list[Executor] = []

    def submit(
        self, task_type: str = "noop", count: int = 1, priority: int = 0, **payload: Any
    ) -> list[str]:
        rows = [
            {
                "task_type": task_type,
                "priority": priority,
                "payload": json.dumps(payload) if payload else "",
            }
        ] * count
        tasks = self.store.create_tasks(rows)
        enqueue(self.redis, (task_message(t) for t in tasks))
        return [t["id"] for t in tasks]

    def start(self, instance: int = 1, env: dict[str, str] | None = None) -> Executor:
        executor = Executor(
            self.config, instance, self.config.parent / f"executor{instance}.log", env or {}
        )
        self.processes.append(executor)
        return executor.wait_started()

    def task(self, task_id: str) -> dict[str, Any]:
        task = self.store.get_task(task_id)
        assert task is not None
        return task

    def wait_consumer_gone(self, consumer: str, watched: Executor, timeout: float = 15) -> None:
        """Wait until *consumer* has left the group of the priority-0 queue (a dead consumer
        leaves once its entries are claimed and it is expired); *watched*'s log on failure."""

        def consumers() -> set[str]:
            found = self.redis.xinfo_consumers(wire.queue_name(0), wire.GROUP)
            return {c["name"].decode() for c in found}

        wait_for(lambda: consumer not in consumers(), timeout, f"{consumer} to be deleted", watched)

    def wait_done(self, task_ids: Iterable[str], timeout: float = 30) -> list[dict[str, Any]]:
        """Wait until every task is done or failed; the test's own reads ride out outages."""
        ids = list(task_ids)

        def finished() -> list[dict[str, Any]] | None:
            try:
                rows = [self.task(i) for i in ids]
            except DatabaseUnavailable:
                return None
            return rows if all(r["progress"] >= 1 or r["progress"] < 0 for r in rows) else None

        return wait_for(finished, timeout, f"tasks {ids[:3]}... to finish")

    def cli(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(RAGFLEET), "--config", str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **(env or {})},
        )

    @contextmanager
    def in_process_worker(
        self,
        instance: int = 1,
        *,
        registry: HandlerRegistry | None = None,
        store_faults: dict[str, Callable[..., Any]] | None = None,
        broker_faults: dict[str, Callable[..., Any]] | None = None,
    ) -> Iterator[Worker]:
        """A worker built in this process, for a test that reaches into it or runs it under
        its own trio.run; its Redis and database connections are closed afterwards. The
        faults are injected into its store and broker (see tests/faults.py)."""
        settings = load_settings(self.config)
        broker = Broker(connect(settings.redis), wire.consumer_name(settings.host_id, instance))
        store, unavailable = open_task_store(settings.database)
        store.database.close()  # this thread's connection; the worker's threads open their own
        worker = build_worker(
            settings,
            instance,
            registry,
            broker=Faulty(broker, **(broker_faults or {})),
            opened=(Faulty(store, **(store_faults or {})), unavailable),
        )
        try:
            yield worker
        finally:
            broker.client.close()
            store.database.close()

    def close(self) -> None:
        for process in self.processes:
            process.kill()
        self.redis.close()
        self.store.database.close()


class Executor:
    """One ``ragfleet run`` process; its log goes to a file the test can search."""

    def __init__(self, config: Path, instance: int, log: Path, env: dict[str, str]) -> None:
        self.instance = instance
        self.log_path = log
        self._log = log.open("ab")
        self.offset = log.stat().st_size
        self.process = subprocess.Popen(
            [str(RAGFLEET), "--config", str(config), "run", "--instance", str(instance)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
        )

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[self.offset :]

    def wait_log(self, pattern: str, timeout: float = 20) -> re.Match[str]:
        return wait_for(
            lambda: re.search(pattern, self.log),
            timeout,
            f"executor {self.instance} to log {pattern!r}",
            self,
        )

    def wait_started(self) -> Executor:
        self.wait_log(r"started as task_executor_")
        return self

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._log.close()

    def terminate(self, timeout: float = 30) -> int:
        self.signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        self._log.close()
        return code


def wait_for(
    predicate: Callable[[], T],
    timeout: float,
    what: str,
    executor: Executor | None = None,
    *,
    interval: float = 0.05,
) -> T:
    """Poll *predicate* every *interval* s until it returns something truthy (returned);
    fail after *timeout* s, or at once if *executor* exits, with its log's tail."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            tail = f"\n--- executor log ---\n{executor.log[-3000:]}" if executor else ""
            raise AssertionError(f"timed out after {timeout} s waiting for {what}{tail}")
        if executor and executor.process.poll() is not None:
            raise AssertionError(
                f"executor exited ({executor.process.returncode}) while "
                f"waiting for {what}\n{executor.log[-3000:]}"
            )
        time.sleep(interval)


def fill_disk(directory: Path) -> Path:
    """Write a file in *directory* until its file system is full; the file is returned, to
    be removed when the test frees the disk."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as out:  # unbuffered: close() has nothing to write
        block = b"\0" * 65536
        try:
            while True:
                out.write(block)
        except OSError:  # ENOSPC
            pass
    return filler


def postgres_database(server: PostgresServer) -> dict[str, Any]:
    """The runtime config's ``database`` section for the test PostgreSQL server."""
    return {
        "type": "postgres",
        "host": server.host,
        "port": server.port,
        "name": server.database,
        "user": server.user,
        "password": server.password,
    }
