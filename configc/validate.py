"""Validate the merged configuration: the cerberus schema first, then the cross-checks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from executor.settings_spec import Watchdog, memory_problems, timing_problems, watchdog_sec

from . import sentinel
from .errors import ConfigError, Problem
from .loader import KeyPath, dotted
from .merge import Merged
from .schema import SCHEMA, ConfigValidator, split_hostport, split_url
from .services import address_problems

# The section a choice of executor.db_type / doc_engine / storage needs.
_SECTION_FOR = {
    "db_type": {"mysql": "mysql", "postgres": "postgres"},
    "doc_engine": {"elasticsearch": "es", "opensearch": "os"},
    "storage": {"s3": "s3", "minio": "minio"},
}


def validate(
    merged: Merged, finish: Callable[[dict[str, Any]], list[Problem]] | None = None
) -> dict[str, Any]:
    """Return the document with defaults filled in, or raise ConfigError with all problems.

    *finish* runs after the cross-checks on the document (it may change it) and returns its
    own problems, reported with theirs (secrets.apply_secrets)."""
    validator = ConfigValidator(SCHEMA)
    if not validator.validate(merged.data):
        raise ConfigError(
            [
                Problem(message, dotted(path), merged.origin(path))
                for path, message in _flatten(validator.errors, ())
            ]
        )
    document = validator.document
    problems = list(_cross_checks(document, merged))
    if finish is not None:
        problems += finish(document)
    if problems:
        raise ConfigError(problems)
    return document


def _flatten(errors: Any, path: KeyPath) -> Iterator[tuple[KeyPath, str]]:
    """cerberus nests errors as {field: [message | {subfield: [...]}]}; yield (path, message)."""
    for key, entries in errors.items():
        for entry in entries:
            if isinstance(entry, dict):
                yield from _flatten(entry, (*path, key))
            else:
                yield (*path, key), entry


def _cross_checks(doc: dict[str, Any], merged: Merged) -> Iterator[Problem]:
    def problem(message: str, *path: str | int) -> Problem:
        return Problem(message, dotted(path), merged.origin(path))

    executor = doc["executor"]
    for choice, needs in _SECTION_FOR.items():
        section = needs.get(executor[choice])
        if section and not doc.get(section):
            yield problem(
                f"{executor[choice]!r} needs a {section!r} section, and there is none",
                "executor",
                choice,
            )

    hosts = doc["hosts"]
    if len(hosts) > 1:
        for choice, single in (
            ("db_type", "sqlite"),
            ("doc_engine", "embedded"),
            ("storage", "local"),
        ):
            if executor[choice] == single:
                yield problem(
                    f"{single!r} works on a single host only; this topology has {len(hosts)} hosts",
                    "executor",
                    choice,
                )
    yield from _topology_checks(doc, merged, problem)
    yield from _timing_checks(executor, problem)
    for path, message in memory_problems(executor):
        yield problem(message, *path)
    yield from _port_checks(doc, problem)
    yield from _secret_checks(doc, problem)
    if doc.get("azure"):
        yield from _azure_checks(doc["azure"], problem)


def _topology_checks(doc: dict[str, Any], merged: Merged, problem) -> Iterator[Problem]:
    hosts = doc["hosts"]
    for field in ("name", "address"):
        seen: dict[str, int] = {}
        for index, host in enumerate(hosts):
            if host[field] in seen:
                yield problem(
                    f"{host[field]!r} is already used by hosts[{seen[host[field]]}]",
                    "hosts",
                    index,
                    field,
                )
            seen.setdefault(host[field], index)

    def with_role(role: str) -> list[int]:
        return [i for i, host in enumerate(hosts) if role in host["roles"]]

    # One 'redis' host, several under Sentinel, or none (an external Redis at redis.host).
    yield from sentinel.checks(doc, problem)
    if not with_role("executor"):
        yield problem("no host has the 'executor' role", "hosts")
    # A service no host serves is external, at its section's address (services.py).
    yield from address_problems(doc, merged, problem)
    for index, host in enumerate(hosts):
        if "executor_instances" in host and "executor" not in host["roles"]:
            yield problem(
                "executor_instances is set but the host has no 'executor' role",
                "hosts",
                index,
                "executor_instances",
            )
        if len(set(host["roles"])) != len(host["roles"]):
            yield problem("a role is listed twice", "hosts", index, "roles")
    yield from _monitoring_checks(doc, with_role("monitoring"), problem)


LOOPBACKS = ("127.0.0.1", "::1", "localhost")


def _monitoring_checks(doc: dict[str, Any], monitors: list[int], problem) -> Iterator[Problem]:
    """One Prometheus at most; it must reach every executor's /metrics."""
    hosts = doc["hosts"]
    if len(monitors) > 1:
        names = ", ".join(hosts[i]["name"] for i in monitors)
        yield problem(f"at most one host may have the 'monitoring' role (found: {names})", "hosts")
    bind = doc["executor"]["metrics_bind"]
    if monitors and len(hosts) > 1 and bind in LOOPBACKS:
        yield problem(
            f"the monitoring host cannot scrape executors bound to {bind}: use auto or an "
            "address the monitoring host reaches",
            "executor",
            "metrics_bind",
        )


MIN_SWEEP = 60
"""Seconds: the shortest period between lost-task sweeps configc accepts."""


