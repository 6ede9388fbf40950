"""Where uploaded documents are kept (upstream's MinIO), by (bucket = kb_id, name = location).

Backends, chosen by the compiled config's ``storage`` section:

* ``local``: files under ``<path>/<bucket>/<name>`` on this host (single-host deployments);
* ``database``: a ``blob`` table in the task database, so a bare-metal fleet needs no object
  store (upstream's "object storage in MySQL" idea);
* ``s3`` / ``minio``: any S3-compatible service through boto3.

Every backend takes the same names: a bucket is one path segment and a name is a relative
path of at most 255 characters (upstream's ``document.location`` column), without ``..``,
``.``, empty segments or NUL; anything else is a DocumentError, so no backend can be steered
outside its root. ``get`` of a missing object is a DocumentError; ``delete`` of one is a no-op.

Errors: DocumentError for the object itself; :class:`StorageUnavailable` (a ConnectionError,
like the database's DatabaseUnavailable) when the store cannot be reached: retry later.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import peewee as pw

from ..settings import opening
from ..store.database import TaskStore
from .types import BlobStorage, DocumentError

MIB = 1024 * 1024
MAX_CONTENT_LENGTH = 128 * MIB
"""Largest document accepted, upstream's MAX_CONTENT_LENGTH default."""

MAX_NAME_LENGTH = 255

PART_SIZE = 1 * MIB
"""Bytes per row of the database backend.

Each part goes to the server as one INSERT statement that must fit ``max_allowed_packet``:
4 MiB by default on MySQL 5.7, 16 MiB on MariaDB, 64 MiB on MySQL 8. PyMySQL sends bytes as
a hex literal, twice their size (measured: an 8 MiB part fails on MariaDB's default, and the
server answers by dropping the connection, which looks like an outage, not a bad document).
MySQL 5.6/5.7 also refuse a row whose BLOB data exceeds 10% of the redo log. 1 MiB parts
stay under all of these on stock servers; a 128 MiB document is 128 rows.
"""


class StorageError(RuntimeError):
    """The blob storage refused an operation (permissions, bad configuration)."""


class StorageUnavailable(StorageError, ConnectionError):
    """The blob storage cannot be reached right now; retry later, fail nothing."""


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


# -- sizes and names -----------------------------------------------------------------------------


def check_size(size: int, limit: int = MAX_CONTENT_LENGTH, *, name: str = "the document") -> None:
    """Raise DocumentError when ``size`` bytes exceed ``limit``, in words an operator reads."""
    if size <= limit:
        return
    shown, limit_shown = format_size(size), format_size(limit)
    if shown == limit_shown:  # rounding hides the difference: show the bytes
        shown, limit_shown = f"{size} bytes", f"{limit_shown} ({limit} bytes)"
    raise DocumentError(f"{name} is {shown}; the limit is {limit_shown} (MAX_CONTENT_LENGTH)")


def format_size(size: int) -> str:
    """``136523366`` -> ``"130.2 MiB"``; ``134217728`` -> ``"128 MiB"``."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{size} bytes"


def check_key(bucket: str, name: str) -> list[str]:
    """Validate (bucket, name); returns the name's path segments."""
    if not isinstance(bucket, str) or not isinstance(name, str):
        raise DocumentError(f"storage bucket and name must be strings: {bucket!r}, {name!r}")
    if not bucket or "/" in bucket or bucket in (".", "..") or "\0" in bucket:
        raise DocumentError(f"bad storage bucket {bucket!r}: must be one path segment")
    if len(bucket) > MAX_NAME_LENGTH:
        raise DocumentError(f"storage bucket is longer than {MAX_NAME_LENGTH} characters")
    if not name or "\0" in name or name.startswith("/"):
        raise DocumentError(f"bad storage name {name!r}: must be a relative path without NUL")
    if len(name) > MAX_NAME_LENGTH:
        raise DocumentError(f"storage name is longer than {MAX_NAME_LENGTH} characters: {name!r}")
    segments = name.split("/")
    if any(segment in ("", ".", "..") for segment in segments):
        raise DocumentError(f"bad storage name {name!r}: empty, '.' or '..' path segment")
    return segments


# -- local filesystem ----------------------------------------------------------------------------


class LocalBlobStorage:
    """Files under ``root/<bucket>/<name>``: written atomically (a reader never sees half a
    file, a crash leaves the old one), owner-only (0600 files, 0700 directories)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def path(self, bucket: str, name: str) -> Path:
        return self.root.joinpath(bucket, *check_key(bucket, name))

    def put(self, bucket: str, name: str, data: bytes) -> None:
        target = self.path(bucket, name)
        try:
            _make_directories(target.parent)
            _write_atomically(target, data)
        except (NotADirectoryError, IsADirectoryError, FileExistsError) as exc:
            raise DocumentError(f"cannot store {bucket}/{name}: {exc.strerror}") from None
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            # Nothing of the file is left behind (_write_atomically); room may be made.
            raise StorageUnavailable(
                f"cannot store {bucket}/{name} in {self.root}: {exc.strerror}"
            ) from exc

    def get(self, bucket: str, name: str) -> bytes:
        try:
            return self.path(bucket, name).read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise DocumentError(f"document {bucket}/{name} is not in {self.root}") from None

    def delete(self, bucket: str, name: str) -> None:
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            self.path(bucket, name).unlink()


def _make_directories(path: Path) -> None:
    """mkdir -p where every directory created is 0700 (Path.mkdir gives missing parents
    the default mode); existing ones are left as the operator set them."""
    missing = []
    while not path.is_dir():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another executor was first
            directory.mkdir(mode=0o700)
        if not directory.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(directory))


def _write_atomically(target: Path, data: bytes) -> None:
    """Write a temporary file (mkstemp: mode 0600) beside ``target``, fsync, rename over."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name[:64]}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_directory(target.parent)


