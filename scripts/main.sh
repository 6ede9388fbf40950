#!/usr/bin/env bash
# The main job on the single-host embedded default: set up this checkout (scripts/setup.sh),
# then compile the shipped configuration into out/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/configc check conf/
.venv/bin/configc build conf/ -o out/
echo
echo "Compiled tree (out/):"
find out -type f | sort | sed 's/^/  /'
