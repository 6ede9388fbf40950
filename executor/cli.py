"""``ragfleet``: run an executor, and operate the fleet (status, tasks, cancel, dlq, ...).

Exit codes, for scripts: 0 success; 1 the answer is "no" (``status``: an executor is
stale or none is alive; ``reconcile --check``: tasks are missing from the queues);
2 usage or configuration error (also: a task database or store the config names that cannot
be opened, a database without its tables, Redis refusing the login or a command); 3 Redis,
the database or the document store is unavailable (down, unreachable, refusing writes);
4 a named task or entry does not exist.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import click
import peewee as pw
import redis

from . import __version__, wire
from .broker import (
    REDIS_DENIED,
    REDIS_REFUSED,
    REDIS_UNAVAILABLE,
    Broker,
    connect,
    redis_error_text,
    redis_location,
    refuses_writes,
)
from .db import TASK_STATES, DatabaseUnavailable, TaskStore, open_task_store, task_state
from .fleet import (
    LostTaskFilter,
    dead_letters,
    fleet_status,
    requeue_dead_letter,
    running_task_ids,
    tasks_in_no_queue,
)
from .ingest.docstore import DocStoreUnavailable
from .ingest.storage import StorageUnavailable
from .lost_tasks import REQUEUE_GRACE, heartbeats_due_after_loss, requeue_in_turn
from .producer import enqueue, task_message
from .settings import Settings, SettingsError, load_settings

EXIT_NO, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_NOT_FOUND = 1, 2, 3, 4


class Env:
    """Lazily opened connections, shared by the commands of one invocation."""

    def __init__(self, config: str | None) -> None:
        self.config = config

    @cached_property
    def settings(self) -> Settings:
        return load_settings(self.config)

    @cached_property
    def redis(self) -> redis.Redis:
        return connect(self.settings.redis)

    @cached_property
    def store(self) -> TaskStore:
        """The task database, asked once: one the config names wrongly is a SettingsError
        (exit 2), one that is down is DatabaseUnavailable (exit 3)."""
        store, unavailable = open_task_store(self.settings.database)
        if unavailable is not None:
            raise unavailable
        return store


@contextmanager
def _errors_to_exit_codes(env: Env) -> Iterator[None]:
    try:
        yield
    except SettingsError as exc:
        click.echo(f"ragfleet: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    except REDIS_DENIED as exc:  # before REDIS_UNAVAILABLE: a refused login is one of those
        where = redis_location(env.settings.redis)
        click.echo(f"ragfleet: Redis ({where}) refused: {redis_error_text(exc)}", err=True)
        sys.exit(EXIT_USAGE)
    except REDIS_REFUSED as exc:
        if not isinstance(exc, REDIS_UNAVAILABLE) and not refuses_writes(exc):
            raise
        click.echo(f"ragfleet: Redis unavailable: {redis_error_text(exc)}", err=True)
        sys.exit(EXIT_UNAVAILABLE)
    except DatabaseUnavailable as exc:
        click.echo(f"ragfleet: database unavailable: {exc}", err=True)
        sys.exit(EXIT_UNAVAILABLE)
    except DocStoreUnavailable as exc:
        click.echo(f"ragfleet: document store unavailable: {exc}", err=True)
        sys.exit(EXIT_UNAVAILABLE)
    except StorageUnavailable as exc:
        click.echo(f"ragfleet: document storage unavailable: {exc}", err=True)
        sys.exit(EXIT_UNAVAILABLE)
    except (pw.OperationalError, pw.ProgrammingError) as exc:  # it answers and refuses
        hint = " (run `ragfleet db init`)" if _missing_table(exc) else ""
        click.echo(f"ragfleet: task database: {exc}{hint}", err=True)
        sys.exit(EXIT_USAGE)


def _missing_table(exc: Exception) -> bool:
    """SQLite's, MariaDB's and PostgreSQL's words for a table that is not there."""
    text = str(exc).lower()
    return "no such table" in text or (
        ("table" in text or "relation" in text)
        and ("doesn't exist" in text or "does not exist" in text)
    )


