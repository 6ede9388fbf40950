"""Redis under Sentinel in configc (configc/sentinel.py): the rules, and the compiled
replica and sentinel configs run for real: three loopback "hosts" (127.0.0.11-13), each a
redis server and a sentinel started from configc's own files, elect and fail over."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner
from confdirs import FIVE_HOSTS, shipped_conf, write
from executors import wait_for
from ruamel.yaml import YAML
from servers import find_binary, free_port, no_retry

from configc.cli import main

yaml_load = YAML(typ="safe", pure=True).load
ENV = {
    "REDIS_PASSWORD": "sentinel-test-redis-password-0123",
    "MYSQL_PASSWORD": "sentinel-test-mysql-password-0123",
    "ELASTIC_PASSWORD": "sentinel-test-elastic-password-01",
    "REDIS_EXECUTOR_PASSWORD": "sentinel-test-executor-password-0",
    "REDIS_OPERATOR_PASSWORD": "sentinel-test-operator-password-0",
    "REDIS_SENTINEL_PASSWORD": "sentinel-test-sentinel-password-0",
}
HA = """
redis:
  sentinel_password: '${REDIS_SENTINEL_PASSWORD:-change-me-sentinel}'
hosts:
  - {name: redis, address: 10.213.0.11, roles: [redis, sentinel]}
  - {name: db, address: 10.213.0.12, roles: [mysql, redis, sentinel]}
  - {name: es, address: 10.213.0.13, roles: [elasticsearch, sentinel]}
  - {name: exec1, address: 10.213.0.21, roles: [executor]}
  - {name: exec2, address: 10.213.0.22, roles: [executor], executor_instances: 3}
"""


def configc(*args: object, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env, catch_exceptions=False)


def build(tmp_path: Path, local: str, *overlays: Path) -> Path:
    conf = shipped_conf(tmp_path, local)
    out = tmp_path / "out"
    flags = [a for o in overlays for a in ("--overlay", o)]
    result = configc("build", conf, *flags, "-o", out, env=ENV)
    assert result.exit_code == 0, result.output
    return out


def test_a_fleet_under_sentinel_compiles_replicas_sentinels_and_clients(tmp_path):
    overlay = write(tmp_path / "ha.yaml", HA)
    out = build(tmp_path, "", FIVE_HOSTS, overlay)
    master = (out / "hosts/redis/etc/redis/ragfleet.conf").read_text()
    replica = (out / "hosts/db/etc/redis/ragfleet.conf").read_text()
    assert "replicaof" not in master  # the first redis host is the initial master
    assert "replicaof 10.213.0.11 6379\n" in replica
    for text in (master, replica):
        assert f"masterauth {ENV['REDIS_PASSWORD']}\n" in text
        assert "tls-replication yes\n" in text  # tls.mode auto: Redis is on TLS off loopback
        assert "min-replicas-to-write 1\nmin-replicas-max-lag 10\n" in text
    sentinel = (out / "hosts/es/etc/redis/ragfleet-sentinel.conf").read_text()
    for line in (
        "bind 10.213.0.13",
        "port 0",
        "tls-port 26379",
        "tls-replication yes",
        f"requirepass {ENV['REDIS_SENTINEL_PASSWORD']}",
        f"sentinel sentinel-pass {ENV['REDIS_SENTINEL_PASSWORD']}",
        "sentinel monitor ragfleet 10.213.0.11 6379 2",
        f"sentinel auth-pass ragfleet {ENV['REDIS_PASSWORD']}",
    ):
        assert f"\n{line}\n" in sentinel, line
    assert (out / "hosts/es/etc/redis/tls/redis.key").stat().st_mode & 0o777 == 0o600
    assert (out / "hosts/es/etc/redis/ragfleet-sentinel.conf").stat().st_mode & 0o777 == 0o600
    client = yaml_load((out / "hosts/exec1/etc/ragfleet/ragfleet.yaml").read_text())["redis"]
    assert client["sentinels"] == "10.213.0.11:26379,10.213.0.12:26379,10.213.0.13:26379"
    assert client["sentinel_master"] == "ragfleet" and client["tls"] is True
    inventory = yaml_load((out / "inventory.yml").read_text())["all"]
    # What the redis role asks for the current master (tasks/master.yml).
    assert inventory["vars"]["ragfleet_redis_sentinels"] == [
        "10.213.0.11:26379",
        "10.213.0.12:26379",
        "10.213.0.13:26379",
    ]
    assert inventory["vars"]["ragfleet_redis_sentinel_master"] == "ragfleet"
    children = inventory["children"]
    assert list(children["redis"]["hosts"]) == ["redis", "db"]
    assert list(children["sentinel"]["hosts"]) == ["redis", "db", "es"]
    host_vars = yaml_load((out / "host_vars/es.yml").read_text())
    assert host_vars["ragfleet_redis_sentinel_password"] == ENV["REDIS_SENTINEL_PASSWORD"]
    conf = tmp_path / "conf"
    result = configc(
        "explain", conf, "redis.host", "--overlay", FIVE_HOSTS, "--overlay", overlay, env=ENV
    )
    assert result.output.splitlines()[1].startswith(
        "  effective: the master the sentinels 10.213.0.11:26379,10.213.0.12:26379,"
        "10.213.0.13:26379 name 'ragfleet' (initially 10.213.0.11:6379)  (the topology's "
        "'redis' host redis (hosts[0]), db (hosts[1])"
    )


@pytest.mark.parametrize(
    ("hosts", "redis", "expected"),
    [
        (
            [["redis", "sentinel"], ["redis", "sentinel"], ["executor"]],
            "",
            "hosts: Sentinel needs 3 or more hosts with the 'sentinel' role, so that a "
            "majority survives one host's loss (found: h0, h1)",
        ),
        (
            [["redis", "sentinel"], ["redis", "sentinel"], ["executor", "sentinel"]],
            "sentinel_quorum: 4",
            "redis.sentinel_quorum: the quorum cannot exceed the 3 sentinels",
        ),
        (
            [["redis", "sentinel"], ["redis", "sentinel"], ["executor", "sentinel"]],
            "min_replicas_to_write: 2",
            "redis.min_replicas_to_write: the master has 1 replica(s) and would refuse every write",
        ),
    ],
)
def test_sentinel_rules(tmp_path, hosts, redis, expected):
    lines = [
        f"  - {{name: h{i}, address: 10.0.0.{i + 1}, roles: [{', '.join(roles)}]}}"
        for i, roles in enumerate(hosts)
    ]
    local = "redis:\n  sentinel_password: long-enough-sentinel-pw\n"
    local += f"  {redis}\n" if redis else ""
    local += "hosts:\n" + "\n".join(lines) + "\n"
    result = configc("check", shipped_conf(tmp_path, local), env=ENV)
    assert result.exit_code == 2
    assert any(line.endswith(expected) for line in result.output.splitlines()), result.output


LOOPBACK = """
tls: {mode: off}
# External database and store on loopback (one executor host may): only Redis matters here.
executor: {metrics_bind: 127.0.0.21, db_type: mysql, doc_engine: opensearch, storage: database}
mysql: {host: 127.0.0.1}
os: {hosts: 'http://127.0.0.1:9200'}
redis:
  host: '127.0.0.11:%(port)d'
  sentinel_port: %(sentinel_port)d
  sentinel_password: '${REDIS_SENTINEL_PASSWORD}'
  sentinel_down_after_ms: 1000
  sentinel_failover_timeout_ms: 10000
