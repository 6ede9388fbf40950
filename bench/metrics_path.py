"""Measure the metrics' cost on the task path: a baseline revision (by default ``main``, the
hand-written registry) against this checkout (prometheus_client), side by side in one run.

1. Full path: real ``ragfleet run`` processes of each version, N no-op tasks pre-enqueued
   on SQLite, one process of 5 slots, on one redis-server (bench/executor_throughput.py's
   Bench: fresh Redis and database per case). The versions alternate, ``--repeat`` times;
   medians of the wall and active rates (as executor_throughput.py defines them). The
   baseline runs from ``git archive REV executor`` in a temp dir, with this venv.
2. The metric calls one task makes, timed alone: the baseline's registry module (read with
   ``git show REV:executor/metrics/registry.py``) with its counters as the worker used them,
   against this checkout's Meters; and one render of each worker's registry.

Run from the repository root (about 2 minutes with the defaults):

    .venv/bin/python bench/metrics_path.py --tasks 3000 --repeat 3
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

import executor_throughput as et  # noqa: E402

from executor.metrics import Metrics  # noqa: E402
from executor.worker.meters import Meters  # noqa: E402


class TwoVersions(et.Bench):
    """Bench whose "base-full" kind is ``ragfleet run`` of the baseline's code."""

    def __init__(self, *args: Any, baseline: Path) -> None:
        super().__init__(*args)
        self.baseline = baseline

    def spawn(self, kind: str, config: Path, instance: int) -> et.Proc:
        if kind != "base-full":
            return super().spawn(kind, config, instance)
        log = config.parent / f"{kind}-{instance}.log"
        code = "import sys; from executor.cli import main; sys.exit(main())"
        command = [sys.executable, "-c", code, "--config", str(config), "run"]
        env = {**os.environ, "PYTHONPATH": str(self.baseline)}
        with log.open("ab") as out:
            process = subprocess.Popen(
                [*et.pdeathsig(), *command, "--instance", str(instance)],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.baseline,
                env=env,
            )
        proc = et.Proc(process, log, None)
        self.procs.append(proc)
        return proc


def export(rev: str, into: Path) -> Path:
    """The executor package of *rev*, extracted under *into*."""
    archive = subprocess.run(
        ["git", "archive", rev, "executor"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def load_registry(rev: str) -> ModuleType:
    """The baseline's executor/metrics/registry.py as a module of its own (stdlib only)."""
    source = subprocess.run(
        ["git", "show", f"{rev}:executor/metrics/registry.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    spec = importlib.util.spec_from_loader("baseline_registry", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    exec(compile(source, "baseline_registry.py", "exec"), module.__dict__)
    return module


def per_task_ns(calls: int, one_task: Any) -> float:
    """Median over 5 runs of the nanoseconds one task's metric calls take."""
    runs = []
    for _ in range(5):
        started = time.perf_counter_ns()
        for i in range(calls):
            one_task(i)
        runs.append((time.perf_counter_ns() - started) / calls)
    return statistics.median(runs)


def micro(rev: str, calls: int) -> list[str]:
    old = load_registry(rev)
    registry = old.Metrics()
    done = registry.counter("ragfleet_tasks_done_total", "x")
    duration = registry.histogram("ragfleet_task_duration_seconds", "x")
    in_flight = registry.gauge("ragfleet_tasks_in_flight", "x")

    def old_task(i: int) -> None:  # what Outcomes did per task done: track, untrack, count
        in_flight.set(1)
        in_flight.set(0)
        done.inc()
        duration.observe(0.001 * (i % 50))

    metrics = Metrics(process=True)
    meters = Meters.define(metrics, ["noop"])
    metrics.build_info()

    def new_task(i: int) -> None:
        meters.in_flight.set(1)
        meters.in_flight.set(0)
        meters.ended("noop", "done", 0.001 * (i % 50))

    old_ns, new_ns = per_task_ns(calls, old_task), per_task_ns(calls, new_task)
    old_render = min(_timed(registry.render) for _ in range(20))
    new_render = min(_timed(metrics.render) for _ in range(20))
    return [
        f"metric calls per task done ({calls} tasks, median of 5): "
        f"baseline {old_ns / 1000:.2f} us, prometheus_client {new_ns / 1000:.2f} us",
        f"one render (best of 20): baseline {old_render * 1000:.2f} ms "
        f"({len(registry.render())} bytes, its 3 metrics), prometheus_client "
        f"{new_render * 1000:.2f} ms ({len(metrics.render())} bytes, every worker metric "
        "but the queue and dependency gauges)",
    ]


def _timed(fn: Any) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def full_path(args: argparse.Namespace, work: Path, baseline: Path) -> list[str]:
    rates: dict[str, dict[str, list[float]]] = {}
    with et.servers(work, False) as (redis_server, _):
        bench = TwoVersions(work, redis_server, None, baseline=baseline)
        try:
            for repeat in range(args.repeat):
                for impl in ("base", "ours"):
                    result = bench.throughput(et.Case(impl, "full", 1, args.tasks))
                    got = rates.setdefault(impl, {"wall": [], "active": []})
                    for which in ("wall", "active"):
                        got[which].append(result.rate(which))
                    print(
                        f"  run {repeat + 1} {impl}: wall {result.rate('wall'):.0f}/s, "
                        f"active {result.rate('active'):.0f}/s",
                        flush=True,
                    )
        finally:
            bench.stop_all()
            bench.client.close()
    lines = ["| version | wall (median, range) | active (median, range) |", "|---|--:|--:|"]
    for impl, name in (("base", f"{args.baseline} (hand-written)"), ("ours", "prometheus_client")):
        cells = [_cell(rates[impl][which]) for which in ("wall", "active")]
        lines.append(f"| {name} | {cells[0]} | {cells[1]} |")
    ratio = statistics.median(rates["ours"]["active"]) / statistics.median(rates["base"]["active"])
    return [*lines, f"active rate, prometheus_client / baseline: {ratio:.3f}"]


def _cell(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f}/s ({min(values):,.0f}-{max(values):,.0f})"


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default="main", help="git revision to compare against")
    parser.add_argument("--tasks", type=int, default=3000, help="no-op tasks per case")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--calls", type=int, default=200_000, help="tasks in the micro timing")
    args = parser.parse_args(argv)
    command = " ".join([".venv/bin/python", "bench/metrics_path.py", *argv])
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="rf-bench-metrics-") as tmp:
        work = Path(tmp)
        (work / "baseline").mkdir()
        (work / "run").mkdir()
        baseline = export(args.baseline, work / "baseline")
        table = full_path(args, work / "run", baseline)
    report = [f"command: {command} (at {head})", *et.machine_facts(), "", *table, ""]
    print("\n".join([*report, *micro(args.baseline, args.calls)]))


if __name__ == "__main__":
    main(sys.argv[1:])
