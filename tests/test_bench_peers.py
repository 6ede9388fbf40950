"""bench/peers.py in its quick mode: the JSON it writes has its shape, and every task enqueued
was handled exactly once, for ragfleet's queue path and each peer that is installed.

One run of the script (its own redis-server, as the other benchmarks) serves every test
here; no timing is asserted. A peer whose package is absent is skipped with the reason the
script gives (the peers come with the ``bench`` extra).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PEERS = ["taskiq", "dramatiq", "celery-prefork", "celery-solo", "rq", "arq"]  # peers_systems
SYSTEMS = ["ragfleet-queue", *PEERS]
TASKS, SAMPLES = 100, 2
pytestmark = pytest.mark.timeout(600)  # 7 systems' start-ups: about 2.5 min on 2 loaded cores


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("peers")
    command = [sys.executable, str(ROOT / "bench" / "peers.py"), "--quick"]
    command += ["--tasks", str(TASKS), "--samples", str(SAMPLES), "--procs", "1,2"]
    command += ["--systems", ",".join(SYSTEMS), "--out", str(out), "--timeout", "120"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (out / "peers.md").read_text().startswith("command: ")
    return json.loads((out / "peers.json").read_text())


def test_report_shape(report: dict[str, Any]) -> None:
    assert set(report) >= {"command", "facts", "settings", "versions", "unavailable"}
    assert set(report) >= {"throughput", "latency", "summary", "duration_s"}
    assert set(report["summary"]) == {"throughput", "pickup", "memory", "targets"}
    assert set(report["settings"]) | set(report["unavailable"]) == set(SYSTEMS)
    for target in report["summary"]["targets"]:
        assert set(target) == {"target", "procs", "best_peer", "ratio", "met"}


@pytest.mark.parametrize("system", SYSTEMS)
def test_every_task_handled_exactly_once(report: dict[str, Any], system: str) -> None:
    if system in report["unavailable"]:
        pytest.skip(f"{system}: {report['unavailable'][system]}")
    runs = [r for r in report["throughput"] if r["system"] == system]
    assert sorted(r["procs"] for r in runs) == [1, 2]
    for run in runs:
        assert run["tasks"] == TASKS
        counts = (run["handled"], run["duplicates"], run["missing"], run["unknown"])
        assert counts == (TASKS, 0, 0, 0), run
        assert run["wall_s"] > 0 and run["active_s"] >= 0
        assert run["memory_after"]["processes"] >= 1
    (latency,) = [entry for entry in report["latency"] if entry["system"] == system]
    assert len(latency["samples_s"]) == SAMPLES
    assert all(sample > 0 for sample in latency["samples_s"])
    assert latency["memory_idle"]["rss_kib"] > 0
    summary = report["summary"]
    assert set(summary["throughput"][system]) == {"1", "2"}  # JSON keys: the process counts
    assert set(summary["pickup"][system]) == {"samples", "p50_ms", "p99_ms"}
    assert set(summary["memory"][system]) == {"idle", "after"}
