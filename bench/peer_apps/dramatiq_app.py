"""Dramatiq with its Redis broker."""

from __future__ import annotations

import os
import sys

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from record import record

THREADS = 8  # dramatiq's default --threads
dramatiq.set_broker(RedisBroker(url=os.environ.get("PEERS_REDIS_URL", "")))

SETTINGS = (
    f"RedisBroker, `dramatiq dramatiq_app --processes P --threads {THREADS}` (the default "
    "threads per process), default middleware (messages acked after the actor returns), "
    "max_retries 0"
)


@dramatiq.actor(max_retries=0)
def noop(task_id: str) -> None:
    record(task_id)


def worker_commands(procs: int) -> list[list[str]]:
    command = [sys.executable, "-m", "dramatiq", "dramatiq_app"]
    return [[*command, "--processes", str(procs), "--threads", str(THREADS)]]


class Producer:
    def send(self, task_ids: list[str]) -> None:
        for task_id in task_ids:
            noop.send(task_id)

    def close(self) -> None:
        dramatiq.get_broker().close()
