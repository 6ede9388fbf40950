"""Redis with Sentinel: several ``redis`` hosts, one master and its replicas, watched by
three or more hosts with the ``sentinel`` role (co-located with any other role).

The first ``redis`` host in topology order is the initial master; the others are compiled
with ``replicaof`` it (which the redis role applies only while no sentinel answers, on the
first deploy: afterwards a server follows the master the sentinels name, and the inventory
lists them for that, :func:`inventory_vars`). Every server gets ``masterauth`` (the default
user's password, which each server's ``requirepass`` sets), ``min-replicas-to-write`` and
``min-replicas-max-lag`` (so a master cut off from its replicas stops taking writes that a
failover would lose), and ``tls-replication`` when Redis speaks TLS. Each sentinel host gets
Debian's ``redis-sentinel`` config: ``sentinel monitor`` of the initial master, ``auth-pass`` (the
default user), its own ``requirepass`` (``redis.sentinel_password``, which the executors
and the other sentinels log in with), TLS where Redis has it. The executors and the
operator CLI then find the master through the sentinels (executor/queue/connection.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from .schema import split_hostport


def sentinel_hosts(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [h for h in doc["hosts"] if "sentinel" in h["roles"]]


def redis_hosts(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [h for h in doc["hosts"] if "redis" in h["roles"]]


def enabled(doc: dict[str, Any]) -> bool:
    return bool(sentinel_hosts(doc))


def quorum(doc: dict[str, Any]) -> int:
    """Sentinels that must agree the master is down (default: a majority of them)."""
    given = (doc.get("redis") or {}).get("sentinel_quorum")
    return given if given is not None else len(sentinel_hosts(doc)) // 2 + 1


def min_replicas(doc: dict[str, Any]) -> int:
    """``min-replicas-to-write``: given, else 1 when there is a replica, else 0."""
    given = doc["redis"].get("min_replicas_to_write")
    return given if given is not None else min(1, len(redis_hosts(doc)) - 1)


def redis_port(doc: dict[str, Any]) -> int:
    return (split_hostport(doc["redis"]["host"]) or ("", 6379))[1]


def checks(doc: dict[str, Any], problem: Callable) -> Iterator[Any]:
    """The topology rules of Redis's replication and its sentinels."""
    servers, sentinels = redis_hosts(doc), sentinel_hosts(doc)
    if len(servers) > 1 and not sentinels:
        names = ", ".join(h["name"] for h in servers)
        yield problem(
            f"several hosts have the 'redis' role ({names}): replicas need Sentinel to fail "
            "over; give 3 or more hosts the 'sentinel' role (or keep one 'redis' host; none: "
            "an external Redis at redis.host)",
            "hosts",
        )
    if not sentinels:
        return
    if len(sentinels) < 3:
        names = ", ".join(h["name"] for h in sentinels)
        yield problem(
            f"Sentinel needs 3 or more hosts with the 'sentinel' role, so that a majority "
            f"survives one host's loss (found: {names})",
            "hosts",
        )
    if not servers:
        yield problem("the 'sentinel' role watches the 'redis' hosts, and there is none", "hosts")
    redis = doc.get("redis") or {}
    if redis.get("sentinel_quorum") is not None and redis["sentinel_quorum"] > len(sentinels):
        yield problem(
            f"the quorum cannot exceed the {len(sentinels)} sentinels", "redis", "sentinel_quorum"
        )
    given = redis.get("min_replicas_to_write")
    if servers and given is not None and given > len(servers) - 1:
        yield problem(
            f"the master has {len(servers) - 1} replica(s) and would refuse every write",
            "redis",
            "min_replicas_to_write",
        )


def replication(doc: dict[str, Any], host: dict[str, Any], tls: bool) -> dict[str, Any] | None:
    """The replication lines of *host*'s redis.conf fragment; None without Sentinel."""
    if not enabled(doc):
        return None
    master = redis_hosts(doc)[0]
    redis = doc["redis"]
    return {
        "replicaof": None
        if host["name"] == master["name"]
        else (master["address"], redis_port(doc)),
        "min_replicas_to_write": min_replicas(doc),
        "min_replicas_max_lag": redis["min_replicas_max_lag"],
        "tls": tls,
    }


def sentinel_context(doc: dict[str, Any], host: dict[str, Any]) -> dict[str, Any]:
    """What sentinel.conf.j2 writes for *host* (its passwords are ``redis``'s, swapped by
    the caller in vault mode)."""
    redis = doc["redis"]
    return {
        "bind": host["address"],
        "port": redis["sentinel_port"],
        "master": redis["sentinel_master"],
        "master_address": redis_hosts(doc)[0]["address"],
        "master_port": redis_port(doc),
        "quorum": quorum(doc),
        "down_after_ms": redis["sentinel_down_after_ms"],
        "failover_timeout_ms": redis["sentinel_failover_timeout_ms"],
    }


def inventory_vars(doc: dict[str, Any]) -> dict[str, Any]:
    """The inventory's fleet vars for the redis role: the sentinels' addresses and the
    master's name, which it asks for the current master (none without Sentinel)."""
    if not enabled(doc):
        return {}
    port = doc["redis"]["sentinel_port"]
    return {
        "ragfleet_redis_sentinels": [f"{h['address']}:{port}" for h in sentinel_hosts(doc)],
        "ragfleet_redis_sentinel_master": doc["redis"]["sentinel_master"],
    }


def client_fields(doc: dict[str, Any]) -> dict[str, Any]:
    """What a client (the executors, the operator CLI) needs to find the master."""
    if not enabled(doc):
        return {}
    redis = doc["redis"]
    port = redis["sentinel_port"]
    return {
        "sentinels": ",".join(f"{h['address']}:{port}" for h in sentinel_hosts(doc)),
        "sentinel_master": redis["sentinel_master"],
        "sentinel_password": redis.get("sentinel_password") or "",
    }
