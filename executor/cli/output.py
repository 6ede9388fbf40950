"""How ``ragfleet`` prints: tables for people, ``--json`` for scripts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import click

from ..logs import escape_controls

JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="JSON output.")


def print_table(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> None:
    if not rows:
        click.echo("(none)")
        return
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    # Task ids and reasons come from queue entries: no control character reaches the terminal.
    text = "" if value is None else escape_controls(str(value))
    return text if len(text) <= 60 else text[:57] + "..."


def ms_to_iso(ms: int | None) -> str:
    return datetime.fromtimestamp(ms / 1000).isoformat(timespec="seconds") if ms else ""
