"""Parsers: stored bytes -> [Section], one small function per file type.

Every parser has the :class:`~executor.ingest.types.Parser` signature and raises
:class:`~executor.ingest.types.DocumentError` (never a library's own exception) for anything
wrong with the document, with a message that names the file and the reason, because the message
ends up in the task's ``progress_msg`` for an operator to read.

:func:`parser_for` picks a parser by file suffix and returns it with an upstream-like parser id
("naive" for text-like documents, "table" for spreadsheets).
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime, time
from html.parser import HTMLParser
from pathlib import PurePath
from types import MappingProxyType
from typing import Any

from executor.ingest.types import DocumentError, Parser, Section

ALL_PAGES = 100_000_000
"""Upstream's "to the end" value of ``to_page``."""

ROWS_PER_SECTION = 20
"""Spreadsheet rows (and JSON lines) per table section: the most rows one chunk holds, so a chunk
stays small enough to be a precise search hit even with a large token budget."""

_NO_TEXT_LAYER = "no text layer (scanned PDF?); OCR is not supported"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # legacy .doc/.xls and encrypted OOXML files

MAX_UNPACKED_XML = {"DOCX": 64 * 2**20, "XLSX": 256 * 2**20}
"""The most a DOCX's or XLSX's XML may unpack to, so that a small file unpacking to
gigabytes (a zip bomb) fails its task instead of taking its executor's and the host's
memory. python-docx builds the whole tree: about four times the XML in memory for prose,
up to twenty for dense markup (16 MiB of empty paragraphs: 677 MiB, 43 s). openpyxl
streams rows, so a spreadsheet may be larger."""

_MAX_REASON = 200
# "file '<_io.BytesIO object at 0x7f..>' is not a Word file": an address helps no operator
_OBJECT_REPR = re.compile(r"\s*'?<[\w.]+ object at 0x[0-9a-fA-F]+>'?")


def _error(filename: str, reason: str) -> DocumentError:
    """The one message shape operators see: ``<file>: <reason>``."""
    return DocumentError(f"{filename}: {reason}")


def _reason(exc: BaseException) -> str:
    """A library exception as one short line (its class name when it has no message)."""
    text = " ".join(_OBJECT_REPR.sub("", str(exc)).split()) or type(exc).__name__
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


@contextmanager
def _reading(filename: str, what: str) -> Iterator[None]:
    """Turn whatever a third-party reader raises on a malformed file into a DocumentError.

    pypdf, python-docx and openpyxl raise many unrelated types on bad input (KeyError,
    struct.error, AttributeError, RecursionError...), so a broad catch around their calls is the
    only way to keep the parser contract. Keep the ``with`` blocks narrow: around library calls
    only, so our own bugs are not reported as broken documents.
    """
    try:
        yield
    except DocumentError:
        raise
    except Exception as exc:
        raise _error(filename, f"corrupt or unreadable {what}: {_reason(exc)}") from exc


def _require_sections(sections: list[Section], filename: str) -> list[Section]:
    """An empty result is an error: indexing nothing would look like success to the operator."""
    if not sections:
        raise _error(filename, "no text to index (the document is empty)")
    return sections


# ---------------------------------------------------------------- text decoding


def decode_text(data: bytes, filename: str) -> str:
    """Bytes of a text-like file as str: UTF-8 (with or without BOM), or UTF-16 with a BOM.

    Anything else is an error rather than a latin-1 fallback: latin-1 decodes every byte string,
    so a binary or mis-encoded file would be indexed as mojibake that no query ever matches,
    silently. A clear error tells the operator to convert the file.
    """
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise _error(filename, f"invalid UTF-16 text ({exc.reason})") from exc
    elif b"\x00" in data:
        raise _error(filename, "binary content (NUL bytes), not text")
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise _error(
                filename,
                f"not UTF-8 text (invalid byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                "convert it to UTF-8",
            ) from exc
    if "\x00" in text:
        raise _error(filename, "binary content (NUL bytes), not text")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _paragraphs(text: str) -> list[str]:
    """Blank-line separated blocks, stripped, empty ones dropped."""
    return [block.strip() for block in re.split(r"\n[ \t]*\n", text) if block.strip()]


# ---------------------------------------------------------------- plain text


def parse_text(
    data: bytes, *, filename: str, from_page: int = 0, to_page: int = ALL_PAGES
) -> list[Section]:
    """Plain text: one section per paragraph (blank-line separated)."""
    text = decode_text(data, filename)
    return _require_sections([Section(p) for p in _paragraphs(text)], filename)


