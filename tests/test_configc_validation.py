"""Every validation rule, each with a failing example whose message and file:line are asserted."""

from __future__ import annotations

import pytest
from confdirs import FIVE_HOSTS, SHIPPED_CONF, shipped_conf, write

from configc.config import load_config
from configc.errors import ConfigError
from executor.settings_spec import memory_high, memory_problems

LOCAL = "conf/local.service_conf.yaml"
REDIS_PASSWORD_LINE = "password: '${REDIS_PASSWORD"


def shipped_line(text: str) -> int:
    """The line of the shipped service_conf.yaml that starts with *text* (after indentation)."""
    lines = (SHIPPED_CONF / "service_conf.yaml").read_text().splitlines()
    return next(n for n, line in enumerate(lines, 1) if line.strip().startswith(text))


# A fleet requires the Redis ACL users' passwords; the tests of other rules set them.
ACL_PASSWORDS = {
    "REDIS_EXECUTOR_PASSWORD": "redis-executor-password-0123",
    "REDIS_OPERATOR_PASSWORD": "redis-operator-password-0123",
}


def problems(tmp_path, local: str, *overlays: str, environ=None) -> list[str]:
    conf = shipped_conf(tmp_path, local)
    paths = [write(tmp_path / f"overlay{i}.yaml", text) for i, text in enumerate(overlays)]
    with pytest.raises(ConfigError) as info:
        load_config(conf, paths, ACL_PASSWORDS if environ is None else environ)
    # Report paths relative to tmp_path so expectations read like what a user sees.
    return [str(p).replace(f"{tmp_path}/", "") for p in info.value.problems]


def test_shipped_conf_is_valid():
    assert load_config(SHIPPED_CONF, (), {}).document["executor"]["doc_engine"] == "embedded"


def test_five_host_example_is_valid(tmp_path):
    passwords = (
        "REDIS_PASSWORD",
        "MYSQL_PASSWORD",
        "ELASTIC_PASSWORD",
        "REDIS_EXECUTOR_PASSWORD",
        "REDIS_OPERATOR_PASSWORD",
    )
    environ = {name: f"{name.lower()}-0123456789" for name in passwords}
    # A copy: the checkout's conf/tls may hold keys a vault-mode build encrypted.
    doc = load_config(shipped_conf(tmp_path), [FIVE_HOSTS], environ).document
    assert [h["name"] for h in doc["hosts"]] == ["redis", "db", "es", "exec1", "exec2"]


@pytest.mark.parametrize(
    ("local", "expected"),
    [
        # unknown keys: typo protection, at top level and inside sections
        ("reddis:\n  db: 1\n", f"{LOCAL}:1:1: reddis: unknown field"),
        ("redis:\n  pasword: x\n", f"{LOCAL}:2:3: redis.pasword: unknown field"),
        # types
        ("redis:\n  db: one\n", f"{LOCAL}:2:3: redis.db: must be of integer type"),
        ("executor:\n  instances: 0\n", f"{LOCAL}:2:3: executor.instances: min value is 1"),
        ("mysql:\n  port: 70000\n", f"{LOCAL}:2:3: mysql.port: max value is 65535"),
        # allowed values
        (
            "executor:\n  doc_engine: solr\n",
            f"{LOCAL}:2:3: executor.doc_engine: unallowed value solr",
        ),
        (
            "executor:\n  log_level: LOUD\n",
            f"{LOCAL}:2:3: executor.log_level: unallowed value LOUD",
        ),
        # the address the metrics listen on, and memory sizes systemd reads
        (
            "executor:\n  metrics_bind: 'http://0.0.0.0'\n",
            f"{LOCAL}:2:3: executor.metrics_bind: must be 'auto', an IP address or a host "
            "name of this host; got 'http://0.0.0.0'",
        ),
        (
            "executor:\n  memory_max: 2GiB\n",
            f"{LOCAL}:2:3: executor.memory_max: must be a size as systemd reads it, such as "
            "2G or 1536M (K, M, G, T: powers of 1024), or 'infinity'; got '2GiB'",
        ),
        (
            "executor:\n  memory_max: auto\n",
            f"{LOCAL}:2:3: executor.memory_max: must be a size as systemd reads it, such as "
            "2G or 1536M (K, M, G, T: powers of 1024), or 'infinity'; got 'auto'",
        ),
        (
            "executor:\n  memory_high: 80%\n",
            f"{LOCAL}:2:3: executor.memory_high: must be a size as systemd reads it, such as "
            "2G or 1536M (K, M, G, T: powers of 1024), or 'infinity', or 'auto'; got '80%'",
        ),
        # host:port and URL formats
        (
            "redis:\n  host: 'localhost'\n",
            f"{LOCAL}:2:3: redis.host: must be host:port (port 1-65535), got 'localhost'",
        ),
        (
            "redis:\n  host: 'localhost:99999'\n",
            f"{LOCAL}:2:3: redis.host: must be host:port (port 1-65535), got 'localhost:99999'",
        ),
        (
            "es:\n  hosts: 'es01:9200'\n",
            f"{LOCAL}:2:3: es.hosts: must be http(s)://host[:port], comma separated; "
            "got 'es01:9200'",
        ),
        (
            "executor:\n  state_dir: var/lib\n",
            f"{LOCAL}:2:3: executor.state_dir: must be an absolute path without '.', '..' "
            "or '//', and not '/'; got 'var/lib'",
        ),
        (
            "hosts:\n  - name: Bad_Name\n    address: 10.0.0.1\n    roles: [redis, executor]\n",
            f"{LOCAL}:2:5: hosts[0].name: value does not match regex "
            "'[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?'",
        ),
        # required keys: reported at the mapping that lacks them
        (
            "hosts:\n  - name: a\n    address: 10.0.0.1\n",
            f"{LOCAL}:2:5: hosts[0].roles: required field",
        ),
        (
            "azure:\n  container_url: u\n",
            f"{LOCAL}:1:1: azure.auth_type: required field",
        ),
        (
            "hosts:\n  - name: a\n    address: 10.0.0.1\n    roles: [cache]\n",
            f"{LOCAL}:4:13: hosts[0].roles[0]: unallowed value cache",
        ),
    ],
)
def test_schema_rule(tmp_path, local, expected):
    assert problems(tmp_path, local) == [expected]


