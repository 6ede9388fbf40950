"""bench/soak.py, small: a few hundred no-op tasks through a real ``ragfleet run`` with its
own redis-server, as the bench runs 50,000. Checks the JSON's shape and that every task
was done exactly once; no timing or memory threshold (that is the bench's report)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TASKS = 300


def test_the_soak_runs_every_task_exactly_once_and_reports_rss() -> None:
    command = [sys.executable, str(ROOT / "bench" / "soak.py"), "--tasks", str(TASKS)]
    command += ["--wave", "100", "--every", "0.2", "--json", "-"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(result.stdout.splitlines()[-1])
    assert figures["tasks"] == TASKS and figures["warmup_tasks"] == TASKS // 10
    assert figures["check"] == {
        "rows": TASKS,
        "done_exactly_once": TASKS,
        "queued": 0,
        "pending": 0,
        "dead_letters": 0,
    }
    rss = figures["rss_kib"]
    assert set(rss) == {"start", "warm", "end", "max"}
    assert all(isinstance(value, int) and value > 0 for value in rss.values())
    assert isinstance(figures["growth"], float) and figures["seconds"] > 0
    samples = figures["samples"]
    assert samples and set(samples[0]) == {"seconds", "rss_kib", "done"}
    assert samples[-1]["done"] == TASKS
    assert [s["done"] for s in samples] == sorted(s["done"] for s in samples)
