"""The test-server infrastructure itself: real redis-server and MariaDB, stopped, killed and
restarted with their data intact, and never left running."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pymysql
import pytest
import redis
from servers import (
    MariaDBServer,
    RedisServer,
    ServerStartError,
    ServerUnavailable,
    find_binary,
    free_port,
    no_retry,
)

TESTS_DIR = Path(__file__).resolve().parent


def _gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie counts: init may be slow to reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def _wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not _gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# --- ports and binaries --------------------------------------------------------------------


def test_free_port_is_bindable_and_below_the_ephemeral_range() -> None:
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = {free_port() for _ in range(20)}
    assert len(ports) == 20
    assert all(1024 < port < low for port in ports)


def test_find_binary_names_setup_script_when_missing() -> None:
    with pytest.raises(ServerUnavailable, match=r"scripts/setup\.sh"):
        find_binary("no-such-server-binary")


# --- Redis -----------------------------------------------------------------------------


def test_redis_round_trip_with_auth(redis_server: RedisServer, redis_client: redis.Redis) -> None:
    assert redis_client.set("greeting", "hello")
    assert redis_client.get("greeting") == b"hello"
    assert redis.Redis.from_url(redis_server.url).get("greeting") == b"hello"

    # AuthenticationError is a ConnectionError, which redis-py 8 retries 10 times by default.
    wrong = redis.Redis(
        host=redis_server.host, port=redis_server.port, password="wrong", retry=no_retry()
    )
    with pytest.raises(redis.AuthenticationError):
        wrong.ping()
    anonymous = redis.Redis(host=redis_server.host, port=redis_server.port, retry=no_retry())
    with pytest.raises(redis.AuthenticationError):
        anonymous.get("greeting")

    config = redis_client.config_get("*")
    assert config["appendonly"] == "yes"
    assert config["appendfsync"] == "everysec"
    assert config["save"] == ""
    assert config["maxmemory-policy"] == "noeviction"
    assert config["protected-mode"] == "yes"
    assert config["bind"] == "127.0.0.1"
    assert Path(config["dir"]) == redis_server.workdir


def test_redis_stream_and_pending_entry_survive_restart(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    entry_id = redis_client.xadd("rf_svr_queue", {"message": '{"id": "task-1"}'})
    redis_client.xgroup_create("rf_svr_queue", "rf_group", id="0")
    redis_client.xreadgroup("rf_group", "consumer-1", {"rf_svr_queue": ">"}, count=1)
    url, pid = redis_server.url, redis_server.pid

    redis_server.stop()
    assert not redis_server.is_running
    with pytest.raises(redis.ConnectionError):
        redis_server.client(retry=no_retry(), socket_connect_timeout=1).ping()
    redis_server.stop()  # idempotent

    redis_server.restart()
    assert redis_server.url == url  # same port and password
    assert redis_server.pid != pid
    client = redis_server.client()
    assert client.xrange("rf_svr_queue") == [(entry_id, {b"message": b'{"id": "task-1"}'})]
    pending = client.xpending("rf_svr_queue", "rf_group")
    assert pending["pending"] == 1
    assert pending["consumers"] == [{"name": b"consumer-1", "pending": 1}]


def test_redis_kill9_keeps_data_older_than_one_second(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    entry_id = redis_client.xadd("rf_svr_crash", {"n": "1"})
    time.sleep(1.2)  # appendfsync everysec: fsynced by now
    redis_server.kill()
    assert not redis_server.is_running
    redis_server.start()
    assert redis_server.client().xrange("rf_svr_crash") == [(entry_id, {b"n": b"1"})]


def test_redis_outage_restarts_from_a_thread(redis_server: RedisServer) -> None:
    redis_server.start()
    outage = redis_server.outage(0.3)
    assert not redis_server.is_running
    outage.join(timeout=10)
    # Started from a short-lived thread, yet still running after that thread ended.
    time.sleep(0.2)
    assert redis_server.is_running
    assert redis_server.client().ping()


def test_redis_context_manager_leaves_no_process(tmp_path: Path) -> None:
    with RedisServer(tmp_path) as server:
        pid = server.pid
        assert pid is not None
        assert server.client().ping()
    assert _wait_gone(pid, timeout=1)
    server.stop()  # idempotent after close
    with pytest.raises(ServerStartError, match="closed"):
        server.start()


def test_servers_die_with_a_killed_test_process(tmp_path: Path) -> None:
    """A pytest killed with SIGKILL (no finalizers, no atexit) leaves no server behind."""
    script = (
        "import os, signal, sys\n"
        f"sys.path.insert(0, {str(TESTS_DIR)!r})\n"
        "from servers import RedisServer\n"
        f"server = RedisServer({str(tmp_path)!r}).start()\n"
        "print(server.pid, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == -signal.SIGKILL, result.stderr
    pid = int(result.stdout.split()[0])
    if not _wait_gone(pid):
        os.kill(pid, signal.SIGKILL)
        pytest.fail(f"redis-server {pid} outlived its killed parent")


def test_redis_restart_fails_clearly_when_port_was_taken(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    try:
        server.start()
        server.stop()
        with socket.socket() as squatter:
            squatter.bind((server.host, server.port))
            with pytest.raises(ServerStartError, match="in use by another process"):
                server.start()
    finally:
        server.close()


# --- MariaDB ---------------------------------------------------------------------------


def test_mariadb_round_trip_as_ragfleet_user(mariadb_server: MariaDBServer) -> None:
    name = "doc \u6587\u6863 \U0001f680"  # 4-byte UTF-8: needs utf8mb4 end to end
    mariadb_server.start()
    with mariadb_server.connect() as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS svr_round_trip")
        cur.execute("CREATE TABLE svr_round_trip (id INT PRIMARY KEY, name VARCHAR(64))")
        cur.execute("INSERT INTO svr_round_trip VALUES (%s, %s)", (1, name))
        conn.commit()
        cur.execute("SELECT id, name FROM svr_round_trip")
        assert cur.fetchall() == ((1, name),)
        cur.execute("SELECT CURRENT_USER(), DATABASE(), @@character_set_database")
        assert cur.fetchone() == ("ragfleet@127.0.0.1", "ragfleet_test", "utf8mb4")
        with pytest.raises(pymysql.err.OperationalError):  # ALL on ragfleet_test only
            cur.execute("SELECT COUNT(*) FROM mysql.user")

    with pytest.raises(pymysql.err.OperationalError) as excinfo:
        mariadb_server.connect(password="wrong")
    assert excinfo.value.args[0] == 1045  # access denied


def test_mariadb_stop_refuses_connections_and_restart_keeps_data(
    mariadb_server: MariaDBServer,
) -> None:
    mariadb_server.start()
    with mariadb_server.connect() as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS svr_restart")
        cur.execute("CREATE TABLE svr_restart (id INT PRIMARY KEY)")
        cur.execute("INSERT INTO svr_restart VALUES (1), (2)")
        conn.commit()
    port = mariadb_server.port
    try:
        mariadb_server.stop()
        assert not mariadb_server.is_running
        with pytest.raises(pymysql.err.OperationalError) as excinfo:
            mariadb_server.connect(connect_timeout=2)
        assert excinfo.value.args[0] == 2003  # can't connect
        mariadb_server.stop()  # idempotent
    finally:
        mariadb_server.start()
    assert mariadb_server.port == port
    with mariadb_server.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT id FROM svr_restart ORDER BY id")
        assert cur.fetchall() == ((1,), (2,))


def test_mariadb_kill9_keeps_committed_rows(mariadb_server: MariaDBServer) -> None:
    mariadb_server.start()
    conn = mariadb_server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS svr_crash")
            cur.execute("CREATE TABLE svr_crash (id INT PRIMARY KEY)")
            cur.execute("INSERT INTO svr_crash VALUES (1)")
            conn.commit()
            cur.execute("INSERT INTO svr_crash VALUES (2)")  # never committed
        mariadb_server.kill()
    finally:
        with contextlib.suppress(pymysql.MySQLError):
            conn.close()
        mariadb_server.start()
    with mariadb_server.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT id FROM svr_crash")
        assert cur.fetchall() == ((1,),)
