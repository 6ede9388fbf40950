"""Least privilege in Redis: configc's ACL users on a real redis-server (over TLS, as between
hosts). The executors run fully as theirs, the operator CLI as its own, and a command outside
settings_spec.REDIS_ACL_COMMANDS (or a key outside REDIS_ACL_KEYS) is refused."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import redis
from executors import Fleet, sqlite_database, wait_for, write_config
from ruamel.yaml import YAML
from secured import EXECUTOR_USER, OPERATOR_USER, Secured, secured_conf, secured_redis
from servers import RedisServer, no_retry

from executor.queue import wire
from executor.queue.connection import connect
from executor.queue.producer import enqueue, request_cancel
from executor.settings import OPERATOR_FILE, RedisSettings


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Secured:
    return secured_conf(tmp_path_factory.mktemp("secured"))


@pytest.fixture(scope="module")
def acl_redis(tmp_path_factory, secured: Secured) -> Iterator[RedisServer]:
    server = secured_redis(tmp_path_factory.mktemp("redis-acl"), secured).start()
    yield server
    server.close()


@pytest.fixture
def admin(acl_redis: RedisServer) -> Iterator[redis.Redis]:
    """The default user (redis.password), the fleet's data emptied for this test."""
    client = acl_redis.client()
    client.flushall()
    yield client
    client.close()


def as_user(server: RedisServer, secured: Secured, role: str) -> redis.Redis:
    login = secured.login(role)
    settings = RedisSettings(host=server.host, port=server.port, db=1, **login)  # type: ignore[arg-type]
    return connect(settings, retry=no_retry())


def write_operator_file(config_dir, server: RedisServer, login: dict) -> None:
    section = {"host": server.host, "port": server.port, "db": 0, **login}
    with (config_dir / OPERATOR_FILE).open("w") as stream:
        YAML(typ="safe", pure=True).dump({"redis": section}, stream)


@pytest.fixture
def acl_fleet(tmp_path, admin, acl_redis, secured) -> Iterator[Fleet]:
    """Executors on SQLite logging in to Redis as the executors' ACL user over TLS."""
    config = write_config(
        tmp_path, acl_redis, sqlite_database(tmp_path), redis_login=secured.login("executor")
    )
    fleet = Fleet(config)
    yield fleet
    fleet.close()


def test_the_compiled_users_are_the_ones_redis_runs(admin):
    users = set(admin.acl_users())
    assert {EXECUTOR_USER, OPERATOR_USER, "default"} <= users


def test_an_executor_runs_tasks_as_its_acl_user(acl_fleet, acl_redis, secured, admin):
    """A real `ragfleet run`: its start-up probe (every kind of command), heartbeats, a task
    to done, a cancelled one. An operator file it must not read is beside its config."""
    write_operator_file(acl_fleet.config.parent, acl_redis, {"password": "wrong", "tls": True})
    executor = acl_fleet.start()
    done = acl_fleet.submit(count=3)
    assert [t["progress"] for t in acl_fleet.wait_done(done)] == [1.0, 1.0, 1.0]
    (slow,) = acl_fleet.submit("sleep", seconds=30, steps=30)
    wait_for(lambda: acl_fleet.task(slow)["begin_at"], 10, "the task to start")
    request_cancel(acl_fleet.redis, [slow])  # the flag, as the executor user sets it
    row = wait_for(lambda: (r := acl_fleet.task(slow))["progress"] < 0 and r, 10, "the cancel")
    assert row["progress_msg"].endswith("Task has been canceled.")
    assert "NOPERM" not in executor.log and "denied" not in executor.log.lower()
    clients = admin.client_list()
    assert any(c["user"] == EXECUTOR_USER for c in clients), clients
    assert executor.terminate() == 0


