"""Shared fixtures: one real redis-server, MariaDB and PostgreSQL server per test session.

Each starts on first use and stops at the end of the session; the logic is in servers.py.
A test may stop, kill or restart them; ``redis_client`` brings Redis back before each test,
and a test that stops MariaDB or PostgreSQL must start it again (``server.start()`` is a
no-op when it runs).
A missing binary fails the tests that need it, never skips them.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis

# torch (the local embedding model's) before ansible (configc's vault mode, which tests import
# in this process): ansible replaces sys.intern with an object torch's import-time polyfills
# refuse (TypeError from torch._dynamo). configc and the executor never share a process; the
# suite does.
with contextlib.suppress(ImportError):
    import torch._dynamo  # noqa: F401
from servers import (
    EmulatorServer,
    MariaDBServer,
    PlainJsonNode,
    PostgresServer,
    RedisServer,
    ServerUnavailable,
)

S = TypeVar("S", RedisServer, MariaDBServer, PostgresServer)
_STARTED = pytest.StashKey[float]()


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under pytest-xdist (scripts/test.sh runs ``-n 2``), a test file is one unit of work, so
    its module fixtures are built once, and tests/e2e is one unit, as its modules share the
    session's deployment. Collected first, the e2e starts first on one worker while the
    other runs the rest (docs/deploy.md, "How long the tests take"). Not ``--dist
    loadgroup``: its marks do not reach the node ids under pytest 9."""
    from xdist.scheduler import LoadScopeScheduling

    class FileScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "tests/e2e" if path.startswith("tests/e2e/") else path

    return FileScheduling(config, log)


# tests/e2e/testbed.py's TIMINGS_FILE: the e2e writes it (on an xdist worker), the end of
# the run prints it (here: the controller loads this conftest, not tests/e2e's).
E2E_TIMINGS = (
    Path(os.environ.get("RAGFLEET_E2E_CACHE", "/var/cache/ragfleet-e2e")) / "last-run-timings.json"
)


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_STARTED] = time.time()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the timings the e2e recorded in this run, if it ran (its converge, each
    playbook run, the failover delays: docs/deploy.md quotes them)."""
    started = terminalreporter.config.stash.get(_STARTED, None)
    if started is None or not E2E_TIMINGS.exists() or E2E_TIMINGS.stat().st_mtime < started:
        return
    terminalreporter.write_sep("-", "e2e deployment timings (seconds)")
    for name, seconds in json.loads(E2E_TIMINGS.read_text()).items():
        terminalreporter.write_line(f"{name:>44}: {seconds:7.1f}")


def _start(server: S) -> S:
    try:
        return server.start()
    except ServerUnavailable as exc:
        message = str(exc)
    server.close()
    pytest.fail(message, pytrace=False)  # outside except: no chained traceback


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = _start(RedisServer(tmp_path_factory.mktemp("redis")))
    yield server
    server.close()


@pytest.fixture(scope="session")
def mariadb_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDBServer]:
    server = _start(MariaDBServer(tmp_path_factory.mktemp("mariadb")))
    yield server
    server.close()


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client of the session's Redis, running and emptied (FLUSHALL) for this test."""
    redis_server.start()
    client = redis_server.client()
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def make_fleet(tmp_path, redis_client, redis_server):
    """Make a Fleet: executors on SQLite against the session's Redis (emptied for this test),
    with executor settings overridden by keyword (see tests/executors.py FAST)."""
    from executors import Fleet, sqlite_database, write_config

    fleets = []

    def make(**executor):
        workdir = tmp_path / f"fleet{len(fleets)}"
        workdir.mkdir()
        fleets.append(
            Fleet(write_config(workdir, redis_server, sqlite_database(workdir), **executor))
        )
        return fleets[-1]

    yield make
    for fleet in fleets:
        fleet.close()


@pytest.fixture
def fleet(make_fleet):
    """A Fleet with the fast test timings."""
    return make_fleet()


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """The session's PostgreSQL; like MariaDB, a test that stops it must start it again."""
    server = _start(PostgresServer(tmp_path_factory.mktemp("postgres")))
    yield server
    server.close()


