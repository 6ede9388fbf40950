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

from executor.queue.connection import connect
from executor.queue.producer import request_cancel
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
