"""How ``ragfleet`` says that its command line is wrong: one line on stderr, exit 2.

Click's own usage errors (a mistyped command, a value out of range) print a usage block;
ragfleet says them as it says every other error, ``ragfleet: ...``, with the ``--help``
to read. An argument holding bytes that are not UTF-8 is refused before any command
runs: Python keeps those bytes as lone surrogates, which no database, Redis or JSON takes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import click

EXIT_USAGE = 2


def usage_error(message: str) -> NoReturn:
    """A mistyped command line: one line, exit 2."""
    click.echo(f"ragfleet: {message}", err=True)
    sys.exit(EXIT_USAGE)


def not_utf8(values: Iterable[Any]) -> str | None:
    """The first argument holding bytes that are not UTF-8 (Python keeps them as lone
    surrogates, which no database, Redis or JSON takes), shown with the bytes escaped."""
    for value in values:
        for item in value if isinstance(value, tuple) else (value,):
            text = str(item) if isinstance(item, str | Path) else ""
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                return repr(os.fsencode(text))[1:]  # the bytes as given
    return None


class _OneLineUsage(click.ClickException):
    """A usage error of click's (an unknown option, a bad value) said as ragfleet says any
    error: one line, exit 2, instead of click's usage block."""

    exit_code = EXIT_USAGE

    def show(self, file: Any = None) -> None:
        click.echo(f"ragfleet: {self.format_message()}", err=True)


@contextmanager
def _one_line_usage() -> Iterator[None]:
    try:
        yield
    except click.exceptions.NoArgsIsHelpError:
        raise  # no arguments at all: the help, as click prints it
    except click.UsageError as exc:
        hint = f" (`{exc.ctx.command_path} --help`)" if exc.ctx else ""
        raise _OneLineUsage(f"{exc.format_message()}{hint}") from None


class OneLineUsageGroup(click.Group):
    """The command group, its subgroups included, with click's usage errors on one line."""

    group_class = type  # subgroups (db, dlq) are one too

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        with _one_line_usage():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        with _one_line_usage():
            return super().invoke(ctx)