@dataclass
class SqlFleet:
    """A Fleet on a real SQL server, and that server (to stop, kill or query it)."""

    fleet: Any
    server: Any
    kind: str

    def execute(self, sql: str) -> None:
        with self.server.connect() as connection, connection.cursor() as cursor:
            cursor.execute(sql)
        if self.kind == "postgres":
            connection.commit()

    def read_only(self, on: bool) -> None:
        """Make the server refuse writes, as a replica or a failover does, or take them
        again: MariaDB's global read_only (set as root, whom it does not bind), PostgreSQL's
        default_transaction_read_only for every session (ALTER SYSTEM, then a reload)."""
        if self.kind == "mariadb":
            root = self.server.connect(user="root", password=self.server.root_password)
            with closing(root), root.cursor() as cursor:
                cursor.execute(f"SET GLOBAL read_only = {int(on)}")
            return
        admin = self.server.admin_connect()
        admin.autocommit = True  # ALTER SYSTEM cannot run in a transaction
        with closing(admin), admin.cursor() as cursor:
            setting = "on" if on else "off"
            cursor.execute(f"ALTER SYSTEM SET default_transaction_read_only = {setting}")
            cursor.execute("SELECT pg_reload_conf()")


@pytest.fixture(params=["mariadb", "postgres"])
def sql_fleet(request, tmp_path, redis_client, redis_server):
    """Executors on MariaDB and on PostgreSQL (each test runs once per server), with a clean
    schema; the server is running again after the test whatever the test did to it."""
    from executors import Fleet, mysql_database, postgres_database, write_config

    server = request.getfixturevalue(f"{request.param}_server")
    server.start()
    database = (mysql_database if request.param == "mariadb" else postgres_database)(server)
    sql = SqlFleet(None, server, request.param)
    sql.execute("DROP TABLE IF EXISTS task, document, knowledgebase")
    sql.fleet = Fleet(write_config(tmp_path, redis_server, database))
    yield sql
    sql.fleet.close()
    server.start()


@pytest.fixture(params=["sqlite", "mariadb", "postgres"])
def task_store(request, tmp_path):
    """A TaskStore with its schema on each of the three databases (one test run each)."""
    from executors import mysql_database, postgres_database, sqlite_database

    from executor.store.database import TaskStore
    from executor.store.opening import open_database

    if request.param == "sqlite":
        config = sqlite_database(tmp_path)
    else:
        server = request.getfixturevalue(f"{request.param}_server")
        server.start()
        config = (mysql_database if request.param == "mariadb" else postgres_database)(server)
    store = TaskStore(open_database(config))
    store.init_schema()
    with store.session():  # the server's database outlives the test: start it empty
        for model in store.models:
            model.delete().execute()
    yield store
    store.database.close()


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    """A directory on a tmpfs of its own, 8 MiB, so a test can fill the disk under a server
    or an executor for real (not with an injected ENOSPC)."""
    disk = tmp_path / "small-disk"
    disk.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)]
    mounted = subprocess.run(mount, capture_output=True, text=True, check=False)
    if mounted.returncode != 0:  # CI runs as root; elsewhere say why
        pytest.fail(f"this test mounts a tmpfs (needs root): {mounted.stderr}", pytrace=False)
    yield disk
    subprocess.run(["umount", "--lazy", str(disk)], check=False)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorServer]:
    """osmem-server, an Elasticsearch/OpenSearch API emulator (no real one runs here), one
    per test module."""
    with EmulatorServer(tmp_path_factory.mktemp("osmem")) as server:
        yield server


@pytest.fixture(params=["elasticsearch", "opensearch"])
def emulator_store(request: pytest.FixtureRequest, emulator: EmulatorServer) -> Iterator[Any]:
    """ElasticDocStore on the emulator through each client; elasticsearch-py's content type
    goes plain (PlainJsonNode), which the emulator needs and a real cluster does not."""
    from elasticsearch import Elasticsearch
    from opensearchpy import OpenSearch

    from executor.ingest.docstore.elastic import ElasticDocStore

    if request.param == "elasticsearch":
        client: Any = Elasticsearch(emulator.url, node_class=PlainJsonNode)
    else:
        client = OpenSearch(hosts=[emulator.url])
    with ElasticDocStore(client, request.param) as store:
        yield store
