"""A configuration with TLS and the Redis ACL users, compiled by configc, and the real servers
started on what it compiled (helpers, not tests): tests/test_tls_servers.py and
tests/test_redis_acl.py share them."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from confdirs import shipped_conf
from servers import RedisServer, ServerTls

from configc.config import load_config
from configc.output import write_tree

EXECUTOR_USER, OPERATOR_USER = "ragfleet-executor", "ragfleet-operator"


@dataclass(frozen=True)
class Secured:
    """configc's output for one loopback host with TLS forced on (``tls.mode: on``)."""

    conf: Path
    out: Path
    redis_password: str
    executor_password: str
    operator_password: str

    @property
    def ca(self) -> Path:
        return self.conf / "tls" / "ca.crt"

    def server_tls(self, service: str) -> ServerTls:
        store = self.conf / "tls"
        return ServerTls(store / f"{service}.crt", store / f"{service}.key", self.ca)

    @property
    def redis_fragment(self) -> str:
        return (self.out / "hosts/localhost/etc/redis/ragfleet.conf").read_text()

    @property
    def aclfile(self) -> Path:
        """The Redis users' file configc compiled (the fragment names it by its host path)."""
        return self.out / "hosts/localhost/etc/redis/ragfleet-users.acl"

    def login(self, role: str) -> dict[str, str | bool]:
        """The redis section (minus host and port) *role* logs in with, over TLS."""
        password = self.executor_password if role == "executor" else self.operator_password
        user = EXECUTOR_USER if role == "executor" else OPERATOR_USER
        return {"username": user, "password": password, "tls": True, "ca_cert": str(self.ca)}


def secured_conf(tmp_path: Path) -> Secured:
    """Compile a single loopback host (Redis, MariaDB, executors) with ``tls.mode: on`` (the
    SANs are then 127.0.0.1 and localhost) and both ACL users."""
    redis_password = secrets.token_hex(16)
    executor_password, operator_password = secrets.token_hex(16), secrets.token_hex(16)
    conf = shipped_conf(
        tmp_path,
        f"""
        redis:
          password: {redis_password}
          executor_password: {executor_password}
          operator_password: {operator_password}
        mysql: {{password: {secrets.token_hex(16)}}}
        executor: {{db_type: mysql}}
        tls: {{mode: 'on'}}
        hosts:
          - {{name: localhost, address: 127.0.0.1, roles: [redis, mysql, executor]}}
        """,
    )
    config = load_config(conf, environ={}, keep_tls=True)
    out = tmp_path / "out"
    write_tree(out, config.files)
    return Secured(conf, out, redis_password, executor_password, operator_password)


def secured_redis(workdir: Path, secured: Secured) -> RedisServer:
    """A redis-server on configc's certificate, TLS only, with configc's ACL users: their
    compiled aclfile, whose default user has configc's redis.password (Redis then ignores
    the test server's requirepass, which is set to the same)."""
    server = RedisServer(
        workdir,
        tls=secured.server_tls("redis"),
        extra_config=[f'aclfile "{secured.aclfile}"'],
    )
    server.password = secured.redis_password
    return server