@pytest.mark.parametrize(
    ("local", "expected"),
    [
        (
            "executor:\n  db_type: postgres\n",
            f"{LOCAL}:2:3: executor.db_type: 'postgres' needs a 'postgres' section, "
            "and there is none",
        ),
        (
            "executor:\n  doc_engine: opensearch\n",
            f"{LOCAL}:2:3: executor.doc_engine: 'opensearch' needs a 'os' section, "
            "and there is none",
        ),
        (
            "executor:\n  storage: s3\n",
            f"{LOCAL}:2:3: executor.storage: 's3' needs a 's3' section, and there is none",
        ),
        (
            "executor:\n  reclaim_idle: 180\n",
            f"{LOCAL}:2:3: executor.reclaim_idle: must be more than 180 s, twice the watchdog"
            " (90 s, from heartbeat_interval): a hung executor is killed by its watchdog at"
            " most that long after it last refreshed its tasks' entries, and no other may"
            " take them over before, or both would run them",
        ),
        (
            "executor:\n  lost_task_sweep: 5\n",
            f"{LOCAL}:2:3: executor.lost_task_sweep: must be 0 (off) or at least 60: each "
            "sweep reads every unfinished task and every queue entry",
        ),
        (
            "executor:\n  worker_heartbeat_timeout: 60\n",
            f"{LOCAL}:2:3: executor.worker_heartbeat_timeout: must be more than twice "
            "heartbeat_interval (30 s), or a live worker whose heartbeat is a little late is "
            "declared dead",
        ),
        (
            "azure:\n  auth_type: spn\n  account_url: u\n  client_id: c\n  secret: s\n"
            "  tenant_id: t\n",
            f"{LOCAL}:1:1: azure.container_name: auth_type 'spn' needs this key",
        ),
        (
            "executor:\n  metrics_port_base: 65535\n",
            f"{LOCAL}:2:3: executor.metrics_port_base: executor@1 metrics would listen on "
            "port 65536, above 65535: lower metrics_port_base",
        ),
        (
            "executor:\n  memory_max: 200M\n",
            f"{LOCAL}:2:3: executor.memory_max: 200M is too little: an executor needs at "
            "least 512M",
        ),
        (
            "executor:\n  memory_max: 1G\n  memory_high: 300M\n",
            f"{LOCAL}:3:3: executor.memory_high: 300M is too little: an executor needs at "
            "least 512M",
        ),
        (
            "executor:\n  memory_max: 1G\n  memory_high: 2G\n",
            f"{LOCAL}:3:3: executor.memory_high: must not exceed memory_max (1G): the "
            "instance would be killed before it is ever throttled",
        ),
        (
            "executor:\n  memory_max: 1G\n  memory_high: infinity\n",
            f"{LOCAL}:3:3: executor.memory_high: must not exceed memory_max (1G): the "
            "instance would be killed before it is ever throttled",
        ),
    ],
)
def test_cross_check(tmp_path, local, expected):
    found = problems(tmp_path, local)
    assert expected in found, found


