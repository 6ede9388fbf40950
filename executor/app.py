"""Assemble an executor from its settings and run it: what ``ragfleet run`` does."""

from __future__ import annotations

import logging
import os
import sys

import trio

from . import wire
from .broker import Broker, connect
from .db import TaskStore, open_database
from .handlers import HandlerRegistry, default_registry
from .sdnotify import Notifier
from .settings import Settings
from .worker import Worker, metrics_port


def configure_logging(level: str) -> None:
    """Log to stderr; under systemd, journald adds the timestamp and unit, so we do not."""
    under_journald = "JOURNAL_STREAM" in os.environ
    fmt = "%(levelname)s %(name)s: %(message)s"
    if not under_journald:
        fmt = "%(asctime)s " + fmt
    # Libraries (peewee logs every query at DEBUG) stay at WARNING; our loggers follow the config.
    logging.basicConfig(level=logging.WARNING, format=fmt, stream=sys.stderr, force=True)
    logging.getLogger("ragfleet").setLevel(level)


def build_worker(
    settings: Settings, instance: int, registry: HandlerRegistry | None = None
) -> Worker:
    consumer = wire.consumer_name(settings.host_id, instance)
    return Worker(
        settings,
        instance,
        Broker(connect(settings.redis), consumer),
        TaskStore(open_database(settings.database)),
        registry or default_registry(),
        notifier=Notifier.from_environ(os.environ),
        metrics_port=metrics_port(settings, instance),
    )


def run_executor(settings: Settings, instance: int) -> int:
    """Run until stopped; 0 after a clean drain."""
    configure_logging(settings.executor.log_level)
    worker = build_worker(settings, instance)
    trio.run(worker.run)
    return 0
