"""The metrics registry: prometheus_client's, one per executor, rendered by endpoint.py.

prometheus_client's metric types are thread-safe, so code in a worker thread may update
them; custom collectors (executor.worker.gauges) are called while rendering, on the trio
thread, and must only read what is in memory.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.registry import Collector

from ..version import build_info

# The ``_created`` series (a gauge per counter series, the time it was made) double the
# output and no alert or dashboard of ours reads them.
prometheus_client.disable_created_metrics()

#: Upper bounds in seconds: sub-second Redis and database calls up to ten-minute documents.
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0
)  # fmt: skip


class ProcessMetrics(ProcessCollector):
    """prometheus_client's process collector, also under the unit's ``ProcSubset=pid``.

    That hardening hides /proc/stat, where the parent reads the boot time; failing, it
    reports no process metric at all. The boot time is then the clock's less the time since
    boot (CLOCK_BOOTTIME), which is what /proc/stat's ``btime`` holds.
    """

    def _boot_time(self) -> float:
        try:
            return super()._boot_time()
        except OSError:
            return time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)


class Metrics:
    """One registry: metrics made with it are rendered by :meth:`render`."""

    def __init__(self, *, process: bool = False) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        if process:  # process_cpu_seconds_total, process_resident_memory_bytes, ...
            ProcessMetrics(registry=self.registry)

    def counter(self, name: str, help: str, labels: Sequence[str] = ()) -> Counter:
        return Counter(name, help, labels, registry=self.registry)

    def gauge(self, name: str, help: str, labels: Sequence[str] = ()) -> Gauge:
        return Gauge(name, help, labels, registry=self.registry)

    def histogram(
        self,
        name: str,
        help: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> Histogram:
        return Histogram(name, help, labels, registry=self.registry, buckets=buckets)

    def build_info(self) -> None:
        """``ragfleet_build_info{version,commit,python}`` 1: which code an instance runs."""
        labels = ("version", "commit", "python")
        info = self.gauge("ragfleet_build_info", "The running ragfleet.", labels)
        python = ".".join(str(part) for part in sys.version_info[:3])
        build = build_info()
        info.labels(version=build.version, commit=build.commit, python=python).set(1)

    def register(self, collector: Collector) -> None:
        self.registry.register(collector)

    def render(self) -> str:
        """Every metric in the text exposition format 0.0.4."""
        return prometheus_client.generate_latest(self.registry).decode()
