"""The e2e marker and the deployment every e2e module shares (the timings it records are
printed at the end of the run by tests/conftest.py, which an xdist controller loads)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from deployment import Deployment, deploy


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
