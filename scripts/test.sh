#!/usr/bin/env bash
# Set up this checkout (scripts/setup.sh) and run every check: ruff, then the whole pytest suite.
# This is exactly what CI runs (.ci/run). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/pytest "$@"
