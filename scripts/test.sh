#!/usr/bin/env bash
# Set up this checkout (scripts/setup.sh) and run every check: ruff, the import-linter
# contracts (pyproject.toml), then the whole pytest suite (tests/test_package.py among it
# runs scripts/check_package.sh: the sdist and wheel built, checked, installed and run).
# This is exactly what CI runs (.ci/run). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/lint-imports
exec .venv/bin/pytest "$@"
