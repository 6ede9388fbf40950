"""``ragfleet``: run an executor, and operate the fleet (status, tasks, cancel, dlq, ...).

Exit codes, for scripts: 0 success; 1 the answer is "no" (``status``: an executor is
stale or none is alive; ``reconcile --check``: tasks are missing from the queues);
2 usage or configuration error (also: a config that is not YAML or has a mistyped setting,
a task database or store the config names that cannot be opened, a database without its
tables, Redis refusing the login or a command, ``run`` of an instance that already runs or
with its metrics port in use); 3 Redis, the database or the document store is unavailable
(down, unreachable, refusing writes); 4 a named task, document or entry does not exist.
Each error is one line on stderr.
"""

from __future__ import annotations

import click

from ..version import version_callback
from . import queues, running, search, status, submit, tasks
from .env import Env
from .usage import OneLineUsageGroup


@click.group(cls=OneLineUsageGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=version_callback("ragfleet"),
    help="Show the version and the commit it was built from, and exit.",
)
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
    2 usage or configuration error (a refused login, an instance that already runs
    included); 3 Redis, database or document store unavailable; 4 not found.
    """
    ctx.obj = env = Env(config)
    ctx.call_on_close(env.close)


for command in (
    running.run,
    running.db,
    submit.submit,
    search.search,
    tasks.tasks,
    tasks.cancel,
    status.status,
    queues.reconcile,
    queues.dlq,
):
    main.add_command(command)
