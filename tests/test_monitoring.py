"""The monitoring host's compiled Prometheus config and alert rules, checked by promtool.

promtool (Debian's prometheus package) runs for real: ``check config`` on the compiled
prometheus.yml, ``check rules`` and ``test rules`` (each alert fires on the series it is
about, and only past its threshold and ``for``) on the compiled rules.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from confdirs import FIVE_HOSTS, shipped_conf, write
from ruamel.yaml import YAML

from configc.cli import main
from configc.config import load_config
from configc.errors import ConfigError

yaml = YAML(typ="safe", pure=True)
PASSWORDS = {
    "REDIS_PASSWORD": "monitoring-redis-password-012345",
    "MYSQL_PASSWORD": "monitoring-mysql-password-012345",
    "ELASTIC_PASSWORD": "monitoring-elastic-password-0123",
    "REDIS_EXECUTOR_PASSWORD": "monitoring-redis-executor-pw-012",
    "REDIS_OPERATOR_PASSWORD": "monitoring-redis-operator-pw-012",
}
# The five-host example with Prometheus on exec1.
FLEET = """
hosts:
  - {name: redis, address: 10.213.0.11, roles: [redis]}
  - {name: db, address: 10.213.0.12, roles: [mysql]}
  - {name: es, address: 10.213.0.13, roles: [elasticsearch]}
  - {name: exec1, address: 10.213.0.21, roles: [executor, monitoring]}
  - {name: exec2, address: 10.213.0.22, roles: [executor], executor_instances: 3}
"""
SINGLE = "hosts:\n  - {name: solo, address: 127.0.0.1, roles: [redis, executor, monitoring]}\n"
PROMETHEUS = "hosts/{host}/etc/prometheus"


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    if shutil.which("promtool") is None:
        pytest.fail(
            "promtool is missing: run scripts/setup.sh (Debian's prometheus)", pytrace=False
        )
    return subprocess.run(
        ["promtool", *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=120
    )


def build(tmp_path: Path, *overlays: str, local: str | None = None) -> Path:
    """``configc build`` of the shipped conf/ with *overlays* (YAML texts) over it."""
    conf = shipped_conf(tmp_path, local)
    paths = [write(tmp_path / f"overlay{i}.yaml", text) for i, text in enumerate(overlays)]
    flags = [a for p in (FIVE_HOSTS, *paths) if overlays for a in ("--overlay", str(p))]
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["build", str(conf), "-o", str(out), *flags], env=PASSWORDS, catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    return out


def targets(config: dict[str, Any], job: str) -> dict[str, str]:
    """The job's targets, each with its ``host`` label."""
    scrape = next(c for c in config["scrape_configs"] if c["job_name"] == job)
    return {t: s["labels"]["host"] for s in scrape["static_configs"] for t in s["targets"]}


def test_fleet_config_scrapes_every_instance_and_exporter(tmp_path: Path) -> None:
    out = build(tmp_path, FLEET)
    folder = out / PROMETHEUS.format(host="exec1")
    result = promtool("check", "config", "prometheus.yml", cwd=folder)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout
    config = yaml.load(folder / "prometheus.yml")
    assert config["global"]["scrape_interval"] == "15s"
    assert targets(config, "ragfleet-executor") == {
        "10.213.0.21:9471": "exec1",
        "10.213.0.21:9472": "exec1",
        "10.213.0.22:9471": "exec2",
        "10.213.0.22:9472": "exec2",
        "10.213.0.22:9473": "exec2",
    }
    addresses = {"redis": "11", "db": "12", "es": "13", "exec1": "21", "exec2": "22"}
    assert targets(config, "node") == {f"10.213.0.{a}:9100": h for h, a in addresses.items()}
    assert targets(config, "redis") == {"10.213.0.11:9121": "redis"}
    assert targets(config, "mysqld") == {"10.213.0.12:9104": "db"}
    assert targets(config, "prometheus") == {"localhost:9090": "exec1"}
    # The monitoring play's exporters go on every host.
    children = yaml.load(out / "inventory.yml")["all"]["children"]
    assert children["monitoring"] == {"hosts": {"exec1": None}}
    assert list(children["monitored"]["hosts"]) == list(addresses)
    # Only the monitoring host gets the files.
    assert sorted(p.name for p in out.glob("hosts/*/etc/prometheus/*")) == [
        "prometheus.yml",
        "ragfleet-alerts.yml",
    ]


