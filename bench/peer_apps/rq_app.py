"""RQ (Redis Queue) with SimpleWorker: jobs run in the worker process, no fork per job."""

from __future__ import annotations

import os
import sys

from record import record
from redis import Redis
from rq import Queue

QUEUE = "bench"
SETTINGS = (
    "P `rq worker -w rq.worker.SimpleWorker` processes (SimpleWorker runs each job in the "
    "worker; the default Worker forks a work horse per job), result_ttl 0 (no result kept)"
)


def noop(task_id: str) -> None:
    record(task_id)


def worker_commands(procs: int) -> list[list[str]]:
    url = os.environ["PEERS_REDIS_URL"]
    rq = [sys.executable, "-m", "rq.cli", "worker", "-u", url, "-w", "rq.worker.SimpleWorker"]
    return [[*rq, "-q", "-n", f"bench{i}", QUEUE] for i in range(procs)]


class Producer:
    def __init__(self) -> None:
        self.client = Redis.from_url(os.environ["PEERS_REDIS_URL"])
        self.queue = Queue(QUEUE, connection=self.client)

    def send(self, task_ids: list[str]) -> None:
        for start in range(0, len(task_ids), 1000):  # pipelined, 1,000 jobs a round trip
            chunk = task_ids[start : start + 1000]
            with self.client.pipeline() as pipe:
                jobs = [Queue.prepare_data(noop, args=(t,), result_ttl=0) for t in chunk]
                self.queue.enqueue_many(jobs, pipeline=pipe)
                pipe.execute()

    def close(self) -> None:
        self.client.close()
