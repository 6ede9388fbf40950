"""Where uploaded documents are kept (upstream's MinIO), by (bucket = kb_id, name = location).

Backends, chosen by the compiled config's ``storage`` section (``open_blob_storage`` in
storage_open.py):

* ``local``: files under ``<path>/<bucket>/<name>`` on this host (single-host deployments;
  storage_local.py);
* ``database``: a ``blob`` table in the task database, so a bare-metal fleet needs no object
  store (upstream's "object storage in MySQL" idea; storage_database.py);
* ``s3`` / ``minio``: any S3-compatible service through boto3 (storage_s3.py).

This module holds what every backend shares: the limits, the name rules and the errors.

Every backend takes the same names: a bucket is one path segment and a name is a relative
path of at most 255 characters (upstream's ``document.location`` column), without ``..``,
``.``, empty segments or NUL; anything else is a DocumentError, so no backend can be steered
outside its root. ``get`` of a missing object is a DocumentError; ``delete`` of one is a no-op.

Errors: DocumentError for the object itself; :class:`StorageUnavailable` (a ConnectionError,
like the database's DatabaseUnavailable) when the store cannot be reached: retry later.
"""

from __future__ import annotations

from .errors import DocumentError

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
