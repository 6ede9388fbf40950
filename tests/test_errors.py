"""The classification table of executor.errors, with errors raised by real servers (or by
real clients against a closed port) where that is cheap, and by hand where it is not."""

from __future__ import annotations

import pymysql
import pytest
import redis
from servers import HOST, free_port, no_retry

from executor.errors import (
    DatabaseUnavailable,
    DependencyUnavailable,
    MalformedMessage,
    NoTurnToWrite,
    SettingsError,
    TaskInputError,
    TaskNotInDatabase,
    is_outage,
    not_now,
    redis_denied,
    redis_outage,
    redis_refused,
    refuses_writes,
    unreachable,
)
from executor.ingest.errors import DocStoreUnavailable, EmbeddingError, StorageUnavailable
from executor.store.opening import open_task_store

CLASSIFIERS = (is_outage, redis_denied, redis_outage, redis_refused, not_now)


def classified(exc: BaseException) -> tuple[bool, ...]:
    return tuple(f(exc) for f in CLASSIFIERS)


def raised(call, *args, **kwargs) -> BaseException:
    with pytest.raises(Exception) as info:
        call(*args, **kwargs)
    return info.value


#             is_outage, redis_denied, redis_outage, redis_refused, not_now
OUTAGE = (True, False, True, True, True)
DENIED = (True, True, True, True, True)  # a refused login is a ConnectionError to redis-py
NOPERM = (False, True, False, True, True)  # an ACL's refusal is an answer, not an outage
ANSWER = (False, False, False, True, True)  # Redis answered an error: "not now", no outage
OURS = (True, False, False, False, True)  # our outage types
NONE = (False, False, False, False, False)


def test_redis_down_is_an_outage():
    client = redis.Redis(host=HOST, port=free_port(), socket_connect_timeout=2, retry=no_retry())
    exc = raised(client.ping)
    assert isinstance(exc, redis.ConnectionError)
    assert classified(exc) == OUTAGE


def test_a_wrong_password_is_denied_and_denied_comes_first(redis_server, redis_client):
    client = redis.Redis(host=HOST, port=redis_server.port, password="wrong", retry=no_retry())
    exc = raised(client.ping)
    assert isinstance(exc, redis.AuthenticationError)
    assert classified(exc) == DENIED


def test_an_acl_without_our_commands_is_denied(redis_server, redis_client):
    redis_client.acl_setuser("reader", enabled=True, passwords=["+pw"], commands=["+ping"])
    try:
        client = redis.Redis(
            host=HOST, port=redis_server.port, username="reader", password="pw", retry=no_retry()
        )
        client.ping()
        exc = raised(client.xlen, "queue")
    finally:
        redis_client.acl_deluser("reader")
    assert isinstance(exc, redis.exceptions.NoPermissionError)
    assert classified(exc) == NOPERM


def test_an_error_answer_is_refused_not_an_outage(redis_client):
    exc = raised(redis_client.xgroup_create, "no-such-stream", "group", id="0")
    assert type(exc) is redis.ResponseError
    assert classified(exc) == ANSWER
    assert not refuses_writes(exc)


@pytest.mark.parametrize(
    "text",
    [
        "MISCONF Errors writing to the AOF file: No space left on device",
        "Command # 1 (XADD q * m x) of pipeline caused error: MISCONF Redis is configured to save",
    ],
)
def test_misconf_is_an_outage(text):
    exc = redis.ResponseError(text)
    assert refuses_writes(exc)
    assert classified(exc) == OUTAGE


def test_a_master_short_of_its_replicas_is_an_outage(redis_client):
    """NOREPLICAS: min-replicas-to-write unmet (a master just promoted by the sentinels)."""
    redis_client.config_set("min-replicas-to-write", 1)
    try:
        exc = raised(redis_client.xadd, "noreplicas-stream", {"m": "x"})
        pipe = redis_client.pipeline()
        pipe.xadd("noreplicas-stream", {"m": "x"})
        in_pipeline = raised(pipe.execute)
    finally:
        redis_client.config_set("min-replicas-to-write", 0)
    assert str(exc).startswith("NOREPLICAS "), exc
    for error in (exc, in_pipeline):
        assert refuses_writes(error) and classified(error) == OUTAGE, error


@pytest.mark.parametrize(
    "exc",
    [redis.BusyLoadingError("LOADING"), redis.ReadOnlyError("READONLY"), redis.TimeoutError()],
)
def test_redis_not_taking_commands_for_now_is_an_outage(exc):
    assert classified(exc) == OUTAGE


def test_redis_out_of_memory_is_an_outage():
    assert classified(redis.OutOfMemoryError("OOM command not allowed")) == OUTAGE


def test_a_database_down_is_an_outage():
    config = {
        "type": "mysql",
        "host": HOST,
        "port": free_port(),
        "user": "u",
        "password": "p",
        "name": "n",
    }
    _store, unavailable = open_task_store(config)
    assert isinstance(unavailable, DatabaseUnavailable)
    assert classified(unavailable) == OURS
    raw = raised(pymysql.connect, host=HOST, port=free_port(), connect_timeout=2)
    assert classified(raw) == NONE  # the driver's own error: the store turns it into ours


@pytest.mark.parametrize("exc", [DependencyUnavailable("embedding endpoint")])
def test_a_dependency_down_is_an_outage(exc):
    assert classified(exc) == OURS


@pytest.mark.parametrize(
    "exc",
    [
        TaskInputError("bad payload"),
        TaskNotInDatabase("t1"),
        MalformedMessage("no fields"),
        SettingsError("database.type"),
        EmbeddingError("400"),
        ValueError("a bug"),
    ],
)
def test_what_is_wrong_with_a_task_or_the_executor_is_no_outage(exc):
    assert classified(exc) == NONE


def test_another_pass_keeping_the_turn_only_skips_the_pass():
    assert classified(TimeoutError("kept the turn")) == (False, False, False, False, True)


@pytest.mark.parametrize(
    "exc",
    [
        DocStoreUnavailable("503"),
        StorageUnavailable("s3"),
        NoTurnToWrite("sqlite"),
        ConnectionRefusedError(),
    ],
)
def test_an_unreachable_service_is_turned_into_an_outage_by_the_pipeline(exc):
    assert unreachable(exc)
    assert not is_outage(exc)  # raw: the pipeline or the store raises ours from it
    assert is_outage(DependencyUnavailable(str(exc)))


def test_unreachable_is_only_a_connection_error():
    assert not unreachable(EmbeddingError("400"))
    assert not unreachable(TaskInputError("x"))
