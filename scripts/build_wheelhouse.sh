#!/usr/bin/env bash
# Build the wheelhouse for the target hosts from the lock files (scripts/lock.sh): every
# wheel for Debian 12's CPython 3.11 on each ARCH, downloaded with the hashes the lock pins,
# whatever machine runs this; plus ragfleet's own wheel, pinned by a generated ragfleet.txt;
# then the SBOM (CycloneDX JSON, sbom.cdx.json) and SHA256SUMS (scripts/wheelhouse.py).
#
#   scripts/build_wheelhouse.sh ARCH[,ARCH] OUT_DIR [RAGFLEET_WHEEL]   ARCH: x86_64 | aarch64
#
# Needs PyPI (or pip's cache) and, in PYTHON (default .venv/bin/python), pip and
# cyclonedx-python-lib. OUT_DIR may hold an earlier build: files already there with the
# pinned hash are not fetched again, and files no lock pins (or for another ARCH) are removed.
# datrie and hanziconv publish no wheel for Python 3.11: their sdists go in (hash-checked
# as well), with the lock/build.txt wheels to build them, and a host installs in four steps:
#   pip install --no-index --find-links W --require-hashes -r W/build.txt
#   pip install --no-index --find-links W --require-hashes --no-build-isolation -r W/runtime.txt
#   pip install --no-index --find-links W --require-hashes --no-deps -r W/nodeps.txt
#   pip install --no-index --find-links W --require-hashes --no-deps -r W/ragfleet.txt
# (datrie is compiled there: the host needs gcc and python3-dev, as the executor role installs.)
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: build_wheelhouse.sh ARCH[,ARCH] OUT_DIR [RAGFLEET_WHEEL]"
arches=${1:?$usage}
out=$(realpath -m "${2:?$usage}")
wheel=${3:+$(realpath "$3")}
py=${PYTHON:-.venv/bin/python}
SDIST_ONLY=" datrie hanziconv "
IFS=, read -r -a arch_list <<<"$arches"
for arch in "${arch_list[@]}"; do
    case "$arch" in x86_64 | aarch64) ;; *) echo "build_wheelhouse: ARCH is x86_64 or aarch64 (or both, comma-separated)" >&2; exit 2 ;; esac
done

# Debian 12 has glibc 2.36: any manylinux wheel up to that (pip does not expand the tag).
target() {  # target ARCH: pip download's options for Debian 12's CPython 3.11 on ARCH
    local minor
    for minor in $(seq 36 -1 17); do echo --platform "manylinux_2_${minor}_$1"; done
    echo --platform "manylinux2014_$1"
    [ "$1" = x86_64 ] && echo --platform manylinux2010_x86_64 --platform manylinux1_x86_64
    echo --python-version 3.11 --implementation cp --abi cp311
}

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
# missing REQUIREMENTS [--arch ARCH]: its entries OUT holds no file for yet (into $work/todo.txt)
missing() { "$py" scripts/wheelhouse.py missing "$1" "$out" "${@:2}" >"$work/todo.txt"; [ -s "$work/todo.txt" ]; }
no_binary=$(echo $SDIST_ONLY | tr ' ' ,)
for lock in build runtime nodeps; do
    split "lock/$lock.txt" wheel >"$work/$lock-wheels.txt"
    split "lock/$lock.txt" sdist >"$work/$lock-sdists.txt"
    for arch in "${arch_list[@]}"; do
        if missing "$work/$lock-wheels.txt" --arch "$arch"; then
            # shellcheck disable=SC2046  # target's words are the options
            download -r "$work/todo.txt" --only-binary :all: $(target "$arch")
        fi
    done
    # Only these two as sdists: `--no-binary :all:` would also build the metadata step's
    # own build requirements (Cython) from source.
    if missing "$work/$lock-sdists.txt"; then
        download -r "$work/todo.txt" --no-binary "$no_binary"
    fi
    cp "lock/$lock.txt" "$out/$lock.txt"
done
finish=(--arch "${arch_list[@]}")
[ -z "$wheel" ] || finish+=(--ragfleet-wheel "$wheel")
"$py" scripts/wheelhouse.py finish "$out" "${finish[@]}"
