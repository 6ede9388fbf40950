"""The ``database`` blob storage backend: a ``blob`` table in the task database, so a
bare-metal fleet needs no object store (upstream's "object storage in MySQL" idea)."""

from __future__ import annotations

import time
from typing import Any

import peewee as pw

from ..store.database import TaskStore
from .errors import DocumentError
from .storage import MAX_NAME_LENGTH, PART_SIZE, check_key


class _LongBlobField(pw.BlobField):
    """LONGBLOB on MySQL/MariaDB, whose BLOB holds only 64 KiB; BLOB on SQLite, BYTEA on
    PostgreSQL (peewee's defaults there)."""

    def ddl_datatype(self, ctx: Any) -> pw.SQL:
        if isinstance(self.model._meta.database, pw.MySQLDatabase):
            return pw.SQL("LONGBLOB")
        return super().ddl_datatype(ctx)


def blob_model(database: pw.Database) -> type[pw.Model]:
    """The ``blob`` table's model, bound to ``database`` (a new class per call: nothing shared).

    One row per part of an object: ``part`` counts from 0, ``size`` is the whole object's
    size (on every row, to check the parts add up), ``created`` is ms since the epoch like
    upstream's ``create_time``. Bucket and name compare byte-wise on MySQL (utf8mb4_bin), as
    object-store keys and file names do, instead of the case-insensitive default collation.
    """
    collation = "utf8mb4_bin" if isinstance(database, pw.MySQLDatabase) else None

    class Blob(pw.Model):
        id = pw.BigAutoField()
        bucket = pw.CharField(max_length=MAX_NAME_LENGTH, collation=collation)
        name = pw.CharField(max_length=MAX_NAME_LENGTH, collation=collation)
        part = pw.IntegerField()
        size = pw.BigIntegerField()
        data = _LongBlobField()
        created = pw.BigIntegerField()

        class Meta:
            table_name = "blob"
            indexes = ((("bucket", "name", "part"), True),)

    Blob._meta.set_database(database)
    return Blob


class DatabaseBlobStorage:
    """Objects in the task database's ``blob`` table, split into rows of ``part_size`` bytes
    (see PART_SIZE for why). A put replaces the object in one transaction, so readers see
    the old object or the new one, never a mix."""

    def __init__(self, database: pw.Database, *, part_size: int = PART_SIZE) -> None:
        if part_size < 1:
            raise ValueError(f"part_size must be positive, not {part_size}")
        self.database = database
        self.part_size = part_size
        self.Blob = blob_model(database)
        # TaskStore.session() maps a lost connection to DatabaseUnavailable, as for tasks.
        self._session = TaskStore(database).session

    def ensure_schema(self) -> bool:
        """Create the ``blob`` table if it is missing; returns whether it was created."""
        with self._session():
            if self.Blob.table_exists():
                return False
            self.database.create_tables([self.Blob])
            return True

    def put(self, bucket: str, name: str, data: bytes) -> None:
        check_key(bucket, name)
        created = int(time.time() * 1000)
        view = memoryview(data)
        with self._session(), self.database.atomic():
            self._where(bucket, name, self.Blob.delete()).execute()
            for part, start in enumerate(range(0, max(len(view), 1), self.part_size)):
                self.Blob.insert(
                    bucket=bucket,
                    name=name,
                    part=part,
                    size=len(view),
                    data=bytes(view[start : start + self.part_size]),
                    created=created,
                ).execute()

    def get(self, bucket: str, name: str) -> bytes:
        check_key(bucket, name)
        query = self.Blob.select(self.Blob.part, self.Blob.size, self.Blob.data)
        query = self._where(bucket, name, query).order_by(self.Blob.part)
        with self._session():
            rows = list(query.tuples())
        if not rows:
            raise DocumentError(f"document {bucket}/{name} is not in the database's blob table")
        data = b"".join(bytes(row[2]) for row in rows)
        if [row[0] for row in rows] != list(range(len(rows))) or len(data) != rows[0][1]:
            raise DocumentError(f"document {bucket}/{name} is incomplete in the blob table")
        return data

    def delete(self, bucket: str, name: str) -> None:
        check_key(bucket, name)
        with self._session():
            self._where(bucket, name, self.Blob.delete()).execute()

    def _where(self, bucket: str, name: str, query: Any) -> Any:
        return query.where((self.Blob.bucket == bucket) & (self.Blob.name == name))
