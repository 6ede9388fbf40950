"""The fleet on a MariaDB Galera cluster (Debian's galera-4): three real nodes on loopback
(tests/servers_galera.py), real ``ragfleet`` executors and ``ragfleet db init``, the
session's real Redis. What docs/deploy.md ("MariaDB and Elasticsearch behind one address")
says is tested is tested here:

* ``db init`` through one node makes tables Galera replicates (InnoDB, a primary key each);
* executors writing through different nodes (several writers, as a proxy spreading its
  connections makes them) run every task once, and the nodes end with the same rows;
* a node killed under an executor that reaches the cluster through one address (a forwarder
  that fails over, tests/forwarder.py) is an outage it waits out: no task fails or is lost;
* a certification conflict (two nodes writing one row at once) reaches the client as error
  1213, a deadlock, which the store turns into DatabaseUnavailable: in the store, and in a
  worker whose transaction meets one, an outage of the moment, retried, never failed.
"""

from __future__ import annotations

import logging
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pymysql
import pytest
import trio
from executors import RAGFLEET, Executor, Fleet, mysql_database, wait_for, write_config
from forwarder import Forwarder
from servers_galera import GaleraCluster, GaleraNode

from executor.errors import DatabaseUnavailable
from executor.queue import wire
from executor.store.classify import is_passing_refusal
from executor.store.database import TaskStore
from executor.store.opening import open_database

TABLES = ("knowledgebase", "document", "task")
ROWS = "SELECT id, progress, progress_msg, retry_count, begin_at FROM task ORDER BY id"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GaleraCluster]:
    galera = GaleraCluster(tmp_path_factory.mktemp("galera"))
    try:
        yield galera.start()
    finally:
        galera.close()


@pytest.fixture
def galera(cluster: GaleraCluster, redis_client: Any) -> GaleraCluster:
    """The module's cluster, whole again (a test may have killed a node) and without the
    tables, which the test's ``db init`` creates."""
    cluster.start_down()
    wait_for(lambda: _cluster_size(cluster.nodes[0]) == 3, 30, "a cluster of three")
    with cluster.nodes[0].connect() as conn, conn.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {', '.join(TABLES)}")
    return cluster


def _cluster_size(node: GaleraNode) -> int:
    return int(node.status("wsrep_cluster_size")["wsrep_cluster_size"] or 0)


def _database(node: GaleraNode, host: str | None = None, port: int | None = None) -> dict:
    """The runtime config's ``database`` for *node*, or for *node*'s users at another address."""
    return {**mysql_database(node), "host": host or node.host, "port": port or node.port}


