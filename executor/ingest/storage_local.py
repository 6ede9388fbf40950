"""The ``local`` blob storage backend: files under ``<path>/<bucket>/<name>`` on this host."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path

from .errors import DocumentError, StorageUnavailable
from .storage import check_key


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
