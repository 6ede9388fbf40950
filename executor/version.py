"""What version and commit this is: the one answer ``ragfleet --version``, ``configc
--version``, the executors' heartbeats (``ragfleet status``) and the metrics give.

A built wheel or sdist carries ``executor/_build_info.py``, written by ``setup.py`` when it
was built from a checkout; a checkout run in place (an editable install) has none and asks
git at run time; without either the commit is ``"unknown"``. A leaf: the standard library
only, so configc and every layer of the executor can import it.
"""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__

UNKNOWN = "unknown"
PACKAGE_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class BuildInfo:
    version: str
    commit: str  # 40 hex digits, "-dirty" appended if the tree had uncommitted changes

    def line(self, program: str) -> str:
        """What ``PROGRAM --version`` prints."""
        return f"{program} {self.version} (commit {self.commit})"


@functools.cache
def build_info() -> BuildInfo:
    """This package's version and the commit it was built from (asked once a process)."""
    return BuildInfo(__version__, _built_commit() or git_commit(PACKAGE_DIR.parent) or UNKNOWN)


def version_callback(program: str) -> Callable[[Any, Any, bool], None]:
    """A click callback for an eager ``--version`` flag (click stays out of this leaf): git
    is asked only when the flag is given, not on every command."""

    def callback(ctx: Any, _param: Any, value: bool) -> None:
        if value and not ctx.resilient_parsing:
            print(build_info().line(program))
            ctx.exit()

    return callback


def _built_commit() -> str | None:
    try:
        from ._build_info import COMMIT  # type: ignore[import-not-found]
    except ImportError:
        return None
    return str(COMMIT)


def git_commit(top: Path) -> str | None:
    """HEAD of the git checkout whose top directory is *top* ("-dirty" if tracked files
    changed), or None: no git, or *top* is not a checkout's top (a wheel installed in a
    venv inside some other repository must not report that repository's commit)."""
    toplevel = _git(top, "rev-parse", "--show-toplevel")
    if toplevel is None or Path(toplevel).resolve() != top.resolve():
        return None
    head = _git(top, "rev-parse", "HEAD")
    if head is None:
        return None
    changes = _git(top, "status", "--porcelain", "--untracked-files=no")
    return f"{head}-dirty" if changes else head


def _git(top: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(top), *args], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None
