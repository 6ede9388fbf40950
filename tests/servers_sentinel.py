"""Redis replication under Sentinel for the test suite: real ``redis-server`` processes, one
master and its replicas, and ``redis-server --sentinel`` processes watching them, all on
free loopback ports (see servers.py for the life of each process).

The lines each server and sentinel gets are those configc compiles for a fleet under
Sentinel (templates/redis.conf.j2, templates/sentinel.conf.j2), with shorter timings.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis
from servers import RedisServer, ServerTls, _redis_quote, find_binary, no_retry

from executor.settings_spec import REDIS_ACL_COMMANDS, REDIS_ACL_KEYS

MASTER_NAME = "ragfleet"
EXECUTOR_USER = "ragfleet-executor"


def executor_acl_line(password: str) -> str:
    """The executors' ACL user with the rules configc compiles for it (configc/redis_acl.py;
    here a config line with the password in clear, for a test server)."""
    keys = " ".join(f"~{key}" for key in REDIS_ACL_KEYS)
    commands = " ".join(f"+{command}" for command in REDIS_ACL_COMMANDS)
    return f"user {EXECUTOR_USER} reset on >{password} resetchannels {keys} -@all {commands}"


class SentinelServer(RedisServer):
    """``redis-server --sentinel`` with its own requirepass, monitoring *master*."""

    name = "sentinel"

    def __init__(
        self,
        workdir: Path,
        master: RedisServer,
        password: str,
        down_after_ms: int = 1000,
        tls: ServerTls | None = None,
    ) -> None:
        super().__init__(workdir, tls=tls)
        self.password = password
        self.master = master
        self.down_after_ms = down_after_ms

    def _prepare(self) -> None:
        self.binary = find_binary("redis-server")

    def _command(self) -> list[str]:
        assert self.binary is not None
        # Written once: the sentinel rewrites it with what it learns (as in production).
        if not self.config_path.exists():
            self.config_path.write_text(
                "\n".join(
                    [
                        *self._listen_lines(),
                        # With TLS, to the servers and the other sentinels too.
                        *(["tls-replication yes"] if self.tls else []),
                        f"bind {self.host}",
                        "daemonize no",
                        f"dir {_redis_quote(str(self.workdir))}",
                        f"logfile {_redis_quote(str(self.log_path))}",
                        f"requirepass {self.password}",
                        f"sentinel sentinel-pass {self.password}",
                        f"sentinel monitor {MASTER_NAME} {self.master.host} {self.master.port} 2",
                        f"sentinel auth-pass {MASTER_NAME} {self.master.password}",
                        f"sentinel down-after-milliseconds {MASTER_NAME} {self.down_after_ms}",
                        f"sentinel failover-timeout {MASTER_NAME} 10000",
                        f"sentinel parallel-syncs {MASTER_NAME} 1",
                        "",
                    ]
                )
            )
        return [self.binary, str(self.config_path), "--sentinel"]

    def _probe(self) -> bool:
        with self.client(socket_connect_timeout=1, socket_timeout=2, retry=no_retry()) as c:
            return bool(c.ping())


class SentinelGroup:
    """A master, its replicas and the sentinels, started together; ``current_master()`` is
    the server the sentinels name now."""

    def __init__(
        self, workdir: Path, replicas: int = 2, sentinels: int = 3, tls: ServerTls | None = None
    ) -> None:
        self.tls = tls
        self.password = secrets.token_hex(16)
        self.executor_password = secrets.token_hex(16)
        self.sentinel_password = secrets.token_hex(16)
        self.servers = [RedisServer(workdir / "redis0", tls=tls)]
        master = self.servers[0]
        for index in range(1, replicas + 1):
            self.servers.append(
                RedisServer(
                    workdir / f"redis{index}",
                    tls=tls,
                    extra_config=[f"replicaof {master.host} {master.port}"],
                )
            )
        for server in self.servers:
            server.password = self.password
            server.extra_config += [
                executor_acl_line(self.executor_password),
                f"masterauth {self.password}",
                *(["tls-replication yes"] if tls else []),
                "min-replicas-to-write 1",
                "min-replicas-max-lag 10",
            ]
        self.sentinels = [
            SentinelServer(workdir / f"sentinel{i}", master, self.sentinel_password, tls=tls)
            for i in range(sentinels)
        ]

    def start(self) -> SentinelGroup:
        for server in [*self.servers, *self.sentinels]:
            server.start()
        return self

    def close(self) -> None:
        for server in [*self.sentinels, *self.servers]:
            server.close()

    @property
    def addresses(self) -> str:
        return ",".join(f"{s.host}:{s.port}" for s in self.sentinels)

    def client_settings(self) -> dict[str, Any]:
        """The runtime config's ``redis`` keys configc compiles under Sentinel: the
        executors log in to the servers as their ACL user."""
        master = self.servers[0]
        return {
            "host": master.host,
            "port": master.port,
            "username": EXECUTOR_USER,
            "password": self.executor_password,
            "sentinels": self.addresses,
            "sentinel_master": MASTER_NAME,
            "sentinel_password": self.sentinel_password,
            **({"tls": True, "ca_cert": str(self.tls.ca)} if self.tls else {}),
        }

    def current_master(self) -> tuple[str, int] | None:
        """What a live sentinel names master now."""
        for sentinel in self.sentinels:
            if not sentinel.is_running:
                continue
            try:
                with sentinel.client(socket_timeout=2, retry=no_retry()) as client:
                    host, port = client.sentinel_get_master_addr_by_name(MASTER_NAME)
                    return host.decode() if isinstance(host, bytes) else host, int(port)
            except redis.RedisError:
                continue
        return None

    def replicas_synced(self) -> bool:
        """Every replica's link to the master is up, and the master counts each as a good
        replica for ``min-replicas-to-write`` (its own view, updated when a replica's
        acknowledgement comes: until then a write is refused with NOREPLICAS)."""
        for server in self.servers[1:]:
            with server.client(retry=no_retry(), socket_timeout=2) as client:
                if client.info("replication").get("master_link_status") != "up":
                    return False
        with self.servers[0].client(retry=no_retry(), socket_timeout=2) as client:
            good = client.info("replication").get("min_slaves_good_slaves")
        return good == len(self.servers) - 1


@contextmanager
def sentinel_group(workdir: Path, **kwargs: Any) -> Iterator[SentinelGroup]:
    group = SentinelGroup(workdir, **kwargs)
    try:
        yield group.start()
    finally:
        group.close()
