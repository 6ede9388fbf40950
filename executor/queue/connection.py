"""Opening the executor's Redis connection, and naming it in messages."""

from __future__ import annotations

from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..settings import RedisSettings


def connect(settings: RedisSettings, **overrides: Any) -> redis.Redis:
    """A client that fails fast: one quick retry (a pooled connection that went stale when
    Redis restarted), then the error, so the worker's own back-off paces reconnection."""
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "db": settings.db,
        "username": settings.username or None,
        "password": settings.password or None,
        "socket_connect_timeout": 5,
        "socket_timeout": 10,  # above the longest XREADGROUP BLOCK the worker uses
        "retry": Retry(NoBackoff(), 1),
        "health_check_interval": 15,
    }
    if settings.tls:
        # Verify the server: its certificate chains to the config's CA and names the address.
        options.update(
            ssl=True,
            ssl_ca_certs=settings.ca_cert or None,
            ssl_cert_reqs="required",
            ssl_check_hostname=True,
        )
    return redis.Redis(**{**options, **overrides})


def redis_location(settings: RedisSettings) -> str:
    """Where the config points, for messages: ``user@host:port/db`` (``rediss://`` on TLS)."""
    user = f"{settings.username}@" if settings.username else ""
    scheme = "rediss://" if settings.tls else ""
    return f"{scheme}{user}{settings.host}:{settings.port}/{settings.db}"
