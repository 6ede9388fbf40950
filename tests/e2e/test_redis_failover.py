"""Redis under Sentinel on the converged fleet: failovers while ingestion runs (issue 22).

tests/e2e/topology.yaml makes the e2e fleet a Sentinel fleet: the master on redis
(10.213.0.11), replicas on db and es, a sentinel on each of the three. This module runs
last (file order) because it kills and moves the master:

1. the converge left every replica linked (over TLS) and every sentinel naming redis;
2. 500 ingestion tasks, the master's redis-server SIGKILLed mid-run (kept down until the
   sentinels have promoted a replica, then started again): ``ragfleet status`` names the new
   master, every task is done exactly once, the old master rejoins as a replica;
3. 100 ingestion tasks, the network of the master's host cut (its veth on the bridge down):
   the same checks, and once the link is back the host rejoins as a replica. The master is
   first moved back to redis, the host that runs nothing else, so the cut measures Redis's
   failover and not MariaDB's or the document store's absence;
4. the playbook's rolling restart of the Redis hosts (``-e redis_rolling_restart=true``)
   while 100 ingestion and 10 sleep tasks run: nothing lost, every task done once, and a
   re-run of the redis plays changes nothing.

"Exactly once": every task row done (none failed), each document's ``chunk_num`` and its
chunks in the document store (osmem-server on es) equal to what its text makes (one chunk
each here): a task run twice would not duplicate chunks (their ids hash text and
document) but would show twice in its progress log ("Task has been received."), which is
counted and logged as the tasks begun more than once. Times are logged (``[e2e ...]``) and
bounded below; docs/deploy.md (High availability) gives the measured ones.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from deployment import RAGFLEET, REAL_RUN, SITE, Deployment, converged
from executors import wait_for
from sentinel_fleet import (
    MASTER_NAME,
    PORT,
    SERVERS,
    address,
    agreed_master,
    executors,
    host_of,
    probe,
    queue_documents,
    redis_cli,
    replication,
    sentinel_masters,
    sentinel_replicas,
    status_master,
    synced_replica_of,
    write_documents,
)
from testbed import BRIDGE, log

# Bounds (seconds), from sentinel_down_after_ms 5000 (configc's default) and the runs in
# docs/deploy.md: the fault -> a new master named by `ragfleet status`; -> every task done;
# -> the old master a synced replica again.
NEW_MASTER_BOUND = 30
ALL_DONE_BOUND = 240
REJOIN_BOUND = 60

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]


def wait_done_count(deployment: Deployment, kb: str, at_least: int) -> int:
    def done() -> int | None:
        rows = probe(deployment, kb)
        assert rows["failed"] == 0, rows
        return rows["done"] if rows["done"] >= at_least else None

    return wait_for(done, 180, f"{at_least} tasks of {kb} done", interval=0.5)


def check_exactly_once(
    deployment: Deployment, kb: str, documents: int, since: float, ids_file: str = "-"
) -> float:
    """Wait until every task is done; then every document's chunks exactly once. Returns
    the seconds from *since* to the last task done."""

    def all_done() -> Any:
        rows = probe(deployment, kb, ids_file)
        assert rows["failed"] == 0, f"tasks failed: {rows}"
        return rows["done"] == rows["tasks"] and rows

    rows = wait_for(all_done, ALL_DONE_BOUND + 60, f"every task of {kb} done", interval=1)
    took = time.monotonic() - since
    full = probe(deployment, kb, ids_file, full=True)
    log(
        f"{kb}: {full['tasks']} tasks done {took:.1f} s after the fault, none failed, "
        f"{full['begun_twice']} begun more than once; chunks off: {full['chunk_num_off'][:5]} "
        f"store off: {full['store_off'][:5]}"
    )
    assert full["docs"] == documents and full["done"] == full["tasks"] == rows["tasks"], full
    assert full["chunk_num_off"] == [] and full["store_off"] == [], full
    return took


@contextmanager
def redis_kept_down(deployment: Deployment, host: str) -> Iterator[None]:
    """No automatic restart of *host*'s redis-server (Debian's unit has Restart=always) until
    the block ends: the killed master stays down until the sentinels have promoted a replica."""
    dropin = "/run/systemd/system/redis-server.service.d"
    deployment.ssh(
        host,
        f"mkdir -p {dropin} && printf '[Service]\\nRestart=no\\n' > {dropin}/e2e.conf && "
        "systemctl daemon-reload",
    )
    try:
        yield
    finally:
        deployment.ssh(
            host,
            f"rm -rf {dropin} && systemctl daemon-reload && systemctl reset-failed redis-server; "
            "systemctl start redis-server",
        )


def new_master_named(
    deployment: Deployment, fault: str, old: str, since: float, survivors: tuple[str, ...]
) -> tuple[str, float]:
    """Wait until a surviving sentinel, then ``ragfleet status`` on exec1, name a master other
    than *old*; record both delays and return the master and the second delay (from *since*)."""
    named = wait_for(
        lambda: (m := sentinel_masters(deployment, survivors[:1])[survivors[0]]) != old and m,
        NEW_MASTER_BOUND + 60,
        "a sentinel to name a new master",
        interval=0.2,
    )
    log(f"the sentinel on {survivors[0]} names {named} {time.monotonic() - since:.1f} s after")
    deployment.record(f"{fault}: a sentinel names the new master", time.monotonic() - since)
    master = wait_for(
        lambda: (m := status_master(deployment)) and m != old and m,
        NEW_MASTER_BOUND + 60,
        "ragfleet status to name a new master",
        interval=0.2,
    )
    took = time.monotonic() - since
    log(f"ragfleet status names the new master {master} {took:.1f} s after")
    deployment.record(f"{fault}: ragfleet status names it", took)
    assert master == named, (master, named)
    return master, took


@pytest.fixture(scope="module", autouse=True)
def running_executors(deployment: Deployment) -> None:
    """Every executor instance running (test_deploy.py's last test stops them)."""
    converged(deployment)
    executors(deployment, "start")


# -- 1. the converged Sentinel fleet --------------------------------------------------------


def test_the_converge_deployed_replicas_and_sentinels(deployment: Deployment) -> None:
    converged(deployment)
    master = f"{address(deployment, 'redis')}:{PORT}"
    assert sentinel_masters(deployment) == dict.fromkeys(SERVERS, master)
    assert replication(deployment, "redis")["role"] == "master"
    for host in ("db", "es"):
        assert synced_replica_of(deployment, host, master), replication(deployment, host)
    # The installed fragment has no replicaof: replication is the sentinels' (redis role).
    for host in SERVERS:
        fragment = deployment.ssh(host, "cat /etc/redis/ragfleet.conf").stdout
        assert "\nreplicaof " not in fragment, host
    quorum = redis_cli(deployment, "db", f"SENTINEL CKQUORUM {MASTER_NAME}", sentinel=True)
    assert quorum.startswith("OK 3 usable Sentinels"), quorum
    assert status_master(deployment) == master


# -- 2. kill -9 the master mid-run ----------------------------------------------------------


def test_kill_9_the_master_mid_run(deployment: Deployment) -> None:
    converged(deployment)
    kb, count = "ha-kill", 500
    old = agreed_master(deployment)
    old_host = host_of(deployment, old)
    queue_documents(deployment, kb, count)
    done_before = wait_done_count(deployment, kb, 10)
    with redis_kept_down(deployment, old_host):
        # kill(1), not `systemctl kill`: in these hosts (cgroup v1) systemd fails to signal
        # the unit's auxiliary processes ("Input/output error") and exits 1.
        deployment.ssh(old_host, "kill -9 $(systemctl show -P MainPID redis-server)")
        killed = time.monotonic()
        log(f"SIGKILLed redis-server on {old_host} ({old}) with {done_before} of {count} done")
        assert done_before < count, "every task was done before the kill: not mid-run"
        survivors = tuple(h for h in SERVERS if h != old_host)
        master, took = new_master_named(deployment, "kill -9", old, killed, survivors)
        assert took <= NEW_MASTER_BOUND, f"new master after {took:.1f} s"
        assert agreed_master(deployment, survivors) == master
    # Started again (the context's end): it rejoins as a replica of the new master.
    wait_for(
        lambda: synced_replica_of(deployment, old_host, master),
        REJOIN_BOUND,
        f"{old_host} to rejoin as a replica of {master}",
        interval=1,
    )
    log(f"{old_host} rejoined as a replica {time.monotonic() - killed:.1f} s after the kill")
    deployment.record("kill -9: the old master a synced replica", time.monotonic() - killed)
    took = check_exactly_once(deployment, kb, count, killed)
    deployment.record(f"kill -9: all {count} tasks done", took)
    assert took <= ALL_DONE_BOUND, f"the last task done {took:.1f} s after the kill"
    assert agreed_master(deployment) == master


# -- 3. the master's host cut off the network -----------------------------------------------


def move_master_to(deployment: Deployment, host: str) -> None:
    """Fail over to *host* (SENTINEL FAILOVER, the other replica given priority 0 until then)."""
    target = f"{address(deployment, host)}:{PORT}"
    current = agreed_master(deployment)
    if current == target:
        return
    other = next(h for h in SERVERS if h != host and f"{address(deployment, h)}:{PORT}" != current)
    redis_cli(deployment, other, "CONFIG SET replica-priority 0")
    try:
        # The sentinel reads a replica's priority from its INFO, every 10 s.
        wait_for(
            lambda: (
                sentinel_replicas(deployment, host)
                .get(address(deployment, other), {})
                .get("slave-priority")
                == "0"
            ),
            30,
            f"the sentinel on {host} to see {other}'s priority 0",
            interval=1,
        )
        redis_cli(deployment, host, f"SENTINEL FAILOVER {MASTER_NAME}", sentinel=True)
        wait_for(
            lambda: agreed_master(deployment) == target, 60, f"the master on {host}", interval=1
        )
        wait_for(
            lambda: all(synced_replica_of(deployment, h, target) for h in SERVERS if h != host),
            60,
            "the replicas to follow it",
            interval=1,
        )
    finally:
        redis_cli(deployment, other, "CONFIG SET replica-priority 100")
        redis_cli(deployment, other, "CONFIG REWRITE")  # if a sentinel wrote the 0 down


def veth(host: str) -> str:
    """The machine's side of *host*'s link to the bridge (systemd-nspawn's vb-NAME)."""
    ports = subprocess.run(
        ["ip", "-o", "link", "show", "master", BRIDGE], capture_output=True, text=True, check=True
    ).stdout
    names = [line.split(":")[1].strip().split("@")[0] for line in ports.splitlines()]
    assert f"vb-{host}" in names, f"no vb-{host} on {BRIDGE}: {names}"
    return f"vb-{host}"


def test_network_loss_of_the_masters_host(deployment: Deployment) -> None:
    converged(deployment)
    kb, count = "ha-net", 300
    move_master_to(deployment, "redis")
    old = agreed_master(deployment)
    cut = "redis"
    queue_documents(deployment, kb, count)
    done_before = wait_done_count(deployment, kb, 1)
    subprocess.run(["ip", "link", "set", veth(cut), "down"], check=True)
    lost = time.monotonic()
    others = tuple(h for h in SERVERS if h != cut)
    try:
        log(f"{cut}'s network down ({old} the master) with {done_before} of {count} done")
        assert done_before < count, "every task was done before the cut: not mid-run"
        master, took = new_master_named(deployment, "network cut", old, lost, others)
        assert took <= NEW_MASTER_BOUND, f"new master after {took:.1f} s"
        assert agreed_master(deployment, others) == master
        took = check_exactly_once(deployment, kb, count, lost)
        deployment.record(f"network cut: all {count} tasks done", took)
        assert took <= ALL_DONE_BOUND, f"the last task done {took:.1f} s after the cut"
    finally:
        subprocess.run(["ip", "link", "set", veth(cut), "up"], check=True)
    back = time.monotonic()
    wait_for(
        lambda: synced_replica_of(deployment, cut, master),
        REJOIN_BOUND,
        f"{cut} to rejoin as a replica of {master}",
        interval=1,
    )
    log(f"{cut} rejoined as a replica {time.monotonic() - back:.1f} s after its link came back")
    deployment.record("network cut: a synced replica after the link", time.monotonic() - back)
    wait_for(
        lambda: agreed_master(deployment) == master, 30, "all three sentinels to agree", interval=1
    )


# -- 4. a rolling restart with the playbook -------------------------------------------------


def test_rolling_restart_with_the_playbook_loses_nothing(deployment: Deployment) -> None:
    converged(deployment)
    kb, count = "ha-roll", 100
    before = agreed_master(deployment)
    pids = {h: deployment.ssh(h, "systemctl show -P MainPID redis-server").stdout for h in SERVERS}
    folder = write_documents(deployment, kb, count)
    # Ten sleep tasks of a minute run through the whole restart (the master's hand-over
    # included); the documents run beside them.
    sleeps = "/root/ha-roll.ids"
    deployment.ssh(
        "exec1",
        f'{RAGFLEET} submit -t sleep -n 10 -p \'{{"seconds": 60, "steps": 12}}\' > {sleeps} && '
        f"{RAGFLEET} submit {folder}/*.txt --kb {kb} -q",
    )
    started = time.monotonic()
    run = deployment.playbook(
        "rolling_restart",
        SITE,
        "--tags",
        "redis_rolling_restart",
        "-e",
        "redis_rolling_restart=true",
        *REAL_RUN,
    )
    log(f"the rolling restart took {run.seconds:.1f} s")
    assert run.returncode == 0 and not run.total("failed"), run.describe()
    after = agreed_master(deployment)
    assert after and after != before, (before, after)
    for host in SERVERS:
        pid = deployment.ssh(host, "systemctl show -P MainPID redis-server").stdout
        assert pid != pids[host], f"{host}'s redis-server was not restarted"
        if f"{address(deployment, host)}:{PORT}" != after:
            assert synced_replica_of(deployment, host, after), replication(deployment, host)
    took = check_exactly_once(deployment, kb, count, started, sleeps)
    deployment.record(f"rolling restart: all {count} + 10 tasks done", took)
    assert status_master(deployment) == after
    # The redis plays (servers and sentinels: what the failovers moved); the fleet's other
    # plays' idempotence is test_deploy.py's re-run.
    rerun = deployment.playbook("rerun_after_failovers", SITE, "--tags", "redis", *REAL_RUN)
    assert rerun.returncode == 0, rerun.describe()
    assert rerun.total("changed") == 0, f"changed after the failovers: {rerun.changed_tasks()}"
    assert agreed_master(deployment) == after, "the re-run moved the master"