def test_single_host_scrapes_loopback_and_explicit_bind(tmp_path: Path) -> None:
    config = yaml.load(
        build(tmp_path, local=SINGLE) / PROMETHEUS.format(host="solo") / "prometheus.yml"
    )
    assert targets(config, "ragfleet-executor") == {
        "127.0.0.1:9471": "solo",
        "127.0.0.1:9472": "solo",
    }
    assert "mysqld" not in {c["job_name"] for c in config["scrape_configs"]}
    # Instances on every interface are scraped at the host's address.
    every = FLEET + "executor:\n  metrics_bind: 0.0.0.0\n  metrics_port_base: 9500\n"
    config = yaml.load(
        build(tmp_path / "any", every) / PROMETHEUS.format(host="exec1") / "prometheus.yml"
    )
    assert "10.213.0.22:9503" in targets(config, "ragfleet-executor")


def test_no_monitoring_host_no_prometheus_files(tmp_path: Path) -> None:
    out = build(tmp_path, FLEET.replace("[executor, monitoring]", "[executor]"))
    assert not list(out.glob("hosts/*/etc/prometheus"))
    inventory = yaml.load(out / "inventory.yml")
    assert inventory["all"]["children"]["monitoring"] == {"hosts": {}}
    assert inventory["all"]["children"]["monitored"] == {"hosts": {}}


def problems(tmp_path: Path, *overlays: str) -> list[str]:
    conf = shipped_conf(tmp_path)
    paths = [FIVE_HOSTS]
    paths += [write(tmp_path / f"overlay{i}.yaml", text) for i, text in enumerate(overlays)]
    with pytest.raises(ConfigError) as info:
        load_config(conf, paths, PASSWORDS)
    return [p.message for p in info.value.problems]


def test_topology_and_threshold_rules(tmp_path: Path) -> None:
    two = FLEET.replace("roles: [redis]", "roles: [redis, monitoring]")
    assert problems(tmp_path / "a", two) == [
        "at most one host may have the 'monitoring' role (found: redis, exec1)"
    ]
    loopback = FLEET + "executor:\n  metrics_bind: 127.0.0.1\n"
    assert problems(tmp_path / "b", loopback) == [
        "the monitoring host cannot scrape executors bound to 127.0.0.1: use auto or an "
        "address the monitoring host reaches"
    ]
    assert problems(tmp_path / "c", FLEET + "monitoring:\n  disk_free_percent: 0\n") == [
        "min value is 1"
    ]
    # The exporters' ports collide like any other.
    clash = FLEET + "executor:\n  metrics_port_base: 9099\n"
    assert (
        "port 9100 is wanted by both executor@1 metrics and prometheus-node-exporter"
        in (problems(tmp_path / "d", clash)[0])
    )


# -- the alerts, unit-tested with promtool test rules ------------------------------------------

DEFAULTS = {
    "executor_down_for": 120,
    "queue_oldest_age": 1800,
    "dead_letter_window": 900,
    "dependency_down_for": 300,
    "disk_free_percent": 10,
    "redis_memory_percent": 90,
}
CUSTOM = {
    "executor_down_for": 60,
    "queue_oldest_age": 600,
    "dead_letter_window": 600,
    "dependency_down_for": 180,
    "disk_free_percent": 20,
    "redis_memory_percent": 75,
}
EXEC = {"job": "ragfleet-executor", "instance": "10.0.0.1:9471", "host": "exec1"}


def series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    inside = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{inside}}}", "values": values}


def case(inputs: list[dict[str, str]], alert: str, checks: list[tuple[int, list]]) -> dict:
    """One promtool test: *inputs* sampled each minute; at each (minute, alerts) of *checks*
    exactly *alerts* (their labels, severity aside) fire as *alert*."""
    return {
        "interval": "1m",
        "input_series": inputs,
        "alert_rule_test": [
            {
                "eval_time": f"{minute}m",
                "alertname": alert,
                "exp_alerts": [{"exp_labels": labels} for labels in alerts],
            }
            for minute, alerts in checks
        ],
    }