@pytest.mark.parametrize(
    "command",
    [
        ("FLUSHALL",),
        ("CONFIG", "GET", "*"),
        ("KEYS", "*"),
        ("ACL", "LIST"),
        ("SCRIPT", "FLUSH"),
        ("HGETALL", "ragfleet_clean_stops"),
    ],
)
@pytest.mark.parametrize("role", ["executor", "operator"])
def test_commands_outside_the_list_are_refused(acl_redis, secured, admin, role, command):
    admin.set("marker", "1")
    client = as_user(acl_redis, secured, role)
    with client, pytest.raises(redis.exceptions.NoPermissionError):
        client.execute_command(*command)
    assert admin.get("marker") == b"1"


@pytest.mark.parametrize("role", ["executor", "operator"])
def test_keys_outside_the_patterns_are_refused(acl_redis, secured, admin, role):
    with as_user(acl_redis, secured, role) as client:
        client.set("ragfleet_probe", "ok")  # one of ours
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.get("session:someone-else")


def test_the_operator_cli_logs_in_as_its_own_user(acl_fleet, acl_redis, secured, admin):
    """The CLI reads operator.yaml beside the config: a wrong password there fails the
    command (so it is the login used), the right one runs the operator commands."""
    directory = acl_fleet.config.parent
    write_operator_file(directory, acl_redis, {**secured.login("operator"), "password": "nope"})
    refused = acl_fleet.cli("status")
    assert refused.returncode == 2 and OPERATOR_USER in refused.stderr, refused.stderr
    write_operator_file(directory, acl_redis, secured.login("operator"))
    acl_fleet.start()
    ids = acl_fleet.submit("sleep", seconds=30)
    for args in (
        ("status", "--json"),
        ("dlq", "list"),
        ("tasks",),
        ("cancel", *ids),
        ("reconcile",),
    ):
        result = acl_fleet.cli(*args)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        assert "NOPERM" not in result.stderr
    status = json.loads(acl_fleet.cli("status", "--json").stdout)
    assert status, "the executor's heartbeat is readable as the operator"


def no_acl_refusal(*logs: str) -> None:
    for log in logs:
        assert "NOPERM" not in log and "no permissions" not in log, log[-2000:]


def test_a_killed_executors_task_is_reclaimed_as_the_acl_user(acl_fleet):
    """The recovery paths (XAUTOCLAIM/XCLAIM/XPENDING, the dead consumer's removal under the
    cleanup lock) need nothing outside the list."""
    victim = acl_fleet.start(instance=1)
    (task_id,) = acl_fleet.submit("sleep", seconds=3, steps=3)
    wait_for(lambda: acl_fleet.task(task_id)["begin_at"], 10, "the task to start")
    survivor = acl_fleet.start(instance=2)
    victim.kill()  # kill -9 mid-task: its entry stays pending under task_executor_test_1
    row = acl_fleet.wait_done([task_id], timeout=30)[0]
    assert row["progress"] == 1 and row["retry_count"] == 1
    assert "reclaimed entry " in survivor.log
    acl_fleet.wait_consumer_gone("task_executor_test_1", survivor)
    no_acl_refusal(victim.log, survivor.log)


def test_dead_letters_as_the_acl_users(acl_fleet, acl_redis, secured):
    """An entry whose task the database lacks is set aside to the dead-letter stream by the
    executors' user; the operator's lists, retries and purges it."""
    write_operator_file(acl_fleet.config.parent, acl_redis, secured.login("operator"))
    executor = acl_fleet.start()
    enqueue(acl_fleet.redis, [{"id": "not-in-the-database", "task_type": "noop"}])
    wait_for(lambda: acl_fleet.redis.xlen(wire.DEAD_LETTER_STREAM), 15, "the dead letter")
    (entry,) = json.loads(acl_fleet.cli("dlq", "list", "--json").stdout)
    assert entry["task_id"] == "not-in-the-database"
    retried = acl_fleet.cli("dlq", "retry", "--all")
    assert retried.returncode == 4 and "the entry is kept" in retried.stderr, retried.stderr
    purged = acl_fleet.cli("dlq", "purge", "--yes")
    assert purged.returncode == 0, purged.stderr
    assert json.loads(acl_fleet.cli("dlq", "list", "--json").stdout) == []
    no_acl_refusal(executor.log, retried.stderr, purged.stderr)
