"""What every parser shares: the error contract, page constants and table rendering.

Every parser has the :class:`~executor.ingest.types.Parser` signature and raises
:class:`~executor.ingest.types.DocumentError` (never a library's own exception) for anything
wrong with the document, with a message that names the file and the reason, because the message
ends up in the task's ``progress_msg`` for an operator to read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime, time

from executor.ingest.types import Section

from ..errors import DocumentError

ALL_PAGES = 100_000_000
"""Upstream's "to the end" value of ``to_page``."""

ROWS_PER_SECTION = 20
"""Spreadsheet rows (and JSON lines) per table section: the most rows one chunk holds, so a chunk
stays small enough to be a precise search hit even with a large token budget."""


_MAX_REASON = 200
# "file '<_io.BytesIO object at 0x7f..>' is not a Word file": an address helps no operator
_OBJECT_REPR = re.compile(r"\s*'?<[\w.]+ object at 0x[0-9a-fA-F]+>'?")


def error(filename: str, reason: str) -> DocumentError:
    """The one message shape operators see: ``<file>: <reason>``."""
    return DocumentError(f"{filename}: {reason}")


def _reason(exc: BaseException) -> str:
    """A library exception as one short line (its class name when it has no message)."""
    text = " ".join(_OBJECT_REPR.sub("", str(exc)).split()) or type(exc).__name__
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


@contextmanager
def reading(filename: str, what: str) -> Iterator[None]:
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
        raise error(filename, f"corrupt or unreadable {what}: {_reason(exc)}") from exc


def require_sections(sections: list[Section], filename: str) -> list[Section]:
    """An empty result is an error: indexing nothing would look like success to the operator."""
    if not sections:
        raise error(filename, "no text to index (the document is empty)")
    return sections


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


def table_sections(rows: Iterable[Sequence[object]]) -> list[Section]:
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
    return batched(lines)


def batched(lines: Sequence[str]) -> list[Section]:
    return [
        Section("\n".join(lines[start : start + ROWS_PER_SECTION]), kind="table")
        for start in range(0, len(lines), ROWS_PER_SECTION)
    ]