def test_the_least_memory_max_takes_an_automatic_memory_high():
    """memory_high auto under the least memory_max is below 512M itself (409M): fine, it is
    memory_max's share, not a value anyone chose."""
    executor = {"memory_max": "512M", "memory_high": "auto"}
    assert memory_problems(executor) == []
    assert memory_high("512M", "auto") == "409M"


def test_port_collision_points_at_the_host_entry(tmp_path):
    local = "hosts:\n  - name: a\n    address: 127.0.0.1\n    roles: [redis, executor]\n"
    local += "executor:\n  metrics_port_base: 6377\n"
    assert problems(tmp_path, local) == [
        f"{LOCAL}:2:5: hosts[0]: port 6379 is wanted by both redis and executor@2 metrics "
        "on this host"
    ]


TWO_HOSTS = """
hosts:
  - name: a
    address: 10.0.0.1
    roles: [redis, executor]
  - name: b
    address: 10.0.0.2
    roles: [executor]
"""


def test_multi_host_topology_rejects_single_host_backends(tmp_path):
    base = "conf/service_conf.yaml"
    single = "works on a single host only; this topology has 2 hosts"
    assert problems(tmp_path, "redis:\n  password: long-enough-redis-pw\n" + TWO_HOSTS) == [
        f"{base}:{shipped_line('doc_engine:')}:3: executor.doc_engine: 'embedded' {single}",
        f"{base}:{shipped_line('db_type:')}:3: executor.db_type: 'sqlite' {single}",
        f"{base}:{shipped_line('storage:')}:3: executor.storage: 'local' {single}",
    ]


def test_services_on_network_addresses_need_strong_passwords(tmp_path):
    """The shipped conf's passwords (upstream's default, or none) on a fleet: refused, each
    at its line, saying how to set it (more cases in test_configc_secrets.py)."""
    local = "executor:\n  db_type: mysql\n  doc_engine: elasticsearch\n  storage: database\n"
    local += TWO_HOSTS.replace("[executor]", "[executor, mysql, elasticsearch]")
    how = (
        "to a random password of 16 or more characters (e.g. `openssl rand -base64 24`); "
        "see docs/security.md"
    )
    default = "is a published default (upstream RAGFlow's or the vendor's)"
    base = "conf/service_conf.yaml"
    acl = [
        f"{base}:{shipped_line(role + '_password:')}:3: redis.{role}_password: Redis's {role} "
        "user at 10.0.0.1 is reachable off loopback and this password is empty: set "
        f"REDIS_{role.upper()}_PASSWORD (read on this line) or redis.{role}_password in "
        f"{LOCAL} {how}"
        for role in ("executor", "operator")
    ]
    assert problems(tmp_path, local, environ={}) == [
        f"{base}:{shipped_line('password: ' + chr(39) + '${MYSQL')}:3: mysql.password: MariaDB "
        f"at 10.0.0.2 is reachable off loopback and this password {default}: set "
        f"MYSQL_PASSWORD (read on this line) or mysql.password in {LOCAL} {how}",
        f"{base}:{shipped_line('password: ' + chr(39) + '${ELASTIC')}:3: es.password: "
        f"Elasticsearch at 10.0.0.2 is reachable off loopback and this password {default}: "
        f"set ELASTIC_PASSWORD (read on this line) or es.password in {LOCAL} {how}",
        f"{base}:{shipped_line(REDIS_PASSWORD_LINE)}:3: redis.password: Redis at 10.0.0.1 is "
        "reachable off loopback and this password is empty: set REDIS_PASSWORD (read on this "
        f"line) or redis.password in {LOCAL} {how}",
        *acl,
    ]


def test_a_deployed_elasticsearch_needs_the_elastic_users_password(tmp_path):
    """The role can set only the built-in elastic user's (bootstrap) password, and the
    compiled elasticsearch.yml turns security on: the executors must log in as elastic."""
    local = """
    redis: {password: long-enough-redis-password}
    mysql: {password: long-enough-mysql-password}
    es: {username: ragflow, password: ''}
    executor: {db_type: mysql, doc_engine: elasticsearch, storage: database}
    hosts:
      - {name: a, address: 10.0.0.1, roles: [redis, mysql, elasticsearch]}
      - {name: b, address: 10.0.0.2, roles: [executor, elasticsearch]}
    """
    assert problems(tmp_path, local) == [  # once, not once per Elasticsearch host
        f"{LOCAL}:3:6: es.username: the elasticsearch role sets only the built-in 'elastic' "
        "user's password; use username 'elastic' (got 'ragflow') or create that user yourself "
        "and take the elasticsearch role off the hosts",
        f"{LOCAL}:3:25: es.password: Elasticsearch at 10.0.0.1, 10.0.0.2 is reachable off "
        "loopback and this password is empty: set es.password in conf/local.service_conf.yaml "
        "to a random password of 16 or more characters (e.g. `openssl rand -base64 24`); see "
        "docs/security.md",
    ]


