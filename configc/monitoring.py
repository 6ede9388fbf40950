"""The monitoring host's files: Prometheus's scrape config and ragfleet's alert rules.

Prometheus (Debian's package, deploy/roles/monitoring) runs on the host with the
``monitoring`` role and scrapes every executor instance's /metrics, and the node, Redis and
MariaDB exporters the role installs on the hosts (validate.EXPORTERS).
"""

from __future__ import annotations

from typing import Any

from executor.settings_spec import metrics_host

from .validate import EXPORTERS, PROMETHEUS_PORT, instance_count

PROMETHEUS_DIR = "etc/prometheus"
RULES_FILE = "ragfleet-alerts.yml"
EXECUTOR_JOB = "ragfleet-executor"
# The scrape job of each exporter, by the host role that gets it (validate.EXPORTERS).
EXPORTER_JOBS = {"all": "node", "redis": "redis", "mysql": "mysqld"}
_ANY_ADDRESS = ("0.0.0.0", "::")


def target(address: str, port: int) -> str:
    """``host:port`` as Prometheus reads a target (an IPv6 literal in brackets)."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def executor_targets(doc: dict[str, Any], host: dict[str, Any]) -> list[str]:
    """Where *host*'s instances serve /metrics: the address runtime.py binds them to (the
    host's own address when they listen on every interface)."""
    executor = doc["executor"]
    fleet = len(doc["hosts"]) > 1
    address = metrics_host(executor["metrics_bind"], host["address"], fleet)
    if address in _ANY_ADDRESS:
        address = host["address"]
    base = executor["metrics_port_base"]
    return [target(address, base + n) for n in range(1, instance_count(doc, host) + 1)]


def _static(targets: list[str], host: dict[str, Any]) -> dict[str, Any]:
    return {"targets": targets, "labels": {"host": host["name"]}}


def scrape_configs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    hosts = doc["hosts"]
    monitor = next(h for h in hosts if "monitoring" in h["roles"])
    jobs = [
        {
            "job_name": "prometheus",
            "static_configs": [_static([f"localhost:{PROMETHEUS_PORT}"], monitor)],
        },
        {
            "job_name": EXECUTOR_JOB,
            "static_configs": [
                _static(executor_targets(doc, h), h) for h in hosts if "executor" in h["roles"]
            ],
        },
    ]
    for role, job in EXPORTER_JOBS.items():
        port = EXPORTERS[role][1]
        watched = [h for h in hosts if role == "all" or role in h["roles"]]
        if watched:
            configs = [_static([target(h["address"], port)], h) for h in watched]
            jobs.append({"job_name": job, "static_configs": configs})
    return jobs


def prometheus_config(doc: dict[str, Any]) -> dict[str, Any]:
    """prometheus.yml: the global intervals, ragfleet's rules, the scrape jobs."""
    interval = f"{doc['monitoring']['scrape_interval']}s"
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [RULES_FILE],  # beside prometheus.yml, which Prometheus reads it from
        "scrape_configs": scrape_configs(doc),
    }
