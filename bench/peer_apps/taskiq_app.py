"""taskiq with taskiq-redis's Redis Streams broker (consumer group, XACK after the task)."""

from __future__ import annotations

import asyncio
import os
import sys

from record import record
from taskiq_redis import RedisStreamBroker

# consumer_id "0": the group starts at the stream's beginning, so tasks enqueued before the
# worker starts are read (the default "$" would skip them).
broker = RedisStreamBroker(url=os.environ.get("PEERS_REDIS_URL", ""), consumer_id="0")

SETTINGS = (
    "RedisStreamBroker (XREADGROUP count 100, block 2 s), `taskiq worker --workers P` "
    "(P worker processes under one supervisor), defaults otherwise: --max-async-tasks 100, "
    "--ack-type when_saved (XACK after the task), no result backend"
)


@broker.task
async def noop(task_id: str) -> None:
    record(task_id)


def worker_commands(procs: int) -> list[list[str]]:
    taskiq = [sys.executable, "-m", "taskiq", "worker", "taskiq_app:broker"]
    return [[*taskiq, "--workers", str(procs), "--log-level", "WARNING"]]


class Producer:
    """Sends tasks from a plain (sync) caller, on an event loop of its own."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(broker.startup())

    def send(self, task_ids: list[str]) -> None:
        self.loop.run_until_complete(self._send(task_ids))

    async def _send(self, task_ids: list[str]) -> None:
        for task_id in task_ids:
            await noop.kiq(task_id)

    def close(self) -> None:
        self.loop.run_until_complete(broker.shutdown())
        self.loop.close()
