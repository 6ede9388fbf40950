"""The blob storage backend a config's ``storage`` section names (the backends:
storage.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import peewee as pw

from ..settings import opening
from .storage_database import DatabaseBlobStorage
from .storage_local import LocalBlobStorage
from .storage_s3 import S3BlobStorage
from .types import BlobStorage


def open_blob_storage(
    storage_config: Mapping[str, Any], *, database: pw.Database | None = None
) -> BlobStorage:
    """The storage backend the compiled config's ``storage`` section names.

    ``database`` is the peewee Database of the task store; the ``database`` backend needs it.
    """
    backend = storage_config.get("backend", "local")
    if backend == "local":
        if not storage_config.get("path"):
            raise ValueError("the 'local' storage backend needs a path")
        return LocalBlobStorage(storage_config["path"])
    if backend == "database":
        if database is None:
            raise ValueError("the 'database' storage backend needs the task database")
        return DatabaseBlobStorage(database)
    if backend in ("s3", "minio"):
        return S3BlobStorage.from_config(storage_config)
    raise ValueError(f"unknown storage backend {backend!r} (local, database, s3, minio)")


def open_configured_storage(
    storage_config: Mapping[str, Any], *, database: pw.Database | None = None
) -> BlobStorage:
    """:func:`open_blob_storage` for the runtime config's section: what is wrong with it (a
    path that cannot be made, an unknown backend) is a SettingsError that says so."""
    where = storage_config.get("path") or storage_config.get("backend")
    with opening("the document storage", where):
        return open_blob_storage(storage_config, database=database)


def init_storage_schema(storage_config: Mapping[str, Any], database: pw.Database) -> list[str]:
    """Create what the configured backend keeps in the task database (the ``database``
    backend's ``blob`` table; nothing for the others); returns the changes made, for
    ``ragfleet db init`` to report. Idempotent."""
    if storage_config.get("backend") != "database":
        return []
    return ["created table blob"] if DatabaseBlobStorage(database).ensure_schema() else []
