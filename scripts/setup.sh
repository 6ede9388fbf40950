#!/usr/bin/env bash
# Set up this checkout on a Debian 12 machine: Debian packages, then a virtualenv in .venv
# with ragfleet installed in editable mode. Idempotent: a second run only checks.
#
#   scripts/setup.sh            everything the tests need (scripts/system-packages.txt,
#                               the test, dev, local-embeddings, deploy and bench extras)
#   scripts/setup.sh --runtime  only what running ragfleet on one host needs
#                               (python3-venv, redis-server, wordnet-base, a C compiler
#                               for datrie; no extras)
#
# Needs root (or sudo) only when a Debian package is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# wordnet-base: the WordNet files RAGFlow's tokenizer lemmatizes with (executor/ingest/ragtokens.py);
# gcc, libc6-dev, python3-dev: datrie (the tokenizer's dictionary trie) has no wheel for
# Python 3.11, so pip compiles it.
RUNTIME_PACKAGES=(python3 python3-venv python3-pip python3-dev gcc libc6-dev redis-server wordnet-base)

log() { printf 'setup: %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

install_debian_packages() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        log "Debian packages present: $*"
        return
    fi
    log "installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

pip_install() {
    .venv/bin/python -m pip install -q --disable-pip-version-check "$@"
}

if [ "${1:-}" = "--runtime" ]; then
    install_debian_packages "${RUNTIME_PACKAGES[@]}"
    extras=""
else
    # scripts/system-packages.txt: one package a line, '#' comments.
    mapfile -t test_packages < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' \
        scripts/system-packages.txt)
    install_debian_packages "${test_packages[@]}"
    extras="[test,dev,local-embeddings,deploy,bench]"
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    log "creating .venv with $($PYTHON --version)"
    "$PYTHON" -m venv .venv
fi
pip_install --upgrade pip
if [ -n "$extras" ] && ! .venv/bin/python -c 'import torch' 2>/dev/null; then
    # The local-embeddings extra needs torch; pinned and first, or pip picks a multi-GB
    # CUDA build. 2.13.0's CPU wheel is what the test machines provide.
    log "installing torch 2.13.0 (CPU) for the local-embeddings extra"
    pip_install 'torch==2.13.0'
fi
log "installing ragfleet (editable) ${extras:-without extras} into .venv"
pip_install -e ".${extras}"
log "installing requirements-nodeps.txt (RAGFlow's tokenizer) without their dependencies"
pip_install --no-deps -r requirements-nodeps.txt
log "done: activate with 'source .venv/bin/activate'"
