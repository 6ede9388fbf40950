"""Benchmark `configc build` on generated topologies of many hosts.

What it measures, for each size (default 10, 100 and 1,000 hosts):

- cli: the whole `configc build CONF -o OUT --overlay HOSTS --quiet` in a subprocess, wall
  time, interpreter start-up and imports included, into a fresh (empty) output directory;
- in-process, when configc's Python API is importable: load+validate
  (``configc.config.load_config``), render (``TreeRenderer(...).files()`` plus
  ``manifest_file``, as the CLI does) and write (``configc.output.write_tree``), each timed
  separately, also into a fresh output directory.

The conf dir is a copy of conf/service_conf.yaml; each size gets an overlay setting
executor.db_type: mysql, executor.doc_engine: elasticsearch, executor.storage: database
(configc refuses the shipped sqlite/embedded/local on more than one host), redis.password,
mysql.password and es.password (16+ characters: configc checks a fleet's passwords),
and a hosts list of 1 redis, 1 mysql, 3 elasticsearch hosts and the rest executors on
10.x.y.z addresses (strings in a config only: no network is touched). Sizes are interleaved
within each repeat, so a noisy neighbour slows every size alike rather than one. Everything
lives in a temp dir that is removed at the end.

Each build gets its own output directory, and the trees are kept until the end rather than
deleted after each build: on ext4 without a journal, the kernel avoids reusing inodes freed
in the last minute or more, and scans past every one of them on each new file or directory,
so deleting a 1,000-host tree (about 9,000 inodes) made the next build's write phase several
times slower. ``--delete-outputs`` restores the old behaviour, to measure that case.

Run from the repository root:

    .venv/bin/python bench/configc_build.py [--sizes 10,100,1000] [--repeat 5] [--delete-outputs]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIGC = ROOT / ".venv" / "bin" / "configc"
SERVICES = [("redis-0", "redis"), ("mysql-0", "mysql")]
SERVICES += [(f"es-{i}", "elasticsearch") for i in range(3)]
PHASES = ("load", "render", "write", "in-process")  # in-process = the sum of the three

Timings = dict[tuple[int, str], list[float]]  # (hosts, phase) -> seconds, one per repeat
InProcess = Callable[[Path, Path, Path], dict[str, float]]


def address(index: int) -> str:
    """A distinct 10.x.y.z address for host *index* (last octet 1-250)."""
    high, low = divmod(index, 250)
    return f"10.{high // 256}.{high % 256}.{low + 1}"


def overlay_text(hosts: int) -> str:
    """The overlay YAML for a fleet of *hosts* hosts: the services, then executors."""
    executors = [(f"exec-{i:05d}", "executor") for i in range(hosts - len(SERVICES))]
    lines = [
        "executor:",
        "  db_type: mysql",
        "  doc_engine: elasticsearch",
        "  storage: database",  # 'local' is refused on more than one host
        "redis:",
        "  password: 'bench-redis-password'",
        "mysql:",  # a fleet's passwords must be 16+ characters and not upstream's default
        "  password: 'bench-mysql-password'",
        "es:",
        "  password: 'bench-elastic-password'",
        "hosts:",
    ]
    for index, (name, role) in enumerate([*SERVICES, *executors]):
        lines += [f"  - name: {name}", f"    address: {address(index)}", f"    roles: [{role}]"]
    return "\n".join(lines) + "\n"


def make_inputs(work: Path, sizes: list[int]) -> tuple[Path, dict[int, Path]]:
    """Write the conf dir and one overlay per size under *work*."""
    conf = work / "conf"
    conf.mkdir()
    shutil.copy(ROOT / "conf" / "service_conf.yaml", conf / "service_conf.yaml")
    overlays = {}
    for size in sizes:
        overlays[size] = work / f"hosts-{size}.yaml"
        overlays[size].write_text(overlay_text(size))
    return conf, overlays


def cli_command(conf: Path, overlay: Path, out: Path) -> list[str]:
    return [str(CONFIGC), "build", str(conf), "-o", str(out), "--overlay", str(overlay), "--quiet"]


def time_cli(conf: Path, overlay: Path, out: Path) -> float:
    start = time.perf_counter()
    result = subprocess.run(cli_command(conf, overlay, out), capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"configc build failed ({result.returncode}):\n{result.stderr}")
    return elapsed


def in_process_runner() -> InProcess | None:
    """A function timing the three phases in-process, or None if the API is not reachable."""
    try:
        from configc.config import load_config
        from configc.output import manifest_file, write_tree
        from configc.render import TreeRenderer
    except ImportError as exc:
        print(f"in-process phases skipped: {exc}")
        return None

    def run(conf: Path, overlay: Path, out: Path) -> dict[str, float]:
        t0 = time.perf_counter()
        config = load_config(conf, [overlay], dict(os.environ))
        t1 = time.perf_counter()
        files = TreeRenderer(config.document).files()
        files = [*files, manifest_file(files, config.input_files)]
        t2 = time.perf_counter()
        write_tree(out, files)
        t3 = time.perf_counter()
        return {"load": t1 - t0, "render": t2 - t1, "write": t3 - t2, "in-process": t3 - t0}

    return run


def run_once(
    size: int,
    rep: int,
    conf: Path,
    overlay: Path,
    in_process: InProcess | None,
    timings: Timings,
    delete_outputs: bool,
) -> int:
    """One CLI build and one in-process build of *size* hosts; return the files written."""
    out = conf.parent / f"out-{size}-{rep}-cli"
    timings[size, "cli"].append(time_cli(conf, overlay, out))
    files = sum(1 for p in out.rglob("*") if p.is_file())
    if delete_outputs:
        shutil.rmtree(out)
    if in_process:
        out = conf.parent / f"out-{size}-{rep}-api"
        for phase, seconds in in_process(conf, overlay, out).items():
            timings[size, phase].append(seconds)
        if delete_outputs:
            shutil.rmtree(out)
    return files


def measure(
    sizes: list[int], repeat: int, work: Path, delete_outputs: bool
) -> tuple[Timings, dict[int, int]]:
    conf, overlays = make_inputs(work, sizes)
    in_process = in_process_runner()
    time_cli(conf, overlays[sizes[0]], work / "warm-up")  # page cache, .pyc files
    timings: Timings = defaultdict(list)
    files: dict[int, int] = {}
    for rep in range(repeat):  # sizes interleaved, alternately up and down
        for size in sizes if rep % 2 == 0 else reversed(sizes):
            files[size] = run_once(
                size, rep, conf, overlays[size], in_process, timings, delete_outputs
            )
    return timings, files


def report(timings: Timings, files: dict[int, int], sizes: list[int]) -> None:
    best = {key: min(values) for key, values in timings.items()}
    median = {key: statistics.median(values) for key, values in timings.items()}
    phases = [p for p in PHASES if (sizes[0], p) in best]
    print(f"{'hosts':>6} {'files':>6} {'cli best s':>10} {'cli med s':>10} {'ms/host':>8}", end="")
    print("".join(f" {p + ' s':>13}" for p in phases))
    for size in sizes:
        cli = f"{best[size, 'cli']:>10.3f} {median[size, 'cli']:>10.3f}"
        print(f"{size:>6} {files[size]:>6} {cli} {1000 * median[size, 'cli'] / size:>8.2f}", end="")
        print("".join(f" {median[size, p]:>13.3f}" for p in phases))
    print("(ms/host and the phase columns are medians; phases run in-process, no start-up)")
    low, high = sizes[0], sizes[-1]
    for phase in ("cli", *phases):
        ratio = (median[high, phase] / high) / (median[low, phase] / low)
        marginal = (median[high, phase] - median[low, phase]) / (high - low)
        print(
            f"{phase:>10}: per-host cost at {high} / at {low} hosts = {ratio:.2f}; "
            f"marginal {1000 * marginal:.2f} ms/host"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000", help="comma-separated host counts")
    parser.add_argument("--repeat", type=int, default=5, help="runs per size (default 5)")
    parser.add_argument(
        "--delete-outputs",
        action="store_true",
        help="delete each output tree right after its build instead of at the end",
    )
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    if sizes[0] <= len(SERVICES) or args.repeat < 1:
        parser.error(f"each size needs more than {len(SERVICES)} hosts, and --repeat >= 1")
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    python = platform.python_version()
    print(f"machine: nproc {os.cpu_count()}, Python {python}, {platform.platform()}")
    with tempfile.TemporaryDirectory(prefix="configc-bench-") as tmp:
        work = Path(tmp)
        each = cli_command(work / "conf", work / "hosts-N.yaml", work / "out-N")
        print(f"each run: {' '.join(each)}")
        timings, files = measure(sizes, args.repeat, work, args.delete_outputs)
    report(timings, files, sizes)


if __name__ == "__main__":
    main()
