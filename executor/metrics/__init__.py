"""Prometheus metrics: a small in-process registry (registry.py) and the HTTP endpoint that
exposes it (endpoint.py). The names below are what the worker uses."""

from .endpoint import serve_metrics, serve_metrics_on
from .registry import Counter, Gauge, Histogram, Metrics

__all__ = ["Counter", "Gauge", "Histogram", "Metrics", "serve_metrics", "serve_metrics_on"]
