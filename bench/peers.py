"""ragfleet next to other Python task queues on Redis: no-op throughput, pickup, memory.

One run, one redis-server (tests/servers.py: free loopback port, password, AOF everysec,
hz 10), and with --mariadb one MariaDB, all in a temp dir removed at the end. Systems:

* ragfleet-queue: bench/executor_throughput.py's queue-only harness (the Worker's fetch
  loop on ``executor.queue.broker.Broker``: XREADGROUP, handler, MULTI XACK XDEL EXEC).
* ragfleet-full-sqlite, ragfleet-full-mariadb: real ``ragfleet run --instance N``
  processes; each task is read from its row, begun, given "received" and "done" progress,
  and acked. Their handler start is the row's begin_at.
* the peers, each in bench/peer_apps/ with the settings it states: taskiq (taskiq-redis
  streams broker), Dramatiq, Celery (prefork and solo pools), RQ, arq.

Every handler is bench/peer_apps/record.py's: it appends the task id and the time to a
file of its process (ragfleet's full path writes rows instead). Measured per system:

1. throughput: N tasks enqueued first (not timed), then P worker processes started.
   N is --tasks, cut for a slower system to about --cap seconds of its work (its rate in a
   1-process calibration run of 500 tasks, not reported), so that one run of every system
   takes minutes, not hours; the N of each system is in the report.
   ``wall`` = N / (start -> the parent sees N handled, polling every 50 ms), start-up
   included; ``active`` = N / (first -> last handler start). Every task must be handled
   exactly once (the ids recorded are checked; ragfleet's full path: N rows done).
   Repeats interleave the systems; the report gives medians and ranges.
2. idle pickup latency: one process, warmed by one task; then tasks sent one at a time, each
   after the previous was handled and a random idle gap; latency = handler start - the time
   just before the send (same machine, same clock).
3. memory: the worker's process tree (the command and its children), RSS and PSS from
   /proc/PID/smaps_rollup: idle (1 s after the warm-up task) and right after a 1-process
   throughput run, before it is stopped.

Run from the repository root (the peers come with the ``bench`` extra):

    .venv/bin/python bench/peers.py [--tasks 20000] [--cap 20] [--repeats 3] [--mariadb]
        [--systems all] [--quick]

``--systems ragfleet-full-sqlite@32,dramatiq`` measures only those; a ragfleet system named
``NAME@SLOTS`` runs with max_concurrent_tasks SLOTS instead of the bench's 5.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
APPS = ROOT / "bench" / "peer_apps"
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench"), str(APPS)]

import executor_throughput as et  # noqa: E402
import peers_report  # noqa: E402
from peers_systems import System, make_systems  # noqa: E402

QUICK = {"tasks": 300, "repeats": 1, "procs": [1], "samples": 5, "cap": 0}
CALIBRATION_TASKS = 500


def throughput(system: System, procs: int, tasks: int) -> dict[str, Any]:
    """One throughput run: enqueue, start, wait for all handled, check, stop."""
    system.reset()
    ids = system.enqueue(tasks)
    started = time.time()
    system.start(procs)
    try:
        et.wait_until(lambda: system.handled() >= tasks, system.procs)
        wall = time.time() - started
        memory = system.memory()
        time.sleep(0.3)  # a duplicate handled late would show in the check below
    finally:
        system.stop()
    check = system.check(ids)
    return {
        "system": system.name,
        "procs": procs,
        "tasks": tasks,
        "wall_s": wall,
        "active_s": check.pop("active_s"),
        **check,
        "memory_after": memory,
    }


def run_size(system: System, args: argparse.Namespace) -> tuple[int, dict[str, Any] | None]:
    """N for *system*: --tasks, but no more than about --cap seconds of its work, as a
    1-process calibration run of 500 tasks (not in the results) puts its rate."""
    if args.cap <= 0 or args.tasks <= CALIBRATION_TASKS:
        return args.tasks, None
    trial = throughput(system, 1, CALIBRATION_TASKS)
    progress(trial, "calibration")
    fits = int(CALIBRATION_TASKS / trial["active_s"] * args.cap) // 100 * 100
    return min(args.tasks, max(CALIBRATION_TASKS, fits)), trial


def latency(system: System, samples: int, rng: random.Random) -> dict[str, Any]:
    """Idle pickup latency of one process, and its memory idle."""
    system.reset()
    system.start(1)
    try:
        warm = system.enqueue(1)[0]
        system.wait_handled(warm)
        time.sleep(1.0)  # settled into its idle read, poll or sleep
        memory = system.memory()
        times = []
        for _ in range(samples):
            time.sleep(rng.uniform(*GAP))
            task_id, sent = system.enqueue_one_timed()
            times.append(system.wait_handled(task_id) - sent)
    finally:
        system.stop()
    return {"system": system.name, "samples_s": times, "memory_idle": memory}


GAP = (0.05, 0.55)  # idle gap before each latency sample: lands anywhere in a 0.5 s poll


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    with et.servers(work, args.mariadb) as (redis_server, mariadb):
        bench = et.Bench(work, redis_server, mariadb)
        systems = make_systems(args.systems, bench, work)
        results: list[dict[str, Any]] = []
        latencies: list[dict[str, Any]] = []
        calibration = []
        try:
            sizes = {}
            for system in systems.available:
                sizes[system.name], trial = run_size(system, args)
                calibration += [trial] if trial else []
            for repeat in range(args.repeats):
                for system in systems.available:
                    for procs in args.procs:
                        result = throughput(system, procs, sizes[system.name])
                        results.append({**result, "repeat": repeat + 1})
                        progress(result)
            rng = random.Random(args.seed)
            for system in systems.available:
                if system.pickup:
                    latencies.append(latency(system, args.samples, rng))
        finally:
            systems.close()
            bench.stop_all()
            bench.client.close()
        return {
            "settings": {s.name: s.settings for s in systems.available},
            "versions": {s.name: s.version for s in systems.available},
            "unavailable": systems.unavailable,
            "throughput": results,
            "calibration": calibration,
            "latency": latencies,
        }


def progress(result: dict[str, Any], what: str = "") -> None:
    print(
        f"  {result['system']:22} procs={result['procs']} N={result['tasks']}{what and ' '}"
        f"{what}: "
        f"{result['tasks'] / result['active_s']:,.0f}/s active, "
        f"{result['tasks'] / result['wall_s']:,.0f}/s wall, "
        f"handled {result['handled']} (dup {result['duplicates']}, missing {result['missing']})",
        flush=True,
    )


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=20000, help="N tasks per throughput run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--procs", type=lambda s: [int(p) for p in s.split(",")], default=[1, 2])
    parser.add_argument(
        "--cap",
        type=float,
        default=20,
        help="seconds of work a run may hold: a slower system's N is cut to fit (0: no cut)",
    )
    parser.add_argument("--samples", type=int, default=50, help="idle pickup samples a system")
    parser.add_argument(
        "--systems",
        default="all",
        help="comma-separated names, or all; ragfleet's take @SLOTS (ragfleet-queue@32: "
        "max_concurrent_tasks 32 instead of 5)",
    )
    parser.add_argument("--mariadb", action="store_true", help="also ragfleet-full-mariadb")
    parser.add_argument("--timeout", type=float, default=600, help="seconds a run may take")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "docs" / "peers",
        help="where peers.json, .md, .svg go (--quick: a temp dir, never the committed run)",
    )
    parser.add_argument(
        "--from-json",
        type=Path,
        help="measure nothing: write the table and plot of an earlier run's peers.json",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: defaults " + json.dumps(QUICK) + " (flags given still win), no plot",
    )
    if "--quick" in argv:
        out = Path(tempfile.gettempdir()) / "ragfleet-peers-quick"
        parser.set_defaults(**QUICK, out=out)
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    if args.from_json:
        data = json.loads(args.from_json.read_text())
        data["summary"] = peers_report.summarise(data)
    else:
        data = measure(args, argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.from_json:
        (args.out / "peers.json").write_text(json.dumps(data, indent=1) + "\n")
    table = peers_report.markdown(data)
    (args.out / "peers.md").write_text(table + "\n")
    if not args.quick:
        peers_report.plot(data, args.out / "peers.svg")
    print(table)
    print(f"({data['duration_s']:.0f} s; written to {args.out})")


def measure(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    et.CASE_TIMEOUT = args.timeout
    command = " ".join([".venv/bin/python", "bench/peers.py", *argv])
    facts = et.machine_facts()
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="rf-bench-peers-") as work:
        data = run(args, Path(work))
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    data["command"] = command
    data["facts"] = [*facts, f"load average at the end: {load}"]
    data["duration_s"] = time.monotonic() - began
    data["summary"] = peers_report.summarise(data)
    return data


if __name__ == "__main__":
    main(sys.argv[1:])
