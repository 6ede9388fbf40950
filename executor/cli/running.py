"""``ragfleet run`` (what the systemd unit runs) and ``ragfleet db``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from .env import Env, operator_command
from .usage import usage_error


@click.command()
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
    opened (a bad path, a refused login), if Redis refuses the login or the commands
    (its ACL), if the metrics port is in use, or if instance N already runs (on this host:
    its lock in the state dir; elsewhere: its heartbeat goes on); a server that is down is
    waited for.
    """
    from ..app import run_executor

    if run_config:
        env.config = run_config
    sys.exit(run_executor(env.settings, instance))


@click.group()
def db() -> None:
    """The task database."""


@db.command("init")
@operator_command
def db_init(env: Env) -> None:
    """Create the tables, or add the columns a newer ragfleet needs (idempotent).

    On SQLite, the database file's directory is created first if it is missing."""
    from ..ingest.storage_open import init_storage_schema

    changes = _make_sqlite_directory(env.settings.database)
    changes += env.store.init_schema()
    changes += init_storage_schema(env.settings.storage, env.store.database)
    for change in changes:
        click.echo(f"ragfleet: {change}")
    click.echo(f"ragfleet: schema is up to date ({len(changes)} changes)")


def _make_sqlite_directory(database: dict[str, Any]) -> list[str]:
    """Create a SQLite path's missing directory (owner-only: it holds the task rows)."""
    if database.get("type") != "sqlite":
        return []
    directory = Path(database["path"]).parent
    if directory.exists():  # a file there: the store's own error names it
        return []
    try:
        directory.mkdir(mode=0o750, parents=True)
    except OSError as exc:
        usage_error(f"cannot create the task database's directory {directory}: {exc.strerror}")
    return [f"created directory {directory}"]
