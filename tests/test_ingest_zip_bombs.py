"""The zip bomb guard of DOCX and XLSX (executor/ingest/parsers/archive.py), on crafted files:
XML padded past its limit, a picture that unpacks to 1.5 GiB, an archive that lies about the
size of a member. Each is refused with a message naming the file and why, with the memory the
parse takes bounded (tracemalloc's peak), and by a real executor, whose peak RSS is bounded."""

from __future__ import annotations

import io
import re
import tracemalloc
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import zip_bombs
from test_ingest_parsers import error_of, make_docx, make_xlsx
from test_ingest_pipeline import CORPUS, search, submit

from executor.ingest import parsers
from executor.ingest.types import Section

MIB = 2**20


@contextmanager
def peak_memory(limit_mib: int) -> Iterator[None]:
    """Fail if the block's Python allocations ever reach *limit_mib* MiB at once."""
    tracemalloc.start()
    try:
        yield
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < limit_mib * MIB, f"peak {peak / MIB:.0f} MiB"


@pytest.mark.parametrize("kind", ["DOCX", "XLSX"])
def test_an_office_file_unpacking_past_the_limit_is_refused_unparsed(kind: str) -> None:
    """A zip bomb: under 2 MiB on disk, 1 MiB of XML past the limit. Refused from the
    archive's sizes, before any of it is unpacked."""
    limit = parsers.MAX_UNPACKED_XML[kind] // MIB
    parse, bomb = _padded_documents(kind, limit + 1)
    assert len(bomb) < 2 * MIB
    with peak_memory(3 * len(bomb) // MIB + 8):
        message = error_of(parse, bomb, f"bomb.{kind.lower()}")
    assert re.fullmatch(  # the padding and the rest of the file's XML
        rf"bomb\.{kind.lower()}: its XML unpacks to ({limit + 1}|{limit + 2}) MiB, "
        rf"more than the {limit} MiB a {kind} may \(a zip bomb, or too large: split it\)",
        message,
    )


@pytest.mark.parametrize("kind", ["DOCX", "XLSX"])
def test_an_office_file_padded_below_the_limit_is_read(kind: str) -> None:
    """The same padding, 1 MiB of it: a valid document, read as usual."""
    parse, document = _padded_documents(kind, 1)
    assert "Quarterly report" in "\n".join(s.text for s in parse(document, filename="f"))


def _padded_documents(kind: str, mib: int) -> tuple[Callable[..., list[Section]], bytes]:
    if kind == "DOCX":
        plain = make_docx(lambda d: d.add_paragraph("Quarterly report"))
        return parsers.parse_docx, zip_bombs.padded(plain, kind, mib)
    plain = make_xlsx({"Sheet": [("title",), ("Quarterly report",)]})
    return parsers.parse_xlsx, zip_bombs.padded(plain, kind, mib)


def test_a_docx_whose_picture_unpacks_to_gigabytes_is_refused_unread() -> None:
    """Issue 19: only .xml/.rels members counted, and python-docx read a 1.5 MiB DOCX's
    1.5 GiB picture into memory (3.1 GB RSS). Every member counts now."""
    bomb = zip_bombs.rebuilt(
        zip_bombs.docx_with_picture("Quarterly report"),
        {zip_bombs.IMAGE: zip_bombs.deflated_zeros(1536)},
    )
    assert len(bomb) < 2 * MIB
    with peak_memory(3 * len(bomb) // MIB + 8):
        message = error_of(parsers.parse_docx, bomb, "bomb.docx")
    limit = parsers.MAX_UNPACKED["DOCX"] // MIB
    assert re.fullmatch(  # the picture and the rest of the document
        r"bomb\.docx: it unpacks to 1,53[67] MiB \(word/media/image1\.png: 1,536 MiB\), more "
        rf"than the {limit} MiB a DOCX may \(a zip bomb, or too large: split it\)",
        message,
    )


def test_every_member_counts_even_one_nothing_reads() -> None:
    """A member no part refers to (openpyxl in read-only mode reads no media at all) still
    counts: what a library reads is its business, and may change with its version."""
    limit = parsers.MAX_UNPACKED["XLSX"] // MIB
    bomb = zip_bombs.rebuilt(
        make_xlsx({"Sheet": [("title",), ("Quarterly report",)]}),
        {"xl/media/unused.bin": zip_bombs.deflated_zeros(limit + 1)},
    )
    message = error_of(parsers.parse_xlsx, bomb, "bomb.xlsx")
    assert message.startswith(f"bomb.xlsx: it unpacks to {limit + 1:,} MiB (xl/media/unused.bin: ")


def test_a_member_that_unpacks_to_more_than_it_declares_is_refused() -> None:
    """The directory can lie: the picture declares its real size (a few hundred bytes) but
    its stream inflates to 1.5 GiB. The guard inflates every member itself, in a stream
    that stops one MiB past the declared size, before any library reads the file."""
    document = zip_bombs.docx_with_picture("Quarterly report")
    picture = zip_bombs.deflated(_member(document, zip_bombs.IMAGE))
    zeros = zip_bombs.deflated_zeros(1536)
    lie = zip_bombs.Member(zeros.deflated, picture.crc, picture.declared)
    bomb = zip_bombs.rebuilt(document, {zip_bombs.IMAGE: lie})
    with peak_memory(3 * len(bomb) // MIB + 8):
        message = error_of(parsers.parse_docx, bomb, "liar.docx")
    assert message == (
        f"liar.docx: word/media/image1.png unpacks to more than the {picture.declared:,} "
        "bytes the archive declares for it (a zip bomb, or a damaged DOCX)"
    )


def test_pictures_within_the_limit_are_no_obstacle() -> None:
    """A document with a real picture, and one with 100 MiB of picture: both are read."""
    document = zip_bombs.docx_with_picture("Quarterly report")
    assert [s.text for s in parsers.parse_docx(document, filename="f")] == ["Quarterly report"]
    large = zip_bombs.rebuilt(document, {zip_bombs.IMAGE: zip_bombs.deflated_zeros(100)})
    assert [s.text for s in parsers.parse_docx(large, filename="f")] == ["Quarterly report"]


def test_a_truncated_or_foreign_member_is_a_readable_error() -> None:
    document = zip_bombs.docx_with_picture("Quarterly report")
    picture = zip_bombs.deflated(_member(document, zip_bombs.IMAGE))
    garbage = zip_bombs.Member(b"\xff" * 64, picture.crc, picture.declared)
    message = error_of(
        parsers.parse_docx, zip_bombs.rebuilt(document, {zip_bombs.IMAGE: garbage}), "bad.docx"
    )
    assert message.startswith("bad.docx: corrupt or unreadable DOCX: word/media/image1.png: ")


def _member(archive: bytes, name: str) -> bytes:
    return zipfile.ZipFile(io.BytesIO(archive)).read(name)


# -- a real executor -----------------------------------------------------------------------


def test_zip_bombs_fail_their_task_and_the_executor_stays_small(fleet, tmp_path):
    """Issue 19: a 1.5 MiB DOCX whose picture unpacks to 1.5 GiB took an executor to 3.1 GB
    RSS; one whose archive lies about the picture's size inflated it all too (zipfile reads
    a member in chunks of up to 2 GiB before cutting it to its declared size). Both fail
    their task readably, the executor's peak RSS stays far below, and the rest goes on."""
    document = zip_bombs.docx_with_picture("Quarterly report")
    picture = zip_bombs.deflated(zipfile.ZipFile(io.BytesIO(document)).read(zip_bombs.IMAGE))
    zeros = zip_bombs.deflated_zeros(1536)
    lie = zip_bombs.Member(zeros.deflated, picture.crc, picture.declared)
    files = {
        "picture.docx": zip_bombs.rebuilt(document, {zip_bombs.IMAGE: zeros}),
        "liar.docx": zip_bombs.rebuilt(document, {zip_bombs.IMAGE: lie}),
        "report.docx": document,
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    ids = submit(fleet, *(tmp_path / name for name in files))
    ids += submit(fleet, CORPUS / "gettysburg-address.pdf")
    worker = fleet.start()
    rows = fleet.wait_done(ids, timeout=60)
    assert [r["progress"] for r in rows] == [-1, -1, 1, 1], [r["progress_msg"] for r in rows]
    assert "[Exception]: picture.docx: it unpacks to 1,53" in rows[0]["progress_msg"]
    assert (
        "(word/media/image1.png: 1,536 MiB), more than the 192 MiB a DOCX may"
        in (rows[0]["progress_msg"])
    )
    assert (
        "[Exception]: liar.docx: word/media/image1.png unpacks to more than the "
        f"{picture.declared:,} bytes the archive declares for it" in rows[1]["progress_msg"]
    )
    assert worker.process.poll() is None
    peak = _status_kib(worker.process.pid, "VmHWM")
    assert peak < 1024 * 1024, f"peak RSS {peak // 1024} MiB"
    assert search(fleet, "Quarterly report")[0]["doc_name"] == "report.docx"


def _status_kib(pid: int, field: str) -> int:
    """A field of /proc/PID/status in KiB (VmHWM: the peak resident set)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")
