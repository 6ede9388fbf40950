"""Observability on the converged fleet: the live Prometheus on the monitoring host, and
the executors' lines as journald filed them.

Prometheus (Debian's package, on exec1: five-hosts.yaml gives it the `monitoring` role)
must scrape every target configc compiled, all up; load the seven alert rules; answer every
query of the shipped Grafana dashboard and every alert's expression (its comparison
removed) with data; and fire RagfleetExecutorDown for a stopped instance within the rule's
`for` plus one scrape (and one rule evaluation, which Prometheus needs to notice).

Runs after test_deploy.py (same session fixture), whose last test stops the executors:
the module fixture starts them again. The queries go from this machine to the monitoring
host's port 9090 over the testbed's bridge.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from typing import Any

import pytest
from deployment import RAGFLEET, Deployment, converged, task_row
from executors import wait_for
from ruamel.yaml import YAML
from test_monitoring_dashboard import queries
from testbed import log

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

RULES = {
    "RagfleetExecutorDown",
    "RagfleetQueueStale",
    "RagfleetDeadLettersGrowing",
    "RagfleetDependencyDown",
    "ExporterDown",
    "HostDiskNearlyFull",
    "RedisMemoryNearMax",
}
COMPARISONS = ("==", "!=", ">=", "<=", ">", "<")


class Prometheus:
    """The HTTP API of the monitoring host's Prometheus."""

    def __init__(self, url: str) -> None:
        self.url = url

    def get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=10) as response:
            return response.read().decode()

    def api(self, path: str, **params: str) -> Any:
        body = json.loads(self.get(f"/api/v1/{path}", **params))
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", (expr, data)
        return data["result"]


def compiled_targets(deployment: Deployment) -> set[tuple[str, str]]:
    """(job, target) of every scrape target configc compiled for the monitoring host."""
    monitor = deployment.group("monitoring")[0]
    path = deployment.out / "hosts" / monitor / "etc/prometheus/prometheus.yml"
    config = YAML(typ="safe").load(path.read_text())
    return {
        (job["job_name"], target)
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }


def measure(expr: str) -> str:
    """An alert expression without its threshold: what it compares, the left operand of its
    first comparison outside parentheses, braces, brackets and strings."""
    depth, quoted, i = 0, False, 0
    while i < len(expr):
        char = expr[i]
        if quoted:
            quoted = char != '"' or expr[i - 1] == "\\"
        elif char == '"':
            quoted = True
        elif char in "({[":
            depth += 1
        elif char in ")}]":
            depth -= 1
        elif depth == 0 and expr.startswith(COMPARISONS, i) and expr[i : i + 2] != "=~":
            return expr[:i].strip()
        i += 1
    raise AssertionError(f"no comparison in {expr!r}")


def alerts(prometheus: Prometheus, name: str, state: str) -> list[dict[str, Any]]:
    return [
        a
        for a in prometheus.api("alerts")["alerts"]
        if a["labels"]["alertname"] == name and a["state"] == state
    ]


@pytest.fixture(scope="module")
def prometheus(deployment: Deployment) -> Prometheus:
    """The monitoring host's Prometheus, with every executor instance running again."""
    converged(deployment)
    for host in deployment.instances():
        deployment.ssh(host, "systemctl start ragfleet-executor.target")
    monitor = deployment.group("monitoring")[0]
    address = deployment.inventory["all"]["hosts"][monitor]["ansible_host"]
    return Prometheus(f"http://{address}:9090")


def test_the_threshold_is_cut_where_it_should_be() -> None:
    """measure() itself, on the shapes the rules use."""
    assert measure('up{job="ragfleet-executor"} == 0') == 'up{job="ragfleet-executor"}'
    assert measure('max by (q) (x{a=~"b|c"}) > 1800') == 'max by (q) (x{a=~"b|c"})'
    assert measure("a / b < 10 / 100 and c == 0") == "a / b"
    assert measure('x{l="a>b"} >= 1') == 'x{l="a>b"}'


def test_prometheus_is_ready(prometheus: Prometheus) -> None:
    assert "Ready" in prometheus.get("/-/ready")


