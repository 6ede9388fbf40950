"""Assemble an executor from its settings and run it: what ``ragfleet run`` does."""

from __future__ import annotations

import logging
import os
import sys

import trio

from .errors import REDIS_DENIED, DatabaseUnavailable, SettingsError
from .handlers import INGEST_TASK_TYPE, HandlerRegistry, default_registry
from .instance_guard import instance_lock
from .logs import LineFormatter
from .queue import wire
from .queue.broker import Broker, redis_error_text
from .queue.connection import connect, redis_location
from .sdnotify import Notifier
from .settings import Settings
from .store.database import TaskStore
from .store.opening import open_task_store
from .worker import Worker, metrics_port


def configure_logging(level: str) -> None:
    """Log to stderr, one line a record (control characters escaped); under systemd, journald
    adds the timestamp and unit, so we do not, and reads each line's priority from its
    ``<N>`` prefix (executor.logs)."""
    under_journald = "JOURNAL_STREAM" in os.environ
    # Libraries (peewee logs every query at DEBUG) stay at WARNING; our loggers follow the config.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, force=True)
    for handler in logging.getLogger().handlers:  # under journald: <N> priority prefixes
        handler.setFormatter(LineFormatter(journald=under_journald))
    logging.getLogger("ragfleet").setLevel(level)


def build_registry(settings: Settings, store: TaskStore) -> HandlerRegistry:
    """The built-in task types, plus ingestion (upstream's task_type "") when the config
    names a document store and a storage backend, as every configc-compiled config does."""
    registry = default_registry()
    if settings.doc_store and settings.storage:
        from .ingest.grouped import ingest_group_handler
        from .ingest.pipeline import IngestServices, ingest_handler

        services = IngestServices.from_settings(settings, store)
        registry.register(
            INGEST_TASK_TYPE,
            ingest_handler(services),
            on_settled=lambda task: services.catalog.settle_document(task["doc_id"]),
            group=ingest_group_handler(services) if settings.executor.group_tasks else None,
        )
    else:
        logging.getLogger("ragfleet").warning(
            "%s has no doc_store/storage section: document ingestion is disabled",
            settings.source,
        )
    return registry


def build_worker(
    settings: Settings,
    instance: int,
    registry: HandlerRegistry | None = None,
    *,
    broker: Broker | None = None,
    opened: tuple[TaskStore, DatabaseUnavailable | None] | None = None,
) -> Worker:
    """The executor's Worker; *broker* and the task store (*opened*, as open_task_store
    returns it) are opened from the settings unless given (a test's, faults injected)."""
    if opened is None:
        opened = open_task_store(settings.database)
        opened[0].database.close()  # this thread's connection; the worker's threads open theirs
    store, unavailable = opened
    if broker is None:
        broker = Broker(connect(settings.redis), wire.consumer_name(settings.host_id, instance))
    worker = Worker(
        settings,
        instance,
        broker,
        store,
        registry or build_registry(settings, store),
        notifier=Notifier.from_environ(os.environ),
        metrics_port=metrics_port(settings, instance),
    )
    if unavailable is not None:  # no fetching until it answers
        worker.db_outage.failed(unavailable)
    return worker


def run_executor(settings: Settings, instance: int) -> int:
    """Run until stopped; 0 after a clean drain."""
    configure_logging(settings.executor.log_level)
    with instance_lock(settings.executor.state_dir, instance):
        worker = build_worker(settings, instance)
        try:
            trio.run(worker.run)
        except REDIS_DENIED as exc:  # refused in the worker's first round (Worker._connect)
            where = redis_location(settings.redis)
            raise SettingsError(f"cannot use Redis ({where}): {redis_error_text(exc)}") from exc
        finally:
            worker.store.close_all()
    return 0
