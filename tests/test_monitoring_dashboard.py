"""deploy/grafana/ragfleet-fleet.json: every panel's query is valid PromQL (promtool) and
reads only metrics that exist: the executor's (from a real registry) or the exporters'."""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from ruamel.yaml import YAML

from executor.metrics import Metrics
from executor.queue.stats import QueuesSnapshot, QueueStats
from executor.worker.clock import SYSTEM_CLOCK
from executor.worker.gauges import HealthGauges, QueueGauges
from executor.worker.health import Health
from executor.worker.meters import Meters

DASHBOARD = Path(__file__).resolve().parents[1] / "deploy/grafana/ragfleet-fleet.json"
# What the monitoring role's exporters and Prometheus provide that the dashboard reads
# (Debian's prometheus-node-exporter 1.5, prometheus-redis-exporter 1.45,
# prometheus-mysqld-exporter 0.14; `up` is Prometheus's own per target).
EXPORTER_METRICS = {
    "up",
    "node_filesystem_avail_bytes",
    "node_filesystem_size_bytes",
    "redis_memory_used_bytes",
    "redis_memory_max_bytes",
    "mysql_up",
}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool"}
KEYWORDS |= {"and", "or", "unless", "inf", "nan"}


def executor_metrics() -> set[str]:
    """Every series name an executor's /metrics serves, from the executor's own code."""
    metrics = Metrics(process=True)
    metrics.build_info()
    Meters.define(metrics, ["", "noop"])
    metrics.register(HealthGauges(Health(logging.getLogger("test"), heartbeat_interval=1)))
    queues = QueueGauges(None, 60, SYSTEM_CLOCK, logging.getLogger("test"))  # type: ignore[arg-type]
    queue = QueueStats("q", 2, 1, 1, 5.0, {"c": 1})
    queues.snapshot = QueuesSnapshot([queue], dead_letters=0, taken_at=0.0)
    queues._taken = SYSTEM_CLOCK.monotonic()
    metrics.register(queues)
    families = text_string_to_metric_families(metrics.render())
    return {sample.name for family in families for sample in family.samples}


def queries() -> list[tuple[str, str]]:
    """(panel title, expression) of every panel's every target."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [(p["title"], t["expr"]) for p in panels if p["type"] != "row" for t in p["targets"]]


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads: identifiers outside strings, label matchers,
    ranges and grouping clauses that are not functions, keywords or numbers."""
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", bare)
    bare = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", bare)
    names = re.findall(r"(?<![\w.])([A-Za-z_:][A-Za-z0-9_:]*)\b(?!\s*\()", bare)
    return {n for n in names if n.lower() not in KEYWORDS}


def test_every_panel_has_a_query_and_a_unique_id() -> None:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        if panel["type"] != "row":
            assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"]), panel
            assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    """Each expression as a recording rule, checked by `promtool check rules`."""
    if shutil.which("promtool") is None:
        pytest.fail(
            "promtool is missing: run scripts/setup.sh (Debian's prometheus)", pytrace=False
        )
    rules = [{"record": f"dashboard:query_{i}", "expr": e} for i, (_, e) in enumerate(queries())]
    path = tmp_path / "dashboard.yml"
    with path.open("w") as stream:
        YAML(typ="safe", pure=True).dump(
            {"groups": [{"name": "dashboard", "rules": rules}]}, stream
        )
    result = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_promtool_refuses_a_broken_query(tmp_path: Path) -> None:
    """The check above can fail."""
    path = tmp_path / "broken.yml"
    path.write_text("groups:\n- name: d\n  rules:\n  - record: d:q\n    expr: sum by (x (up)\n")
    result = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0


def test_every_metric_is_exported() -> None:
    known = executor_metrics() | EXPORTER_METRICS
    used = {name for _, expr in queries() for name in metric_names(expr)}
    assert used - known == set()
    # The extraction sees what it should (so the subset above means something).
    assert metric_names('sum by (le) (rate(a_bucket{x="y"}[5m])) / b offset 5m > 0') == {
        "a_bucket",
        "b",
    }
    for needed in ("ragfleet_tasks_total", "ragfleet_queue_oldest_entry_age_seconds", "up"):
        assert needed in used
    assert "ragfleet_dependency_up" in used and "ragfleet_dependency_up" in known


def test_the_alerts_read_only_exported_metrics() -> None:
    """The same holds for the alert rules' expressions (rendered with the defaults)."""
    from configc.render import template_environment
    from configc.safe_values import SafeValues
    from configc.schema import SCHEMA

    defaults = {k: rule["default"] for k, rule in SCHEMA["monitoring"]["schema"].items()}
    env = template_environment(SafeValues())
    text = env.get_template("prometheus-alerts.yml.j2").render(m=defaults)
    rules = YAML(typ="safe", pure=True).load(text)["groups"][0]["rules"]
    known = executor_metrics() | EXPORTER_METRICS | {"node_filesystem_readonly"}
    used = {name for rule in rules for name in metric_names(rule["expr"])}
    assert used - known == set()
    assert len(rules) == 7 and "redis_memory_max_bytes" in used