def _timing_checks(executor: dict[str, Any], problem) -> Iterator[Problem]:
    # The watchdog the unit gets (render.py): the executor checks the same rules under it.
    watchdog = Watchdog(watchdog_sec(executor["heartbeat_interval"]), "from heartbeat_interval")
    for path, message in timing_problems(executor, watchdog):
        yield problem(message, *path)
    if 0 < executor["lost_task_sweep"] < MIN_SWEEP:
        yield problem(
            f"must be 0 (off) or at least {MIN_SWEEP}: each sweep reads every unfinished "
            "task and every queue entry",
            "executor",
            "lost_task_sweep",
        )


def service_ports(doc: dict[str, Any], host: dict[str, Any]) -> dict[str, int]:
    """The TCP ports a host listens on, by what listens; used for collisions and the configs."""
    ports: dict[str, int] = {}
    roles = host["roles"]
    if "redis" in roles and doc.get("redis"):
        ports["redis"] = split_hostport(doc["redis"]["host"])[1]
    if "sentinel" in roles and doc.get("redis"):
        ports["redis-sentinel"] = doc["redis"]["sentinel_port"]
    if "mysql" in roles and doc.get("mysql"):
        ports["mysql"] = doc["mysql"]["port"]
    if "elasticsearch" in roles and doc.get("es"):
        ports["elasticsearch"] = split_url(doc["es"]["hosts"].split(",")[0].strip())[1] or 9200
    if "executor" in roles:
        base = doc["executor"]["metrics_port_base"]
        for instance in range(1, instance_count(doc, host) + 1):
            ports[f"executor@{instance} metrics"] = base + instance
    if any("monitoring" in h["roles"] for h in doc["hosts"]):
        ports.update(exporter_ports(host))
    return ports


PROMETHEUS_PORT = 9090
"""Debian's prometheus listens here (its default); each exporter on its Debian default."""
EXPORTERS = {
    "all": ("prometheus-node-exporter", 9100),
    "redis": ("prometheus-redis-exporter", 9121),
    "mysql": ("prometheus-mysqld-exporter", 9104),
}
"""The exporter the monitoring role runs on a host, by the host's role (every host: all)."""


def exporter_ports(host: dict[str, Any]) -> dict[str, int]:
    """What the monitoring role runs on *host* (every host is watched when one monitors)."""
    ports = dict(EXPORTERS[role] for role in EXPORTERS if role == "all" or role in host["roles"])
    if "monitoring" in host["roles"]:
        ports["prometheus"] = PROMETHEUS_PORT
    return ports


def instance_count(doc: dict[str, Any], host: dict[str, Any]) -> int:
    if "executor" not in host["roles"]:
        return 0
    return host.get("executor_instances", doc["executor"]["instances"])


def _port_checks(doc: dict[str, Any], problem) -> Iterator[Problem]:
    for index, host in enumerate(doc["hosts"]):
        taken: dict[int, str] = {}
        for user, port in service_ports(doc, host).items():
            if port > 65535:
                yield problem(
                    f"{user} would listen on port {port}, above 65535: lower metrics_port_base",
                    "executor",
                    "metrics_port_base",
                )
            elif port in taken:
                yield problem(
                    f"port {port} is wanted by both {taken[port]} and {user} on this host",
                    "hosts",
                    index,
                )
            taken.setdefault(port, user)


def _secret_checks(doc: dict[str, Any], problem) -> Iterator[Problem]:
    """A deployed Elasticsearch (security on) needs the one user its role can set; whether
    each password is strong enough is secrets.py's (after generated ones are filled in)."""
    es_hosts = [host["name"] for host in doc["hosts"] if "elasticsearch" in host["roles"]]
    if es_hosts:
        yield from _elasticsearch_login_checks(doc.get("es") or {}, problem)
    if doc.get("redis"):
        yield from _redis_acl_checks(doc["redis"], problem)


def _redis_acl_checks(redis: dict[str, Any], problem) -> Iterator[Problem]:
    """The ACL users (least privilege, docs/security.md) come as a pair, set by
    executor_password: the executors' and the operator CLI's, each with its own password,
    distinct from the default user's (redis.password: RAGFlow's server, administration)."""
    executor, operator = redis.get("executor_password"), redis.get("operator_password")
    if bool(executor) != bool(operator):
        missing = "operator_password" if executor else "executor_password"
        yield problem(
            "executor_password and operator_password turn the ACL users on together: set both",
            "redis",
            missing,
        )
    passwords = [p for p in (redis.get("password"), executor, operator) if p]
    if executor and len(set(passwords)) < len(passwords):
        yield problem(
            "redis.password, executor_password and operator_password must all differ",
            "redis",
            "executor_password",
        )


def _elasticsearch_login_checks(es: dict[str, Any], problem) -> Iterator[Problem]:
    # The role puts es.password into the keystore as the built-in `elastic` user's bootstrap
    # password; it creates no other user, so the executors must log in as `elastic`.
    if es.get("username", "elastic") != "elastic":
        yield problem(
            "the elasticsearch role sets only the built-in 'elastic' user's password; "
            f"use username 'elastic' (got {es['username']!r}) or create that user yourself "
            "and take the elasticsearch role off the hosts",
            "es",
            "username",
        )


def _azure_checks(azure: dict[str, Any], problem) -> Iterator[Problem]:
    needed = {
        "sas": ("container_url", "sas_token"),
        "spn": ("account_url", "client_id", "secret", "tenant_id", "container_name"),
    }[azure["auth_type"]]
    for key in needed:
        if not azure.get(key):
            yield problem(f"auth_type {azure['auth_type']!r} needs this key", "azure", key)
