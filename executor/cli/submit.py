"""``ragfleet submit``: documents to ingest, or tasks of a type, onto the queue."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from ..errors import REDIS_REFUSED
from ..queue.producer import task_message
from .env import EXIT_NO, Env, operator_command
from .usage import usage_error


@click.command()
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--kb", "kb_name", metavar="NAME", help="Knowledge base of FILES (created if new).")
@click.option(
    "--type",
    "-t",
    "task_type",
    default="noop",
    show_default=True,
    help="Without FILES: task type of the tasks to create (noop or sleep).",
)
@click.option(
    "--count",
    "-n",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Without FILES: how many tasks.",
)
@click.option(
    "--payload", "-p", metavar="JSON", help="""Without FILES: parameters, e.g. '{"seconds": 5}'."""
)
@click.option(
    "--priority",
    type=click.IntRange(0, 1),
    default=0,
    show_default=True,
    help="1 is read before 0.",
)
@click.option("--quiet", "-q", is_flag=True, help="Do not print the task ids.")
@click.option(
    "--wait",
    "-w",
    is_flag=True,
    help="Wait until every task is done or failed; exit 1 if any failed.",
)
@operator_command
def submit(
    env: Env,
    files: tuple[Path, ...],
    kb_name: str | None,
    task_type: str,
    count: int,
    payload: str | None,
    priority: int,
    quiet: bool,
    wait: bool,
) -> None:
    """Put work on the queue: documents to ingest, or tasks of a type.

    \b
    ragfleet submit FILE... --kb NAME    store each file, create its document and
                                         tasks (a PDF: one per 12 pages), enqueue
    ragfleet submit -t sleep -n 10 -p '{"seconds": 2}'

    Prints the new task ids, one per line (unless --quiet); a progress bar on stderr
    for many. A file that cannot be taken in (too large, unreadable) is reported and
    the others are still submitted; the exit code is then 1. An outage (storage,
    database or Redis unavailable, a full disk) stops the submit with exit 3; a
    document is recorded whole (bytes, rows, tasks) or not at all.
    """
    if files and not kb_name:
        usage_error("--kb NAME is required with FILES")
    parsed = {} if files else _task_parameters(kb_name, task_type, payload)
    env.roster.ping()  # Redis down or refusing the login: stop before recording anything
    if files:
        task_ids, refused = _submit_files(env, list(files), kb_name, quiet)
        failed = _wait_for_tasks(env, task_ids, quiet) if wait else 0
        sys.exit(EXIT_NO if refused or failed else 0)
    row = {
        "task_type": task_type,
        "priority": priority,
        "payload": json.dumps(parsed) if parsed else "",
    }
    created: list[dict[str, Any]] = []
    with _progress(count, quiet) as bar:
        for start in range(0, count, 1000):
            batch = env.store.create_tasks([row] * min(1000, count - start))
            try:
                env.roster.enqueue(task_message(t) for t in batch)
            except REDIS_REFUSED:
                click.echo(
                    f"ragfleet: {len(created)} of {count} tasks queued; {len(batch)} more are "
                    "recorded but not queued: the executors' lost-task sweep queues them "
                    "once Redis takes them (or `ragfleet reconcile`); do not submit them again",
                    err=True,
                )
                raise
            created += batch
            bar.update(len(batch))
    if not quiet:
        for task in created:
            click.echo(task["id"])
    if wait and _wait_for_tasks(env, [t["id"] for t in created], quiet):
        sys.exit(EXIT_NO)


def _task_parameters(kb_name: str | None, task_type: str, payload: str | None) -> dict[str, Any]:
    """The payload of tasks submitted without FILES, once their type is one an executor runs
    (else exit 2: a task of an unknown type would only fail, or never run)."""
    from ..handlers import builtin_registry

    if kb_name:
        usage_error(f"--kb {kb_name} names no FILES to submit")
    known = builtin_registry().types()
    if task_type not in known:
        usage_error(
            f"unknown task type {task_type!r} (known: {', '.join(known)}; "
            "documents: FILE... --kb NAME)"
        )
    try:
        parsed = json.loads(payload) if payload else {}
    except ValueError as exc:
        usage_error(f"--payload is not JSON: {exc}")
    if not isinstance(parsed, dict):
        usage_error(f"--payload is not a JSON object: {payload}")
    return parsed


def _submit_files(env: Env, files: list[Path], kb_name: str, quiet: bool) -> tuple[list[str], int]:
    """Submit documents; returns their task ids and how many files were refused."""
    from ..ingest.catalog import Catalog
    from ..ingest.intake import Intake
    from ..ingest.storage_open import open_configured_storage

    blobs = open_configured_storage(env.settings.storage, database=env.store.database)
    embedding = (env.settings.models.get("embedding_model") or {}).get("model", "")
    kb = Catalog(env.store).ensure_knowledge_base(kb_name, embd_id=embedding)
    intake = Intake(env.store, blobs, env.roster)
    submitted = failed = 0
    task_ids: list[str] = []
    try:
        with _progress(len(files), quiet, threshold=20) as bar:
            for result in intake.submit(kb, files):
                bar.update(1)
                task_ids += result.task_ids
                if result.error:
                    failed += 1
                    click.echo(f"ragfleet: {result.path}: not submitted: {result.error}", err=True)
                    continue
                submitted += 1
                if not quiet:
                    for task_id in result.task_ids:
                        click.echo(task_id)
    except REDIS_REFUSED:  # met enqueuing, after the recording
        click.echo(
            f"ragfleet: {files[submitted + failed]}: recorded but not queued; the executors' "
            "lost-task sweep queues its tasks once Redis takes them (or `ragfleet reconcile`); "
            "do not submit it again",
            err=True,
        )
        raise
    finally:  # an outage ends the loop: say how far it got before its error
        click.echo(
            f"ragfleet: {submitted} of {len(files)} documents submitted to "
            f"knowledge base {kb_name!r}",
            err=True,
        )
    return task_ids, failed


def _wait_for_tasks(env: Env, task_ids: list[str], quiet: bool, poll: float = 0.5) -> int:
    """Wait until every task is done or failed, with a progress bar; returns how many failed."""
    pending = set(task_ids)
    failed = 0
    with click.progressbar(
        length=len(task_ids), label="processing", file=sys.stderr, hidden=quiet
    ) as bar:
        while pending:
            for task_id in sorted(pending):
                row = env.store.get_task(task_id)
                if row is None or row["progress"] >= 1 or row["progress"] < 0:
                    pending.discard(task_id)
                    failed += row is None or row["progress"] < 0
                    bar.update(1)
            if pending:
                time.sleep(poll)
    click.echo(f"ragfleet: {len(task_ids) - failed} done, {failed} failed", err=True)
    return failed


def _progress(length: int, quiet: bool, threshold: int = 1000):
    return click.progressbar(
        length=length, label="submitting", file=sys.stderr, hidden=quiet or length < threshold
    )