def test_every_compiled_target_is_scraped_and_up(
    deployment: Deployment, prometheus: Prometheus
) -> None:
    expected = compiled_targets(deployment)
    executors = {
        f"{deployment.inventory['all']['hosts'][host]['ansible_host']}:{port}"
        for host in deployment.instances()
        for port in deployment.inventory["all"]["hosts"][host]["ragfleet_metrics_ports"]
    }
    assert {t for job, t in expected if job == "ragfleet-executor"} == executors
    assert {job for job, _ in expected} == {
        "prometheus",
        "ragfleet-executor",
        "node",
        "redis",
        "mysqld",
    }

    def health() -> dict[tuple[str, str], str]:
        targets = prometheus.api("targets", state="active")["activeTargets"]
        return {(t["labels"]["job"], t["scrapeUrl"].split("/")[2]): t["health"] for t in targets}

    def all_up() -> bool:
        seen = health()
        return set(seen) == expected and set(seen.values()) == {"up"}

    try:
        wait_for(all_up, 90, "every target scraped and up", interval=2)
    except AssertionError:
        pytest.fail(f"targets: {health()}\nexpected: {sorted(expected)}", pytrace=False)


def test_the_seven_alert_rules_are_loaded_and_evaluate(prometheus: Prometheus) -> None:
    def rules() -> list[dict[str, Any]]:
        groups = prometheus.api("rules", type="alert")["groups"]
        return [rule for group in groups for rule in group["rules"]]

    wait_for(
        lambda: {r["name"] for r in rules()} == RULES and all(r["health"] == "ok" for r in rules()),
        60,
        "the rules loaded and evaluated without error",
        interval=2,
    )


def test_every_dashboard_query_returns_data(prometheus: Prometheus) -> None:
    def empty() -> list[str]:
        return [f"{title}: {expr}" for title, expr in queries() if not prometheus.query(expr)]

    assert len(queries()) >= 15
    try:
        wait_for(lambda: not empty(), 90, "every dashboard query to return data", interval=5)
    except AssertionError:
        pytest.fail("queries without data:\n" + "\n".join(empty()), pytrace=False)


def test_every_alert_expression_returns_data(prometheus: Prometheus) -> None:
    """Each rule as Prometheus loaded it: the whole expression evaluates, and what it
    compares returns series (an alert that can never see data could never fire)."""
    groups = prometheus.api("rules", type="alert")["groups"]
    rules = {rule["name"]: rule["query"] for group in groups for rule in group["rules"]}
    assert set(rules) == RULES
    for expr in rules.values():
        prometheus.query(expr)  # no error

    def empty() -> list[str]:
        measures = {name: measure(expr) for name, expr in rules.items()}
        return [f"{name}: {m}" for name, m in measures.items() if not prometheus.query(m)]

    try:
        wait_for(lambda: not empty(), 90, "every alert's measure to return data", interval=5)
    except AssertionError:
        pytest.fail("alert measures without data:\n" + "\n".join(empty()), pytrace=False)


def test_a_stopped_instance_fires_executor_down_in_time(
    deployment: Deployment, prometheus: Prometheus
) -> None:
    """Stop exec2's instance 1; RagfleetExecutorDown fires for it (and only it) within the
    rule's `for` + one scrape + one evaluation (the two intervals are equal here)."""
    config = compiled_rules_settings(deployment)
    host, unit = "exec2", "ragfleet-executor@1"
    address = deployment.inventory["all"]["hosts"][host]["ansible_host"]
    port = deployment.inventory["all"]["hosts"][host]["ragfleet_metrics_ports"][0]
    instance = f"{address}:{port}"
    bound = config["for"] + 2 * config["interval"] + 5  # + a scrape, an evaluation, slack
    quiet_before_the_stop(prometheus, 4 * config["interval"] + 10)
    deployment.ssh(host, f"systemctl stop {unit}")
    stopped = time.monotonic()
    try:
        firing = wait_for(
            lambda: alerts(prometheus, "RagfleetExecutorDown", "firing"),
            bound + 60,
            "RagfleetExecutorDown to fire",
            interval=1,
        )
        took = time.monotonic() - stopped
        log(f"RagfleetExecutorDown fired {took:.1f} s after the stop (bound {bound} s)")
        assert [a["labels"]["instance"] for a in firing] == [instance]
        assert firing[0]["labels"]["host"] == host
        assert took <= bound, f"fired after {took:.1f} s, bound {bound} s"
    finally:
        deployment.ssh(host, f"systemctl start {unit}")
    wait_for(
        lambda: not alerts(prometheus, "RagfleetExecutorDown", "firing"),
        60,
        "the alert to resolve once the instance is back",
        interval=2,
    )


