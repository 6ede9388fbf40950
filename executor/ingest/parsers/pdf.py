"""PDF: the text layer, page by page."""

from __future__ import annotations

import io
from typing import Any

from executor.ingest.types import Section

from ..errors import DocumentError
from .common import ALL_PAGES, error, reading

_NO_TEXT_LAYER = "no text layer (scanned PDF?); OCR is not supported"
_NO_AES = "the PDF is AES-encrypted and this host lacks the 'cryptography' package to open it"


def _open_pdf(data: bytes, filename: str) -> Any:
    """A pypdf reader, decrypted if the file only has an owner password (opens without one).

    RC4 and AES (128 and 256 bits) are read; AES needs the ``cryptography`` package, a
    dependency of ragfleet. Should a host lack it, say so rather than "corrupt PDF".
    """
    from pypdf import PdfReader
    from pypdf.errors import DependencyError

    if b"%PDF-" not in data[:1024]:
        raise error(filename, "not a PDF file (no %PDF- header)")
    try:
        with reading(filename, "PDF"):
            reader = PdfReader(io.BytesIO(data))
            if reader.is_encrypted and not reader.decrypt(""):
                raise error(filename, "the PDF is encrypted (password-protected)")
            return reader
    except DocumentError as exc:
        if isinstance(exc.__cause__, DependencyError):
            raise error(filename, _NO_AES) from exc.__cause__
        raise


def _page_text(reader: Any, index: int, filename: str) -> str:
    with reading(filename, f"PDF (page {index + 1})"):
        return (reader.pages[index].extract_text() or "").strip()


def pdf_page_count(data: bytes, *, filename: str = "PDF document") -> int:
    """Number of pages, for splitting a PDF into page-range tasks (upstream: 12 pages each)."""
    reader = _open_pdf(data, filename)
    with reading(filename, "PDF"):
        return len(reader.pages)


def _has_text_elsewhere(reader: Any, skip: range, filename: str) -> bool:
    """Whether any page outside *skip* has text: tells "blank pages" from "scanned document".

    Only called when the requested range has no text at all, so the extra reading is rare.
    """
    return any(
        _page_text(reader, index, filename)
        for index in range(len(reader.pages))
        if index not in skip
    )


def parse_pdf(
    data: bytes, *, filename: str, from_page: int = 0, to_page: int = ALL_PAGES
) -> list[Section]:
    """PDF text layer, one section per page of ``[from_page, to_page)`` (0-based, exclusive).

    Only the requested pages are read. A range without any text is an error when the whole
    document has none (a scan: no OCR here); blank pages of an otherwise textual document (a
    trailing empty page in the last 12-page task) give an empty list, not a failed task.
    """
    reader = _open_pdf(data, filename)
    with reading(filename, "PDF"):
        count = len(reader.pages)
    if count == 0:
        raise error(filename, "the PDF has no pages")
    pages = range(max(0, from_page), min(count, to_page))
    if not pages:
        raise error(filename, f"pages {from_page}-{to_page} are outside its {count} pages")
    sections = [
        Section(text, page=index + 1)
        for index in pages
        if (text := _page_text(reader, index, filename))
    ]
    if sections or _has_text_elsewhere(reader, pages, filename):
        return sections
    raise error(filename, _NO_TEXT_LAYER)
