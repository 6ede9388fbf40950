"""The interop suite's fixtures: RAGFlow's side on each database, and real ``ragfleet``
processes run through their command line only (this suite imports nothing of ragfleet)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import peewee as pw
import pytest
from ragflow_api import RAGFlow
from ruamel.yaml import YAML
from site_under_test import HOST_ID, Site


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
    of an INSERT is error 1364 there, not a silent zero. MariaDB 10.11's default mode is
    strict already; the session's server is shared, so its mode is only ever made strict,
    never replaced."""
    root = server.connect(user="root", password=server.root_password)
    with closing(root), root.cursor() as cursor:
        cursor.execute("SELECT @@GLOBAL.sql_mode")
        if "STRICT_TRANS_TABLES" not in cursor.fetchone()[0]:
            cursor.execute(
                "SET GLOBAL sql_mode = CONCAT(@@GLOBAL.sql_mode, ',STRICT_TRANS_TABLES')"
            )


@pytest.fixture(params=["sqlite", "mariadb", "postgres"])
def site(request, tmp_path, redis_client, redis_server) -> Iterator[Site]:
    """RAGFlow on each database, ragfleet with its embedded document store."""
    embedded = {"engine": "embedded", "path": str(tmp_path / "docstore.db")}
    yield from _site(request.param, embedded, request, tmp_path, redis_client, redis_server)


@pytest.fixture
def search_site(request, tmp_path, redis_client, redis_server, emulator) -> Iterator[Site]:
    """RAGFlow on SQLite, ragfleet indexing into the OpenSearch API of the emulator
    (RAGFlow's DOC_ENGINE=opensearch; elasticsearch-py 8 sends a compatibility media type
    the emulator refuses, which tests/test_docstore_elastic.py works around in-process)."""
    search = {"engine": "opensearch", "hosts": [emulator.url]}
    yield from _site("sqlite", search, request, tmp_path, redis_client, redis_server)


def _site(kind, doc_store, request, tmp_path, redis_client, redis_server) -> Iterator[Site]:
    database, section = _ragflow_database(kind, request, tmp_path)
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
        "doc_store": doc_store,
        # RAGFlow keeps a document in MinIO's bucket <kb_id> under its location; the local
        # backend reads <path>/<bucket>/<location>, the same addressing.
        "storage": {"backend": "local", "path": str(files)},
        "models": {},
    }
    path = tmp_path / "ragfleet.yaml"
    with path.open("w") as stream:
        YAML(typ="safe", pure=True).dump(config, stream)
    site = Site(kind, RAGFlow(database, redis_client, files), path)
    yield site
    for process in site.processes:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    database.close()