# ---------------------------------------------------------------- Markdown

_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_MD_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_MD_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")


def _md_inline(text: str) -> str:
    """Links and images keep their visible text only: URLs would be noise tokens in search."""
    return _MD_LINK.sub(r"\1", _MD_IMAGE.sub(r"\1", text))


_MD_BLOCK_START = re.compile(r"^ {0,3}(?:[-*+][ \t]|\d{1,9}[.)][ \t]|>|\|)")


def _md_unwrap(lines: Sequence[str]) -> str:
    """A paragraph's lines as Markdown renders them: a soft line break is a space (so chunk
    boundaries at "\\n" fall between sentences, not mid-sentence), but list items, quotes and
    table rows keep their own lines, as do hard breaks (two trailing spaces or a backslash)."""
    parts: list[str] = []
    previous = ""
    for line in lines:
        if parts and (previous.endswith(("  ", "\\")) or _MD_BLOCK_START.match(line)):
            parts[-1] = parts[-1].rstrip("\\")
            parts.append("\n")
        elif parts:
            parts.append(" ")
        parts.append(line.strip())
        previous = line
    return _md_inline("".join(parts).strip())


class _MarkdownReader:
    """Markdown blocks in order: ATX (``#``) and setext (underlined) headings become titles,
    paragraphs text; fenced code is kept verbatim, so a ``#`` comment in code is no heading."""

    def __init__(self) -> None:
        self.sections: list[Section] = []
        self._block: list[str] = []
        self._fence: str | None = None

    def feed(self, line: str) -> None:
        if self._fence is not None:
            self._code_line(line)
        elif opener := _FENCE.match(line):
            self._flush()
            self._fence = opener.group(1)
            self._block.append(line)
        elif heading := _ATX.match(line):
            self._flush()
            self._title(heading.group(2) or "")
        elif self._block and _SETEXT.match(line):
            title = " ".join(part.strip() for part in self._block)
            self._block.clear()
            self._title(title)
        elif line.strip():
            self._block.append(line)
        else:
            self._flush()

    def close(self) -> list[Section]:
        self._flush()
        return self.sections

    def _code_line(self, line: str) -> None:
        self._block.append(line)
        closer = _FENCE.match(line)
        fence = self._fence or ""
        if closer and closer.group(1)[0] == fence[0] and len(closer.group(1)) >= len(fence):
            self._flush()
            self._fence = None

    def _title(self, text: str) -> None:
        if text.strip():
            self.sections.append(Section(_md_inline(text.strip()), kind="title"))

    def _flush(self) -> None:
        code = self._fence is not None
        text = "\n".join(self._block).strip() if code else _md_unwrap(self._block)
        if text:
            self.sections.append(Section(text))
        self._block.clear()


def parse_markdown(
    data: bytes, *, filename: str, from_page: int = 0, to_page: int = ALL_PAGES
) -> list[Section]:
    """Markdown: headings become ``title`` sections, paragraphs ``text`` sections."""
    reader = _MarkdownReader()
    for line in decode_text(data, filename).split("\n"):
        reader.feed(line)
    return _require_sections(reader.close(), filename)


# ---------------------------------------------------------------- HTML

# fmt: off
_HTML_BLOCKS = frozenset({
    "address", "article", "aside", "blockquote", "body", "caption", "dd", "details", "dialog",
    "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3",
    "h4", "h5", "h6", "header", "hr", "html", "legend", "li", "main", "nav", "ol", "p", "pre",
    "section", "summary", "table", "tbody", "tfoot", "thead", "title", "tr", "ul",
})
# fmt: on
_HTML_TITLES = frozenset({"title", "h1", "h2", "h3", "h4", "h5", "h6"})
_HTML_SKIP = frozenset({"script", "style", "noscript", "template", "svg", "math", "iframe"})
_HTML_CELLS = frozenset({"td", "th"})
_HTML_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)


