"""Document storage backends against real stores: the local filesystem, the ``blob`` table on
SQLite and on the suite's real MariaDB, and S3 through boto3 against a real ``moto_server``
process on a loopback port.

moto is an S3 *emulator* (the S3 API re-implemented in Python), not AWS S3 or MinIO: the
test_s3_emulator_* tests show that our boto3 calls, path-style addressing, bucket creation
and error mapping work against a faithful S3 API server, not that every S3 service agrees.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import peewee as pw
import pytest
from executors import fill_disk
from servers import MariaDBServer, free_port

from executor.errors import DatabaseUnavailable
from executor.ingest.errors import DocumentError, StorageUnavailable
from executor.ingest.storage import (
    MAX_CONTENT_LENGTH,
    MIB,
    PART_SIZE,
    check_size,
    format_size,
)
from executor.ingest.storage_database import DatabaseBlobStorage
from executor.ingest.storage_local import LocalBlobStorage
from executor.ingest.storage_open import open_blob_storage
from executor.ingest.storage_s3 import S3BlobStorage
from executor.ingest.types import BlobStorage
from executor.store.opening import open_database

BAD_NAMES = ["", "../escape", "a/../../escape", "/etc/passwd", "a\0b", "a//b", "./a", "a/."]
BAD_NAMES.append("x" * 256)
BAD_BUCKETS = ["", "..", ".", "a/b", "kb\0", "k" * 256]


def check_contract(store: BlobStorage, bucket: str) -> None:
    """What every backend promises (types.BlobStorage and storage.py's docstring)."""
    store.put(bucket, "doc.txt", b"hello")
    assert store.get(bucket, "doc.txt") == b"hello"
    store.put(bucket, "doc.txt", b"replaced")
    assert store.get(bucket, "doc.txt") == b"replaced"

    binary = bytes(range(256)) * 64 + b"\0'\"\\\x1a\r\n"
    store.put(bucket, "dir/sub/bin.dat", binary)
    assert store.get(bucket, "dir/sub/bin.dat") == binary
    store.put(bucket, "empty", b"")
    assert store.get(bucket, "empty") == b""
    store.put(bucket, "Doc.txt", b"other case")
    assert store.get(bucket, "doc.txt") == b"replaced"  # names compare byte-wise
    store.put(bucket, "naïve 文档 (1).pdf", b"unicode")
    assert store.get(bucket, "naïve 文档 (1).pdf") == b"unicode"
    store.put(f"{bucket}-other", "doc.txt", b"another bucket")
    assert store.get(bucket, "doc.txt") == b"replaced"

    with pytest.raises(DocumentError, match=r"missing\.txt"):
        store.get(bucket, "missing.txt")
    store.delete(bucket, "doc.txt")
    with pytest.raises(DocumentError):
        store.get(bucket, "doc.txt")
    store.delete(bucket, "doc.txt")  # deleting what is gone is fine

    for name in BAD_NAMES:
        with pytest.raises(DocumentError):
            store.put(bucket, name, b"x")
        with pytest.raises(DocumentError):
            store.get(bucket, name)
    for bad_bucket in BAD_BUCKETS:
        with pytest.raises(DocumentError):
            store.put(bad_bucket, "doc.txt", b"x")


# -- local filesystem ----------------------------------------------------------------------------


@pytest.fixture
def local_root(tmp_path: Path) -> Path:
    return tmp_path / "files"


@pytest.fixture
def local(local_root: Path) -> LocalBlobStorage:
    store = open_blob_storage({"backend": "local", "path": str(local_root)})
    assert isinstance(store, LocalBlobStorage)
    return store


def test_local_contract(local: LocalBlobStorage) -> None:
    check_contract(local, "kb1")


def test_local_layout_and_modes(local: LocalBlobStorage, local_root: Path) -> None:
    local.put("kb1", "dir/report.pdf", b"%PDF")
    path = local_root / "kb1" / "dir" / "report.pdf"
    assert path.read_bytes() == b"%PDF"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for directory in (local_root, local_root / "kb1", local_root / "kb1" / "dir"):
        assert stat.S_IMODE(directory.stat().st_mode) & 0o077 == 0
    local.put("kb1", "dir/report.pdf", b"%PDF-2")  # a replacement keeps the mode
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["report.pdf"]  # no temp files


def test_local_failed_write_keeps_the_old_file(local: LocalBlobStorage, local_root: Path) -> None:
    local.put("kb1", "a.txt", b"old")
    with pytest.raises(TypeError):
        local.put("kb1", "a.txt", object())  # type: ignore[arg-type]  # fails mid-write
    assert local.get("kb1", "a.txt") == b"old"
    assert sorted(p.name for p in (local_root / "kb1").iterdir()) == ["a.txt"]


def test_local_full_disk_is_an_outage_and_keeps_the_old_file(small_disk: Path) -> None:
    local = LocalBlobStorage(small_disk)
    local.put("kb1", "a.txt", b"old")
    filler = fill_disk(small_disk)
    try:
        with pytest.raises(StorageUnavailable, match="No space left"):
            local.put("kb1", "a.txt", b"new" * 100_000)
    finally:
        filler.unlink()
    assert local.get("kb1", "a.txt") == b"old"
    assert sorted(p.name for p in (small_disk / "kb1").iterdir()) == ["a.txt"]  # no temp file


@pytest.mark.parametrize("name", BAD_NAMES)
def test_local_rejects_unsafe_names(local: LocalBlobStorage, tmp_path: Path, name: str) -> None:
    with pytest.raises(DocumentError):
        local.put("kb1", name, b"x")
    with pytest.raises(DocumentError):
        local.get("kb1", name)
    with pytest.raises(DocumentError):
        local.delete("kb1", name)
    assert not (tmp_path / "escape").exists()


@pytest.mark.parametrize("bucket", BAD_BUCKETS)
def test_local_rejects_unsafe_buckets(local: LocalBlobStorage, bucket: str) -> None:
    with pytest.raises(DocumentError, match="bucket"):
        local.put(bucket, "doc.txt", b"x")


def test_local_missing_and_conflicting_names(local: LocalBlobStorage, local_root: Path) -> None:
    with pytest.raises(DocumentError, match=f"document kb1/nope.txt is not in {local_root}"):
        local.get("kb1", "nope.txt")
    local.put("kb1", "a/b", b"x")
    with pytest.raises(DocumentError):
        local.get("kb1", "a")  # a directory, not a document
    with pytest.raises(DocumentError):
        local.put("kb1", "a", b"y")  # would replace a directory
    with pytest.raises(DocumentError):
        local.put("kb1", "a/b/c", b"z")  # a/b is a file
    assert local.get("kb1", "a/b") == b"x"


# -- database ------------------------------------------------------------------------------------


def _mysql_database(server: MariaDBServer, **overrides: object) -> pw.Database:
    config = {
        "type": "mysql",
        "host": server.host,
        "port": server.port,
        "user": server.user,
        "password": server.password,
        "name": server.database,
        **overrides,
    }
    return open_database(config)


@pytest.fixture(params=["sqlite", "mariadb"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[pw.Database]:
    """The task database on SQLite, or on the suite's real MariaDB (blob table dropped)."""
    if request.param == "sqlite":
        db = open_database({"type": "sqlite", "path": str(tmp_path / "tasks.db")})
    else:
        server = request.getfixturevalue("mariadb_server")
        server.start()
        db = _mysql_database(server)
        db.execute_sql("DROP TABLE IF EXISTS `blob`")
    yield db
    if request.param == "mariadb":
        db.execute_sql("DROP TABLE IF EXISTS `blob`")
    db.close()


def _blob_store(db: pw.Database, **kwargs: int) -> DatabaseBlobStorage:
    store = DatabaseBlobStorage(db, **kwargs)
    assert store.ensure_schema() is True
    assert store.ensure_schema() is False  # idempotent
    return store


def _rows(store: DatabaseBlobStorage, bucket: str, name: str) -> list[tuple[int, int, int]]:
    """(part, size, bytes in the row) of an object, straight from the table."""
    blob = store.Blob
    query = (
        blob.select(blob.part, blob.size, pw.fn.LENGTH(blob.data))
        .where((blob.bucket == bucket) & (blob.name == name))
        .order_by(blob.part)
    )
    return list(query.tuples())


def test_database_contract(database: pw.Database) -> None:
    store = open_blob_storage({"backend": "database"}, database=database)
    assert isinstance(store, DatabaseBlobStorage)
    store.ensure_schema()
    check_contract(store, "kb1")


def test_database_splits_objects_into_parts(database: pw.Database) -> None:
    store = _blob_store(database, part_size=1000)
    data = os.urandom(10_500)
    store.put("kb1", "big.bin", data)
    assert _rows(store, "kb1", "big.bin") == [(i, 10_500, 1000) for i in range(10)] + [
        (10, 10_500, 500)
    ]
    assert store.get("kb1", "big.bin") == data
    store.put("kb1", "big.bin", b"small now")  # a replacement leaves no stale parts behind
    assert _rows(store, "kb1", "big.bin") == [(0, 9, 9)]
    assert store.get("kb1", "big.bin") == b"small now"
    store.delete("kb1", "big.bin")
    assert _rows(store, "kb1", "big.bin") == []


def test_database_backend_needs_the_database() -> None:
    with pytest.raises(ValueError, match="needs the task database"):
        open_blob_storage({"backend": "database"})


def test_mariadb_stores_a_document_larger_than_max_allowed_packet(
    mariadb_server: MariaDBServer,
) -> None:
    """20 MiB, mostly NUL bytes (which the client escapes to two bytes each), through a
    server whose max_allowed_packet is MariaDB's default 16 MiB: the parts keep every
    statement far below it."""
    mariadb_server.start()
    db = _mysql_database(mariadb_server)
    try:
        db.execute_sql("DROP TABLE IF EXISTS `blob`")
        packet = db.execute_sql("SELECT @@max_allowed_packet").fetchone()[0]
        assert packet == 16 * MIB
        store = _blob_store(db)
        data = bytes(19 * MIB) + os.urandom(MIB + 17)
        store.put("kb1", "large.bin", data)
        rows = _rows(store, "kb1", "large.bin")
        assert len(rows) == 21
        assert all(length <= PART_SIZE for _, _, length in rows)
        assert store.get("kb1", "large.bin") == data
    finally:
        db.execute_sql("DROP TABLE IF EXISTS `blob`")
        db.close()


def test_mariadb_blob_table_columns(mariadb_server: MariaDBServer) -> None:
    mariadb_server.start()
    db = _mysql_database(mariadb_server)
    try:
        db.execute_sql("DROP TABLE IF EXISTS `blob`")
        _blob_store(db)
        cursor = db.execute_sql(
            "SELECT column_name, data_type, collation_name FROM information_schema.columns "
            "WHERE table_schema = DATABASE() AND table_name = 'blob'"
        )
        columns = {name.lower(): (kind, collation) for name, kind, collation in cursor}
        assert columns["data"][0] == "longblob"  # peewee's BLOB would hold only 64 KiB
        assert columns["bucket"] == ("varchar", "utf8mb4_bin")
        assert columns["name"] == ("varchar", "utf8mb4_bin")
        assert set(columns) == {"id", "bucket", "name", "part", "size", "data", "created"}
    finally:
        db.execute_sql("DROP TABLE IF EXISTS `blob`")
        db.close()


def test_database_unreachable_is_database_unavailable(mariadb_server: MariaDBServer) -> None:
    db = _mysql_database(mariadb_server, port=free_port())  # nothing listens there
    store = DatabaseBlobStorage(db)
    with pytest.raises(DatabaseUnavailable) as err:
        store.get("kb1", "doc.txt")
    assert isinstance(err.value, ConnectionError)


# -- S3 through the moto emulator ------------------------------------------------------------


@pytest.fixture(scope="module")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``moto_server`` process (S3 emulator) on a free loopback port."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for_port(process, port, log_path)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for_port(process: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    process.kill()
    tail = log_path.read_text(errors="replace")[-2000:]
    pytest.fail(f"moto_server did not start on port {port} (moto[server] installed?):\n{tail}")


def _s3_config(endpoint: str, **extra: str) -> dict[str, str]:
    return {
        "backend": "s3",
        "endpoint_url": endpoint,
        "access_key": "testing",
        "secret_key": "testing",
        "region": "us-east-1",
        **extra,
    }


def _raw_client(endpoint: str, region: str = "us-east-1"):
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _kb() -> str:
    return f"kb{uuid.uuid4().hex[:12]}"


def test_s3_emulator_contract_with_a_bucket_per_kb(moto_endpoint: str) -> None:
    store = open_blob_storage(_s3_config(moto_endpoint))
    assert isinstance(store, S3BlobStorage)
    kb = _kb()
    check_contract(store, kb)
    raw = _raw_client(moto_endpoint)
    store.put(kb, "dir/a.txt", b"A")
    assert raw.get_object(Bucket=kb, Key="dir/a.txt")["Body"].read() == b"A"


def test_s3_emulator_contract_in_one_bucket_with_prefix(moto_endpoint: str) -> None:
    bucket = f"ragflow-{uuid.uuid4().hex[:8]}"
    store = open_blob_storage(_s3_config(moto_endpoint, bucket=bucket, prefix_path="/docs/"))
    kb = _kb()
    check_contract(store, kb)
    store.put(kb, "a.txt", b"A")
    raw = _raw_client(moto_endpoint)
    assert raw.get_object(Bucket=bucket, Key=f"docs/{kb}/a.txt")["Body"].read() == b"A"
    buckets = {b["Name"] for b in raw.list_buckets()["Buckets"]}
    assert bucket in buckets and kb not in buckets


def test_s3_emulator_one_bucket_keeps_knowledge_bases_apart(moto_endpoint: str) -> None:
    bucket = f"ragflow-{uuid.uuid4().hex[:8]}"
    store = open_blob_storage(_s3_config(moto_endpoint, bucket=bucket))
    store.put("kb-a", "report.pdf", b"A")
    store.put("kb-b", "report.pdf", b"B")
    assert (store.get("kb-a", "report.pdf"), store.get("kb-b", "report.pdf")) == (b"A", b"B")
    keys = _raw_client(moto_endpoint).list_objects_v2(Bucket=bucket)["Contents"]
    assert sorted(k["Key"] for k in keys) == ["kb-a/report.pdf", "kb-b/report.pdf"]


def test_s3_emulator_minio_section(moto_endpoint: str) -> None:
    host = moto_endpoint.removeprefix("http://")
    config = {"backend": "minio", "host": host, "user": "minioadmin", "password": "minioadmin"}
    store = open_blob_storage(config)
    kb = _kb()
    store.put(kb, "m.txt", b"minio")
    assert store.get(kb, "m.txt") == b"minio"


def test_s3_emulator_region_outside_us_east_1(moto_endpoint: str) -> None:
    store = open_blob_storage(_s3_config(moto_endpoint, region="eu-west-1"))
    kb = _kb()
    store.put(kb, "r.txt", b"eu")
    assert store.get(kb, "r.txt") == b"eu"
    location = _raw_client(moto_endpoint, "eu-west-1").get_bucket_location(Bucket=kb)
    assert location["LocationConstraint"] == "eu-west-1"


def test_s3_emulator_missing_object_or_bucket(moto_endpoint: str) -> None:
    store = open_blob_storage(_s3_config(moto_endpoint))
    kb = _kb()
    with pytest.raises(DocumentError, match=f"s3://{kb}/none.txt does not exist"):
        store.get(kb, "none.txt")  # no such bucket
    store.put(kb, "there.txt", b"x")
    with pytest.raises(DocumentError, match=f"s3://{kb}/none.txt does not exist"):
        store.get(kb, "none.txt")  # no such key
    store.delete(f"{kb}-never", "none.txt")  # deleting in a missing bucket is fine


def test_s3_emulator_large_object(moto_endpoint: str) -> None:
    store = open_blob_storage(_s3_config(moto_endpoint))
    kb = _kb()
    data = os.urandom(12 * MIB)
    store.put(kb, "large.bin", data)
    assert store.get(kb, "large.bin") == data


def test_s3_unreachable_endpoint_is_storage_unavailable() -> None:
    store = open_blob_storage(_s3_config(f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(StorageUnavailable, match=r"S3 get s3://kb1/doc\.txt") as err:
        store.get("kb1", "doc.txt")
    assert isinstance(err.value, ConnectionError)


def test_unknown_backend() -> None:
    with pytest.raises(ValueError, match="unknown storage backend 'ftp'"):
        open_blob_storage({"backend": "ftp"})


# -- size limit ------------------------------------------------------------------------------


def test_max_content_length_is_upstreams_default() -> None:
    assert MAX_CONTENT_LENGTH == 128 * 1024 * 1024


def test_check_size_message() -> None:
    check_size(MAX_CONTENT_LENGTH)  # at the limit is fine
    with pytest.raises(DocumentError) as err:
        check_size(int(130.2 * MIB), MAX_CONTENT_LENGTH, name="big.pdf")
    assert str(err.value) == "big.pdf is 130.2 MiB; the limit is 128 MiB (MAX_CONTENT_LENGTH)"
    with pytest.raises(DocumentError) as err:
        check_size(MAX_CONTENT_LENGTH + 1)
    assert str(err.value) == (
        "the document is 134217729 bytes; the limit is 128 MiB (134217728 bytes) "
        "(MAX_CONTENT_LENGTH)"
    )


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0 bytes"), (1023, "1023 bytes"), (1536, "1.5 KiB"), (MIB, "1 MiB"), (3 << 30, "3 GiB")],
)
def test_format_size(size: int, text: str) -> None:
    assert format_size(size) == text
