"""JSON documents flattened to ``path: value`` lines."""

from __future__ import annotations

import json
from collections.abc import Iterator

from executor.ingest.types import Section

from .common import ALL_PAGES, batched, error, require_sections
from .encoding import decode_text

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
        raise error(
            filename, f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    except RecursionError as exc:
        raise error(filename, "invalid JSON: nested too deeply") from exc
    lines = [line for line in _json_lines(value) if line.strip()]
    return require_sections(batched(lines), filename)