hosts:
  - {name: r1, address: 127.0.0.11, roles: [redis, sentinel]}
  - {name: r2, address: 127.0.0.12, roles: [redis, sentinel]}
  - {name: r3, address: 127.0.0.13, roles: [redis, sentinel]}
  - {name: x1, address: 127.0.0.21, roles: [executor]}
"""


def test_the_compiled_configs_replicate_and_fail_over(tmp_path):
    """configc's own files, with only the paths a test needs appended (dir, logs)."""
    port, sentinel_port = free_port(), free_port()
    out = build(tmp_path, LOOPBACK % {"port": port, "sentinel_port": sentinel_port})
    binary = find_binary("redis-server")
    processes: dict[str, subprocess.Popen] = {}
    try:
        for host in ("r1", "r2", "r3"):
            work = tmp_path / host
            work.mkdir()
            local = [f"dir {work}", f"logfile {work}/log", "daemonize no", "pidfile ''"]
            fragment = out / f"hosts/{host}/etc/redis/ragfleet.conf"
            server = work / "redis.conf"
            # The ACL users' file from the compiled tree, not the host path the fragment names.
            users = f"aclfile {fragment.parent / 'ragfleet-users.acl'}"
            server.write_text(f"include {fragment}\n" + "\n".join([*local, users]) + "\n")
            processes[host] = subprocess.Popen([binary, str(server)])
            sentinel = work / "sentinel.conf"  # writable: the sentinel rewrites it
            compiled = (out / f"hosts/{host}/etc/redis/ragfleet-sentinel.conf").read_text()
            sentinel.write_text(
                compiled + "\n".join([*local[:2], f"logfile {work}/sentinel.log"]) + "\n"
            )
            processes[f"s-{host}"] = subprocess.Popen([binary, str(sentinel), "--sentinel"])

        def ask(address: str) -> redis.Redis:
            return redis.Redis(
                host=address,
                port=sentinel_port,
                password=ENV["REDIS_SENTINEL_PASSWORD"],
                socket_timeout=2,
                retry=no_retry(),
            )

        def master_seen() -> tuple[str, int] | None:
            try:
                host, found = ask("127.0.0.12").sentinel_get_master_addr_by_name("ragfleet")
                replicas = ask("127.0.0.12").sentinel_slaves("ragfleet")
            except redis.RedisError:
                return None
            return (host.decode(), int(found)) if len(replicas) == 2 else None

        assert wait_for(master_seen, 30, "the sentinels to see the replicas") == (
            "127.0.0.11",
            port,
        )
        processes["r1"].kill()
        new = wait_for(
            lambda: (m := master_seen()) and m[0] != "127.0.0.11" and m, 30, "a failover"
        )
        assert new[0] in ("127.0.0.12", "127.0.0.13")
        # The sentinel rewrote its file with what it learned and kept configc's header: the
        # redis role's check that the live file is configc's (tasks/sentinel.yml) holds.
        live = wait_for(
            lambda: (
                f"sentinel monitor ragfleet {new[0]} {port} 2"
                in (live := (tmp_path / "r2/sentinel.conf").read_text())
                and live
            ),
            10,
            "the sentinel to rewrite its config",
        )
        assert live.startswith("# Generated by configc")
    finally:
        for process in processes.values():
            process.kill()
            process.wait(10)
