"""arq (asyncio jobs in a Redis sorted set), its defaults but no kept results."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from arq import create_pool
from arq.connections import RedisSettings
from record import record

SETTINGS = (
    "P `arq arq_app.WorkerSettings` processes, max_jobs 10, poll_delay 0.5 s, "
    "queue_read_limit 100 (the defaults; the poll delay paces a busy worker: at most 100 "
    "jobs started per 0.5 s poll), keep_result 0"
)


async def noop(ctx: dict[str, Any], task_id: str) -> None:
    record(task_id)


def redis_settings() -> RedisSettings:
    return RedisSettings.from_dsn(os.environ.get("PEERS_REDIS_URL", "redis://"))


class WorkerSettings:
    functions = [noop]  # noqa: RUF012 (arq reads these class attributes)
    redis_settings = redis_settings()
    max_jobs = 10
    keep_result = 0


def worker_commands(procs: int) -> list[list[str]]:
    code = "import sys; from arq.cli import cli; sys.exit(cli())"
    return [[sys.executable, "-c", code, "arq_app.WorkerSettings"] for _ in range(procs)]


class Producer:
    """Sends jobs from a plain (sync) caller, on an event loop of its own."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.pool = self.loop.run_until_complete(create_pool(redis_settings()))

    def send(self, task_ids: list[str]) -> None:
        self.loop.run_until_complete(self._send(task_ids))

    async def _send(self, task_ids: list[str]) -> None:
        for task_id in task_ids:
            await self.pool.enqueue_job("noop", task_id)

    def close(self) -> None:
        self.loop.run_until_complete(self.pool.aclose())
        self.loop.close()
