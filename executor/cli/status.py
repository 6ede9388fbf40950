"""``ragfleet status``: the executors from their heartbeats, and the queues as ``rq info``
shows them (depth, pending, oldest entry, dead letters), once or ``--watch``-ed."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from ..fleet import fleet_status
from ..queue.connection import current_master
from .env import EXIT_NO, Env, operator_command
from .output import JSON_OPTION, print_table

EXECUTOR_COLUMNS = (
    "name", "version", "ip_address", "pid", "boot_at", "age", "pending", "lag", "done", "failed",
    "running", "waiting", "state",
)  # fmt: skip
QUEUE_COLUMNS = ("queue", "length", "waiting", "pending", "oldest", "consumers")
# Cursor home and clear the screen: a watch on a terminal redraws in place.
_CLEAR = "\x1b[H\x1b[2J"


@click.command()
@JSON_OPTION
@click.option("--watch", is_flag=True, help="Refresh until Ctrl-C (in place on a terminal).")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1, max=3600),
    default=2.0,
    show_default=True,
    metavar="SECONDS",
    help="Seconds between refreshes with --watch.",
)
@operator_command
def status(env: Env, as_json: bool, watch: bool, interval: float) -> None:
    """The fleet, from heartbeats: one row per executor in TASKEXE; then per queue the
    entries it holds, those waiting for an executor, those taken and not acked (and by
    whom), the age of the oldest; and the dead-letter count.

    Exit 0 when every executor heartbeated within worker_heartbeat_timeout, 1 when one is
    stale or none is registered. With --watch: a new snapshot every --interval seconds
    (redrawn in place on a terminal; otherwise printed one after another, with --json one
    JSON document per line) until Ctrl-C, which exits 0.
    """
    if not watch:
        report = _report(env)
        _print(report, as_json, indent=2)
        sys.exit(0 if _all_alive(report) else EXIT_NO)
    in_place = sys.stdout.isatty() and not as_json
    try:
        while True:
            report = _report(env)
            if in_place:
                click.echo(_CLEAR, nl=False)
            _print(report, as_json, indent=None)
            if not in_place and not as_json:
                click.echo("")  # snapshots one after another: a blank line between them
            time.sleep(interval)
    except KeyboardInterrupt:
        sys.exit(0)


def _report(env: Env) -> dict[str, Any]:
    executors = fleet_status(env.roster, env.settings.executor.worker_heartbeat_timeout)
    queues = env.roster.queues()
    report = {"executors": executors, **queues.as_dict()}
    master = current_master(env.redis_settings)
    if master is not None:  # under Sentinel: the server they name master now
        report["redis_master"] = f"{master[0]}:{master[1]}"
    return report


def _all_alive(report: dict[str, Any]) -> bool:
    rows = report["executors"]
    return bool(rows) and all(r["state"] == "alive" for r in rows)


def _print(report: dict[str, Any], as_json: bool, indent: int | None) -> None:
    if as_json:
        click.echo(json.dumps(report, indent=indent, default=str))
        return
    taken = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(report["taken_at"]))
    if "redis_master" in report:
        click.echo(f"redis master (named by the sentinels): {report['redis_master']}")
    click.echo(f"executors (at {taken}):")
    executors = [{**row, "version": _version_cell(row)} for row in report["executors"]]
    print_table(executors, EXECUTOR_COLUMNS)
    click.echo("\nqueues:")
    print_table([_queue_row(q) for q in report["queues"]], QUEUE_COLUMNS)
    click.echo(f"\ndead letters: {report['dead_letters']}")


def _version_cell(row: dict[str, Any]) -> str | None:
    """``0.1.0@45720f5d3c1b`` (the commit cut to 12 digits, ``-dirty`` kept); None from an
    executor whose heartbeat carries no version (upstream's, or an older ragfleet)."""
    if not row.get("version"):
        return None
    commit = str(row.get("commit") or "unknown")
    short = commit[:12] + ("-dirty" if commit.endswith("-dirty") else "")
    return f"{row['version']}@{short}"


def _queue_row(queue: dict[str, Any]) -> dict[str, Any]:
    consumers = ", ".join(f"{name}={n}" for name, n in sorted(queue["consumers"].items()) if n)
    return {**queue, "oldest": _age(queue["oldest_age"]), "consumers": consumers}


def _age(seconds: float) -> str:
    """An age as an operator reads it: 0s, 42s, 3m05s, 2h07m, 3d04h."""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"
