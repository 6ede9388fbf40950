"""The metrics port of an executor instance, taken before anything else starts."""

from __future__ import annotations

import errno
import socket

import trio

from ..errors import SettingsError
from ..settings import ExecutorSettings, Settings
from ..settings_spec import LOOPBACK, metrics_host

_PORT_ERRNOS = frozenset({errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL, socket.EAI_NONAME})
"""Errors taking the metrics port that are the config's: another process has the port, it
is privileged, the address is not this machine's, or its name resolves to none."""


def metrics_port(settings: Settings, instance: int) -> int | None:
    base = settings.executor.metrics_port_base
    return None if base <= 0 else base + instance


async def listen_for_metrics(
    config: ExecutorSettings, port: int | None, instance: int
) -> list[trio.SocketListener]:
    """The metrics *port*, taken first: one in use (by another service, or this instance
    already running) or not ours to take is the config's to fix, a SettingsError."""
    if port is None:
        return []
    # "auto" is configc's to resolve; a config it did not compile gets loopback.
    host = metrics_host(config.metrics_bind, LOOPBACK, fleet=False)
    try:
        return await trio.open_tcp_listeners(port, host=host)
    except (OSError, OverflowError) as exc:
        if isinstance(exc, OSError) and exc.errno not in _PORT_ERRNOS:
            raise  # a shortage of the machine's (descriptors, memory): a restart mends it
        reason = exc.strerror if isinstance(exc, OSError) else "no such port"
        raise SettingsError(
            f"cannot serve metrics on {host} port {port} (executor.metrics_bind"
            f", executor.metrics_port_base + instance {instance}): {reason}"
        ) from None