def alert_cases(t: dict[str, int]) -> list[dict]:
    """Each alert fires just past its threshold (and ``for``), not before, and not for what
    it must ignore. Durations are whole minutes in both threshold sets."""
    down, dep = t["executor_down_for"] // 60, t["dependency_down_for"] // 60
    age, window = t["queue_oldest_age"] // 60, t["dead_letter_window"] // 60
    disk, mem = t["disk_free_percent"], t["redis_memory_percent"]
    node = {"job": "node", "instance": "10.0.0.2:9100", "host": "db"}
    fs = {"instance": "10.0.0.2:9100", "host": "db", "fstype": "ext4", "mountpoint": "/"}
    tmpfs = {**fs, "fstype": "tmpfs", "mountpoint": "/run"}
    readonly = {**fs, "mountpoint": "/boot"}
    spare = {**fs, "mountpoint": "/srv"}
    redis = {"instance": "10.0.0.3:9121", "host": "redis"}
    unlimited = {"instance": "10.0.0.4:9121", "host": "cache"}
    queue = {"queue": "rag_flow_svr_queue"}
    return [
        case(
            [
                series("up", EXEC, "1 0x40"),
                series("up", {**EXEC, "instance": "10.0.0.1:9472"}, "1x40"),
                series("up", node, "0x40"),  # an exporter: not an executor
            ],
            "RagfleetExecutorDown",
            [(down, []), (down + 1, [{**EXEC, "severity": "critical"}])],
        ),
        case(
            [series("up", node, "1 0x40")],
            "ExporterDown",
            [(down, []), (down + 1, [{**node, "severity": "warning"}])],
        ),
        case(
            [  # every instance exports the fleet's figure: one alert per queue
                series("ragfleet_queue_oldest_entry_age_seconds", {**queue, **EXEC}, "0+60x80"),
                series(
                    "ragfleet_queue_oldest_entry_age_seconds",
                    {**queue, **EXEC, "instance": "10.0.0.1:9472"},
                    "0+60x80",
                ),
                series("ragfleet_queue_oldest_entry_age_seconds", {"queue": "other"}, "0x80"),
            ],
            "RagfleetQueueStale",
            [(age, []), (age + 1, [{**queue, "severity": "warning"}])],
        ),
        case(
            [series("ragfleet_dead_letter_entries", EXEC, f"3x{window + 20} 4x{window + 20}")],
            "RagfleetDeadLettersGrowing",
            [
                (window + 20, []),  # steady: never
                (window + 21, [{"severity": "warning"}]),  # 3 then, 4 from this minute
                (2 * window + 20, [{"severity": "warning"}]),
                (2 * window + 21, []),  # the growth left the window
            ],
        ),
        case(
            [
                series("ragfleet_dependency_up", {**EXEC, "dependency": "redis"}, "1 0x40"),
                series("ragfleet_dependency_up", {**EXEC, "dependency": "database"}, "1x40"),
            ],
            "RagfleetDependencyDown",
            [(dep, []), (dep + 1, [{**EXEC, "dependency": "redis", "severity": "critical"}])],
        ),
        case(
            [
                series("node_filesystem_size_bytes", fs, "1000x20"),
                series("node_filesystem_avail_bytes", fs, f"{(disk - 1) * 10}x20"),
                series("node_filesystem_readonly", fs, "0x20"),
                series("node_filesystem_size_bytes", tmpfs, "1000x20"),
                series("node_filesystem_avail_bytes", tmpfs, "0x20"),
                series("node_filesystem_readonly", tmpfs, "0x20"),
                series("node_filesystem_size_bytes", readonly, "1000x20"),
                series("node_filesystem_avail_bytes", readonly, "0x20"),
                series("node_filesystem_readonly", readonly, "1x20"),
                series("node_filesystem_size_bytes", spare, "1000x20"),
                series("node_filesystem_avail_bytes", spare, f"{(disk + 1) * 10}x20"),
                series("node_filesystem_readonly", spare, "0x20"),
            ],
            "HostDiskNearlyFull",
            [(4, []), (5, [{**fs, "severity": "warning"}])],
        ),
        case(
            [
                series("redis_memory_max_bytes", redis, "1000x20"),
                series("redis_memory_used_bytes", redis, f"{(mem - 1) * 10} {(mem + 1) * 10}x20"),
                series("redis_memory_max_bytes", unlimited, "0x20"),  # no maxmemory
                series("redis_memory_used_bytes", unlimited, "999999x20"),
            ],
            "RedisMemoryNearMax",
            [(5, []), (6, [{**redis, "severity": "critical"}])],
        ),
    ]


