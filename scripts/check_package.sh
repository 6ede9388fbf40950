#!/usr/bin/env bash
# Build ragfleet's sdist and wheel as a release would, check them, and prove the wheel works
# without this checkout: installed with its dependencies into a fresh venv, run from an
# empty directory, with nothing of the checkout on the path.
#
#   scripts/check_package.sh [DIST_DIR]     (default: dist/; tests/test_package.py runs it)
#
# `python -m build` builds the sdist, then the wheel from the unpacked sdist: a file the
# sdist lacks fails here too. Needs the dev extra (build, twine) in .venv, and PyPI (or
# pip's cache) for the build backend and the dependencies. Exit 0 only if every step passed.
set -euo pipefail
cd "$(dirname "$0")/.."
checkout=$PWD
dist=$(realpath -m "${1:-dist}")
py=${PYTHON:-$checkout/.venv/bin/python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

log() { printf 'check_package: %s\n' "$*" >&2; }
fail() { log "FAIL: $*"; exit 1; }

# Build from a fresh clone with the checkout's uncommitted changes applied, never in the
# checkout itself: a stale ragfleet.egg-info/SOURCES.txt there (the editable install's) puts
# files in the sdist that package-data no longer names, and hides the mistake. Untracked
# files are left out, as from a release.
git clone -q --no-hardlinks "$checkout" "$work/src"
git -C "$checkout" diff --binary HEAD | git -C "$work/src" apply --allow-empty
rm -rf "$dist" && mkdir -p "$dist"
log "building the sdist and the wheel into $dist"
"$py" -m build --outdir "$dist" "$work/src" >"$work/build.log" 2>&1 \
    || { cat "$work/build.log" >&2; fail "python -m build"; }
"$py" -m twine check --strict "$dist"/* || fail "twine check"

wheel=$(ls "$dist"/ragfleet-*.whl)
expected=$("$py" -c 'from executor.version import build_info; print(build_info().commit)')
# What the wheel says it was built from: the checkout's HEAD, carried through the sdist.
built=$("$py" - "$wheel" <<'EOF'
import sys, zipfile
text = zipfile.ZipFile(sys.argv[1]).read("executor/_build_info.py").decode()
print(text.split('COMMIT = "')[1].split('"')[0])
EOF
)
[ "$built" = "$expected" ] || fail "the wheel says commit $built, the checkout is at $expected"

log "installing $(basename "$wheel") into a fresh venv"
"$py" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --disable-pip-version-check "$wheel" \
    >"$work/pip.log" 2>&1 || { cat "$work/pip.log" >&2; fail "pip install of the wheel"; }

# From an empty directory, in an empty environment (no PYTHONPATH, none of the conf's
# ${VARS}): only the installed package can answer.
mkdir "$work/run" && cd "$work/run"
run() { env -i PATH=/usr/bin:/bin HOME="$work" LANG=C.UTF-8 "$@"; }
where=$(run "$work/venv/bin/python" -c 'import configc, executor; print(executor.__file__, configc.__file__)')
case "$where" in *"$checkout"*) fail "imported from the checkout: $where" ;; esac
version=$(run "$work/venv/bin/ragfleet" --version)
[ "$version" = "ragfleet $("$py" -c 'import executor; print(executor.__version__)') (commit $expected)" ] \
    || fail "ragfleet --version said: $version"
[ "$(run "$work/venv/bin/configc" --version)" = "configc ${version#ragfleet }" ] || fail "configc --version"
run "$work/venv/bin/ragfleet" --help >/dev/null || fail "ragfleet --help"
run "$work/venv/bin/python" -c 'from executor.ingest.ragtokens import LEXNAMES; assert LEXNAMES.is_file(), LEXNAMES' \
    || fail "the package lacks executor/ingest/wordnet_lexnames"

# A conf dir made here (the shipped defaults), compiled by the installed configc alone.
mkdir conf && cp "$checkout/conf/service_conf.yaml" conf/
# The golden tree's generated password (tests/test_configc_build.py fixes it the same way).
(umask 077 && printf 'redis.password: golden-generated-redis-password\n' >conf/.secrets.yaml)
run "$work/venv/bin/configc" check conf >/dev/null || fail "configc check"
run "$work/venv/bin/configc" build conf -o out -q || fail "configc build"
# the same tree the checkout's configc builds (tests/test_configc_build.py's golden tree)
diff -r "$checkout/tests/golden/shipped" out >&2 || fail "configc build's tree differs from tests/golden/shipped"
log "ok: $(basename "$wheel") and $(basename "$dist"/ragfleet-*.tar.gz) ($version)"
