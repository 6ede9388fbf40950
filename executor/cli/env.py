"""What every ``ragfleet`` operator command shares: the invocation's connections (opened
lazily), and one mapping from errors to exit codes and one-line messages."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import Any

import click
import peewee as pw

from ..errors import (
    DatabaseUnavailable,
    SettingsError,
    redis_denied,
    redis_outage,
)
from ..ingest.errors import DocStoreUnavailable, StorageUnavailable
from ..queue.broker import Broker, redis_error_text
from ..queue.connection import connect, redis_location
from ..queue.roster import Roster
from ..settings import RedisSettings, Settings, load_settings, with_operator_login
from ..store.database import TaskStore
from ..store.opening import open_task_store
from .usage import EXIT_USAGE, not_utf8, usage_error

EXIT_NO, EXIT_UNAVAILABLE, EXIT_NOT_FOUND = 1, 3, 4  # and usage.EXIT_USAGE, 2


class Env:
    """Lazily opened connections, shared by the commands of one invocation."""

    def __init__(self, config: str | None) -> None:
        self.config = config

    @cached_property
    def settings(self) -> Settings:
        return load_settings(self.config)

    @cached_property
    def redis_settings(self) -> RedisSettings:
        """The operator commands' Redis login: the operator's own ACL user where configc
        made one (docs/security.md); `ragfleet run` uses settings.redis, the executors'."""
        return with_operator_login(self.settings).redis

    @cached_property
    def roster(self) -> Roster:
        """The fleet in Redis: heartbeats, dead letters, enqueuing, cancel flags."""
        return Roster(self._redis)

    def broker(self, consumer: str) -> Broker:
        """The queue operations of *consumer*, on this invocation's connection."""
        return Broker(self._redis, consumer)

    @cached_property
    def _redis(self):
        return connect(self.redis_settings)

    @cached_property
    def store(self) -> TaskStore:
        """The task database, asked once: one the config names wrongly is a SettingsError
        (exit 2), one that is down is DatabaseUnavailable (exit 3)."""
        store, unavailable = open_task_store(self.settings.database)
        if unavailable is not None:
            raise unavailable
        return store

    def close(self) -> None:
        """At the invocation's end: the database told goodbye, if it was opened."""
        if "store" in self.__dict__:  # (a cached_property opened)
            self.store.close_all()


@contextmanager
def errors_to_exit_codes(env: Env) -> Iterator[None]:
    try:
        yield
    except SettingsError as exc:
        click.echo(f"ragfleet: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    except Exception as exc:
        failure = _failure(env, exc)
        if failure is None:
            raise
        code, message = failure
        click.echo(f"ragfleet: {message}", err=True)
        sys.exit(code)


_UNAVAILABLE = (
    (DatabaseUnavailable, "database"),
    (DocStoreUnavailable, "document store"),
    (StorageUnavailable, "document storage"),
)


def _failure(env: Env, exc: Exception) -> tuple[int, str] | None:
    """The exit code and message of an infrastructure error; None: not one (a bug)."""
    if redis_denied(exc):  # before redis_outage: a refused login is one of those
        where = redis_location(env.redis_settings)
        return EXIT_USAGE, f"Redis ({where}) refused: {redis_error_text(exc)}"
    if redis_outage(exc):
        return EXIT_UNAVAILABLE, f"Redis unavailable: {redis_error_text(exc)}"
    for kind, what in _UNAVAILABLE:
        if isinstance(exc, kind):
            return EXIT_UNAVAILABLE, f"{what} unavailable: {exc}"
    if isinstance(exc, (pw.OperationalError, pw.ProgrammingError)):  # it answers and refuses
        hint = " (run `ragfleet db init`)" if missing_table(exc) else ""
        return EXIT_USAGE, f"task database: {exc}{hint}"
    return None


def missing_table(exc: Exception) -> bool:
    """SQLite's, MariaDB's and PostgreSQL's words for a table that is not there."""
    text = str(exc).lower()
    return "no such table" in text or (
        ("table" in text or "relation" in text)
        and ("doesn't exist" in text or "does not exist" in text)
    )


def operator_command(func: Callable) -> Callable:
    """Pass the Env to a command and map infrastructure errors to exit codes."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        env = click.get_current_context().obj
        if (undecodable := not_utf8(kwargs.values())) is not None:
            usage_error(f"argument {undecodable} is not UTF-8")
        with errors_to_exit_codes(env):
            return func(env, *args, **kwargs)

    return wrapper
