"""CSV and Office Open XML (DOCX, XLSX): paragraphs and table rows."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

from executor.ingest.types import Section

from .archive import check_unpacked_size
from .common import ALL_PAGES, error, reading, require_sections, table_sections
from .encoding import decode_text

_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # legacy .doc/.xls and encrypted OOXML files

# ---------------------------------------------------------------- CSV


def _csv_dialect(sample: str) -> type[csv.Dialect] | csv.Dialect:
    """The delimiter in use (comma, semicolon, tab or pipe); plain CSV when unsure."""
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        return csv.excel


def parse_csv(
    data: bytes, *, filename: str, from_page: int = 0, to_page: int = ALL_PAGES
) -> list[Section]:
    """CSV: first row is the header; rows rendered ``header: value; ...`` in table sections."""
    text = decode_text(data, filename)
    sample = text[:8192]
    reader = csv.reader(io.StringIO(text), _csv_dialect(sample[: sample.rfind("\n") + 1] or sample))
    try:
        sections = table_sections(reader)
    except csv.Error as exc:
        raise error(filename, f"malformed CSV at line {reader.line_num}: {exc}") from exc
    return require_sections(sections, filename)


# ---------------------------------------------------------------- Office Open XML (docx, xlsx)


def _require_zip(data: bytes, filename: str, kind: str) -> None:
    """DOCX and XLSX are zip archives; say which common mistake it is when they are not,
    and refuse one that unpacks to more than it may (archive.check_unpacked_size)."""
    if data.startswith(_OLE_MAGIC):
        raise error(
            filename,
            f"not a valid {kind} file: it is password-protected or a legacy binary Office "
            f"file (.doc/.xls); save it as {kind} without a password",
        )
    if not data.startswith(b"PK"):
        raise error(
            filename, f"not a valid {kind} file (not a zip archive: corrupt or another format)"
        )
    check_unpacked_size(data, filename, kind)


def parse_xlsx(
    data: bytes, *, filename: str, from_page: int = 0, to_page: int = ALL_PAGES
) -> list[Section]:
    """XLSX, every worksheet: its name as a title, then its rows as table sections.

    Read-only mode streams rows instead of building the whole workbook in memory; ``data_only``
    gives formulas' cached values, not the formula text.
    """
    from openpyxl import load_workbook

    _require_zip(data, filename, "XLSX")
    sections: list[Section] = []
    with reading(filename, "XLSX"):
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        try:
            for sheet in workbook.worksheets:
                sheet.reset_dimensions()  # some writers declare a wrong used range (A1:A1)
                rows = table_sections(sheet.iter_rows(values_only=True))
                if rows:
                    sections.append(Section(sheet.title, kind="title"))
                    sections.extend(rows)
        finally:
            workbook.close()
    return require_sections(sections, filename)


def _docx_is_heading(paragraph: Any) -> bool:
    """Word's built-in heading styles keep English names in the file whatever the UI language."""
    style = paragraph.style
    name = (style.name or "").lower() if style is not None else ""
    return name.startswith("heading") or name in {"title", "subtitle"}


def _docx_table_rows(table: Any) -> Iterator[list[str]]:
    """Cell texts per row; a merged cell (repeated by python-docx) counts once."""
    for row in table.rows:
        seen: set[int] = set()
        cells: list[str] = []
        for cell in row.cells:
            if id(cell._tc) in seen:
                continue
            seen.add(id(cell._tc))
            cells.append(" ".join(cell.text.split()))
        yield cells


def _docx_sections(document: Any) -> list[Section]:
    from docx.table import Table

    sections: list[Section] = []
    for block in document.iter_inner_content():
        if isinstance(block, Table):
            sections.extend(table_sections(_docx_table_rows(block)))
            continue
        text = block.text.strip()
        if text:
            sections.append(Section(text, kind="title" if _docx_is_heading(block) else "text"))
    return sections


def parse_docx(
    data: bytes, *, filename: str, from_page: int = 0, to_page: int = ALL_PAGES
) -> list[Section]:
    """DOCX body in reading order: heading-styled paragraphs as titles, tables as table rows."""
    import docx

    _require_zip(data, filename, "DOCX")
    with reading(filename, "DOCX"):
        sections = _docx_sections(docx.Document(io.BytesIO(data)))
    return require_sections(sections, filename)
