"""The executor as systemd sees it: sd_notify, signals, tracemalloc, metrics endpoint, and
how it stops when the config names something it cannot open."""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import sqlite3
import subprocess
import urllib.request
from contextlib import ExitStack, closing

import pytest
import trio
from executors import (
    RAGFLEET,
    mysql_database,
    postgres_database,
    sqlite_database,
    wait_for,
    write_config,
)
from ruamel.yaml import YAML
from servers import free_port

from executor.sdnotify import Notifier


def test_sd_notify_ready_watchdog_and_stopping(fleet, tmp_path):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(15)
    try:
        worker = fleet.start(env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "400000"})
        messages = [sock.recv(4096).decode() for _ in range(4)]
        assert messages[0].startswith("READY=1")
        assert "WATCHDOG=1" in messages[1:]
        worker.signal(signal.SIGTERM)
        while (message := sock.recv(4096).decode()) == "WATCHDOG=1":
            pass
        assert message == "STOPPING=1"
        assert worker.process.wait(15) == 0
    finally:
        sock.close()


def test_sigterm_at_the_moment_of_ready_drains(fleet):
    """systemd may stop a unit as soon as it reports READY=1, so the handlers must be in place
    by then; otherwise SIGTERM kills the process instead of draining it. Run in-process with a
    notifier that raises SIGTERM inside ready(): a signal that reaches the handler this test
    installs first, instead of the worker's, is a signal the worker would have died of."""

    class TermAtReady(Notifier):
        def ready(self, status: str | None = None) -> None:
            os.kill(os.getpid(), signal.SIGTERM)

    missed: list[int] = []
    with fleet.in_process_worker() as worker:
        worker.notifier = TermAtReady(None)

        async def run_briefly() -> None:
            with trio.move_on_after(15):
                await worker.run()

        previous = signal.signal(signal.SIGTERM, lambda signum, frame: missed.append(signum))
        try:
            trio.run(run_briefly)
        finally:
            signal.signal(signal.SIGTERM, previous)
    assert missed == []
    assert worker.stopping


def test_sigusr1_writes_a_tracemalloc_snapshot_and_sigusr2_stops(fleet):
    worker = fleet.start()
    worker.signal(signal.SIGUSR1)
    worker.wait_log(r"tracemalloc snapshot .*\.trace: RSS [\d.]+ MiB, traced current")
    snapshots = list((fleet.config.parent / "state" / "tracemalloc").glob("*_snapshot_*.trace"))
    assert len(snapshots) == 1 and snapshots[0].stat().st_mode & 0o777 == 0o600
    worker.signal(signal.SIGUSR2)
    worker.wait_log(r"tracemalloc stopped")
    assert worker.process.poll() is None


def test_metrics_and_healthz(make_fleet):
    base = free_port()
    fleet = make_fleet(metrics_port_base=base)
    ids = fleet.submit("noop", count=3)
    fleet.start(instance=1)
    fleet.wait_done(ids)
    url = f"http://127.0.0.1:{base + 1}"
    drained = [
        'ragfleet_queue_waiting_entries{queue="rag_flow_svr_queue"} 0.0',
        'ragfleet_queue_oldest_entry_age_seconds{queue="rag_flow_svr_queue"} 0.0',
    ]

    # The queue gauges are read every heartbeat: wait for a reading after the tasks ran.
    # No waiting entry is not enough: one taken before the entries were acked and deleted
    # has none waiting and the oldest (pending) entry's age (it failed so once in CI).
    def drained_reading() -> list[str] | None:
        lines = _get(f"{url}/metrics").splitlines()
        return lines if all(line in lines for line in drained) else None

    lines = wait_for(drained_reading, 10, "gauges")
    assert 'ragfleet_tasks_total{outcome="done",type="noop"} 3.0' in lines
    assert 'ragfleet_tasks_total{outcome="failed",type="noop"} 0.0' in lines
    assert 'ragfleet_task_duration_seconds_count{type="noop"} 3.0' in lines
    assert 'ragfleet_dependency_up{dependency="redis"} 1.0' in lines
    assert "ragfleet_dead_letter_entries 0.0" in lines
    assert any(line.startswith("process_resident_memory_bytes ") for line in lines)
    assert _get(f"{url}/healthz") == "ok\n"


def _get(url: str, timeout: float = 5) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


