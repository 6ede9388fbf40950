"""Redis under Sentinel, for real: a master, two replicas and three sentinels
(tests/servers_sentinel.py), executors connected through the sentinels; the master is
SIGKILLed mid-run, the sentinels promote a replica, and every task finishes exactly once.
The failover time measured here is the one docs/deploy.md quotes."""

from __future__ import annotations

import time

import pytest
import redis
from executors import Fleet, sqlite_database, wait_for, write_config
from secured import secured_conf
from servers_sentinel import SentinelGroup, sentinel_group

from executor.errors import redis_outage
from executor.queue.connection import connect, current_master
from executor.queue.producer import wait_for_replica
from executor.settings import RedisSettings

TASKS = 40


@pytest.fixture
def group(tmp_path):
    with sentinel_group(tmp_path / "redis") as started:
        wait_for(started.replicas_synced, 20, "the replicas to sync")
        yield started


def settings_of(group: SentinelGroup, **extra) -> RedisSettings:
    return RedisSettings(db=0, **{**group.client_settings(), **extra})


def test_clients_find_the_master_through_the_sentinels_and_wait_for_a_replica(group):
    settings = settings_of(group)
    master = group.servers[0]
    assert current_master(settings) == (master.host, master.port)
    client = connect(settings)
    client.set("ragfleet_probe", 1)
    assert wait_for_replica(client) >= 1  # WAIT: a replica has the write
    # Without sentinels there is no replica to wait for, and no WAIT is sent.
    plain = connect(
        RedisSettings(host=master.host, port=master.port, db=0, password=group.password)
    )
    assert wait_for_replica(plain) == 0
    bad = settings_of(group, sentinel_master="nope")
    with pytest.raises(redis.ConnectionError) as info:  # MasterNotFoundError
        connect(bad).ping()
    assert redis_outage(info.value)  # waited out, as any outage


def test_master_killed_mid_run_sentinels_promote_and_every_task_finishes_once(tmp_path, group):
    workdir = tmp_path / "fleet"
    workdir.mkdir()
    config = write_config(
        workdir,
        group.servers[0],
        sqlite_database(workdir),
        redis_login=group.client_settings(),
    )
    fleet = Fleet(config)
    try:
        workers = [fleet.start(instance=1), fleet.start(instance=2)]
        ids = fleet.submit("sleep", count=TASKS, seconds=0.3)
        wait_for(lambda: sum(fleet.task(i)["progress"] == 1 for i in ids) >= 5, 30, "progress")
        old = group.servers[0]
        killed_at = time.monotonic()
        old.kill()
        wait_for(
            lambda: (m := group.current_master()) and m != (old.host, old.port) and m,
            30,
            "the sentinels to promote a replica",
        )
        promoted_after = time.monotonic() - killed_at
        # The executors write again: a task submitted now is run.
        late = wait_for(lambda: _submit_through_outage(fleet), 30, "a submit after failover")
        written_after = time.monotonic() - killed_at
        rows = fleet.wait_done([*ids, *late], timeout=90)
        assert [r["progress"] for r in rows] == [1] * (TASKS + 1)
        # Exactly once: no task was run by two deliveries (a second one logs it as done).
        for row in rows:
            assert row["progress_msg"].count("slept 1/1") == 1, row
        for worker in workers:
            assert worker.process.poll() is None
            assert "Redis unavailable" in worker.log, worker.log[-2000:]
            assert "Redis available again" in worker.log
            assert " failed" not in worker.log and "dead-lettered" not in worker.log
        # The sentinels' master now (on a loaded machine they may have failed over once
        # more since the first promotion): never the killed one, and what status names.
        status = fleet.cli("status")
        master = group.current_master()
        assert master != (old.host, old.port)
        assert f"redis master (named by the sentinels): {master[0]}:{master[1]}" in status.stdout
        print(  # the numbers docs/deploy.md quotes
            f"\nfailover: promoted after {promoted_after:.1f} s, writes accepted after "
            f"{written_after:.1f} s (down-after-milliseconds 1000)"
        )
    finally:
        fleet.close()


def _submit_through_outage(fleet: Fleet) -> list[str] | None:
    try:
        return fleet.submit("sleep", count=1, seconds=0.1)
    except redis.RedisError as exc:
        assert redis_outage(exc), exc
        return None


def test_over_tls_clients_follow_the_master_through_the_sentinels(tmp_path):
    """As configc compiles a fleet on TLS: servers, replication and sentinels on TLS only,
    with configc's certificate; the client verifies every one and follows a failover."""
    tls = secured_conf(tmp_path / "conf").server_tls("redis")
    with sentinel_group(tmp_path / "redis", tls=tls) as group:
        wait_for(group.replicas_synced, 20, "the replicas to sync over TLS")
        settings = settings_of(group)
        assert settings.tls and current_master(settings) == (
            group.servers[0].host,
            group.servers[0].port,
        )
        client = connect(settings)
        client.set("ragfleet_probe", 1)
        assert wait_for_replica(client) >= 1
        group.servers[0].kill()

        def written() -> bool:
            try:
                return bool(client.set("ragfleet_probe", 2))
            except redis.RedisError as exc:
                assert redis_outage(exc), exc
                return False

        wait_for(written, 30, "a write through the sentinels after the failover")
        assert current_master(settings) != (group.servers[0].host, group.servers[0].port)