def _db_init(tmp_path: Path, redis_server: Any, node: GaleraNode) -> Path:
    """``ragfleet db init`` through *node* (before any Fleet, which would create the tables)."""
    config = write_config(tmp_path, redis_server, _database(node))
    command = [str(RAGFLEET), "--config", str(config), "db", "init"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "created table task" in done.stdout, done.stdout
    return config


def _executor(directory: Path, redis_server: Any, database: dict, instance: int) -> Executor:
    directory.mkdir(exist_ok=True)
    config = write_config(directory, redis_server, database)
    return Executor(config, instance, directory / f"executor{instance}.log", {}).wait_started()


def _same_rows_everywhere(cluster: GaleraCluster) -> list[tuple[Any, ...]]:
    first, *others = [cluster.query(i, ROWS) for i in range(len(cluster.nodes))]
    for rows in others:
        assert rows == first
    return first


def _ran_once(rows: list[dict[str, Any]], *, deliveries: int = 1) -> None:
    """Every task done, by one run of its handler to its end; each delivered at most
    *deliveries* times (a task whose executor lost the database after taking it is taken
    again, and a run cut short may have written some steps)."""
    assert [r["progress"] for r in rows] == [1] * len(rows), [r["progress_msg"] for r in rows]
    for row in rows:
        lines = row["progress_msg"]
        last_steps = re.findall(r"slept (\d+)/\1$", lines, re.MULTILINE)
        assert lines.count("Task done") == 1 and len(last_steps) == 1, lines
        assert 1 <= lines.count("Task has been received.") <= deliveries, lines


def test_db_init_makes_tables_galera_replicates(galera, tmp_path, redis_server):
    """Galera replicates InnoDB tables with a primary key only (others lose rows, silently,
    on every node but the writer's): each of ragfleet's is one, and rows written through
    node 1 are on node 3."""
    config = _db_init(tmp_path, redis_server, galera.nodes[0])
    schema = galera.nodes[0].database
    tables = galera.query(
        2,
        "SELECT t.table_name, t.engine, COUNT(c.constraint_name) FROM information_schema.tables t"
        " LEFT JOIN information_schema.table_constraints c ON c.table_schema = t.table_schema"
        " AND c.table_name = t.table_name AND c.constraint_type = 'PRIMARY KEY'"
        " WHERE t.table_schema = %s GROUP BY t.table_name, t.engine ORDER BY t.table_name",
        schema,
    )
    assert {name for name, _, _ in tables} >= set(TABLES), tables
    assert [
        (name, engine, keys) for name, engine, keys in tables if (engine, keys) != ("InnoDB", 1)
    ] == []
    fleet = Fleet(config)
    try:
        ids = fleet.submit("noop", count=5)
    finally:
        fleet.close()
    found = galera.query(2, "SELECT id FROM task WHERE id IN %s ORDER BY id", ids)
    assert [row[0] for row in found] == sorted(ids)


def test_executors_on_two_nodes_run_every_task_once(galera, tmp_path, redis_server):
    """Two executors, one writing through node 1 and one through node 2 (several writers):
    every task done once, none failed, and the three nodes hold the same rows."""
    config = _db_init(tmp_path, redis_server, galera.nodes[0])
    fleet = Fleet(config)
    workers = [
        _executor(tmp_path / f"x{i}", redis_server, _database(galera.nodes[i]), i + 1)
        for i in range(2)
    ]
    try:
        ids = fleet.submit("sleep", count=40, seconds=0.1, steps=2)
        rows = fleet.wait_done(ids, timeout=60)
        _ran_once(rows)
        for worker in workers:
            assert "database unavailable" not in worker.log, worker.log[-3000:]
            assert worker.process.poll() is None
    finally:
        for worker in workers:
            worker.kill()
        fleet.close()
    assert len(_same_rows_everywhere(galera)) == 40
    assert fleet.redis.xlen(wire.DEAD_LETTER_STREAM) == 0


def test_a_node_killed_under_an_executor_is_an_outage_it_waits_out(galera, tmp_path, redis_server):
    """Executor 2 reaches the cluster through one address (a forwarder to node 2, failing
    over to node 3); node 2 is killed (SIGKILL) mid-run. Executor 2 logs an outage (met
    by whichever of a task's write, a lease renewal or a read's look-up first uses a
    connection the kill broke), comes back through node 3, and every task is done once;
    node 2 rejoins (a state transfer) with the same rows as the others."""
    config = _db_init(tmp_path, redis_server, galera.nodes[0])
    fleet = Fleet(config)
    node2, node3 = galera.nodes[1], galera.nodes[2]
    proxy = Forwarder([(node2.host, node2.port), (node3.host, node3.port)])
    workers = [
        _executor(tmp_path / "x1", redis_server, _database(galera.nodes[0]), 1),
        _executor(tmp_path / "x2", redis_server, _database(node2, proxy.host, proxy.port), 2),
    ]
    try:
        ids = fleet.submit("sleep", count=24, seconds=3, steps=3)
        # Killed while executor 2 runs a task it has written progress of (at most once a
        # second: hence 3 s tasks): its connections to node 2 are in use and break. Killed
        # before it took a task, it would just connect through node 3 and see no outage.
        wait_for(lambda: _mid_task(fleet, "task_executor_test_2"), 30, "executor 2 mid-task")
        assert (node3.host, node3.port) not in proxy.connections  # all through node 2 so far
        node2.kill()
        rows = fleet.wait_done(ids, timeout=90)
        _ran_once(rows, deliveries=2)
        survivor = workers[1]
        assert survivor.process.poll() is None
        survivor.wait_log("database unavailable", timeout=10)
        survivor.wait_log("database available again", timeout=15)
        # Once, not once per task or connection. (A certification conflict between the two
        # executors' nodes, 1213, is an outage of the moment of its own: not counted.)
        lost = re.findall(r"database unavailable.*: \((?:2006|2013), ", survivor.log)
        assert len(lost) == 1, survivor.log[-3000:]
        assert (node3.host, node3.port) in proxy.connections  # it came back through node 3
        assert "set aside" not in survivor.log
    finally:
        for worker in workers:
            worker.kill()
        proxy.close()
        fleet.close()
    node2.start()  # rejoins: the writes it missed come by state transfer
    assert len(_same_rows_everywhere(galera)) == 24


def _mid_task(fleet: Fleet, consumer: str) -> bool:
    """Whether *consumer* holds a ``sleep`` task that has written its first step and not
    its second (so its next write comes at least a step later)."""
    queue = wire.queue_name(0)
    for pending in fleet.redis.xpending_range(queue, wire.GROUP, "-", "+", 50, consumer):
        for _, fields in fleet.redis.xrange(queue, pending["message_id"], pending["message_id"]):
            lines = fleet.task(wire.decode_message(fields)["id"])["progress_msg"] or ""
            if "slept 1/" in lines and "slept 2/" not in lines:
                return True
    return False


def _store(node: GaleraNode) -> TaskStore:
    return TaskStore(open_database(_database(node)))


def test_a_certification_conflict_is_a_deadlock_the_store_retries(galera, tmp_path, redis_server):
    """Node 1's transaction updates a row; node 2 updates the same row and commits first.
    Galera aborts node 1's transaction (certification, or a brute-force abort by the
    replicated write): its commit fails with 1213, which the store reports as
    DatabaseUnavailable, an outage of the moment (the worker retries the task), and the
    transaction done again then goes through."""
    _db_init(tmp_path, redis_server, galera.nodes[0])
    first, second = _store(galera.nodes[0]), _store(galera.nodes[1])
    try:
        with first.writing():
            first.Task.insert_many([{"id": "x"}]).execute()
        galera.query(1, "SELECT 1")  # causal: node 2 has the row
        with pytest.raises(DatabaseUnavailable) as raised, first.transaction():
            _touch(first, "x", 1)
            with second.writing():
                # Autocommit on node 2, not blocked by node 1's lock (locks are a node's
                # own): by its return the write is ordered before node 1's commit, so that
                # commit fails whether node 1 has applied it yet (a brute-force abort) or not
                # (certification): no race to lose.
                _touch(second, "x", 2)
        error = raised.value.__cause__
        assert error is not None and error.args[0] == 1213, repr(error)
        assert "deadlock" in str(raised.value).lower()
        with first.transaction():  # the retry
            _touch(first, "x", 3)
        assert galera.query(2, "SELECT priority FROM task WHERE id = 'x'") == [(3,)]
    finally:
        first.database.close()
        second.database.close()


def _touch(store: TaskStore, task_id: str, value: int) -> None:
    store.Task.update(priority=value).where(store.Task.id == task_id).execute()


def test_a_worker_meeting_a_certification_conflict_runs_the_task_again(
    galera, tmp_path, redis_server, caplog
):
    """The worker's own transaction meets a real conflict: while it records the task done
    (through node 1), the row is written through node 2 and committed first (a RAGFlow
    server on another node touching the task, say). Galera aborts the worker's transaction
    with 1213; the worker takes it as an outage of the moment and the task runs again (as
    after any outage that cut its end short), this time recorded done: done once, the try
    the conflict cut short not counted (retry_count 0), nothing failed or set aside. The
    fault only times the rival write; the conflict and its error are the cluster's."""
    config = _db_init(tmp_path, redis_server, galera.nodes[0])
    fleet = Fleet(config)
    (task_id,) = fleet.submit("noop")
    conflicts = []

    def done_with_a_rival(set_progress_many, rows: list[Any]) -> None:
        set_progress_many(rows)  # in the worker's transaction on node 1, not committed
        if not conflicts:
            conflicts.append(task_id)
            rival = galera.nodes[1].connect(autocommit=True)
            with closing(rival), rival.cursor() as cursor:
                cursor.execute("UPDATE task SET digest = 'rival' WHERE id = %s", (task_id,))

    try:
        faults = {"set_progress_many": done_with_a_rival}
        with fleet.in_process_worker(store_faults=faults) as worker:

            async def run() -> None:
                async with trio.open_nursery() as nursery:
                    await nursery.start(worker.run)
                    with trio.fail_after(30):
                        while worker.counters.done + worker.counters.failed < 1:
                            await trio.sleep(0.05)
                    worker.stop()

            with caplog.at_level(logging.WARNING):
                trio.run(run)
        assert conflicts == [task_id]
        assert (worker.counters.done, worker.counters.failed) == (1, 0)
        assert re.search(r"database unavailable: \(1213, 'Deadlock", caplog.text), caplog.text
        assert worker.metrics.registry.get_sample_value("ragfleet_db_errors_total") == 1
        (row,) = fleet.wait_done([task_id], timeout=10)
        lines = row["progress_msg"]
        assert lines.count("Task has been received.") == 2 and lines.count("Task done") == 1
        assert (row["progress"], row["retry_count"]) == (1, 0), row
        assert row["digest"] == "rival"  # the rival's write stands; the worker's was redone
        assert fleet.redis.xlen(wire.DEAD_LETTER_STREAM) == 0
    finally:
        fleet.close()


def test_1047_is_an_outage_only_when_galera_says_so():
    """MariaDB's 1047 is also "Unknown command" (a protocol the server does not speak), a
    real error: only Galera's wording makes it an outage."""
    not_ready = "WSREP has not yet prepared node for application use"
    assert is_passing_refusal(pymysql.err.OperationalError(1047, not_ready))
    assert not is_passing_refusal(pymysql.err.OperationalError(1047, "Unknown command"))


# Last: it kills two nodes, whose rejoin a later test would wait for.
def test_a_node_cut_off_from_the_majority_is_an_outage_until_it_has_one(
    galera, tmp_path, redis_server
):
    """Nodes 2 and 3 die (SIGKILL): node 1, alone out of three, has no quorum and refuses
    every statement with 1047 ("WSREP has not yet prepared node for application use"), as a
    node on the wrong side of a partition does. Its executor waits that out as an outage, no
    task fails; once node 1 is made the primary component again (``pc.bootstrap``, the
    operator's move), the tasks finish, each done once."""
    config = _db_init(tmp_path, redis_server, galera.nodes[0])
    fleet = Fleet(config)
    worker = _executor(tmp_path / "x1", redis_server, _database(galera.nodes[0]), 1)
    try:
        ids = fleet.submit("sleep", count=20, seconds=0.3, steps=3)
        wait_for(lambda: sum(fleet.task(i)["progress"] == 1 for i in ids) >= 2, 30, "progress")
        galera.nodes[2].kill()
        galera.nodes[1].kill()
        worker.wait_log(r"database unavailable: \(1047, ", timeout=20)
        time.sleep(2)  # the worker retries meanwhile
        assert worker.process.poll() is None
        root = galera.nodes[0].admin_connect(autocommit=True)
        with closing(root), root.cursor() as cursor:
            cursor.execute("SET GLOBAL wsrep_provider_options = 'pc.bootstrap=YES'")
        rows = fleet.wait_done(ids, timeout=60)
        _ran_once(rows, deliveries=2)
        worker.wait_log("database available again", timeout=15)
        assert worker.log.count("database unavailable") == 1, worker.log[-3000:]
        assert "set aside" not in worker.log
        assert fleet.redis.xlen(wire.DEAD_LETTER_STREAM) == 0
    finally:
        worker.kill()
        fleet.close()
