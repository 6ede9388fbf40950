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
import redis

from ..ingest.docstore import DocStoreUnavailable
from ..ingest.storage import StorageUnavailable
from ..queue.broker import (
    REDIS_DENIED,
    REDIS_REFUSED,
    REDIS_UNAVAILABLE,
    connect,
    redis_error_text,
    redis_location,
    refuses_writes,
)
from ..settings import Settings, SettingsError, load_settings
from ..store.database import DatabaseUnavailable, TaskStore, open_task_store
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
    def redis(self) -> redis.Redis:
        return connect(self.settings.redis)

    @cached_property
    def store(self) -> TaskStore:
        """The task database, asked once: one the config names wrongly is a SettingsError
        (exit 2), one that is down is DatabaseUnavailable (exit 3)."""
        store, unavailable = open_task_store(self.settings.database)
        if unavailable is not None:
            raise unavailable
        return store


@contextmanager
def errors_to_exit_codes(env: Env) -> Iterator[None]:
    try:
        yield
    except SettingsError as exc:
        click.echo(f"ragfleet: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    except REDIS_DENIED as exc:  # before REDIS_UNAVAILABLE: a refused login is one of those
        where = redis_location(env.settings.redis)
        click.echo(f"ragfleet: Redis ({where}) refused: {redis_error_text(exc)}", err=True)
        sys.exit(EXIT_USAGE)
    except REDIS_REFUSED as exc:
        if not isinstance(exc, REDIS_UNAVAILABLE) and not refuses_writes(exc):
            raise
        click.echo(f"ragfleet: Redis unavailable: {redis_error_text(exc)}", err=True)
        sys.exit(EXIT_UNAVAILABLE)
    except DatabaseUnavailable as exc:
        click.echo(f"ragfleet: database unavailable: {exc}", err=True)
        sys.exit(EXIT_UNAVAILABLE)
    except DocStoreUnavailable as exc:
        click.echo(f"ragfleet: document store unavailable: {exc}", err=True)
        sys.exit(EXIT_UNAVAILABLE)
    except StorageUnavailable as exc:
        click.echo(f"ragfleet: document storage unavailable: {exc}", err=True)
        sys.exit(EXIT_UNAVAILABLE)
    except (pw.OperationalError, pw.ProgrammingError) as exc:  # it answers and refuses
        hint = " (run `ragfleet db init`)" if missing_table(exc) else ""
        click.echo(f"ragfleet: task database: {exc}{hint}", err=True)
        sys.exit(EXIT_USAGE)


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
