"""The e2e marker, the deployment every e2e module shares, and the testbed's timings at
the end of the run."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from deployment import Deployment, deploy
from testbed import TIMINGS_FILE


@pytest.fixture(scope="session")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """The converged five-host fleet (deployment.py), booted once for every e2e module."""
    yield from deploy(tmp_path_factory)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "e2e: boots systemd-nspawn hosts and deploys with Ansible for real (needs root; "
        "fails, never skips, when it cannot run; deselect with -m 'not e2e')",
    )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the timings the deployment test recorded in this session, if it ran."""
    started = getattr(terminalreporter.config, "_e2e_started", None)
    if started is None or not TIMINGS_FILE.exists() or TIMINGS_FILE.stat().st_mtime < started:
        return
    timings = json.loads(TIMINGS_FILE.read_text())
    terminalreporter.write_sep("-", "e2e deployment timings (seconds)")
    for name, seconds in timings.items():
        terminalreporter.write_line(f"{name:>28}: {seconds:7.1f}")


def pytest_sessionstart(session: pytest.Session) -> None:
    import time

    session.config._e2e_started = time.time()  # type: ignore[attr-defined]
