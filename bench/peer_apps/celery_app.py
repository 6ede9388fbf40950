"""Celery with the Redis transport: prefork pool (its default) and the solo pool."""

from __future__ import annotations

import os
import sys

from celery import Celery
from record import record

app = Celery("celery_app", broker=os.environ.get("PEERS_REDIS_URL", ""))
app.conf.update(
    task_ignore_result=True,  # no result backend
    worker_prefetch_multiplier=4,  # the default, stated
    task_acks_late=False,  # the default: acked when the worker takes the message
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)
FLAGS = ["--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "WARNING"]
SETTINGS = {
    "celery-prefork": (
        "`celery worker --pool prefork --concurrency P` (one worker: a parent process and P "
        "pool processes), prefetch multiplier 4, acks_late False (the defaults), "
        "task_ignore_result, --without-gossip --without-mingle --without-heartbeat"
    ),
    "celery-solo": (
        "P `celery worker --pool solo` workers (one process each, tasks run in the consumer), "
        "prefetch multiplier 4, acks_late False, task_ignore_result, "
        "--without-gossip --without-mingle --without-heartbeat"
    ),
}


@app.task
def noop(task_id: str) -> None:
    record(task_id)


def worker_commands(procs: int, pool: str = "prefork") -> list[list[str]]:
    celery = [sys.executable, "-m", "celery", "-A", "celery_app", "worker", *FLAGS]
    if pool == "prefork":
        return [[*celery, "--pool", "prefork", "--concurrency", str(procs)]]
    return [[*celery, "--pool", "solo", "-n", f"solo{i}@%h"] for i in range(procs)]


class Producer:
    def __init__(self) -> None:
        self.context = app.producer_or_acquire()
        self.producer = self.context.__enter__()

    def send(self, task_ids: list[str]) -> None:
        for task_id in task_ids:
            noop.apply_async((task_id,), producer=self.producer)

    def close(self) -> None:
        self.context.__exit__(None, None, None)
        app.close()