def _fsync_directory(path: Path) -> None:
    """Make the rename durable: it lives in the directory's entry, not in the file."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- database ------------------------------------------------------------------------------------


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


# -- S3-compatible -------------------------------------------------------------------------------


class S3BlobStorage:
    """An S3-compatible store (AWS S3, MinIO, ...) through boto3, path-style addressing.

    Where objects go:

    * with a configured ``bucket``: that one bucket, key ``[<prefix_path>/]<kb>/<name>``;
      upstream omits ``<kb>`` when there is no prefix_path, which makes two knowledge
      bases' ``report.pdf`` overwrite each other: ragfleet always keeps it;
    * without: a bucket per knowledge base (created on first put, as upstream's MinIO does),
      key ``<name>``, or ``<prefix_path>/<kb>/<name>`` with a prefix_path (as upstream).
    """

    def __init__(self, client: Any, *, bucket: str = "", prefix_path: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix_path = prefix_path.strip("/")

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> S3BlobStorage:
        return cls(
            s3_client(config),
            bucket=str(config.get("bucket") or ""),
            prefix_path=str(config.get("prefix_path") or ""),
        )

    def location(self, bucket: str, name: str) -> tuple[str, str]:
        """(S3 bucket, key) of the object (bucket, name)."""
        check_key(bucket, name)
        if self.bucket:
            return self.bucket, "/".join(p for p in (self.prefix_path, bucket, name) if p)
        if self.prefix_path:
            return bucket, f"{self.prefix_path}/{bucket}/{name}"
        return bucket, name

    def put(self, bucket: str, name: str, data: bytes) -> None:
        s3_bucket, key = self.location(bucket, name)
        with _s3_errors("put", s3_bucket, key):
            try:
                self.client.put_object(Bucket=s3_bucket, Key=key, Body=data)
                return
            except self.client.exceptions.NoSuchBucket:
                self._create_bucket(s3_bucket)
            self.client.put_object(Bucket=s3_bucket, Key=key, Body=data)

    def get(self, bucket: str, name: str) -> bytes:
        s3_bucket, key = self.location(bucket, name)
        with _s3_errors("get", s3_bucket, key):
            try:
                response = self.client.get_object(Bucket=s3_bucket, Key=key)
            except (self.client.exceptions.NoSuchKey, self.client.exceptions.NoSuchBucket):
                raise DocumentError(f"document s3://{s3_bucket}/{key} does not exist") from None
            return response["Body"].read()

    def delete(self, bucket: str, name: str) -> None:
        s3_bucket, key = self.location(bucket, name)
        missing = self.client.exceptions.NoSuchBucket
        with _s3_errors("delete", s3_bucket, key), contextlib.suppress(missing):
            self.client.delete_object(Bucket=s3_bucket, Key=key)

    def _create_bucket(self, s3_bucket: str) -> None:
        """Create a bucket; losing a race to another executor is fine."""
        region = self.client.meta.region_name
        extra = {}
        if region and region != "us-east-1":  # us-east-1 refuses an explicit constraint
            extra["CreateBucketConfiguration"] = {"LocationConstraint": region}
        with contextlib.suppress(self.client.exceptions.BucketAlreadyOwnedByYou):
            self.client.create_bucket(Bucket=s3_bucket, **extra)


def s3_client(config: Mapping[str, Any]) -> Any:
    """A boto3 S3 client from an ``s3`` or ``minio`` config section.

    Accepts both spellings: ``access_key``/``secret_key``/``endpoint_url`` (upstream's s3
    section) and ``user``/``password``/``host`` (its minio section, ``host:port``, plain
    HTTP unless ``secure`` is true). Without keys, boto3's usual chain (environment,
    instance profile) applies. A session of its own: boto3's default one is shared state.
    """
    import boto3
    from botocore.config import Config

    endpoint = config.get("endpoint_url") or None
    if not endpoint and config.get("host"):
        scheme = "https" if config.get("secure") else "http"
        endpoint = f"{scheme}://{config['host']}"
    settings = Config(
        signature_version=_signature_version(config.get("signature_version")),
        s3={"addressing_style": config.get("addressing_style") or "path"},
        connect_timeout=5,
        read_timeout=60,
        retries={"max_attempts": 3, "mode": "standard"},
    )
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name=config.get("region") or "us-east-1",
        aws_access_key_id=config.get("access_key") or config.get("user") or None,
        aws_secret_access_key=config.get("secret_key") or config.get("password") or None,
        aws_session_token=config.get("session_token") or None,
        config=settings,
    )


def _signature_version(value: str | None) -> str:
    """configc allows v2/v4/s3/s3v4; botocore knows ``s3`` (SigV2) and ``s3v4``."""
    return {"v2": "s3", "v4": "s3v4"}.get(value or "s3v4", value or "s3v4")


@contextlib.contextmanager
def _s3_errors(operation: str, bucket: str, key: str) -> Iterator[None]:
    """botocore's exceptions in ours: unreachable or 5xx -> StorageUnavailable, the rest ->
    StorageError, both naming the object."""
    from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, HTTPClientError

    where = f"S3 {operation} s3://{bucket}/{key}"
    try:
        yield
    except (ConnectionError, HTTPClientError) as exc:
        raise StorageUnavailable(f"{where}: {exc}") from exc
    except ClientError as exc:
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        text = f"{where}: HTTP {status} {error.get('Code', '')}: {error.get('Message', '')}"
        raise (StorageUnavailable if status >= 500 else StorageError)(text) from exc
    except BotoCoreError as exc:
        raise StorageError(f"{where}: {exc}") from exc
