"""Shared fixtures: one real redis-server and one real MariaDB server per test session.

Each starts on first use and stops at the end of the session; the logic is in servers.py.
A test may stop, kill or restart them; ``redis_client`` brings Redis back before each test,
and a test that stops MariaDB must start it again (``server.start()`` is a no-op when it runs).
A missing binary fails the tests that need it, never skips them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeVar

import pytest
import redis
from servers import MariaDBServer, RedisServer, ServerUnavailable

S = TypeVar("S", RedisServer, MariaDBServer)


def _start(server: S) -> S:
    try:
        return server.start()
    except ServerUnavailable as exc:
        message = str(exc)
    server.close()
    pytest.fail(message, pytrace=False)  # outside except: no chained traceback


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = _start(RedisServer(tmp_path_factory.mktemp("redis")))
    yield server
    server.close()


@pytest.fixture(scope="session")
def mariadb_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDBServer]:
    server = _start(MariaDBServer(tmp_path_factory.mktemp("mariadb")))
    yield server
    server.close()


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client of the session's Redis, running and emptied (FLUSHALL) for this test."""
    redis_server.start()
    client = redis_server.client()
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def fleet(tmp_path, redis_client, redis_server):
    """Executors on SQLite against the session's Redis (emptied for this test)."""
    from executors import Fleet, sqlite_database, write_config

    fleet = Fleet(write_config(tmp_path, redis_server, sqlite_database(tmp_path)))
    yield fleet
    fleet.close()