@pytest.mark.parametrize(
    ("hosts", "expected"),
    [
        (
            "  - {name: a, address: 127.0.0.1, roles: [redis, executor]}\n"
            "  - {name: b, address: 127.0.0.2, roles: [redis]}\n",
            "hosts: several hosts have the 'redis' role (a, b): replicas need Sentinel to "
            "fail over; give 3 or more hosts the 'sentinel' role (or keep one 'redis' host; "
            "none: an external Redis at redis.host)",
        ),
        (
            "  - {name: a, address: 127.0.0.1, roles: [redis]}\n",
            "hosts: no host has the 'executor' role",
        ),
        (
            "  - {name: a, address: 127.0.0.1, roles: [redis, executor, redis]}\n",
            "hosts[0].roles: a role is listed twice",
        ),
        (
            "  - {name: a, address: 127.0.0.1, roles: [redis], executor_instances: 2}\n",
            "hosts[0].executor_instances: executor_instances is set but the host has no "
            "'executor' role",
        ),
    ],
)
def test_topology_rules(tmp_path, hosts, expected):
    found = problems(tmp_path, "hosts:\n" + hosts)
    assert any(p.endswith(expected) and p.startswith(LOCAL) for p in found), found


def test_duplicate_names_and_addresses(tmp_path):
    local = """
    redis: {password: long-enough-redis-pw}
    executor: {db_type: mysql, doc_engine: elasticsearch, storage: database}
    hosts:
      - {name: a, address: 10.0.0.1, roles: [redis, mysql, elasticsearch]}
      - {name: a, address: 10.0.0.1, roles: [executor]}
    mysql: {password: long-enough-mysql-pw}
    es: {password: long-enough-elastic-pw}
    """
    assert problems(tmp_path, local) == [
        f"{LOCAL}:5:6: hosts[1].name: 'a' is already used by hosts[0]",
        f"{LOCAL}:5:15: hosts[1].address: '10.0.0.1' is already used by hosts[0]",
    ]


def test_mysql_and_elasticsearch_without_a_host_are_external_not_on_loopback(tmp_path):
    """No host with the role: the executors use the section's address (services.py), which
    must then not be a loopback one that each executor host reaches on itself."""
    local = """
    redis: {password: long-enough-redis-pw}
    executor: {db_type: mysql, doc_engine: elasticsearch, storage: database}
    hosts:
      - {name: a, address: 10.0.0.1, roles: [redis, executor]}
      - {name: b, address: 10.0.0.2, roles: [executor]}
    mysql: {password: long-enough-mysql-pw}
    es: {password: long-enough-elastic-pw}
    """
    loopback = "a loopback address that each of the 2 executor hosts would reach on itself"
    mysql_line, es_line = shipped_line("host: 'localhost"), shipped_line("hosts: 'http://localhost")
    assert problems(tmp_path, local) == [
        f"conf/service_conf.yaml:{mysql_line}:3: mysql.host: no host "
        f"has the 'mysql' role, so the executors use the MariaDB this names, but it is {loopback}: "
        "give a host the 'mysql' role, or name the external server's address",
        f"conf/service_conf.yaml:{es_line}:3: es.hosts: no "
        "host has the 'elasticsearch' role, so the executors use the Elasticsearch this names, "
        f"but it is {loopback}: give a host the 'elasticsearch' role, or name the external "
        "server's address",
    ]


def test_all_problems_of_all_files_are_reported_at_once(tmp_path):
    found = problems(
        tmp_path,
        "redis:\n  db: x\nexecutor:\n  instances: 0\n",
        "mysql:\n  port: '${NOPE}'\n",
    )
    assert found == [
        "overlay0.yaml:2:9: mysql.port: environment variable NOPE is not set "
        "(use ${NOPE:-default} for a default)",
    ]
    # Interpolation and syntax problems stop before the schema; the schema reports all of its own.
    second = tmp_path / "second"
    found = problems(second, "redis:\n  db: x\nexecutor:\n  instances: 0\n", "mysql:\n  port: 0\n")
    assert found == [
        f"{LOCAL}:2:3: redis.db: must be of integer type",
        f"{LOCAL}:4:3: executor.instances: min value is 1",
        "overlay0.yaml:2:3: mysql.port: min value is 1",
    ]


def test_missing_conf_dir_and_file(tmp_path):
    with pytest.raises(ConfigError, match="not a directory"):
        load_config(tmp_path / "nope", (), {})
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"service_conf.yaml:0:0: cannot read: No such file"):
        load_config(tmp_path / "empty", (), {})
