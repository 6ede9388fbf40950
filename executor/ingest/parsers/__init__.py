"""Parsers: stored bytes -> [Section], one small module per kind of file.

:func:`parser_for` picks a parser by file suffix and returns it with an upstream-like parser id
("naive" for text-like documents, "table" for spreadsheets).
"""

from __future__ import annotations

from pathlib import PurePath
from types import MappingProxyType

from executor.ingest.types import Parser

from .archive import MAX_UNPACKED, MAX_UNPACKED_XML
from .common import ALL_PAGES, ROWS_PER_SECTION, error
from .encoding import decode_text
from .html import parse_html
from .jsondoc import parse_json
from .office import parse_csv, parse_docx, parse_xlsx
from .pdf import parse_pdf, pdf_page_count
from .text import parse_markdown, parse_text

__all__ = [
    "ALL_PAGES",
    "MAX_UNPACKED",
    "MAX_UNPACKED_XML",
    "PARSER_IDS",
    "ROWS_PER_SECTION",
    "SUPPORTED_SUFFIXES",
    "decode_text",
    "parse_csv",
    "parse_docx",
    "parse_html",
    "parse_json",
    "parse_markdown",
    "parse_pdf",
    "parse_text",
    "parse_xlsx",
    "parser_for",
    "pdf_page_count",
]

# ---------------------------------------------------------------- registry

_BY_SUFFIX: MappingProxyType[str, Parser] = MappingProxyType(
    {
        ".txt": parse_text,
        ".md": parse_markdown,
        ".markdown": parse_markdown,
        ".html": parse_html,
        ".htm": parse_html,
        ".pdf": parse_pdf,
        ".docx": parse_docx,
        ".csv": parse_csv,
        ".xlsx": parse_xlsx,
        ".json": parse_json,
        ".jsonl": parse_json,
        ".ldjson": parse_json,
    }
)
_TABULAR = frozenset({".csv", ".xlsx"})

SUPPORTED_SUFFIXES: frozenset[str] = frozenset(_BY_SUFFIX)
"""File suffixes (lowercase, with the dot) that have a parser."""

PARSER_IDS: tuple[str, ...] = ("naive", "table")
"""Upstream parser ids (``document.parser_id``) that ragfleet implements."""


def _suffix(filename: str) -> str:
    return PurePath(filename.replace("\\", "/")).suffix.lower()


def parser_for(filename: str, parser_id: str | None = None) -> tuple[str, Parser]:
    """The parser for *filename* and the effective upstream parser id.

    The file's suffix picks the reader; *parser_id* (a document's ``parser_id``) only picks the
    chunking method: ``None``/empty means the default for the suffix ("table" for csv/xlsx,
    "naive" for everything else); "naive" reads any supported file (spreadsheet rows still come
    out as row lines, as upstream's naive mode does); "table" is for spreadsheets only. Other
    upstream ids ("qa", "paper", "book", ...) are refused rather than silently chunked another
    way than the knowledge base asked for.
    """
    suffix = _suffix(filename)
    parser = _BY_SUFFIX.get(suffix)
    if parser is None:
        kind = f"{suffix!r} files" if suffix else "files without a suffix"
        supported = ", ".join(sorted(SUPPORTED_SUFFIXES))
        raise error(filename, f"unsupported file type: {kind} (supported: {supported})")
    chosen = (parser_id or "").strip().lower() or ("table" if suffix in _TABULAR else "naive")
    if chosen not in PARSER_IDS:
        raise error(
            filename,
            f"parser {parser_id!r} is not supported (ragfleet has: {', '.join(PARSER_IDS)})",
        )
    if chosen == "table" and suffix not in _TABULAR:
        raise error(filename, f"parser 'table' reads .csv and .xlsx files, not {suffix}")
    return chosen, parser
