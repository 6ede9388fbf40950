"""Where the executors reach each service (configc/services.py), against real configc builds:
the topology's host, or an external service at its section's address; a section address
that contradicts the topology is an error at its line; ``explain`` says which and why."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from confdirs import FIVE_HOSTS, shipped_conf, write
from ruamel.yaml import YAML

from configc.cli import main

yaml_load = YAML(typ="safe", pure=True).load
VARIABLES = (
    "REDIS_HOST",
    "REDIS_PASSWORD",
    "MYSQL_PASSWORD",
    "ELASTIC_PASSWORD",
    "REDIS_EXECUTOR_PASSWORD",
    "REDIS_OPERATOR_PASSWORD",
)
FLEET = {
    "REDIS_PASSWORD": "services-redis-password-0123456789",
    "MYSQL_PASSWORD": "services-mysql-password-0123456789",
    "ELASTIC_PASSWORD": "services-elastic-password-0123456",
    "REDIS_EXECUTOR_PASSWORD": "services-redis-executor-password-0",
    "REDIS_OPERATOR_PASSWORD": "services-redis-operator-password-0",
}
# Executors only: Redis, MariaDB and Elasticsearch are external, at their sections' addresses.
EXTERNAL = """
redis: {host: 'redis.example.net:6380'}
mysql: {host: 10.9.0.5, port: 3307}
es: {hosts: 'https://es1.example.net:9200,https://es2.example.net:9201'}
executor: {db_type: mysql, doc_engine: elasticsearch, storage: database}
hosts:
  - {name: exec1, address: 10.0.0.21, roles: [executor]}
  - {name: exec2, address: 10.0.0.22, roles: [executor]}
"""


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)


def configc(*args: object, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env, catch_exceptions=False)


def runtime(out: Path, host: str) -> dict:
    return yaml_load((out / f"hosts/{host}/etc/ragfleet/ragfleet.yaml").read_text())


def test_upstream_style_redis_host_contradicting_the_topology_is_an_error(tmp_path):
    """The reported bug: this value was replaced by the topology's host without a word."""
    conf = shipped_conf(tmp_path, "redis:\n  host: '${REDIS_HOST:-redis}:6379'\n")
    result = configc("check", conf)
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        f"error: {conf}/local.service_conf.yaml:2:3: redis.host: 'redis' is not a host with "
        "the 'redis' role, which the executors would use instead: 'localhost' (127.0.0.1, "
        "hosts[0]); name 'localhost' or '127.0.0.1' here, or take the 'redis' role off the "
        "hosts to use an external Redis at 'redis'",
        "configc: 1 problem found",
    ]
    # Naming the topology's host, by name, address or a loopback alias, is fine.
    for value in ("localhost:6390", "127.0.0.1:6390"):
        write(conf / "local.service_conf.yaml", f"redis:\n  host: '{value}'\n")
        assert configc("check", conf).exit_code == 0


def test_section_addresses_naming_other_hosts_than_the_topology_are_errors(tmp_path):
    conf = shipped_conf(tmp_path)
    overlay = write(
        tmp_path / "wrong.yaml",
        """
        mysql: {host: mysql}
        es: {hosts: 'http://es:9200,http://es02:9200'}
        """,
    )
    result = configc("check", conf, "--overlay", FIVE_HOSTS, "--overlay", overlay, env=FLEET)
    assert result.exit_code == 2
    lines = result.output.splitlines()
    assert lines[-1] == "configc: 2 problems found"
    assert lines[0] == (
        f"error: {overlay}:1:9: mysql.host: 'mysql' is not a host with the 'mysql' role, which "
        "the executors would use instead: 'db' (10.213.0.12, hosts[1]); name 'db' or "
        "'10.213.0.12' here, or take the 'mysql' role off the hosts to use an external "
        "MariaDB at 'mysql'"
    )
    assert lines[1].startswith(f"error: {overlay}:2:6: es.hosts: 'es02' is not a host with ")


def test_external_services_are_used_at_their_sections_addresses(tmp_path):
    conf = shipped_conf(tmp_path, EXTERNAL)
    out = tmp_path / "out"
    result = configc("build", conf, "-o", out, env=FLEET)
    assert result.exit_code == 0, result.output
    config = runtime(out, "exec1")
    assert (config["redis"]["host"], config["redis"]["port"]) == ("redis.example.net", 6380)
    assert config["redis"]["username"] == "ragfleet-executor"
    assert not config["redis"].get("tls")  # configc issues no certificate for what it does not run
    assert (config["database"]["host"], config["database"]["port"]) == ("10.9.0.5", 3307)
    assert config["doc_store"]["hosts"] == [
        "https://es1.example.net:9200",
        "https://es2.example.net:9201",
    ]
    inventory = yaml_load((out / "inventory.yml").read_text())["all"]["children"]
    assert not inventory["redis"]["hosts"] and not inventory["mysql"]["hosts"]
    assert not list(out.glob("hosts/*/etc/redis")) and not list(out.glob("host_vars/*"))

    result = configc("explain", conf, "redis.host", env=FLEET)
    assert result.output.splitlines() == [
        f"redis.host = redis.example.net:6380  ({conf}/local.service_conf.yaml:1:9)",
        "  effective: redis.example.net:6380  (no host has the 'redis' role: an external "
        "Redis at the address written here)",
    ]


def test_an_external_service_with_no_password_is_allowed_a_weak_one_is_not(tmp_path):
    conf = shipped_conf(tmp_path, EXTERNAL)
    weak = {**FLEET, "REDIS_PASSWORD": "short"}
    result = configc("check", conf, env=weak)
    assert result.exit_code == 2
    assert "redis.password: Redis at redis.example.net is reachable off loopback" in result.output


def test_an_external_service_on_loopback_in_a_fleet_is_an_error(tmp_path):
    conf = shipped_conf(tmp_path, EXTERNAL.replace("redis.example.net", "localhost"))
    result = configc("check", conf, env=FLEET)
    assert result.exit_code == 2
    assert result.output.splitlines()[0] == (
        f"error: {conf}/local.service_conf.yaml:1:9: redis.host: no host has the 'redis' "
        "role, so the executors use the Redis this names, but it is a loopback address that "
        "each of the 2 executor hosts would reach on itself: give a host the 'redis' role, "
        "or name the external server's address"
    )


def test_a_single_host_may_use_an_external_redis_on_loopback(tmp_path):
    """Redis installed by hand beside the executors: configc neither runs nor passwords it."""
    local = """
    redis: {host: 'localhost:6381'}
    hosts:
      - {name: one, address: 127.0.0.1, roles: [executor]}
    """
    conf = shipped_conf(tmp_path, local)
    out = tmp_path / "out"
    assert configc("build", conf, "-o", out).exit_code == 0
    redis = runtime(out, "one")["redis"]
    assert (redis["host"], redis["port"], redis["password"]) == ("localhost", 6381, "")
    assert not (conf / ".secrets.yaml").exists()  # no password generated for it


def test_explain_shows_the_topology_host_and_the_placeholder(tmp_path):
    conf = shipped_conf(tmp_path)
    result = configc("explain", conf, "mysql.host", "--overlay", FIVE_HOSTS, env=FLEET)
    assert result.output.splitlines() == [
        f"mysql.host = localhost  ({conf}/service_conf.yaml:21:3)",
        "  effective: 10.213.0.12  (the topology's 'mysql' host db (hosts[1]): its address, "
        "the port here; the address here is the base file's placeholder)",
    ]
    result = configc("explain", conf, "mysql.host")
    assert result.output.splitlines()[1] == (
        "  effective: none  (not used: the executors use no MariaDB)"
    )
