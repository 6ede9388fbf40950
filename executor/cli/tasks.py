"""``ragfleet tasks`` and ``ragfleet cancel``: the task rows, and stopping tasks."""

from __future__ import annotations

import json
import sys

import click

from ..store.database import TASK_STATES, task_state
from .env import EXIT_NOT_FOUND, Env, operator_command
from .output import JSON_OPTION, ms_to_iso, print_table
from .usage import usage_error


@click.command()
@click.option("--state", "-s", type=click.Choice(TASK_STATES))
@click.option("--doc", "doc_id", metavar="DOC_ID")
@click.option("--limit", "-n", type=click.IntRange(1), default=50, show_default=True)
@JSON_OPTION
@operator_command
def tasks(env: Env, state: str | None, doc_id: str | None, limit: int, as_json: bool) -> None:
    """List tasks, newest first, with state and progress."""
    rows = env.store.list_tasks(state=state, doc_id=doc_id, limit=limit)
    view = [
        {
            "id": r["id"],
            "type": r["task_type"] or "ingest",
            "state": task_state(r),
            "progress": round(r["progress"], 3),
            "retries": r["retry_count"],
            "doc_id": r["doc_id"],
            "updated": ms_to_iso(r["update_time"]),
            "last_message": (r["progress_msg"] or "").strip().split("\n")[-1],
        }
        for r in rows
    ]
    if as_json:
        click.echo(json.dumps(view, indent=2))
    else:
        columns = ("id", "type", "state", "progress", "retries", "updated", "last_message")
        print_table(view, columns)


@click.command()
@click.argument("task_ids", nargs=-1, metavar="[TASK_ID]...")
@click.option("--doc", "doc_id", metavar="DOC_ID", help="Every task of this document.")
@operator_command
def cancel(env: Env, task_ids: tuple[str, ...], doc_id: str | None) -> None:
    """Cancel tasks: a running one stops within a second; a queued one is never run.

    Sets upstream's cancel flag, the key <task_id>-cancel, for an hour. Exit 4 if a
    named task or the --doc document does not exist (the others are still cancelled).
    """
    if not task_ids and not doc_id:
        usage_error("name task ids, or --doc DOC_ID")
    of_document = env.store.task_ids_of_document(doc_id) if doc_id else []
    no_document = bool(doc_id) and not of_document and _no_document(env, doc_id)
    ids = [*task_ids, *of_document]
    missing = [task_id for task_id in ids if env.store.get_task(task_id) is None]
    env.roster.request_cancel([task_id for task_id in ids if task_id not in missing])
    if of_document:
        _mark_cancelled(env, doc_id)
    click.echo(f"ragfleet: cancel requested for {len(ids) - len(missing)} task(s)")
    for task_id in missing:
        click.echo(f"ragfleet: no task {task_id}", err=True)
    if no_document:
        click.echo(f"ragfleet: no document {doc_id}", err=True)
    if missing or no_document:
        sys.exit(EXIT_NOT_FOUND)


def _mark_cancelled(env: Env, doc_id: str) -> None:
    """The document's run becomes RAGFlow's CANCEL, as its UI's cancel writes it."""
    from ..ingest.catalog import Catalog

    Catalog(env.store).cancel_document(doc_id)


def _no_document(env: Env, doc_id: str) -> bool:
    from ..ingest.catalog import Catalog

    return Catalog(env.store).document(doc_id) is None
