#!/usr/bin/env bash
# Set up this checkout (scripts/setup.sh) and run every check: ruff, the import-linter
# contracts (pyproject.toml), then the whole pytest suite (tests/test_package.py among it
# runs scripts/check_package.sh: the sdist and wheel built, checked, installed and run).
# This is exactly what CI runs (.ci/run). Extra arguments go to pytest.
#
# pytest runs on two workers (pytest-xdist): the e2e (tests/e2e, one unit: its modules share
# one deployment) starts first on one of them while the other runs the rest, file by file
# (tests/conftest.py). Serially the two take about 20 and 23 minutes on a 2-core machine;
# the slowest 30 tests are listed at the end (docs/deploy.md, "How long the tests take").
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/lint-imports
exec .venv/bin/pytest -n 2 --no-loadscope-reorder --durations=30 "$@"
