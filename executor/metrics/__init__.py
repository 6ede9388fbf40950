"""Prometheus metrics: prometheus_client's registry (registry.py) and the HTTP endpoint that
exposes it with /healthz (endpoint.py). The worker's metrics are named in executor.worker."""

from .endpoint import serve_metrics, serve_metrics_on
from .registry import DEFAULT_BUCKETS, Metrics

__all__ = ["DEFAULT_BUCKETS", "Metrics", "serve_metrics", "serve_metrics_on"]