class _HtmlText(HTMLParser):
    """Collects visible text, one section per block element; titles and headings as titles.

    Whitespace is collapsed as a browser would, except inside ``<pre>``; ``<br>`` keeps a line
    break; table cells of a row are joined by `` | ``.
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: list[Section] = []
        self._buffer: list[str] = []
        self._skip = 0
        self._pre = 0
        self._heading = 0
        self._cells = 0  # cells seen in the current row, to put " | " between them

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HTML_SKIP:
            self._skip += 1
        elif tag == "br":
            self._buffer.append("\n")
        elif tag in _HTML_CELLS:
            self._buffer.append(" | " if self._cells else "")
            self._cells += 1
        elif tag in _HTML_BLOCKS:
            self._flush()
            self._pre += tag == "pre"
            self._heading += tag in _HTML_TITLES

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self._buffer.append("\n")
        elif tag in _HTML_BLOCKS:
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if tag in _HTML_SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag in _HTML_BLOCKS:
            self._flush()
            if tag == "pre":
                self._pre = max(0, self._pre - 1)
            if tag in _HTML_TITLES:
                self._heading = max(0, self._heading - 1)

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        self._buffer.append(data if self._pre else re.sub(r"\s+", " ", data))

    def close(self) -> None:
        super().close()
        self._flush()

    def _flush(self) -> None:
        raw = "".join(self._buffer)
        self._buffer.clear()
        self._cells = 0
        if self._pre:
            text = raw.strip("\n").rstrip()
        else:
            lines = (" ".join(line.split()) for line in raw.split("\n"))
            text = "\n".join(line for line in lines if line)
        if text.strip():
            self.sections.append(Section(text, kind="title" if self._heading else "text"))


def _decode_html(data: bytes, filename: str) -> str:
    """UTF-8 first; otherwise the charset the page declares in a ``<meta>`` tag, if any."""
    try:
        return decode_text(data, filename)
    except DocumentError:
        declared = _HTML_CHARSET.search(data[:4096])
        if not declared:
            raise
        charset = declared.group(1).decode("ascii")
    try:
        return data.decode(charset).replace("\r\n", "\n")
    except (LookupError, UnicodeDecodeError) as exc:
        raise _error(filename, f"cannot decode as its declared charset {charset!r}") from exc


def parse_html(
    data: bytes, *, filename: str, from_page: int = 0, to_page: int = ALL_PAGES
) -> list[Section]:
    """HTML: visible text by block element; ``<title>``/``<h1..6>`` as titles; no script/style."""
    text = _decode_html(data, filename)
    reader = _HtmlText()
    with _reading(filename, "HTML"):
        reader.feed(text)
        reader.close()
    return _require_sections(reader.sections, filename)


# ---------------------------------------------------------------- PDF


def _open_pdf(data: bytes, filename: str) -> Any:
    """A pypdf reader, decrypted if the file only has an owner password (opens without one)."""
    from pypdf import PdfReader

    if b"%PDF-" not in data[:1024]:
        raise _error(filename, "not a PDF file (no %PDF- header)")
    with _reading(filename, "PDF"):
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise _error(filename, "the PDF is encrypted (password-protected)")
        return reader


def _page_text(reader: Any, index: int, filename: str) -> str:
    with _reading(filename, f"PDF (page {index + 1})"):
        return (reader.pages[index].extract_text() or "").strip()


def pdf_page_count(data: bytes, *, filename: str = "PDF document") -> int:
    """Number of pages, for splitting a PDF into page-range tasks (upstream: 12 pages each)."""
    reader = _open_pdf(data, filename)
    with _reading(filename, "PDF"):
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
    with _reading(filename, "PDF"):
        count = len(reader.pages)
    if count == 0:
        raise _error(filename, "the PDF has no pages")
    pages = range(max(0, from_page), min(count, to_page))
    if not pages:
        raise _error(filename, f"pages {from_page}-{to_page} are outside its {count} pages")
    sections = [
        Section(text, page=index + 1)
        for index in pages
        if (text := _page_text(reader, index, filename))
    ]
    if sections or _has_text_elsewhere(reader, pages, filename):
        return sections
    raise _error(filename, _NO_TEXT_LAYER)


# ---------------------------------------------------------------- tables (shared by csv/xlsx/docx)


def _cell_text(value: object) -> str:
    """A cell as the text a reader would see: integral floats without ``.0``, dates in ISO."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time() else value.isoformat(sep=" ")
    if isinstance(value, date | time):
        return value.isoformat()
    return " ".join(str(value).split())


def _headers(row: Sequence[str]) -> list[str]:
    return [name or f"column {index + 1}" for index, name in enumerate(row)]


def _row_line(headers: Sequence[str], row: Sequence[str]) -> str:
    """``header: value; header: value`` with empty cells left out: a self-describing row."""
    names = list(headers) + [f"column {i + 1}" for i in range(len(headers), len(row))]
    return "; ".join(f"{name}: {value}" for name, value in zip(names, row, strict=False) if value)


