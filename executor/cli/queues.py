"""``ragfleet status``, ``reconcile`` and ``dlq``: the fleet and its queues."""

from __future__ import annotations

import json
import math
import os
import socket
import sys
import time
from dataclasses import replace

import click

from ..fleet import (
    LostTaskFilter,
    fleet_status,
    requeue_dead_letter,
    running_task_ids,
    tasks_in_no_queue,
)
from ..lost_tasks import REQUEUE_GRACE, heartbeats_due_after_loss, requeue_in_turn
from .env import EXIT_NO, EXIT_NOT_FOUND, EXIT_UNAVAILABLE, Env, operator_command
from .output import JSON_OPTION, print_table
from .usage import usage_error

# The longest age an option takes, in seconds (ten years): a larger one is a typo.
MAX_AGE = 10 * 365 * 86400.0


@click.command()
@JSON_OPTION
@operator_command
def status(env: Env, as_json: bool) -> None:
    """The fleet, from heartbeats: one row per executor in TASKEXE.

    Exit 0 when every executor heartbeated within worker_heartbeat_timeout, 1 when one is
    stale or none is registered.
    """
    rows = fleet_status(env.roster, env.settings.executor.worker_heartbeat_timeout)
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
    else:
        table = [{**row, "version": _version_cell(row)} for row in rows]
        columns = (
            "name",
            "version",
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
        print_table(table, columns)
    sys.exit(0 if rows and all(r["state"] == "alive" for r in rows) else EXIT_NO)


def _version_cell(row: dict) -> str | None:
    """``0.1.0@45720f5d3c1b`` (the commit cut to 12 digits, ``-dirty`` kept); None from an
    executor whose heartbeat carries no version (upstream's, or an older ragfleet)."""
    if not row.get("version"):
        return None
    commit = str(row.get("commit") or "unknown")
    short = commit[:12] + ("-dirty" if commit.endswith("-dirty") else "")
    return f"{row['version']}@{short}"


@click.command()
@click.option("--check", is_flag=True, help="Report only; exit 1 if a task is in no queue.")
@click.option(
    "--no-wait",
    is_flag=True,
    help="Do not wait for the executors' heartbeats after Redis lost its data.",
)
@click.option(
    "--min-age",
    type=click.FloatRange(min=0, max=MAX_AGE),
    callback=lambda ctx, param, value: _finite(value, "--min-age"),
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
    broker = env.broker(f"ragfleet-reconcile@{socket.gethostname()}:{os.getpid()}")
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
        lost = replace(settled, running=running_task_ids(env.roster, timeout))
        missing, unfinished = tasks_in_no_queue(env.roster, env.store, lost)
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


def _finite(value: float, option: str) -> float:
    """click's FloatRange lets nan through; nothing older than nan is a usage error."""
    if math.isnan(value):
        raise click.BadParameter("not a number", param_hint=option)
    return value


@click.group()
def dlq() -> None:
    """Dead-lettered tasks: delivered max_deliveries times without finishing."""


@dlq.command("list")
@JSON_OPTION
@operator_command
def dlq_list(env: Env, as_json: bool) -> None:
    """Entries of the dead-letter stream, oldest first."""
    entries = env.roster.dead_letters()
    if as_json:
        click.echo(json.dumps(entries, indent=2))
    else:
        print_table(entries, ("dlq_id", "task_id", "queue", "deliveries", "at", "reason"))


@dlq.command("retry")
@click.argument("dlq_ids", nargs=-1, metavar="[DLQ_ID]...")
@click.option("--all", "retry_all", is_flag=True, help="Every dead-lettered task.")
@operator_command
def dlq_retry(env: Env, dlq_ids: tuple[str, ...], retry_all: bool) -> None:
    """Reset dead-lettered tasks and put them back on their queue.

    An entry whose task the database does not have (restored from an older backup, say)
    is kept, and named; the exit code is then 4, as for a DLQ_ID that does not exist.
    """
    entries = {e["dlq_id"]: e for e in env.roster.dead_letters()}
    chosen = list(entries) if retry_all else list(dlq_ids)
    if not chosen:
        usage_error("name DLQ_IDs (see `ragfleet dlq list`), or --all")
    missing = [i for i in chosen if i not in entries]
    taskless = [
        i
        for i in chosen
        if i in entries and not requeue_dead_letter(env.roster, env.store, entries[i])
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
    count = env.roster.dead_letter_count()
    if count and not yes:
        click.confirm(f"delete {count} dead-letter entries?", abort=True)
    click.echo(f"ragfleet: purged {env.roster.purge_dead_letters()} dead-letter entries")
