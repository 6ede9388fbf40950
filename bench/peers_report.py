"""bench/peers.py's results: medians and ranges, the targets of issue 21, table and plot."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

OURS_QUEUE = "ragfleet-queue"
OURS_FULL = ("ragfleet-full-sqlite", "ragfleet-full-mariadb")


def summarise(data: dict[str, Any]) -> dict[str, Any]:
    rates: dict[str, dict[int, dict[str, Any]]] = {}
    for r in data["throughput"]:
        cell = rates.setdefault(r["system"], {}).setdefault(r["procs"], {"active": [], "wall": []})
        cell["active"].append(r["tasks"] / r["active_s"])
        cell["wall"].append(r["tasks"] / r["wall_s"])
        exact = r["duplicates"] == 0 and r["missing"] == 0 and r["unknown"] == 0
        cell["exactly_once"] = cell.get("exactly_once", True) and exact
    for by_procs in rates.values():
        for cell in by_procs.values():
            for key in ("active", "wall"):
                values = cell.pop(key)
                cell[key] = {"median": statistics.median(values), "min": min(values),
                             "max": max(values), "runs": len(values)}  # fmt: skip
    pickup = {}
    for entry in data["latency"]:
        ms = [s * 1000 for s in entry["samples_s"]]
        pickup[entry["system"]] = {"samples": len(ms), "p50_ms": pct(ms, 50), "p99_ms": pct(ms, 99)}
    memory = {}
    for entry in data["latency"]:
        memory.setdefault(entry["system"], {})["idle"] = entry["memory_idle"]
    for r in data["throughput"]:
        if r["procs"] == 1:
            memory.setdefault(r["system"], {}).setdefault("after_runs", []).append(
                r["memory_after"]
            )
    for found in memory.values():
        runs = found.pop("after_runs", [])
        if runs:  # the run with the median PSS
            found["after"] = sorted(runs, key=lambda m: m["pss_kib"])[len(runs) // 2]
    summary = {"throughput": rates, "pickup": pickup, "memory": memory}
    summary["targets"] = targets(summary)
    return summary


def pct(values: list[float], p: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


def is_peer(name: str) -> bool:
    return not name.startswith("ragfleet")


def targets(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 21's targets as ratios in this run: queue path >= 2x the best peer's rate,
    full path >= the best peer's rate, idle pickup p50 <= the best peer's."""
    out = []
    rates = summary["throughput"]
    procs_seen = sorted({p for by_procs in rates.values() for p in by_procs})
    for procs in procs_seen:
        peers = {
            n: r[procs]["active"]["median"] for n, r in rates.items() if is_peer(n) and procs in r
        }
        if not peers:
            continue
        best = max(peers, key=peers.__getitem__)
        for ours, need in ours_targets(rates):
            if procs in rates[ours]:
                ratio = rates[ours][procs]["active"]["median"] / peers[best]
                out.append({"target": f"{ours} >= {need:g}x best peer", "procs": procs,
                            "best_peer": best, "ratio": ratio, "met": ratio >= need})  # fmt: skip
    pickup = summary["pickup"]
    peers = {n: p["p50_ms"] for n, p in pickup.items() if is_peer(n)}
    if peers:
        best = min(peers, key=peers.__getitem__)
        for ours, _ in ours_targets(pickup):
            if ours.partition("@")[0] in (OURS_QUEUE, OURS_FULL[0]):
                ratio = pickup[ours]["p50_ms"] / peers[best]
                out.append({"target": f"{ours} pickup p50 <= best peer's", "procs": 1,
                            "best_peer": best, "ratio": ratio, "met": ratio <= 1.0})  # fmt: skip
    return out


def ours_targets(measured: dict[str, Any]) -> list[tuple[str, float]]:
    """ragfleet's systems measured (``name@SLOTS`` variants too) and the multiple of the
    best peer's rate each must reach: 2 for the queue path, 1 for the full paths."""
    out = []
    for name in measured:
        base = name.partition("@")[0]
        if base == OURS_QUEUE or base in OURS_FULL:
            out.append((name, 2.0 if base == OURS_QUEUE else 1.0))
    return out


def rate_cell(cell: dict[str, Any] | None) -> str:
    if cell is None:
        return "-"
    return f"{cell['median']:,.0f} ({cell['min']:,.0f}-{cell['max']:,.0f})"


def mib(memory: dict[str, int] | None) -> str:
    if not memory:
        return "-"
    return (
        f"{memory['rss_kib'] / 1024:.0f} / {memory['pss_kib'] / 1024:.0f} ({memory['processes']})"
    )


