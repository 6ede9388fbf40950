"""The metrics registry: counters, gauges and histograms, rendered for Prometheus.

The registry renders the text exposition format, version 0.0.4
(https://prometheus.io/docs/instrumenting/exposition_formats/). It is not thread-safe and
need not be: the executor updates and renders metrics on its one trio thread. Code running in
a worker thread (``trio.to_thread``) must hand its numbers back to that thread rather than
update a metric itself.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, TypeVar

#: Upper bounds in seconds: sub-second Redis and database calls up to ten-minute documents.
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0
)  # fmt: skip

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")

# A series' labels as sorted (name, value) pairs: hashable, and sorted output for free.
LabelKey = tuple[tuple[str, str], ...]


# -- rendering helpers ------------------------------------------------------------------------


def _label_key(labels: dict[str, object], reserved: frozenset[str] = frozenset()) -> LabelKey:
    for name in labels:
        if not _LABEL_NAME.match(name) or name.startswith("__") or name in reserved:
            raise ValueError(f"invalid label name {name!r}")
    return tuple(sorted((name, str(value)) for name, value in labels.items()))


def _escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _format_labels(key: LabelKey) -> str:
    if not key:
        return ""
    return "{" + ",".join(f'{name}="{_escape_label_value(v)}"' for name, v in key) + "}"


def _format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


# -- metrics ----------------------------------------------------------------------------------


class _Metric:
    """One metric family: a name, its help text, and one series per label set."""

    kind: ClassVar[str]

    def __init__(self, name: str, help: str) -> None:
        if not _METRIC_NAME.match(name):
            raise ValueError(f"invalid metric name {name!r}")
        self.name = name
        self.help = help

    def render_lines(self) -> Iterator[str]:
        yield f"# HELP {self.name} {_escape_help(self.help)}"
        yield f"# TYPE {self.name} {self.kind}"
        yield from self._samples()

    def _samples(self) -> Iterator[str]:
        raise NotImplementedError


class Counter(_Metric):
    """A value that only goes up. A series appears on its first ``inc`` (``inc(0)`` for zero)."""

    kind = "counter"

    def __init__(self, name: str, help: str) -> None:
        super().__init__(name, help)
        self._values: dict[LabelKey, float] = {}

    def inc(self, amount: float = 1.0, /, **labels: object) -> None:
        """Add ``amount`` (>= 0) to the series named by ``labels`` (values go through str)."""
        if not amount >= 0:  # also rejects NaN
            raise ValueError(f"counter {self.name} cannot change by {amount!r}")
        key = _label_key(labels)
        self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: object) -> float:
        """The series' current value; 0.0 if it has never been incremented."""
        return self._values.get(_label_key(labels), 0.0)

    def _samples(self) -> Iterator[str]:
        for key in sorted(self._values):
            yield f"{self.name}{_format_labels(key)} {_format_value(self._values[key])}"


class Gauge(_Metric):
    """A value that goes up and down. A series appears on its first ``set``, ``inc`` or ``dec``."""

    kind = "gauge"

    def __init__(self, name: str, help: str) -> None:
        super().__init__(name, help)
        self._values: dict[LabelKey, float] = {}

    def set(self, value: float, /, **labels: object) -> None:
        self._values[_label_key(labels)] = float(value)

    def inc(self, amount: float = 1.0, /, **labels: object) -> None:
        key = _label_key(labels)
        self._values[key] = self._values.get(key, 0.0) + amount

    def dec(self, amount: float = 1.0, /, **labels: object) -> None:
        self.inc(-amount, **labels)

    def value(self, **labels: object) -> float:
        """The series' current value; 0.0 if it has never been set."""
        return self._values.get(_label_key(labels), 0.0)

    def _samples(self) -> Iterator[str]:
        for key in sorted(self._values):
            yield f"{self.name}{_format_labels(key)} {_format_value(self._values[key])}"


@dataclass(slots=True)
class _HistogramSeries:
    counts: list[int]  # per bucket, not cumulative: cumulated when rendered
    total: float = field(default=0.0)


class Histogram(_Metric):
    """Observations counted into cumulative ``le`` buckets, with their sum and count."""

    kind = "histogram"
    _RESERVED = frozenset({"le"})

    def __init__(self, name: str, help: str, buckets: Sequence[float] = DEFAULT_BUCKETS) -> None:
        super().__init__(name, help)
        bounds = [float(bound) for bound in buckets]
        if not bounds or any(math.isnan(b) for b in bounds) or bounds != sorted(set(bounds)):
            raise ValueError(f"histogram {name} buckets must be strictly increasing numbers")
        if bounds[-1] != math.inf:
            bounds.append(math.inf)
        self._bounds = tuple(bounds)
        self._series: dict[LabelKey, _HistogramSeries] = {}

    def observe(self, seconds: float, /, **labels: object) -> None:
        """Record one observation (usually a duration in seconds) in the labelled series."""
        if math.isnan(seconds):
            raise ValueError(f"histogram {self.name} cannot observe NaN")
        key = _label_key(labels, self._RESERVED)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _HistogramSeries([0] * len(self._bounds))
        # bisect_left: a value equal to a bound belongs to that bucket, since ``le`` is <=.
        series.counts[bisect.bisect_left(self._bounds, seconds)] += 1
        series.total += seconds

    def _samples(self) -> Iterator[str]:
        for key in sorted(self._series):
            series = self._series[key]
            cumulative = 0
            for bound, count in zip(self._bounds, series.counts, strict=True):
                cumulative += count
                labels = _format_labels((*key, ("le", _format_value(bound))))
                yield f"{self.name}_bucket{labels} {cumulative}"
            yield f"{self.name}_sum{_format_labels(key)} {_format_value(series.total)}"
            yield f"{self.name}_count{_format_labels(key)} {cumulative}"


_M = TypeVar("_M", bound=_Metric)


class Metrics:
    """A registry of metrics, rendered in registration order with series sorted by labels.

    Not thread-safe: create, update and render metrics on the trio thread only.
    """

    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}

    def counter(self, name: str, help: str) -> Counter:
        return self._register(Counter(name, help))

    def gauge(self, name: str, help: str) -> Gauge:
        return self._register(Gauge(name, help))

    def histogram(
        self, name: str, help: str, buckets: Sequence[float] = DEFAULT_BUCKETS
    ) -> Histogram:
        return self._register(Histogram(name, help, buckets))

    def _register(self, metric: _M) -> _M:
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name} is already registered")
        self._metrics[metric.name] = metric
        return metric

    def render(self) -> str:
        """Every metric in text exposition format 0.0.4; empty when nothing is registered."""
        lines = [line for metric in self._metrics.values() for line in metric.render_lines()]
        return "".join(f"{line}\n" for line in lines)