def quiet_before_the_stop(prometheus: Prometheus, timeout: float) -> None:
    """Wait until no RagfleetExecutorDown is pending or firing. The fixture has just started
    the instances test_deploy.py stopped: each one's alert (pending, or firing if it was
    down longer than the rule's `for`) lasts until an evaluation after a scrape that finds
    it up, which can come after every target already shows up."""

    def active() -> list[str]:
        return [
            f"{a['labels']['instance']} ({a['labels']['host']}) {state} since {a['activeAt']}"
            for state in ("pending", "firing")
            for a in alerts(prometheus, "RagfleetExecutorDown", state)
        ]

    try:
        wait_for(lambda: not active(), timeout, "no RagfleetExecutorDown active", interval=1)
    except AssertionError:
        pytest.fail(f"RagfleetExecutorDown still active before the stop: {active()}", pytrace=False)


def compiled_rules_settings(deployment: Deployment) -> dict[str, int]:
    """RagfleetExecutorDown's `for` and the scrape/evaluation interval, in seconds, as configc
    compiled them for the monitoring host."""
    monitor = deployment.out / "hosts" / deployment.group("monitoring")[0] / "etc/prometheus"
    config = YAML(typ="safe").load((monitor / "prometheus.yml").read_text())
    rules = YAML(typ="safe").load((monitor / "ragfleet-alerts.yml").read_text())
    down = next(
        r for g in rules["groups"] for r in g["rules"] if r.get("alert") == "RagfleetExecutorDown"
    )
    interval = config["global"]["scrape_interval"]
    assert interval == config["global"]["evaluation_interval"]
    return {"for": int(down["for"].removesuffix("s")), "interval": int(interval.removesuffix("s"))}


def test_the_journal_filters_the_executors_errors_by_priority(deployment: Deployment) -> None:
    """A failing task's error, as journald filed it from the `<N>` prefix: `journalctl -p
    err` shows it (with the task's id) and no info line; `-p info` has both the error and
    the start-up lines of an instance restarted meanwhile."""
    converged(deployment)
    since = {h: deployment.ssh(h, "date '+%F %T'").stdout.strip() for h in deployment.instances()}
    # Info lines to filter out: an instance restarted logs its start at info.
    deployment.ssh("exec1", "systemctl restart ragfleet-executor@1")
    payload = json.dumps({"seconds": 0, "fail": "boom in the e2e"})
    task_id = deployment.ssh("exec1", f"{RAGFLEET} submit -t sleep -p '{payload}'").stdout.strip()
    wait_for(
        lambda: (row := task_row(deployment, task_id)) and row["state"] == "failed",
        60,
        f"task {task_id} to fail",
        interval=1,
    )

    def journal(priority: str) -> str:
        return "".join(
            deployment.ssh(
                host,
                f"journalctl -q -o cat -p {priority} -u 'ragfleet-executor@*' --since '{at}'",
            ).stdout
            for host, at in since.items()
        )

    errors = wait_for(
        lambda: (text := journal("err")) and "boom in the e2e" in text and text,
        30,
        "the error in the journal",
        interval=1,
    )
    assert f"task={task_id}" in errors and f"task {task_id} failed" in errors, errors
    assert "INFO" not in errors and "started as" not in errors, errors
    assert not any(line.startswith("<") for line in errors.splitlines()), errors  # prefix read
    everything = journal("info")
    assert "boom in the e2e" in everything and "started as task_executor_exec1_1" in everything
    assert "started as" not in journal("err")
