"""A MariaDB Galera cluster for the test suite: three real ``mariadbd`` processes with the
galera-4 provider (Debian's ``galera-4``, /usr/lib/galera/libgalera_smm.so), all on free
loopback ports (see servers.py for the life of each process).

Node 1 is installed like a ``MariaDBServer`` (``mariadb-install-db``: the database, the
``ragfleet`` user, root's password) and bootstraps the cluster (``--wsrep-new-cluster``);
nodes 2 and 3 start on an empty datadir and receive node 1's by state transfer (SST, rsync:
mariabackup is not installed here), users and passwords included. The nodes run as Debian's
``mysql`` user, as the packaged service does: the joiner's rsync daemon, started as root,
would drop to ``nobody`` and could not write the datadir. So their files live in a
directory of their own under /tmp (pytest's are root's, mode 0700); ``close()`` copies
their logs into the cluster's workdir before removing it. A node counts as up once
it answers *and* says ``wsrep_ready = ON`` and ``Synced``: before that Galera refuses its
clients' statements (ER_UNKNOWN_COM_ERROR, "WSREP has not yet prepared node").

The group-communication timings are shorter than Galera's defaults (a node killed is out of
the view in about 2 s instead of 5 to 15), so that a test losing a node spends seconds, not
tens of them, in the stall that precedes the new view.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pymysql
from servers import MariaDBServer, ServerStartError, find_binary, free_port

PROVIDER = Path("/usr/lib/galera/libgalera_smm.so")
CLUSTER_NAME = "ragfleet-test"

# Galera's group communication (gcomm), shortened for loopback: keepalives every 0.5 s, a
# silent peer suspected after 2 s and dropped after 4 s (defaults: 1, 5 and 15 s).
_PROVIDER_OPTIONS = (
    "evs.keepalive_period=PT0.5S",
    "evs.inactive_check_period=PT0.5S",
    "evs.suspect_timeout=PT2S",
    "evs.inactive_timeout=PT4S",
    "evs.install_timeout=PT3S",
    "gcache.size=32M",  # default 128M, preallocated on disk at every start
)


class GaleraNode(MariaDBServer):
    """One node of a :class:`GaleraCluster`; ``cluster`` gives it its peers and passwords."""

    start_timeout = 60.0  # a joiner waits for its state transfer

    def __init__(self, workdir: Path, cluster: GaleraCluster, index: int) -> None:
        super().__init__(workdir)
        _give_to_mysql(self.workdir)
        self.cluster = cluster
        self.index = index
        self.name = f"galera{index + 1}"
        self.password = cluster.password  # nodes 2 and 3 get node 1's users by SST
        self.root_password = cluster.root_password
        self.gcomm_port = free_port()
        self.ist_port = free_port()
        self.sst_port = free_port()
        self.bootstrap = index == 0  # only node 1's first start makes a new cluster

    def _server_options(self) -> list[str]:
        return [o if o != "--user=root" else "--user=mysql" for o in super()._server_options()]

    def _prepare(self) -> None:
        if not PROVIDER.exists():
            raise ServerStartError(f"{PROVIDER} is missing: install Debian's galera-4")
        find_binary("rsync")  # the SST method's
        if self.index == 0:
            super()._prepare()  # mariadb-install-db --user=mysql: the datadir is mysql's
        else:
            self.binary = find_binary("mariadbd")
        for directory in (self.datadir, self.workdir / "tmp"):  # the datadir: by the SST
            directory.mkdir(parents=True, exist_ok=True)
            _give_to_mysql(directory)

    def _command(self) -> list[str]:
        options = ";".join(
            (
                f"gmcast.listen_addr=tcp://{self.host}:{self.gcomm_port}",
                f"ist.recv_addr={self.host}:{self.ist_port}",
                *_PROVIDER_OPTIONS,
            )
        )
        command = [
            *super()._command(),
            "--wsrep-on=ON",
            f"--wsrep-provider={PROVIDER}",
            f"--wsrep-cluster-name={CLUSTER_NAME}",
            f"--wsrep-cluster-address=gcomm://{self.cluster.gcomm_addresses()}",
            f"--wsrep-node-name={self.name}",
            f"--wsrep-node-address={self.host}:{self.gcomm_port}",
            f"--wsrep-node-incoming-address={self.host}:{self.port}",
            f"--wsrep-sst-receive-address={self.host}:{self.sst_port}",
            f"--wsrep-provider-options={options}",
            "--wsrep-sst-method=rsync",
            "--wsrep-slave-threads=2",
            # What Galera requires of every node (MariaDB's "Galera Cluster System
            # Requirements"): row-based replication events, interleaved auto-increment locks.
            "--binlog-format=ROW",
            "--innodb-autoinc-lock-mode=2",
            "--default-storage-engine=InnoDB",
            "--innodb-flush-log-at-trx-commit=2",  # durability is the cluster's (as advised)
        ]
        if self.bootstrap:
            command.append("--wsrep-new-cluster")
        return command

    def start(self) -> GaleraNode:
        super().start()
        self.bootstrap = False  # a restart joins the cluster that the others still form
        return self

    def status(self, *names: str) -> dict[str, str]:
        """The node's ``wsrep_*`` status variables named (root's view)."""
        conn = self.admin_connect(connect_timeout=2)
        with contextlib.closing(conn), conn.cursor() as cursor:
            cursor.execute("SHOW GLOBAL STATUS LIKE 'wsrep%%'")
            found = {str(k): str(v) for k, v in cursor.fetchall()}
        return {name: found.get(name, "") for name in names}

    def _probe(self) -> bool:
        state = self.status("wsrep_ready", "wsrep_local_state_comment")
        return state == {"wsrep_ready": "ON", "wsrep_local_state_comment": "Synced"}


class GaleraCluster:
    """Three :class:`GaleraNode` in ``workdir``/node1..3; ``start()`` returns once each is
    Synced and node 1 sees a cluster of three."""

    def __init__(self, workdir: Path, size: int = 3) -> None:
        self.workdir = Path(workdir)
        self.password = secrets.token_hex(16)
        self.root_password = secrets.token_hex(16)
        self.home = Path(tempfile.mkdtemp(prefix="rf-galera-"))  # the nodes' (see above)
        _give_to_mysql(self.home)
        self.nodes = [GaleraNode(self.home / f"node{i + 1}", self, i) for i in range(size)]

    def gcomm_addresses(self) -> str:
        return ",".join(f"{node.host}:{node.gcomm_port}" for node in self.nodes)

    def start(self) -> GaleraCluster:
        self.nodes[0].start()
        self.start_down(self.nodes[1:])
        size = self.nodes[0].status("wsrep_cluster_size")["wsrep_cluster_size"]
        if size != str(len(self.nodes)):
            raise ServerStartError(f"the cluster has {size} nodes, not {len(self.nodes)}")
        return self

    def start_down(self, nodes: list[GaleraNode] | None = None) -> None:
        """Start those of *nodes* (default: all) that are down, together: a joiner's state
        transfer waits for a busy donor (or takes another joiner as its donor), which still
        beats starting them one after the other. Node 1 must be up, or among them first."""
        down = [node for node in (self.nodes if nodes is None else nodes) if not node.is_running]
        if down and down[0].index == 0:
            down.pop(0).start()
        with ThreadPoolExecutor(max(1, len(down))) as pool:
            for started in [pool.submit(node.start) for node in down]:
                started.result()

    def close(self) -> None:
        for node in reversed(self.nodes):  # node 1 last: the cluster's state stays whole
            node.close()
        self.workdir.mkdir(parents=True, exist_ok=True)
        for node in self.nodes:
            for log in (node.log_path, node.out_path):
                with contextlib.suppress(OSError):
                    shutil.copy(log, self.workdir / f"{node.name}-{log.name}")
        shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> GaleraCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def query(self, node: int, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """Rows of *sql* run as ``ragfleet`` on node *node* (0-based), waiting for the writes
        that the cluster has committed to be applied there (``wsrep_sync_wait``: a read is
        causal, as a client switching nodes behind one address needs)."""
        conn = self.nodes[node].connect(connect_timeout=5)
        with contextlib.closing(conn), conn.cursor() as cursor:
            cursor.execute("SET SESSION wsrep_sync_wait = 1")
            cursor.execute(sql, args or None)
            return list(cursor.fetchall())


def _give_to_mysql(path: Path) -> None:
    mysql = pwd.getpwnam("mysql")  # made by Debian's mariadb-server
    os.chown(path, mysql.pw_uid, mysql.pw_gid)


@contextlib.contextmanager
def galera_cluster(workdir: Path) -> Iterator[GaleraCluster]:
    cluster = GaleraCluster(workdir)
    try:
        yield cluster.start()
    finally:
        cluster.close()


def connect_node(node: GaleraNode, **kwargs: Any) -> pymysql.connections.Connection:
    """A ``ragfleet`` connection to *node* with autocommit off (a transaction is explicit)."""
    return node.connect(autocommit=False, **kwargs)
