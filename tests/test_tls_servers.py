"""TLS with real servers on configc's certificates: the executor's clients verify them, and
plaintext (or a client trusting another CA) is refused. See docs/security.md."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest
import redis
from executors import mysql_database
from secured import Secured, secured_conf, secured_redis
from servers import MariaDBServer, RedisServer, ServerTls, no_retry

from configc.pki import prepare_tls
from executor.queue import wire
from executor.queue.broker import Broker
from executor.queue.connection import connect
from executor.queue.producer import enqueue
from executor.settings import RedisSettings
from executor.store.opening import open_database


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Secured:
    return secured_conf(tmp_path_factory.mktemp("secured"))


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CA certificate of another configc CA: a client trusting it must refuse our servers."""
    conf = tmp_path_factory.mktemp("other")
    doc = {
        "tls": {"mode": "on"},
        "hosts": [{"name": "x", "address": "127.0.0.1", "roles": ["redis"]}],
    }
    prepare_tls(conf, doc)
    return conf / "tls" / "ca.crt"


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory, secured: Secured) -> Iterator[RedisServer]:
    server = secured_redis(tmp_path_factory.mktemp("redis-tls"), secured).start()
    yield server
    server.close()


def executor_settings(server: RedisServer, secured: Secured, **changes: object) -> RedisSettings:
    login = {**secured.login("executor"), **changes}
    return RedisSettings(host=server.host, port=server.port, db=1, **login)  # type: ignore[arg-type]


def test_the_executor_reaches_redis_over_tls_and_runs_the_queue(tls_redis, secured):
    client = connect(executor_settings(tls_redis, secured))
    with client:
        assert client.ping()
        assert client.connection_pool.get_connection().__class__.__name__ == "SSLConnection"
        broker = Broker(client, wire.consumer_name("tls", 1))
        broker.ensure_groups()
        enqueue(client, [{"id": "t-tls", "task_type": "noop"}])
        delivered = broker.read_new(count=1, block_ms=1000)
        assert [wire.decode_message(d.fields)["id"] for d in delivered] == ["t-tls"]


def test_plaintext_to_redis_is_refused(tls_redis):
    plain = redis.Redis(
        host=tls_redis.host,
        port=tls_redis.port,
        password=tls_redis.password,
        retry=no_retry(),
        socket_timeout=3,
    )
    with plain, pytest.raises(redis.ConnectionError):
        plain.ping()


def test_a_client_trusting_another_ca_refuses_redis(tls_redis, secured, other_ca):
    client = connect(executor_settings(tls_redis, secured, ca_cert=str(other_ca)), retry=no_retry())
    with client, pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        client.ping()


def test_a_certificate_naming_another_host_is_refused(tmp_path, secured):
    """A certificate from the same CA for another host (SANs 127.0.0.2, elsewhere) is
    refused: the client checks the name it dialled, not only the chain."""
    conf = tmp_path / "conf"
    (conf / "tls").mkdir(parents=True)
    for name in ("ca.crt", "ca.key"):
        shutil.copy(secured.conf / "tls" / name, conf / "tls" / name)
    elsewhere = {"name": "elsewhere", "address": "127.0.0.2", "roles": ["redis"]}
    prepare_tls(conf, {"tls": {"mode": "on"}, "hosts": [elsewhere]})
    store = conf / "tls"
    tls = ServerTls(store / "redis.crt", store / "redis.key", store / "ca.crt")
    with RedisServer(tmp_path / "redis", tls=tls) as server:
        server.start()
        client = connect(executor_settings(server, secured), retry=no_retry())
        with (
            client,
            pytest.raises(
                redis.ConnectionError, match=r"mismatch, certificate is not valid for .127\.0\.0\.1"
            ),
        ):
            client.ping()


@pytest.fixture(scope="module")
def tls_mariadb(tmp_path_factory, secured: Secured) -> Iterator[MariaDBServer]:
    server = MariaDBServer(tmp_path_factory.mktemp("mariadb-tls"), tls=secured.server_tls("mysql"))
    yield server.start()
    server.close()


def test_the_executor_reaches_mariadb_over_tls(tls_mariadb, secured):
    database = open_database(mysql_database(tls_mariadb, ssl_ca=str(secured.ca)))
    try:
        cipher = database.execute_sql("SHOW SESSION STATUS LIKE 'Ssl_cipher'").fetchone()
        assert cipher[1], "the session is not encrypted"
    finally:
        database.close()


def test_plaintext_to_mariadb_is_refused(tls_mariadb):
    """The same login over TLS is let in; without TLS MariaDB 10.11 answers "Access denied"
    (MySQL says "insecure transport"), and its log says nothing more."""
    tls_mariadb.connect().close()
    # PyMySQL 2 tries TLS by default (unverified, "preferred"): plaintext must be asked for.
    with pytest.raises(pymysql.OperationalError, match=r"Access denied|insecure transport"):
        tls_mariadb.connect(ssl=None, ssl_disabled=True)


def test_a_client_trusting_another_ca_refuses_mariadb(tls_mariadb, other_ca):
    database = open_database(mysql_database(tls_mariadb, ssl_ca=str(other_ca)))
    with pytest.raises(Exception, match="certificate verify failed"):
        database.connect()