def operator_command(func: Callable) -> Callable:
    """Pass the Env to a command and map infrastructure errors to exit codes."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        env = click.get_current_context().obj
        with _errors_to_exit_codes(env):
            return func(env, *args, **kwargs)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ragfleet")
@click.option(
    "--config",
    "-c",
    envvar="RAGFLEET_CONFIG",
    metavar="FILE",
    help="Runtime config compiled by configc [env RAGFLEET_CONFIG; default "
    "/etc/ragfleet/ragfleet.yaml].",
)
@click.pass_context
def main(ctx: click.Context, config: str | None) -> None:
    """ragfleet: RAGFlow-compatible task executors, and the tools to operate them.

    Exit codes: 0 ok; 1 the answer is no (stale executors, missing tasks);
    2 usage or configuration error (a refused login included); 3 Redis, database or
    document store unavailable; 4 not found.
    """
    ctx.obj = Env(config)


JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="JSON output.")


@main.command()
@click.option(
    "--instance",
    "-i",
    type=click.IntRange(1, 999),
    required=True,
    envvar="RAGFLEET_INSTANCE",
    help="Instance number N (1..). [env RAGFLEET_INSTANCE]",
)
@click.option(
    "--config",
    "-c",
    "run_config",
    metavar="FILE",
    help="Runtime config; the same as `ragfleet --config` (the unit passes it here).",
)
@operator_command
def run(env: Env, instance: int, run_config: str | None) -> None:
    """Run executor instance N until SIGTERM/SIGINT (what the systemd unit runs).

    Consumes as task_executor_<host_id>_<N>. SIGTERM drains: no new tasks, running ones
    get drain_timeout seconds, then are left for redelivery. SIGUSR1 starts tracemalloc
    and writes a snapshot under the state dir; SIGUSR2 stops it.

    Exit 2 at start if the task database or document store the config names cannot be
    opened (a bad path, a refused login), or if Redis refuses the login or the commands
    (its ACL); a server that is down is waited for.
    """
    from .app import run_executor

    if run_config:
        env.config = run_config
    sys.exit(run_executor(env.settings, instance))


@main.group()
def db() -> None:
    """The task database."""


@db.command("init")
@operator_command
def db_init(env: Env) -> None:
    """Create the tables, or add the columns a newer ragfleet needs (idempotent)."""
    changes = env.store.init_schema()
    if env.settings.storage.get("backend") == "database":
        from .ingest.storage import DatabaseBlobStorage

        if DatabaseBlobStorage(env.store.database).ensure_schema():
            changes.append("created table blob")
    for change in changes:
        click.echo(f"ragfleet: {change}")
    click.echo(f"ragfleet: schema is up to date ({len(changes)} changes)")


@main.command()
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--kb", "kb_name", metavar="NAME", help="Knowledge base of FILES (created if new).")
@click.option(
    "--type",
    "-t",
    "task_type",
    default="noop",
    show_default=True,
    help="Without FILES: task type of the tasks to create (noop, sleep, ...).",
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
    env.redis.ping()  # Redis down or refusing the login: stop before recording anything
    if files:
        if not kb_name:
            raise click.UsageError("--kb NAME is required with FILES")
        task_ids, refused = _submit_files(env, list(files), kb_name, quiet)
        failed = _wait_for_tasks(env, task_ids, quiet) if wait else 0
        sys.exit(EXIT_NO if refused or failed else 0)
    try:
        parsed = json.loads(payload) if payload else {}
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--payload") from None
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
                enqueue(env.redis, (task_message(t) for t in batch))
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


def _submit_files(env: Env, files: list[Path], kb_name: str, quiet: bool) -> tuple[list[str], int]:
    """Submit documents; returns their task ids and how many files were refused."""
    from .ingest.catalog import Catalog
    from .ingest.intake import Intake
    from .ingest.storage import open_blob_storage

    embedding = (env.settings.models.get("embedding_model") or {}).get("model", "")
    kb = Catalog(env.store).ensure_knowledge_base(kb_name, embd_id=embedding)
    intake = Intake(
        env.store, open_blob_storage(env.settings.storage, database=env.store.database), env.redis
    )
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


@main.command()
@click.argument("query")
@click.option("--kb", "kb_name", required=True, metavar="NAME", help="Knowledge base to search.")
@click.option("--top", "-k", "top_k", type=click.IntRange(1, 100), default=5, show_default=True)
@JSON_OPTION
@operator_command
def search(env: Env, query: str, kb_name: str, top_k: int, as_json: bool) -> None:
    """Search a knowledge base: BM25, and hybrid when its chunks have vectors.

    Exit 4 if the knowledge base does not exist.
    """
    from .ingest.ragtokens import TokenizerUnavailable
    from .ingest.search import search_kb

    try:
        hits = search_kb(env.settings, env.store, kb_name, query, top_k)
    except LookupError as exc:
        click.echo(f"ragfleet: {exc}", err=True)
        sys.exit(EXIT_NOT_FOUND)
    except TokenizerUnavailable as exc:  # queries are tokenized as RAGFlow does
        click.echo(f"ragfleet: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    if as_json:
        click.echo(json.dumps([h.__dict__ for h in hits], indent=2, default=list))
        return
    if not hits:
        click.echo("(no match)")
    for rank, hit in enumerate(hits, 1):
        pages = f" p.{','.join(map(str, hit.pages))}" if hit.pages else ""
        click.echo(f"{rank}. {hit.doc_name}{pages}  (score {hit.score:.3f})")
        click.echo(textwrap.indent(textwrap.shorten(hit.content, 300), "   "))


@main.command()
@JSON_OPTION
@operator_command
def status(env: Env, as_json: bool) -> None:
    """The fleet, from heartbeats: one row per executor in TASKEXE.

    Exit 0 when every executor heartbeated within worker_heartbeat_timeout, 1 when one is
    stale or none is registered.
    """
    rows = fleet_status(env.redis, env.settings.executor.worker_heartbeat_timeout)
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
    else:
        columns = (
            "name",
            "ip_address",
            "pid",
            "boot_at",
            "age",
            "pending",
            "lag",
            "done",
            "failed",
            "running",
            "waiting",
            "state",
        )
        _print_table(rows, columns)
    sys.exit(0 if rows and all(r["state"] == "alive" for r in rows) else EXIT_NO)


@main.command()
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
            "updated": _ms_to_iso(r["update_time"]),
            "last_message": (r["progress_msg"] or "").strip().split("\n")[-1],
        }
        for r in rows
    ]
    if as_json:
        click.echo(json.dumps(view, indent=2))
    else:
        columns = ("id", "type", "state", "progress", "retries", "updated", "last_message")
        _print_table(view, columns)


@main.command()
@click.argument("task_ids", nargs=-1, metavar="[TASK_ID]...")
@click.option("--doc", "doc_id", metavar="DOC_ID", help="Every task of this document.")
@operator_command
def cancel(env: Env, task_ids: tuple[str, ...], doc_id: str | None) -> None:
    """Cancel tasks: a running one stops within a second; a queued one is never run.

    Sets upstream's cancel flag, the key <task_id>-cancel, for an hour. Exit 4 if a
    named task does not exist (the others are still cancelled).
    """
    ids = list(task_ids)
    if doc_id:
        ids += env.store.task_ids_of_document(doc_id)
    if not ids:
        raise click.UsageError("name task ids, or --doc DOC_ID")
    missing = [task_id for task_id in ids if env.store.get_task(task_id) is None]
    pipe = env.redis.pipeline(transaction=False)
    for task_id in ids:
        if task_id not in missing:
            pipe.set(wire.cancel_key(task_id), 1, ex=wire.CANCEL_TTL)
    pipe.execute()
    click.echo(f"ragfleet: cancel requested for {len(ids) - len(missing)} task(s)")
    for task_id in missing:
        click.echo(f"ragfleet: no task {task_id}", err=True)
    if missing:
        sys.exit(EXIT_NOT_FOUND)


@main.command()
@click.option("--check", is_flag=True, help="Report only; exit 1 if a task is in no queue.")
@click.option(
    "--no-wait",
    is_flag=True,
    help="Do not wait for the executors' heartbeats after Redis lost its data.",
)
@click.option(
    "--min-age",
    type=click.FloatRange(min=0),
    default=REQUEUE_GRACE,
    show_default=True,
    metavar="SECONDS",
    help="Leave alone tasks whose row changed less than this long ago.",
)
@operator_command
def reconcile(env: Env, check: bool, no_wait: bool, min_age: float) -> None:
    """Re-enqueue unfinished tasks that no queue holds (after Redis lost its data).

    Leaves alone the tasks a live executor's heartbeat says it runs (Redis lost their
    entries while they ran; they finish where they are), dead-lettered ones (`ragfleet
    dlq`), and those recorded or reset in the last --min-age seconds: a producer (submit,
    dlq retry) writes the row first and enqueues it next, and a task caught between the
    two would be enqueued twice. Right after Redis lost its data, the heartbeats went with
    it: it first waits 1.5 heartbeat intervals from the loss, so that every live executor
    has named its tasks again. It takes the fleet's turn to re-enqueue, so that it and an
    executor's pass never enqueue a task twice (exit 3 if another pass keeps the turn).
    The executors do the same by themselves: after they see Redis lose its queues, and in
    their periodic sweep (executor.lost_task_sweep). Idempotent: a task already in a
    stream is left alone.
    """
    config = env.settings.executor
    broker = Broker(env.redis, f"ragfleet-reconcile@{socket.gethostname()}:{os.getpid()}")
    if (due := heartbeats_due_after_loss(broker, config.heartbeat_interval)) and not no_wait:
        click.echo(
            f"ragfleet: Redis lost its data recently: waiting {due:.0f} s for the executors' "
            "heartbeats to name the tasks they run (--no-wait: do not)",
            err=True,
        )
        time.sleep(due)
    timeout = config.worker_heartbeat_timeout
    settled = LostTaskFilter(unchanged_since_ms=int((time.time() - min_age) * 1000))
    if check:
        lost = replace(settled, running=running_task_ids(env.redis, timeout))
        missing, unfinished = tasks_in_no_queue(env.redis, env.store, lost)
        click.echo(f"ragfleet: {len(missing)} of {unfinished} unfinished tasks in no queue")
        sys.exit(EXIT_NO if missing else 0)
    try:
        requeued, unfinished = requeue_in_turn(broker, env.store, settled, timeout)
    except TimeoutError as exc:
        click.echo(f"ragfleet: {exc}; run it again", err=True)
        sys.exit(EXIT_UNAVAILABLE)
    click.echo(
        f"ragfleet: re-enqueued {len(requeued)} of {unfinished} unfinished tasks "
        f"({unfinished - len(requeued)} queued, running, dead-lettered or changed in the "
        f"last {min_age:g} s)"
    )


@main.group()
def dlq() -> None:
    """Dead-lettered tasks: delivered max_deliveries times without finishing."""


@dlq.command("list")
@JSON_OPTION
@operator_command
def dlq_list(env: Env, as_json: bool) -> None:
    """Entries of the dead-letter stream, oldest first."""
    entries = dead_letters(env.redis)
    if as_json:
        click.echo(json.dumps(entries, indent=2))
    else:
        _print_table(entries, ("dlq_id", "task_id", "queue", "deliveries", "at", "reason"))


@dlq.command("retry")
@click.argument("dlq_ids", nargs=-1, metavar="[DLQ_ID]...")
@click.option("--all", "retry_all", is_flag=True, help="Every dead-lettered task.")
@operator_command
def dlq_retry(env: Env, dlq_ids: tuple[str, ...], retry_all: bool) -> None:
    """Reset dead-lettered tasks and put them back on their queue.

    An entry whose task the database does not have (restored from an older backup, say)
    is kept, and named; the exit code is then 4, as for a DLQ_ID that does not exist.
    """
    entries = {e["dlq_id"]: e for e in dead_letters(env.redis)}
    chosen = list(entries) if retry_all else list(dlq_ids)
    if not chosen:
        raise click.UsageError("name DLQ_IDs (see `ragfleet dlq list`), or --all")
    missing = [i for i in chosen if i not in entries]
    taskless = [
        i
        for i in chosen
        if i in entries and not requeue_dead_letter(env.redis, env.store, entries[i])
    ]
    click.echo(f"ragfleet: re-enqueued {len(chosen) - len(missing) - len(taskless)} task(s)")
    for dlq_id in missing:
        click.echo(f"ragfleet: no dead-letter entry {dlq_id}", err=True)
    for dlq_id in taskless:
        task = entries[dlq_id]["task_id"] or "(none named)"
        click.echo(
            f"ragfleet: {dlq_id}: the database has no task {task}; the entry is kept "
            "(`ragfleet dlq list --json` shows its message)",
            err=True,
        )
    if missing or taskless:
        sys.exit(EXIT_NOT_FOUND)


@dlq.command("purge")
@click.option("--yes", "-y", is_flag=True, help="Do not ask.")
@operator_command
def dlq_purge(env: Env, yes: bool) -> None:
    """Delete every dead-letter entry (the tasks stay failed in the database)."""
    count = env.redis.xlen(wire.DEAD_LETTER_STREAM)
    if count and not yes:
        click.confirm(f"delete {count} dead-letter entries?", abort=True)
    env.redis.delete(wire.DEAD_LETTER_STREAM)
    click.echo(f"ragfleet: purged {count} dead-letter entries")


def _print_table(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> None:
    if not rows:
        click.echo("(none)")
        return
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _ms_to_iso(ms: int | None) -> str:
    return datetime.fromtimestamp(ms / 1000).isoformat(timespec="seconds") if ms else ""
