"""JSON and JSON Lines documents flattened to ``path: value`` lines."""

from __future__ import annotations

import json
from collections.abc import Iterator

from executor.ingest.types import Section

from .common import ALL_PAGES, batched, error, require_sections
from .encoding import decode_text

JSON_LINES_SAMPLE = 10
JSON_LINES_THRESHOLD = 0.8
"""A text that is not one JSON value is JSON Lines when this share of its first
JSON_LINES_SAMPLE non-blank lines are JSON values (upstream's rule)."""
_LINES_SUFFIXES = (".jsonl", ".ldjson")


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
    a chunk boundary never cuts a value from its path). JSON Lines (one value per line, see
    :func:`_is_json_lines`) become one line per record, ``path: value; path: value``, whatever
    the suffix (.json, .jsonl, .ldjson), as upstream reads them."""
    text = decode_text(data, filename)
    if not text.strip():
        return require_sections([], filename)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        if _is_json_lines(text):
            return require_sections(batched(_records(text)), filename)
        if filename.lower().endswith(_LINES_SUFFIXES):
            raise error(filename, _invalid_lines(text)) from exc
        raise error(filename, _invalid(exc)) from exc
    except RecursionError as exc:
        raise error(filename, "invalid JSON: nested too deeply") from exc
    lines = [line for line in _json_lines(value) if line.strip()]
    return require_sections(batched(lines), filename)


def _invalid(exc: json.JSONDecodeError) -> str:
    return f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"


def _invalid_lines(text: str) -> str:
    """Why a .jsonl file is not JSON Lines: its first bad line, and how many of the sample."""
    numbered = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    bad = [n for n, line in numbered[:JSON_LINES_SAMPLE] if not _value(line)[0]]
    sample = min(len(numbered), JSON_LINES_SAMPLE)
    return (
        f"invalid JSON Lines: line {bad[0]} is not a JSON value, nor are {len(bad)} of the "
        f"first {sample} lines (at most {1 - JSON_LINES_THRESHOLD:.0%} may be malformed)"
    )


def _value(line: str) -> tuple[bool, object]:
    """``(True, value)`` for a line holding one JSON value, ``(False, None)`` otherwise."""
    try:
        return True, json.loads(line)
    except (json.JSONDecodeError, RecursionError):
        return False, None


def _is_json_lines(text: str) -> bool:
    """Upstream's test (deepdoc/parser/json_parser.py lines 154-172, v0.21.1), for a text that
    is not one JSON value: at least 80% of its first 10 non-blank lines are JSON values."""
    sample = [line for line in text.splitlines() if line.strip()][:JSON_LINES_SAMPLE]
    valid = sum(_value(line)[0] for line in sample)
    return bool(valid) and valid >= JSON_LINES_THRESHOLD * len(sample)


def _records(text: str) -> list[str]:
    """One ``path: value; ...`` line per record. A line that is not JSON is skipped, as
    upstream skips it (json_parser.py lines 140-152): JSON Lines logs and exports end in a
    truncated line often, and one bad line should not cost the file its other records."""
    records: list[str] = []
    for line in text.splitlines():
        ok, value = _value(line) if line.strip() else (False, None)
        if ok and (record := "; ".join(leaf for leaf in _json_lines(value) if leaf.strip())):
            records.append(record)
    return records
