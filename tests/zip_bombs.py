"""Office files that unpack to far more than they weigh: their main XML part padded with
empty paragraphs (DOCX) or whitespace between rows (XLSX): valid XML, so each is a real,
parseable document of that size."""

from __future__ import annotations

import io
import zipfile

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