def test_healthz_answers_while_100_idle_connections_are_open(make_fleet):
    """Issue 19: 40 idle connections made /healthz fail (every slot held until they timed
    out). The newest connection now closes the oldest idle one."""
    port = free_port()
    fleet = make_fleet(metrics_port_base=port - 1)
    worker = fleet.start(instance=1)
    url = f"http://127.0.0.1:{port}/healthz"
    assert wait_for(lambda: _get(url), 10, "healthz") == "ok\n"
    with ExitStack() as idle:
        for _ in range(100):
            idle.enter_context(socket.create_connection(("127.0.0.1", port), timeout=5))
        for _ in range(3):
            assert _get(url, timeout=2) == "ok\n"  # promptly: the idle ones have 5 s each
    assert worker.process.poll() is None


@pytest.mark.parametrize(
    ("bind", "served", "refused"),
    [
        (None, "127.0.0.1", "127.0.0.2"),  # auto, in a config configc did not compile
        ("127.0.0.2", "127.0.0.2", "127.0.0.1"),
    ],
)
def test_metrics_listen_on_the_configured_address_only(make_fleet, bind, served, refused):
    """Every executor listened on 0.0.0.0; now only on executor.metrics_bind. (All of
    127/8 is this host's loopback: a listener on 0.0.0.0 would answer on both.)"""
    port = free_port()
    fleet = make_fleet(metrics_port_base=port - 1, **({"metrics_bind": bind} if bind else {}))
    fleet.start(instance=1)
    assert wait_for(lambda: _get(f"http://{served}:{port}/healthz"), 10, "healthz") == "ok\n"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((refused, port), timeout=5).close()


def test_the_compiled_units_execstart_runs_an_executor(fleet, tmp_path):
    """The exact command line configc writes into ragfleet-executor@.service starts a worker
    (with only the install paths swapped for this checkout's)."""
    from click.testing import CliRunner
    from confdirs import shipped_conf

    from configc.cli import main as configc

    out = tmp_path / "out"
    # A copy of conf/: configc keeps the password it generates there.
    conf = shipped_conf(tmp_path)
    assert CliRunner().invoke(configc, ["build", str(conf), "-o", str(out)]).exit_code == 0
    unit = (out / "hosts/localhost/etc/systemd/system/ragfleet-executor@.service").read_text()
    (line,) = [x for x in unit.splitlines() if x.startswith("ExecStart=")]
    argv = shlex.split(line.removeprefix("ExecStart=").replace("%i", "1"))
    assert argv[0] == "/opt/ragfleet/venv/bin/ragfleet"
    argv[0] = str(RAGFLEET)
    argv[argv.index("/etc/ragfleet/ragfleet.yaml")] = str(fleet.config)
    log = (tmp_path / "unit.log").open("wb")
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(
            lambda: "started as task_executor_test_1" in (tmp_path / "unit.log").read_text(),
            20,
            "the unit's command to start an executor",
        )
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
    finally:
        process.kill()
        log.close()


def _run_briefly(config) -> subprocess.CompletedProcess:
    return _ragfleet(config, "run", "--instance", "1")


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (
            "database",
            r"cannot open the task database \(.*/not-a-dir/ragfleet\.db\): unable to open",
        ),
        ("doc_store", r"cannot open the document store \(.*/not-a-dir/docstore\.db\): .*Errno"),
    ],
)
def test_a_path_that_cannot_be_opened_stops_the_executor_with_exit_2(
    tmp_path, redis_client, redis_server, setting, message
):
    """A config naming a task database or an embedded store under a regular file: the
    executor stops at once, in one line that names what and where (exit 2, configuration),
    instead of a traceback or failing every task."""
    (tmp_path / "not-a-dir").write_text("a file")
    sections = {
        "database": sqlite_database(tmp_path / "not-a-dir"),
        "doc_store": {"engine": "embedded", "path": str(tmp_path / "not-a-dir/docstore.db")},
    }
    database = sections["database"] if setting == "database" else sqlite_database(tmp_path)
    doc_store = sections["doc_store"] if setting == "doc_store" else None
    result = _run_briefly(write_config(tmp_path, redis_server, database, doc_store=doc_store))
    assert result.returncode == 2, result.stderr
    assert re.fullmatch(f"ragfleet: {message}.*\n", result.stderr), result.stderr


@pytest.mark.parametrize("server", ["mariadb", "postgres"])
def test_a_refused_database_login_stops_the_executor_with_exit_2(
    request, tmp_path, redis_client, redis_server, server
):
    """A wrong password is the config's to fix, on both servers: exit 2 with the server's
    words, not an outage waited out forever (PostgreSQL's refusal mentions a "connection")
    nor every task dead-lettered."""
    sql = request.getfixturevalue(f"{server}_server")
    sql.start()
    database = (mysql_database if server == "mariadb" else postgres_database)(sql)
    result = _run_briefly(write_config(tmp_path, redis_server, {**database, "password": "wrong"}))
    assert result.returncode == 2, result.stderr
    refusal = "Access denied" if server == "mariadb" else "password authentication failed"
    where = f"{database['type']} {sql.user}@{sql.host}:{sql.port}/{sql.database}"
    assert result.stderr.startswith(f"ragfleet: cannot open the task database ({where}): ")
    assert refusal in result.stderr and "Traceback" not in result.stderr


