"""Build hooks only (the project is declared in pyproject.toml): stamp the commit a wheel or
sdist is built from into ``executor/_build_info.py``, which ``executor.version`` reads.

A wheel built from a checkout gets the checkout's HEAD; an sdist carries the file, so a
wheel built from the sdist (``python -m build`` does that) keeps the commit. An editable
install gets no file: it asks git at run time.
"""

from __future__ import annotations

import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = Path(__file__).resolve().parent
BUILD_INFO = Path("executor", "_build_info.py")
sys.path.insert(0, str(HERE))
from executor.version import UNKNOWN, git_commit  # noqa: E402  (needs HERE on the path)


def _write_build_info(root: Path, commit: str) -> None:
    text = f'"""Written by setup.py at build time."""\n\nCOMMIT = "{commit}"\n'
    (root / BUILD_INFO).write_text(text, encoding="utf-8")


class BuildPy(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return  # run in place: executor.version asks git
        commit = git_commit(HERE)
        if commit is not None:
            _write_build_info(Path(self.build_lib), commit)
        elif not (HERE / BUILD_INFO).is_file():  # an sdist's copy was built in already
            _write_build_info(Path(self.build_lib), UNKNOWN)


class Sdist(sdist):
    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        super().make_release_tree(base_dir, files)
        commit = git_commit(HERE)
        if commit is not None or not (HERE / BUILD_INFO).is_file():
            target = Path(base_dir, BUILD_INFO)
            target.unlink(missing_ok=True)  # a hard link to the source's, if any
            _write_build_info(Path(base_dir), commit or UNKNOWN)


setup(cmdclass={"build_py": BuildPy, "sdist": Sdist})
