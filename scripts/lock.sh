#!/usr/bin/env bash
# Resolve the lock files (with hashes) for the target hosts: Debian 12's CPython 3.11.2 on
# x86_64 and aarch64 (glibc 2.36), with uv, whatever machine runs this. Markers are
# evaluated for that interpreter, so redis's async-timeout (Python < 3.11.3) is in.
#
#   scripts/lock.sh            rewrite lock/*.txt
#   scripts/lock.sh --check    exit 1 if they are not what pyproject.toml resolves to now
#                              (uv picks the newest versions: run it when dependencies change)
set -euo pipefail
cd "$(dirname "$0")/.."
uv=${UV:-.venv/bin/uv}
out=lock
[ "${1:-}" = "--check" ] && out=$(mktemp -d) && trap 'rm -rf "$out"' EXIT

compile() {  # compile INPUT OUTPUT ARCH [uv options]
    local input=$1 output=$2 arch=$3
    shift 3
    "$uv" pip compile -q "$input" --generate-hashes --python-version 3.11.2 \
        --python-platform "$arch-manylinux_2_36" --no-header --custom-compile-command \
        scripts/lock.sh -o "$output" "$@"
}
for arch in x86_64 aarch64; do
    compile pyproject.toml "$out/runtime-$arch.txt" "$arch"
    compile lock/build.in "$out/build-$arch.txt" "$arch"
done
compile requirements-nodeps.txt "$out/nodeps.txt" x86_64 --no-deps
# One file when both targets resolve alike (they do today); a difference is an error here,
# to be handled on purpose (two files, or markers).
for kind in runtime build; do
    cmp -s "$out/$kind-x86_64.txt" "$out/$kind-aarch64.txt" \
        || { diff "$out/$kind-x86_64.txt" "$out/$kind-aarch64.txt" >&2; exit 1; }
    mv "$out/$kind-x86_64.txt" "$out/$kind.txt" && rm "$out/$kind-aarch64.txt"
done
if [ "$out" != lock ]; then
    for file in runtime build nodeps; do
        cmp -s "$out/$file.txt" "lock/$file.txt" || { echo "lock/$file.txt is stale: run scripts/lock.sh" >&2; exit 1; }
    done
fi
