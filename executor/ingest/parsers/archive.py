"""The zip bomb guard of Office Open XML files (DOCX, XLSX): how much an archive may unpack to.

A small file that unpacks to gigabytes must fail its task, not take its executor's and the
host's memory: python-docx reads every part a document references (images too) into memory
and builds the whole XML tree. Every member counts, in two ways: the sizes the archive's
directory declares are checked before anything is unpacked, and then every member is
inflated here, in a bounded stream that stops one chunk past the size it declared, because a
directory can lie. Only then does the library read the file.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

from .common import error, reading

MIB = 2**20
MAX_UNPACKED_XML = {"DOCX": 64 * MIB, "XLSX": 256 * MIB}
"""The most a DOCX's or XLSX's XML may unpack to. python-docx builds the whole tree: about
four times the XML in memory for prose, up to twenty for dense markup (16 MiB of empty
paragraphs: 677 MiB, 43 s). openpyxl streams rows, so a spreadsheet may be larger."""
MAX_UNPACKED = {kind: limit + 128 * MIB for kind, limit in MAX_UNPACKED_XML.items()}
"""The most all of a DOCX's or XLSX's members may unpack to: its XML's limit, and as much
again as the largest document stored (128 MiB, upstream's MAX_CONTENT_LENGTH) for images and
other media, which are compressed already and unpack to about what they weigh."""

_XML = (".xml", ".rels")
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # signature ... file name length, extra length
_LOCAL_MAGIC = b"PK\x03\x04"
_CHUNK = MIB  # compressed bytes fed at once, and the most output taken from one feed


def check_unpacked_size(data: bytes, filename: str, kind: str) -> None:
    """Refuse (DocumentError) a *kind* archive whose members unpack to more than its limits,
    or to more than they declare."""
    with reading(filename, kind), zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = archive.infolist()
    _check_declared(members, filename, kind)
    view = memoryview(data)
    for member in members:
        if _unpacked_size(view, member, filename, kind) > member.file_size:
            raise error(
                filename,
                f"{member.filename} unpacks to more than the {member.file_size:,} bytes the "
                f"archive declares for it (a zip bomb, or a damaged {kind})",
            )


def _check_declared(members: list[zipfile.ZipInfo], filename: str, kind: str) -> None:
    xml = sum(m.file_size for m in members if m.filename.endswith(_XML))
    if xml > (limit := MAX_UNPACKED_XML[kind]):
        raise error(
            filename,
            f"its XML unpacks to {xml / MIB:,.0f} MiB, more than the "
            f"{limit // MIB} MiB a {kind} may (a zip bomb, or too large: split it)",
        )
    total = sum(m.file_size for m in members)
    if total > (limit := MAX_UNPACKED[kind]):
        largest = max(members, key=lambda m: m.file_size)
        raise error(
            filename,
            f"it unpacks to {total / MIB:,.0f} MiB ({largest.filename}: "
            f"{largest.file_size / MIB:,.0f} MiB), more than the {limit // MIB} MiB a {kind} "
            "may (a zip bomb, or too large: split it)",
        )


def _unpacked_size(data: memoryview, member: zipfile.ZipInfo, filename: str, kind: str) -> int:
    """What *member* really unpacks to, counted no further than one chunk past its declared
    size; its bytes are inflated and dropped, never kept."""
    raw = _raw_bytes(data, member, filename, kind)
    if member.flag_bits & 1:
        raise error(filename, f"not a valid {kind} file: {member.filename} is encrypted")
    if member.compress_type == zipfile.ZIP_STORED:
        return len(raw)
    if member.compress_type != zipfile.ZIP_DEFLATED:  # OOXML allows no other (ECMA-376 part 2)
        raise error(
            filename,
            f"not a valid {kind} file: {member.filename} is compressed with method "
            f"{member.compress_type}, not deflate",
        )
    try:
        return _inflated_size(raw, member.file_size)
    except zlib.error as exc:
        raise error(filename, f"corrupt or unreadable {kind}: {member.filename}: {exc}") from exc


def _inflated_size(raw: memoryview, declared: int) -> int:
    """What the deflate stream *raw* inflates to, counted no further than one chunk past
    *declared*."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    size = 0
    for start in range(0, len(raw), _CHUNK):
        pending: bytes | memoryview = raw[start : start + _CHUNK]
        while pending and not inflater.eof:
            size += len(inflater.decompress(pending, _CHUNK))
            if size > declared:
                return size
            pending = inflater.unconsumed_tail
    # All input is consumed: what is left is the rest of a copy cut short (at most 258 bytes).
    return size + len(inflater.flush())


def _raw_bytes(data: memoryview, member: zipfile.ZipInfo, filename: str, kind: str) -> memoryview:
    """The member's compressed bytes, as its local header places them."""
    start = member.header_offset
    header = bytes(data[start : start + _LOCAL_HEADER.size])
    if len(header) < _LOCAL_HEADER.size or not header.startswith(_LOCAL_MAGIC):
        raise error(filename, f"corrupt or unreadable {kind}: bad header of {member.filename}")
    fields = _LOCAL_HEADER.unpack(header)
    begin = start + _LOCAL_HEADER.size + fields[-2] + fields[-1]
    raw = data[begin : begin + member.compress_size]
    if len(raw) < member.compress_size:
        raise error(filename, f"corrupt or unreadable {kind}: {member.filename} is truncated")
    return raw
