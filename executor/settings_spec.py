"""The executor's keys (the ``executor:`` section) and the timing rules between them, declared
once: configc's schema, the runtime config configc renders, the executor's ExecutorSettings,
the shipped conf and the docs table all follow this module (tests check the last two).

A leaf: standard library only, so that configc can import it (see the import contracts).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

DOC_ENGINES = ("embedded", "elasticsearch", "opensearch")
"""The document stores the executor can run (``doc_store.engine``). configc's schema allows
exactly these (upstream's ``infinity`` is not among them), so ``configc check`` refuses
what the executor would refuse at start."""
DB_TYPES = ("mysql", "postgres", "sqlite")
STORAGE_BACKENDS = ("local", "database", "s3", "minio")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True)
class Key:
    """One key of the ``executor:`` section."""

    name: str
    type: type
    """int, bool, str, or float for a duration in seconds: configc takes whole seconds (its
    units need them), the executor any number."""
    default: Any
    doc: str
    minimum: int | None = None
    maximum: int | None = None
    allowed: tuple[str, ...] = ()
    runtime: bool = True
    """Whether the executor reads it (it is in the runtime config and ExecutorSettings);
    False for what only configc uses (the units, the inventory, the other sections)."""
    check: Mapping[str, Any] = field(default_factory=dict)
    """Extra cerberus rules of configc's schema: a format (check_with, regex) or coercion."""


_FLAG = {"coerce": "flag"}
_DIRECTORY = {"check_with": "absolute_path"}

AUTO = "auto"
"""The value of metrics_bind and memory_high that configc resolves (see below)."""
LOOPBACK = "127.0.0.1"
MEMORY_SIZE = re.compile(r"[1-9][0-9]*[KMGT]?|infinity")
"""A size systemd reads for MemoryMax=/MemoryHigh= (matched whole)."""

KEYS: tuple[Key, ...] = (
    Key("instances", int, 1, "executor processes per host", 1, 64, runtime=False),
    Key("max_concurrent_tasks", int, 5, "tasks one process runs at once", 1, 1024),
    Key("max_concurrent_chunk_builders", int, 1, "upstream's chunk builders", 1, 256),
    Key("group_tasks", bool, True, "run ingestion tasks fetched together", check=_FLAG),
    Key("heartbeat_interval", float, 30, "seconds between heartbeats", 1, 600),
    Key("worker_heartbeat_timeout", float, 120, "a silent worker's seconds in TASKEXE", 2),
    Key("reclaim_idle", float, 300, "seconds before a silent worker's tasks are reclaimed", 1),
    Key("max_deliveries", int, 3, "deliveries before a task is dead-lettered", 1, 100),
    Key("drain_timeout", float, 60, "seconds a stopping executor lets tasks finish", 0, 3600),
    Key("lost_task_sweep", int, 600, "seconds between sweeps for lost tasks (0: off)", 0, 86400),
    Key("doc_engine", str, "embedded", "the document store", allowed=DOC_ENGINES, runtime=False),
    Key("db_type", str, "sqlite", "the task database", allowed=DB_TYPES, runtime=False),
    Key(
        "storage", str, "local", "where documents are kept", allowed=STORAGE_BACKENDS, runtime=False
    ),
    Key("state_dir", str, "/var/lib/ragfleet", "the only writable directory", check=_DIRECTORY),
    Key(
        "install_dir",
        str,
        "/opt/ragfleet",
        "the virtualenv's parent",
        runtime=False,
        check=_DIRECTORY,
    ),
    Key(
        "user",
        str,
        "ragfleet",
        "system user the executors run as",
        runtime=False,
        check={"regex": r"[a-z_][a-z0-9_-]{0,31}"},
    ),
    Key("log_level", str, "INFO", "the log's threshold", allowed=LOG_LEVELS),
    Key("metrics_port_base", int, 9470, "instance N serves metrics on base + N", 1, 65535),
    Key(
        "metrics_bind",
        str,
        AUTO,
        "the address /metrics and /healthz listen on",
        check={"check_with": "bind_address"},
    ),
    Key(
        "memory_max",
        str,
        "2G",
        "MemoryMax= of each executor instance",
        runtime=False,
        check={"check_with": "memory_size"},
    ),
    Key(
        "memory_high",
        str,
        AUTO,
        "MemoryHigh= of each instance",
        runtime=False,
        check={"check_with": "memory_size"},
    ),
    Key("lighten", bool, False, "upstream's LIGHTEN", runtime=False, check=_FLAG),
)

RUNTIME_KEYS = tuple(key for key in KEYS if key.runtime)
"""The keys of the runtime config's ``executor:`` section, in the order configc writes them."""


# -- timing rules ------------------------------------------------------------------------------


class Watchdog(NamedTuple):
    """The systemd watchdog an executor runs under: seconds, and where that figure is from."""

    seconds: float
    source: str


def watchdog_sec(heartbeat_interval: int) -> int:
    """WatchdogSec of an executor unit: systemd kills an instance that has not pinged it
    for this long. An instance stops pinging when its event loop blocks, or when its
    heartbeat loop has not come round for this long either (Worker._alive)."""
    return max(30, 3 * heartbeat_interval)


Problem = tuple[tuple[str, str], str]
"""A broken rule: the key path it names, and why."""


def timing_problems(executor: Mapping[str, Any], watchdog: Watchdog | None) -> list[Problem]:
    """What the ``executor:`` timings get wrong, under *watchdog* (None: nothing kills a hung
    executor). With or without one, a live holder's lease, renewed every heartbeat, must
    look younger than half of reclaim_idle (Worker._held_elsewhere's limit); a watchdog
    adds that a hung holder must be dead before its entries are reclaimed (the stricter
    rule under configc's watchdog, which is at least three heartbeats)."""
    beat = executor["heartbeat_interval"]
    problems: list[Problem] = []
    if executor["worker_heartbeat_timeout"] <= 2 * beat:
        problems.append(
            (
                ("executor", "worker_heartbeat_timeout"),
                f"must be more than twice heartbeat_interval ({beat} s), or a live worker "
                "whose heartbeat is a little late is declared dead",
            )
        )
    if watchdog is not None and executor["reclaim_idle"] <= (least := 2 * watchdog.seconds):
        problems.append(
            (
                ("executor", "reclaim_idle"),
                f"must be more than {_seconds(least)} s, twice the watchdog "
                f"({_seconds(watchdog.seconds)} s, {watchdog.source}): a hung executor is "
                "killed by its watchdog at most that long after it last refreshed its tasks' "
                "entries, and no other may take them over before, or both would run them",
            )
        )
    elif executor["reclaim_idle"] <= 2 * beat:
        problems.append(
            (
                ("executor", "reclaim_idle"),
                f"must be more than {_seconds(2 * beat)} s, twice heartbeat_interval: a live "
                "executor renews its tasks' leases every heartbeat, and another takes over "
                "a task whose lease is older than half of reclaim_idle",
            )
        )
    return problems


def _seconds(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


# -- Redis ACL ---------------------------------------------------------------------------------

REDIS_ACL_COMMANDS: tuple[str, ...] = (
    # connection: health checks, the db of the config. Not CLIENT SETINFO, which redis-py
    # sends on connect and lets fail: Debian 12's Redis 7.0 predates it (and refuses the rule)
    "ping",
    "select",
    "time",
    # a producer's WAIT for a replica under Sentinel (queue/producer.py)
    "wait",
    # transactions and the lock-release script (its GET and DEL are checked too)
    "multi",
    "exec",
    "discard",
    "eval",
    # locks, marks and cancel flags
    "get",
    "set",
    "del",
    "exists",
    # outage deliveries, clean stops
    "hset",
    "hget",
    "hmget",
    "hdel",
    "hincrby",
    # TASKEXE
    "sadd",
    "srem",
    "smembers",
    # heartbeats
    "zadd",
    "zcount",
    "zremrangebyscore",
    "zrevrangebyscore",
    # the queues and the dead-letter stream
    "xadd",
    "xack",
    "xdel",
    "xlen",
    "xrange",
    "xreadgroup",
    "xclaim",
    "xautoclaim",
    "xpending",
    "xgroup|create",
    "xgroup|delconsumer",
    "xinfo|groups",
    "xinfo|consumers",
)
"""Every Redis command the queue package (executor/queue) sends: the ACL users configc gives
the executors and the operator CLI may run these and nothing else. A command added to the
queue must be added here (tests/test_redis_acl.py runs the executor under this list)."""

REDIS_ACL_KEYS: tuple[str, ...] = (
    "rag_flow_svr_queue*",  # the priority streams (wire.QUEUE)
    "TASKEXE",  # the executors' set (wire.EXECUTORS_SET)
    "task_executor_*",  # each executor's heartbeats, by consumer name (wire.consumer_name)
    "clean_task_executor",  # upstream's cleanup lock (wire.CLEANUP_LOCK)
    "ragfleet_*",  # our locks, marks, dead letters and counters (wire.REQUEUE_LOCK, ...)
    "*-cancel",  # cancel flags (wire.cancel_key)
)
"""The key patterns of executor/queue/wire.py, for the same ACL users."""
# -- exposure and memory ---------------------------------------------------------------------


def metrics_host(bind: str, host_address: str, fleet: bool) -> str:
    """The address an executor serves /metrics and /healthz on: *bind* (metrics_bind) as
    given, or for ``auto`` loopback on a single host (nothing else needs to scrape it) and
    in a *fleet* the host's own *host_address* (the one Prometheus and the other hosts
    reach it at), never every interface."""
    if bind != AUTO:
        return bind
    return host_address if fleet else LOOPBACK


_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
MEMORY_HIGH_SHARE = 0.8
"""memory_high ``auto``: this share of memory_max, so the kernel reclaims and throttles an
instance before it is killed."""
MIN_MEMORY = 512 << 20
"""The least memory_max/memory_high configc accepts: an executor starts at about 80 MiB
resident, and holds about 400 MiB once it has ingested a document (tokenizer and models
loaded)."""


def memory_bytes(size: str) -> int | None:
    """Bytes of a systemd size (``2G``, ``1536M``, ``1073741824``; K/M/G/T are powers of
    1024, as systemd reads them); None for ``infinity``."""
    if size == "infinity":
        return None
    unit = size[-1] if size[-1] in _UNITS else ""
    return int(size.removesuffix(unit)) * _UNITS[unit]


def memory_high(memory_max: str, high: str) -> str:
    """The unit's MemoryHigh=: *high* as given, or for ``auto`` MEMORY_HIGH_SHARE of
    *memory_max* in MiB (infinity under no maximum)."""
    if high != AUTO:
        return high
    limit = memory_bytes(memory_max)
    return "infinity" if limit is None else f"{int(limit * MEMORY_HIGH_SHARE) >> 20}M"


def memory_problems(executor: Mapping[str, Any]) -> list[Problem]:
    """What memory_max and memory_high get wrong: too little to run, or a high mark above
    the maximum (it would never throttle before the kill)."""
    problems: list[Problem] = []
    for name in ("memory_max", "memory_high"):  # auto is a share of a maximum checked here
        value = executor[name]
        if value != AUTO and (limit := memory_bytes(value)) is not None and limit < MIN_MEMORY:
            problems.append(
                (("executor", name), f"{value} is too little: an executor needs at least 512M")
            )
    top = memory_bytes(executor["memory_max"])
    high = memory_bytes(memory_high(executor["memory_max"], executor["memory_high"]))
    if top is not None and (high is None or high > top):
        problems.append(
            (
                ("executor", "memory_high"),
                f"must not exceed memory_max ({executor['memory_max']}): the instance would be "
                "killed before it is ever throttled",
            )
        )
    return problems