def _table_sections(rows: Iterable[Sequence[object]]) -> list[Section]:
    """Rows (first non-empty row = header) as ``table`` sections of ROWS_PER_SECTION lines."""
    headers: list[str] | None = None
    lines: list[str] = []
    for raw in rows:
        row = [_cell_text(value) for value in raw]
        if not any(row):
            continue
        if headers is None:
            headers = _headers(row)
            continue
        lines.append(_row_line(headers, row))
    if headers is not None and not lines:
        lines.append("; ".join(name for name in headers))  # a header-only sheet still says so
    return _batched(lines)


def _batched(lines: Sequence[str]) -> list[Section]:
    return [
        Section("\n".join(lines[start : start + ROWS_PER_SECTION]), kind="table")
        for start in range(0, len(lines), ROWS_PER_SECTION)
    ]


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
        sections = _table_sections(reader)
    except csv.Error as exc:
        raise _error(filename, f"malformed CSV at line {reader.line_num}: {exc}") from exc
    return _require_sections(sections, filename)


# ---------------------------------------------------------------- Office Open XML (docx, xlsx)


def _require_zip(data: bytes, filename: str, kind: str) -> None:
    """DOCX and XLSX are zip archives; say which common mistake it is when they are not,
    and refuse one whose XML unpacks to more than MAX_UNPACKED_XML."""
    if data.startswith(_OLE_MAGIC):
        raise _error(
            filename,
            f"not a valid {kind} file: it is password-protected or a legacy binary Office "
            f"file (.doc/.xls); save it as {kind} without a password",
        )
    if not data.startswith(b"PK"):
        raise _error(
            filename, f"not a valid {kind} file (not a zip archive: corrupt or another format)"
        )
    with _reading(filename, kind), zipfile.ZipFile(io.BytesIO(data)) as archive:
        # The sizes the archive declares; zipfile never unpacks more than that.
        parts = [i for i in archive.infolist() if i.filename.endswith((".xml", ".rels"))]
        unpacked = sum(part.file_size for part in parts)
    if unpacked > (limit := MAX_UNPACKED_XML[kind]):
        raise _error(
            filename,
            f"its XML unpacks to {unpacked / 2**20:,.0f} MiB, more than the "
            f"{limit // 2**20} MiB a {kind} may (a zip bomb, or too large: split it)",
        )


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
    with _reading(filename, "XLSX"):
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        try:
            for sheet in workbook.worksheets:
                sheet.reset_dimensions()  # some writers declare a wrong used range (A1:A1)
                rows = _table_sections(sheet.iter_rows(values_only=True))
                if rows:
                    sections.append(Section(sheet.title, kind="title"))
                    sections.extend(rows)
        finally:
            workbook.close()
    return _require_sections(sections, filename)


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
            sections.extend(_table_sections(_docx_table_rows(block)))
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
    with _reading(filename, "DOCX"):
        sections = _docx_sections(docx.Document(io.BytesIO(data)))
    return _require_sections(sections, filename)


# ---------------------------------------------------------------- JSON


def _json_scalar(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return " ".join(str(value).split())


def _json_lines(value: object) -> Iterator[str]:
    """``path: value`` per leaf (``a.b[0].c: 1``), in document order, iteratively so that deep
    nesting cannot overflow the stack."""
    stack: list[tuple[str, object]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, dict):
            keys = [(f"{path}.{key}" if path else str(key), child) for key, child in item.items()]
            stack.extend(reversed(keys))
        elif isinstance(item, list):
            stack.extend(reversed([(f"{path}[{i}]", child) for i, child in enumerate(item)]))
        else:
            yield f"{path}: {_json_scalar(item)}" if path else _json_scalar(item)


def parse_json(
    data: bytes, *, filename: str, from_page: int = 0, to_page: int = ALL_PAGES
) -> list[Section]:
    """JSON flattened to ``path: value`` lines, batched into table sections (one leaf a line, so
    a chunk boundary never cuts a value from its path)."""
    text = decode_text(data, filename)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _error(
            filename, f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    except RecursionError as exc:
        raise _error(filename, "invalid JSON: nested too deeply") from exc
    lines = [line for line in _json_lines(value) if line.strip()]
    return _require_sections(_batched(lines), filename)


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
        raise _error(filename, f"unsupported file type: {kind} (supported: {supported})")
    chosen = (parser_id or "").strip().lower() or ("table" if suffix in _TABULAR else "naive")
    if chosen not in PARSER_IDS:
        raise _error(
            filename,
            f"parser {parser_id!r} is not supported (ragfleet has: {', '.join(PARSER_IDS)})",
        )
    if chosen == "table" and suffix not in _TABULAR:
        raise _error(filename, f"parser 'table' reads .csv and .xlsx files, not {suffix}")
    return chosen, parser