def rules_without_annotations(out: Path, host: str, folder: Path) -> Path:
    """The compiled rules less their annotations (the tests compare labels; the annotations'
    templates are checked by `promtool check rules` and one test below)."""
    rules = yaml.load(out / PROMETHEUS.format(host=host) / "ragfleet-alerts.yml")
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    path = folder / "rules.yml"
    with path.open("w") as stream:
        yaml.dump(rules, stream)
    return path


@pytest.mark.parametrize("thresholds", [DEFAULTS, CUSTOM], ids=["defaults", "custom"])
def test_each_alert_fires_past_its_threshold(tmp_path: Path, thresholds: dict[str, int]) -> None:
    overlay = "monitoring:\n" + "".join(f"  {k}: {v}\n" for k, v in thresholds.items())
    out = build(tmp_path, FLEET, "" if thresholds is DEFAULTS else overlay)
    check = promtool(
        "check", "rules", "ragfleet-alerts.yml", cwd=out / PROMETHEUS.format(host="exec1")
    )
    assert check.returncode == 0 and "SUCCESS: 7 rules found" in check.stdout, (
        check.stdout + check.stderr
    )
    rules = rules_without_annotations(out, "exec1", tmp_path)
    spec = {
        "rule_files": [rules.name],
        "evaluation_interval": "1m",
        "tests": alert_cases(thresholds),
    }
    with (tmp_path / "alerts_test.yml").open("w") as stream:
        yaml.dump(spec, stream)
    result = promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_a_wrong_expectation_fails(tmp_path: Path) -> None:
    """The harness can fail: expecting ExecutorDown one minute early is refused."""
    out = build(tmp_path, FLEET)
    rules = rules_without_annotations(out, "exec1", tmp_path)
    early = case([series("up", EXEC, "1 0x40")], "RagfleetExecutorDown", [(2, [EXEC])])
    spec = {"rule_files": [rules.name], "evaluation_interval": "1m", "tests": [early]}
    with (tmp_path / "early_test.yml").open("w") as stream:
        yaml.dump(spec, stream)
    result = promtool("test", "rules", "early_test.yml", cwd=tmp_path)
    assert result.returncode == 1 and "RagfleetExecutorDown" in result.stdout + result.stderr


def test_an_alert_says_which_instance(tmp_path: Path) -> None:
    """The annotations' templates expand (with the alert's labels)."""
    folder = build(tmp_path, FLEET) / PROMETHEUS.format(host="exec1")
    test = case([series("up", EXEC, "0x10")], "RagfleetExecutorDown", [])
    test["alert_rule_test"] = [
        {
            "eval_time": "3m",
            "alertname": "RagfleetExecutorDown",
            "exp_alerts": [
                {
                    "exp_labels": {**EXEC, "severity": "critical"},
                    "exp_annotations": {
                        "summary": "ragfleet executor 10.0.0.1:9471 (exec1) is down",
                        "description": "Prometheus cannot scrape 10.0.0.1:9471: the instance "
                        "is stopped, crashed or unreachable. See `systemctl status "
                        "'ragfleet-executor@*'` on exec1.",
                    },
                }
            ],
        }
    ]
    spec = {"rule_files": ["ragfleet-alerts.yml"], "evaluation_interval": "1m", "tests": [test]}
    with (folder / "annotations_test.yml").open("w") as stream:
        yaml.dump(spec, stream)
    result = promtool("test", "rules", "annotations_test.yml", cwd=folder)
    assert result.returncode == 0, result.stdout + result.stderr