def _acl_user(client, name: str, commands: list[str]) -> dict[str, str]:
    client.acl_setuser(name, enabled=True, passwords=[f"+{name}-pw"], keys=["*"], commands=commands)
    return {"username": name, "password": f"{name}-pw"}


@pytest.fixture
def redis_reader(redis_client):
    """An ACL user of the session's Redis that may read and nothing else."""
    yield _acl_user(redis_client, "reader", ["+@read"])
    redis_client.acl_deluser("reader")


@pytest.fixture
def redis_without_sorted_sets(redis_client):
    """An ACL user with every command but the sorted sets' (which heartbeats use)."""
    yield _acl_user(redis_client, "nozset", ["+@all", "-@sortedset"])
    redis_client.acl_deluser("nozset")


@pytest.fixture
def redis_without_hashes(redis_client):
    """An ACL user with every command but the hashes' (clean-stop marks, outage counts)."""
    yield _acl_user(redis_client, "nohash", ["+@all", "-@hash"])
    redis_client.acl_deluser("nohash")


@pytest.mark.parametrize(
    ("credentials", "refusal"),
    [
        ({"password": "wrong"}, "invalid username-password pair or user is disabled."),
        ("redis_reader", "this user has no permissions to run the 'xgroup|create' command"),
        # The first sorted-set command: reading the instance's last heartbeat (a live twin?)
        (
            "redis_without_sorted_sets",
            "this user has no permissions to run the 'zrevrangebyscore' command",
        ),
        ("redis_without_hashes", "this user has no permissions to run the 'hget' command"),
    ],
    ids=[
        "wrong password",
        "ACL without the stream commands",
        "ACL without the sorted set commands",
        "ACL without the hash commands",
    ],
)
def test_redis_refusing_the_executor_stops_it_with_exit_2(
    request, tmp_path, redis_client, redis_server, credentials, refusal
):
    """A refused login or an ACL without our commands is the config's (or the ACL's) to
    fix: the executor stops at start with Redis's words and exit 2, so the unit does not
    restart it, instead of waiting for Redis "to come back" forever."""
    if isinstance(credentials, str):
        credentials = request.getfixturevalue(credentials)
    config = write_config(tmp_path, redis_server, sqlite_database(tmp_path))
    _set_redis_credentials(config, credentials)
    result = _run_briefly(config)
    assert result.returncode == 2, result.stderr
    user = f"{credentials['username']}@" if "username" in credentials else ""
    where = f"{user}{redis_server.host}:{redis_server.port}/0"
    last = result.stderr.splitlines()[-1]  # after the worker's log, if it got that far
    assert last.startswith(f"ragfleet: cannot use Redis ({where}): {refusal}")
    assert "Traceback" not in result.stderr


def test_operator_commands_name_a_refused_redis_login_and_record_nothing(
    tmp_path, redis_client, redis_server
):
    """The CLI says Redis refused (exit 2, not "unavailable", 3), and a submit asks Redis
    before it records anything: no knowledge base, document, task or file is left."""
    config = write_config(tmp_path, redis_server, sqlite_database(tmp_path))
    assert _ragfleet(config, "db", "init").returncode == 0
    _set_redis_credentials(config, {"password": "wrong"})
    refused = "refused: invalid username-password pair or user is disabled.\n"
    status = _ragfleet(config, "status")
    assert status.returncode == 2 and status.stderr.endswith(refused), status.stderr
    sample = tmp_path / "sample.txt"
    sample.write_text("Nothing of this may be recorded.")
    submit = _ragfleet(config, "submit", str(sample), "--kb", "kb")
    assert submit.returncode == 2 and submit.stderr.endswith(refused), submit.stderr
    with closing(sqlite3.connect(tmp_path / "ragfleet.db")) as db:
        counts = [db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES]
    assert counts == [0, 0, 0]
    assert not (tmp_path / "files").exists() or not any((tmp_path / "files").iterdir())


TABLES = ("knowledgebase", "document", "task")


def _ragfleet(config, *args: str) -> subprocess.CompletedProcess:
    argv = [str(RAGFLEET), "--config", str(config), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


def _set_redis_credentials(config, credentials: dict[str, str]) -> None:
    yaml = YAML(typ="safe", pure=True)
    data = yaml.load(config.read_text())
    data["redis"].update(credentials)
    with config.open("w") as stream:
        yaml.dump(data, stream)
