"""A RAGFlow installation with ragfleet configured on it, driven through ragfleet's command
line only (the interop suite imports nothing of ragfleet)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ragflow_api import RAGFlow
from ruamel.yaml import YAML

RAGFLEET = Path(sys.executable).with_name("ragfleet")
HOST_ID = "interop"
T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


@dataclass
class Site:
    """One RAGFlow installation's database, Redis and files, with ragfleet configured on it."""

    kind: str
    ragflow: RAGFlow
    config: Path
    processes: list[subprocess.Popen] = field(default_factory=list)

    def doc_store_url(self) -> str:
        """The first host of the config's Elasticsearch document store."""
        return YAML(typ="safe", pure=True).load(self.config)["doc_store"]["hosts"][0]

    def ragfleet(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(RAGFLEET), "--config", str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def start_executor(self, instance: int = 1) -> None:
        log = (self.config.parent / f"executor{instance}.log").open("ab")
        argv = [str(RAGFLEET), "--config", str(self.config), "run", "--instance", str(instance)]
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        self.processes.append(process)
        name = f"task_executor_{HOST_ID}_{instance}"
        # Ready when RAGFlow's status page would list it: a member of TASKEXE with a beat.
        wait_for(lambda: self.ragflow.heartbeats().get(name), 30, f"{name}'s heartbeat")

    def stop_executors(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                assert process.wait(30) == 0, "an executor did not drain and exit 0"
            finally:
                if process.poll() is None:
                    process.kill()
        self.processes.clear()

    def wait_document(self, doc_id: str, timeout: float = 60) -> dict[str, Any]:
        """The document once RAGFlow's UI would show it finished (progress 1 or -1)."""

        def finished() -> dict[str, Any] | None:
            doc = self.ragflow.document(doc_id)
            tasks = self.ragflow.tasks(doc_id)
            settled = all(t["progress"] >= 1 or t["progress"] < 0 for t in tasks)
            return doc if settled and doc["progress"] in (1, -1) else None

        return wait_for(finished, timeout, f"document {doc_id} to finish")
