"""The interop suite's fixtures: RAGFlow's side on each database, and real ``ragfleet``
processes run through their command line only (this suite imports nothing of ragfleet)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import peewee as pw
import pytest
from ragflow_api import RAGFlow
from ruamel.yaml import YAML

RAGFLEET = Path(sys.executable).with_name("ragfleet")
HOST_ID = "interop"
T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


@dataclass
class Site:
    """One RAGFlow installation's database, Redis and files, with ragfleet configured on it."""

    kind: str
    ragflow: RAGFlow
    config: Path
    processes: list[subprocess.Popen] = field(default_factory=list)

    def ragfleet(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(RAGFLEET), "--config", str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def start_executor(self, instance: int = 1) -> None:
        log = (self.config.parent / f"executor{instance}.log").open("ab")
        argv = [str(RAGFLEET), "--config", str(self.config), "run", "--instance", str(instance)]
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        self.processes.append(process)
        name = f"task_executor_{HOST_ID}_{instance}"
        # Ready when RAGFlow's status page would list it: a member of TASKEXE with a beat.
        wait_for(lambda: self.ragflow.heartbeats().get(name), 30, f"{name}'s heartbeat")

    def stop_executors(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                assert process.wait(30) == 0, "an executor did not drain and exit 0"
            finally:
                if process.poll() is None:
                    process.kill()
        self.processes.clear()

    def wait_document(self, doc_id: str, timeout: float = 60) -> dict[str, Any]:
        """The document once RAGFlow's UI would show it finished (progress 1 or -1)."""

        def finished() -> dict[str, Any] | None:
            doc = self.ragflow.document(doc_id)
            tasks = self.ragflow.tasks(doc_id)
            settled = all(t["progress"] >= 1 or t["progress"] < 0 for t in tasks)
            return doc if settled and doc["progress"] in (1, -1) else None

        return wait_for(finished, timeout, f"document {doc_id} to finish")


def _ragflow_database(kind: str, request: pytest.FixtureRequest, tmp_path: Path):
    """RAGFlow's connection and ragfleet's ``database`` section for the same database,
    emptied of the three tables."""
    if kind == "sqlite":
        path = tmp_path / "ragflow.db"
        return pw.SqliteDatabase(str(path)), {"type": "sqlite", "path": str(path)}
    server = request.getfixturevalue(f"{kind}_server")
    server.start()
    section = {
        "type": "mysql" if kind == "mariadb" else "postgres",
        "host": server.host,
        "port": server.port,
        "name": server.database,
        "user": server.user,
        "password": server.password,
    }
    connect = {"host": server.host, "port": server.port, "user": server.user}
    if kind == "mariadb":
        _strict_mode(server)
        database = pw.MySQLDatabase(
            server.database, password=server.password, charset="utf8mb4", **connect
        )
    else:
        database = pw.PostgresqlDatabase(server.database, password=server.password, **connect)
    with database.connection_context():
        database.execute_sql("DROP TABLE IF EXISTS task, document, knowledgebase")
    return database, section


def _strict_mode(server: Any) -> None:
    """RAGFlow's MySQL runs in strict mode (MySQL 8's default): a NOT NULL column left out
    of an INSERT is error 1364 there, not a silent zero."""
    root = server.connect(user="root", password=server.root_password)
    with closing(root), root.cursor() as cursor:
        cursor.execute(
            "SET GLOBAL sql_mode = 'STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,"
            "NO_ENGINE_SUBSTITUTION'"
        )


@pytest.fixture(params=["sqlite", "mariadb", "postgres"])
def site(request, tmp_path, redis_client, redis_server) -> Iterator[Site]:
    database, section = _ragflow_database(request.param, request, tmp_path)
    files = tmp_path / "minio"
    config = {
        "host_id": HOST_ID,
        "executor": {
            "state_dir": str(tmp_path / "state"),
            "heartbeat_interval": 1,
            "worker_heartbeat_timeout": 3,
            "reclaim_idle": 3,
            "drain_timeout": 5,
            "metrics_port_base": 0,
        },
        "redis": {
            "host": redis_server.host,
            "port": redis_server.port,
            "db": 0,
            "password": redis_server.password,
        },
        "database": section,
        "doc_store": {"engine": "embedded", "path": str(tmp_path / "docstore.db")},
        # RAGFlow keeps a document in MinIO's bucket <kb_id> under its location; the local
        # backend reads <path>/<bucket>/<location>, the same addressing.
        "storage": {"backend": "local", "path": str(files)},
        "models": {},
    }
    path = tmp_path / "ragfleet.yaml"
    with path.open("w") as stream:
        YAML(typ="safe", pure=True).dump(config, stream)
    site = Site(request.param, RAGFlow(database, redis_client, files), path)
    yield site
    for process in site.processes:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    database.close()