def markdown(data: dict[str, Any]) -> str:
    summary = data["summary"]
    rates = summary["throughput"]
    procs_seen = sorted({p for by_procs in rates.values() for p in by_procs})
    lines = [f"command: `{data['command']}`", "", *[f"- {f}" for f in data["facts"]], ""]
    lines += ["| system | version | settings |", "|---|---|---|"]
    lines += [f"| {n} | {data['versions'][n]} | {s} |" for n, s in data["settings"].items()]
    lines += [f"| {n} | - | not measured: {why} |" for n, why in data["unavailable"].items()]
    sizes = {r["system"]: r["tasks"] for r in data["throughput"]}
    head = [f"{p} proc active/s" for p in procs_seen] + [f"{p} proc wall/s" for p in procs_seen]
    lines += ["", "No-op tasks/s, median (min-max) of the repeats, N tasks a run:", ""]
    lines += ["| system | N | " + " | ".join(head) + " | exactly once |"]
    lines += ["|---|--:|" + "--:|" * len(head) + "---|"]
    for name, by_procs in rates.items():
        cells = [
            rate_cell(by_procs.get(p, {}).get(k)) for k in ("active", "wall") for p in procs_seen
        ]
        once = "yes" if all(c["exactly_once"] for c in by_procs.values()) else "**NO**"
        lines.append(f"| {name} | {sizes[name]:,} | " + " | ".join(cells) + f" | {once} |")
    lines += ["", "Idle pickup (1 process) and memory of the worker's process tree, "
              "RSS / PSS MiB (processes):", ""]  # fmt: skip
    lines += ["| system | samples | pickup p50 | pickup p99 | idle | after N tasks |"]
    lines += ["|---|--:|--:|--:|--:|--:|"]
    for name in rates:
        pick = summary["pickup"].get(name)
        mem = summary["memory"].get(name, {})
        p50, p99 = (
            (f"{pick['p50_ms']:,.1f} ms", f"{pick['p99_ms']:,.1f} ms") if pick else ("-",) * 2
        )
        samples = pick["samples"] if pick else "-"
        idle, after = mib(mem.get("idle")), mib(mem.get("after"))
        lines.append(f"| {name} | {samples} | {p50} | {p99} | {idle} | {after} |")
    lines += ["", "Issue 21's targets, as ratios in this run (active rates, medians):", ""]
    for t in summary["targets"]:
        verdict = "MET" if t["met"] else "NOT MET"
        lines.append(
            f"- {t['target']} ({t['procs']} proc, best peer {t['best_peer']}): "
            f"{t['ratio']:.2f}x -> {verdict}"
        )
    return "\n".join(lines)


def plot(data: dict[str, Any], path: Path) -> None:
    """Median active rate with its range per system and process count; pickup p50 and p99."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matplotlib.rcParams["svg.hashsalt"] = "ragfleet-peers"  # stable ids in the SVG
    summary = data["summary"]
    rates = summary["throughput"]
    names = list(rates)
    procs_seen = sorted({p for by_procs in rates.values() for p in by_procs})
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [3, 2]})
    width = 0.8 / len(procs_seen)
    for i, procs in enumerate(procs_seen):
        cells = [rates[n].get(procs, {}).get("active") for n in names]
        xs = [k + (i - (len(procs_seen) - 1) / 2) * width for k in range(len(names))]
        med = [c["median"] if c else 0 for c in cells]
        err = [[c["median"] - c["min"] if c else 0 for c in cells],
               [c["max"] - c["median"] if c else 0 for c in cells]]  # fmt: skip
        left.bar(xs, med, width, yerr=err, capsize=3, label=f"{procs} process(es)")
    left.set_xticks(range(len(names)), names, rotation=30, ha="right")
    left.set_ylabel("no-op tasks/s (median, min-max)")
    left.set_title("throughput, N no-op tasks pre-enqueued")
    left.legend()
    pick = [n for n in names if n in summary["pickup"]]
    xs = range(len(pick))
    right.bar(
        [x - 0.2 for x in xs], [summary["pickup"][n]["p50_ms"] for n in pick], 0.4, label="p50"
    )
    right.bar(
        [x + 0.2 for x in xs], [summary["pickup"][n]["p99_ms"] for n in pick], 0.4, label="p99"
    )
    right.set_yscale("log")
    right.set_xticks(list(xs), pick, rotation=30, ha="right")
    right.set_ylabel("ms, enqueue -> handler start (log)")
    right.set_title("idle pickup latency, 1 process")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, metadata={"Date": None})
    plt.close(fig)
