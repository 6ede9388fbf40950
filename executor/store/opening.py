"""Opening the task database a compiled config's ``database`` section names: the peewee
database of its type (SQLite, MariaDB/MySQL, PostgreSQL), checked for the keys that type
needs, and the task store on it, asked once so that a wrong name is an error now."""

from __future__ import annotations

from typing import Any

import peewee as pw

from ..errors import DatabaseUnavailable, SettingsError
from ..settings import opening
from .connections import ClosingMySQLDatabase, ClosingPostgresqlDatabase, ThreadSqliteDatabase
from .database import TaskStore


def open_database(config: dict[str, Any]) -> pw.Database:
    """A peewee database from the compiled config's ``database`` section."""
    kind = _checked_kind(config)
    if kind == "sqlite":
        # WAL + busy_timeout: several executor processes on one host share the file. Each
        # thread's connection closes with its thread (executor.store.connections).
        return ThreadSqliteDatabase(
            config["path"],
            pragmas={"journal_mode": "wal", "busy_timeout": 10_000, "synchronous": "normal"},
        )
    common = {
        "host": config["host"],
        "port": int(config["port"]),
        "user": config["user"],
        "password": config["password"],
    }
    if kind == "mysql":
        if config.get("ssl_ca"):
            # TLS, verifying the server's certificate against the CA and its name (PyMySQL
            # requires a valid certificate once a CA is given).
            common["ssl"] = {"ca": config["ssl_ca"], "check_hostname": True, "verify_mode": True}
        return ClosingMySQLDatabase(
            config["name"], charset="utf8mb4", connect_timeout=5, read_timeout=30, **common
        )
    # postgres, the one type left. LONGTEXT is MySQL's; PostgreSQL's TEXT is unbounded already.
    return ClosingPostgresqlDatabase(
        config["name"], connect_timeout=5, field_types={"LONGTEXT": "TEXT"}, **common
    )


_SERVER_KEYS = ("host", "port", "user", "password", "name")
_DATABASE_KEYS = {"sqlite": ("path",), "mysql": _SERVER_KEYS, "postgres": _SERVER_KEYS}


def _checked_kind(config: dict[str, Any]) -> str:
    """The section's type, once it has the keys that type needs (else a SettingsError)."""
    kind = config.get("type")
    if kind not in _DATABASE_KEYS:
        known = ", ".join(_DATABASE_KEYS)
        raise SettingsError(f"database.type: expected one of {known}, got {kind!r}")
    if missing := [key for key in _DATABASE_KEYS[kind] if key not in config]:
        raise SettingsError(f"database: type {kind} needs {', '.join(missing)}")
    if kind != "sqlite" and not str(config["port"]).isdigit():
        raise SettingsError(f"database.port: expected a port number, got {config['port']!r}")
    return kind


def database_location(config: dict[str, Any]) -> str:
    """Where the ``database`` section points, for messages: the file, or user@host:port/name
    (never the password)."""
    if config["type"] == "sqlite":
        return str(config["path"])
    return f"{config['type']} {config['user']}@{config['host']}:{config['port']}/{config['name']}"


def open_task_store(config: dict[str, Any]) -> tuple[TaskStore, DatabaseUnavailable | None]:
    """The task store of the ``database`` section, asked once, so that a database the config
    names wrongly (a file that cannot be opened, a refused login) is a SettingsError that
    says which, now, instead of every task failing later. One that is only unavailable (a
    server down) is returned with the store, not raised: the caller decides whether to
    wait for it. The asking thread's connection stays open."""
    store = TaskStore(open_database(config))
    with opening("the task database", database_location(config)):
        try:
            store.ping()
        except DatabaseUnavailable as exc:
            return store, exc
    return store, None
