"""The release artifacts: the sdist and wheel build, pass twine check, and the wheel works
installed without the checkout (scripts/check_package.sh); what --version says where."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from executor import __version__
from executor.version import PACKAGE_DIR, git_commit

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(600)
def test_the_wheel_works_installed_without_the_checkout(tmp_path):
    dist = tmp_path / "dist"
    done = subprocess.run(
        [str(REPO / "scripts" / "check_package.sh"), str(dist)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    (wheel,) = dist.glob("ragfleet-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    info = f"ragfleet-{__version__}.dist-info"
    assert {f"{info}/licenses/LICENSE", f"{info}/licenses/NOTICE"} <= set(names)
    assert "executor/_build_info.py" in names and "configc/templates/redis.conf.j2" in names
    assert (dist / f"ragfleet-{__version__}.tar.gz").is_file()


def test_a_checkout_run_in_place_reports_its_head():
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    commit = git_commit(PACKAGE_DIR.parent)
    assert commit is not None and commit.removesuffix("-dirty") == head
    assert not (PACKAGE_DIR / "_build_info.py").exists()  # only builds carry one


def test_only_a_checkouts_top_directory_counts(tmp_path):
    assert git_commit(PACKAGE_DIR) is None  # inside the checkout, not its top
    assert git_commit(tmp_path) is None  # no repository at all


def test_a_fresh_repository_and_its_uncommitted_change(tmp_path):
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(tmp_path), *args], check=True, capture_output=True, text=True
        ).stdout.strip()

    git("init", "-q")
    (tmp_path / "f").write_text("1")
    git("add", "f")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "f")
    assert git_commit(tmp_path) == git("rev-parse", "HEAD")
    (tmp_path / "f").write_text("2")
    assert git_commit(tmp_path) == git("rev-parse", "HEAD") + "-dirty"


def test_without_git_the_commit_is_unknown(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path)}  # no git on the path
    done = subprocess.run(
        [sys.executable, "-c", "from executor.version import build_info; print(build_info())"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
    )
    assert done.stdout.strip() == f"BuildInfo(version='{__version__}', commit='unknown')"


def _pins(lock: Path) -> dict[str, str]:
    pins = re.findall(r"^([A-Za-z0-9._-]+)==(\S+)", lock.read_text(), re.M)
    return {canonicalize_name(name): version for name, version in pins}


def test_the_lock_pins_every_dependency_within_pyproject_and_for_the_hosts_python():
    """lock/runtime.txt (scripts/lock.sh) is resolved for Debian 12's Python 3.11.2: every
    dependency pyproject.toml declares is pinned there, with hashes, in the range declared."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = _pins(REPO / "lock" / "runtime.txt")
    for spec in map(Requirement, project["dependencies"]):
        name = canonicalize_name(spec.name)
        assert name in pins and spec.specifier.contains(pins[name]), spec
    assert "async-timeout" in pins  # redis needs it below Python 3.11.3: markers were 3.11.2's
    text = (REPO / "lock" / "runtime.txt").read_text()
    blocks = [b for b in re.split(r"\n(?=[A-Za-z0-9])", text) if "==" in b]
    assert len(blocks) == len(pins) and all("--hash=sha256:" in b for b in blocks)
    nodeps = _pins(REPO / "lock" / "nodeps.txt")
    assert nodeps == _pins(REPO / "requirements-nodeps.txt")
