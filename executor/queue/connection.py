"""Opening the executor's Redis connection, and naming it in messages."""

from __future__ import annotations

from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from ..settings import RedisSettings

SOCKET_TIMEOUT = 10  # above the longest XREADGROUP BLOCK the worker uses


def connect(settings: RedisSettings, **overrides: Any) -> redis.Redis:
    """A client that fails fast: one quick retry (a pooled connection that went stale when
    Redis restarted), then the error, so the worker's own back-off paces reconnection.

    With sentinels, a client of whichever server they name master: each new connection asks
    them, and one to a server that was demoted (READONLY) is dropped with a ConnectionError,
    so a failover reads as an outage that ends once the sentinels have promoted a replica;
    no sentinel naming a master is MasterNotFoundError, a ConnectionError too."""
    options: dict[str, Any] = {
        "db": settings.db,
        "username": settings.username or None,
        "password": settings.password or None,
        "socket_connect_timeout": 5,
        "socket_timeout": SOCKET_TIMEOUT,
        "retry": Retry(NoBackoff(), 1),
        "health_check_interval": 15,
        **_tls_options(settings),
    }
    if settings.sentinels:
        return _sentinel(settings).master_for(settings.sentinel_master, **{**options, **overrides})
    options.update(host=settings.host, port=settings.port)
    return redis.Redis(**{**options, **overrides})


def _sentinel(settings: RedisSettings) -> Sentinel:
    """The sentinels, logged in with their own password, over Redis's TLS if any."""
    return Sentinel(
        sentinel_addresses(settings.sentinels),
        sentinel_kwargs={
            "password": settings.sentinel_password or None,
            "socket_connect_timeout": 2,
            "socket_timeout": 2,
            **_tls_options(settings),
        },
    )


def _tls_options(settings: RedisSettings) -> dict[str, Any]:
    if not settings.tls:
        return {}
    # Verify the server: its certificate chains to the config's CA and names the address.
    return {
        "ssl": True,
        "ssl_ca_certs": settings.ca_cert or None,
        "ssl_cert_reqs": "required",
        "ssl_check_hostname": True,
    }


def sentinel_addresses(text: str) -> list[tuple[str, int]]:
    """``"a:26379,[::1]:26380"`` -> ``[("a", 26379), ("::1", 26380)]``."""
    out = []
    for item in text.split(","):
        host, _, port = item.strip().rpartition(":")
        out.append((host.strip("[]"), int(port)))
    return out


def current_master(settings: RedisSettings) -> tuple[str, int] | None:
    """The master the sentinels name now (None without sentinels); MasterNotFoundError
    (a ConnectionError) if none does."""
    if not settings.sentinels:
        return None
    host, port = _sentinel(settings).discover_master(settings.sentinel_master)
    return str(host), int(port)


def redis_location(settings: RedisSettings) -> str:
    """Where the config points, for messages: ``user@host:port/db`` (``rediss://`` on TLS);
    under Sentinel, ``sentinel:MASTER@a:26379,...``."""
    user = f"{settings.username}@" if settings.username else ""
    scheme = "rediss://" if settings.tls else ""
    if settings.sentinels:
        where = f"sentinel:{settings.sentinel_master}@{settings.sentinels}"
        return f"{scheme}{user}{where}/{settings.db}"
    return f"{scheme}{user}{settings.host}:{settings.port}/{settings.db}"
