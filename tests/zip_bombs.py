"""Office files that unpack to far more than they weigh: their main XML part padded with
empty paragraphs (DOCX) or whitespace between rows (XLSX): valid XML, so each is a real,
parseable document of that size."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from dataclasses import dataclass

# The part to pad, the tag to pad after, and the padding.
PARTS = {
    "DOCX": ("word/document.xml", b"<w:body>", b"<w:p/>"),
    "XLSX": ("xl/worksheets/", b"<sheetData>", b" "),
}


def padded(data: bytes, kind: str, mib: int) -> bytes:
    """*data* (a DOCX or XLSX) with *mib* MiB of padding after the opening tag of its body
    (of the first worksheet's rows): a few hundred KiB more on disk per 256 MiB."""
    part, tag, unit = PARTS[kind]
    block = unit * (2**20 // len(unit))
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        padded_one = False
        for info in source.infolist():
            content = source.read(info.filename)
            if padded_one or not info.filename.startswith(part) or tag not in content:
                archive.writestr(info, content)
                continue
            head, tail = content.split(tag, 1)
            with archive.open(info.filename, "w", force_zip64=True) as stream:
                stream.write(head + tag)
                for _ in range(mib):
                    stream.write(block)
                stream.write(tail)
            padded_one = True
    assert padded_one, f"no {part} with {tag!r} in the {kind}"
    return out.getvalue()


# -- archives written member by member, with the sizes they declare chosen -----------------


@dataclass(frozen=True)
class Member:
    """A deflated member as it is stored: its raw deflate stream, and the CRC and size the
    archive declares for it (which need not be what the stream inflates to)."""

    deflated: bytes
    crc: int
    declared: int


def deflated(content: bytes) -> Member:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    stream = compressor.compress(content) + compressor.flush()
    return Member(stream, zlib.crc32(content), len(content))


def deflated_zeros(mib: int) -> Member:
    """*mib* MiB of zero bytes, deflated without ever holding them: one MiB compressed once
    and full-flushed (no reference reaches back past it) repeats as often as needed. 1.5 GiB
    weigh 1.5 MiB."""
    block = bytes(2**20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    segment = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    final = compressor.flush(zlib.Z_FINISH)
    crc = 0
    for _ in range(mib):
        crc = zlib.crc32(block, crc)
    return Member(segment * mib + final, crc, mib * 2**20)


def rebuilt(data: bytes, replaced: dict[str, Member]) -> bytes:
    """The zip archive *data* with the members *replaced* names replaced (or added)."""
    source = zipfile.ZipFile(io.BytesIO(data))
    members = {info.filename: deflated(source.read(info)) for info in source.infolist()}
    return write_zip({**members, **replaced})


_LOCAL = struct.Struct("<4s5H3L2H")  # a member's local header
_CENTRAL = struct.Struct("<4s6H3L5H2L")  # its entry in the central directory
_END = struct.Struct("<4s4H2LH")  # the end of the central directory
_DEFLATE, _VERSION, _JAN_1_1980 = 8, 20, 33


def write_zip(members: dict[str, Member]) -> bytes:
    """A zip archive of deflated *members* by name, each declaring its size and CRC; no
    ZIP64, so sizes stay under 4 GiB."""
    out = io.BytesIO()
    directory = io.BytesIO()
    for name, member in members.items():
        encoded = name.encode()
        offset = out.tell()
        common = (_DEFLATE, 0, _JAN_1_1980, member.crc, len(member.deflated), member.declared)
        out.write(_LOCAL.pack(b"PK\x03\x04", _VERSION, 0, *common, len(encoded), 0))
        out.write(encoded + member.deflated)
        entry = (b"PK\x01\x02", _VERSION, _VERSION, 0, *common, len(encoded), 0, 0, 0, 0, 0)
        directory.write(_CENTRAL.pack(*entry, offset) + encoded)
    start, count = out.tell(), len(members)
    out.write(directory.getvalue())
    out.write(_END.pack(b"PK\x05\x06", 0, 0, count, count, directory.tell(), start, 0))
    return out.getvalue()


IMAGE = "word/media/image1.png"
"""Where python-docx stores the first picture of a document."""


def docx_with_picture(text: str) -> bytes:
    """A DOCX with a paragraph of *text* and a small PNG picture (IMAGE), which python-docx
    reads whenever it opens the document."""
    import docx
    from PIL import Image

    png = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(png, "PNG")
    png.seek(0)
    document = docx.Document()
    document.add_paragraph(text)
    document.add_picture(png)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()
