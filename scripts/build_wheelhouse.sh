#!/usr/bin/env bash
# Build the wheelhouse for the target hosts from the lock files (scripts/lock.sh): every
# wheel for Debian 12's CPython 3.11 on ARCH, downloaded with the hashes the lock pins,
# whatever machine runs this; plus ragfleet's own wheel (dist/, scripts/check_package.sh).
#
#   scripts/build_wheelhouse.sh ARCH OUT_DIR [RAGFLEET_WHEEL]     ARCH: x86_64 | aarch64
#
# datrie and hanziconv publish no wheel for Python 3.11: their sdists go in (hash-checked
# as well), with the lock/build.txt wheels to build them, and a host installs in two steps:
#   pip install --no-index --find-links W --require-hashes -r W/build.txt
#   pip install --no-index --find-links W --require-hashes --no-build-isolation -r W/runtime.txt
#   pip install --no-index --find-links W --require-hashes --no-deps -r W/nodeps.txt
#   pip install --no-index --find-links W --no-deps W/ragfleet-*.whl
# (datrie is compiled there: the host needs gcc and python3-dev, as scripts/setup.sh says.)
set -euo pipefail
cd "$(dirname "$0")/.."
arch=${1:?usage: build_wheelhouse.sh ARCH OUT_DIR [RAGFLEET_WHEEL]}
out=${2:?usage: build_wheelhouse.sh ARCH OUT_DIR [RAGFLEET_WHEEL]}
py=${PYTHON:-.venv/bin/python}
SDIST_ONLY=" datrie hanziconv "
case "$arch" in x86_64 | aarch64) ;; *) echo "build_wheelhouse: ARCH is x86_64 or aarch64" >&2; exit 2 ;; esac

# Debian 12 has glibc 2.36: any manylinux wheel up to that (pip does not expand the tag).
platforms=()
for minor in $(seq 36 -1 17); do platforms+=(--platform "manylinux_2_${minor}_$arch"); done
platforms+=(--platform "manylinux2014_$arch")
[ "$arch" = x86_64 ] && platforms+=(--platform manylinux2010_x86_64 --platform manylinux1_x86_64)
target=(--python-version 3.11 --implementation cp --abi cp311 "${platforms[@]}")

# split LOCK into the packages with wheels and those without (requirement blocks by name)
split() {
    awk -v skip="$SDIST_ONLY" -v want="$2" '
        /^[A-Za-z0-9]/ { split($1, a, "=="); inside = index(skip, " " a[1] " ") > 0 }
        /^#/ { next }
        (want == "sdist") == inside' "$1"
}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"
download() { "$py" -m pip download -q --disable-pip-version-check --no-deps --require-hashes -d "$out" "$@"; }
for lock in build runtime nodeps; do
    split "lock/$lock.txt" wheel >"$work/$lock-wheels.txt"
    split "lock/$lock.txt" sdist >"$work/$lock-sdists.txt"
    download -r "$work/$lock-wheels.txt" --only-binary :all: "${target[@]}"
    if grep -q '==' "$work/$lock-sdists.txt"; then
        download -r "$work/$lock-sdists.txt" --no-binary :all:
    fi
    cp "lock/$lock.txt" "$out/$lock.txt"
done
[ -z "${3:-}" ] || cp "$3" "$out/"
(cd "$out" && sha256sum -- *.whl *.tar.gz 2>/dev/null | sort -k2 >SHA256SUMS)
echo "build_wheelhouse: $out: $(ls "$out" | grep -c -E '\.(whl|tar\.gz)$') files for Debian 12, CPython 3.11, $arch" >&2
