#!/usr/bin/env bash
# Set up this checkout on a Debian 12 machine: system packages, then a virtualenv in .venv
# with ragfleet installed in editable mode. Idempotent: a second run only checks.
#
#   scripts/setup.sh            runtime + test + dev dependencies
#
# Needs root (or sudo) only when a system package is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tools and the test suite use: scripts/system-packages.txt, one a line.
mapfile -t APT_PACKAGES < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' scripts/system-packages.txt)

log() { printf 'setup: %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
    log "Debian packages present: ${APT_PACKAGES[*]}"
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    log "creating .venv with $($PYTHON --version)"
    "$PYTHON" -m venv .venv
fi
log "installing ragfleet (editable) with test and dev extras into .venv"
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
# torch first and pinned: the local-embeddings extra needs it, and an unpinned torch is a
# multi-GB CUDA build. 2.13.0's CPU wheel is what the test machines provide.
if ! .venv/bin/python -c 'import torch' 2>/dev/null; then
    log "installing torch 2.13.0 (CPU) for the local-embeddings extra"
    .venv/bin/python -m pip install -q --disable-pip-version-check 'torch==2.13.0'
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test,dev,local-embeddings]'
log "done: activate with 'source .venv/bin/activate'"
