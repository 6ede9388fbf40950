"""The locked wheelhouse the executor role ships (scripts/build_wheelhouse.sh, wheelhouse.py).

Built for real for x86_64 from lock/*.txt, once per machine: into the e2e cache
(``RAGFLEET_E2E_CACHE``, default /var/cache/ragfleet-e2e, as tests/e2e/testbed.py), where a
later build finds every pinned file present and downloads nothing. Then checked as its
consumers would: ``sha256sum -c``, the SBOM by cyclonedx-python-lib's own JSON schema
validator and parser, an install into a fresh venv of Debian's python3 with
``pip --no-index --require-hashes`` (datrie compiled there) that runs both CLIs, and a
tampered wheel refused by pip and by the executor role's wheelhouse play.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from executor import __version__

REPO = Path(__file__).resolve().parents[1]
CACHE_DIR = Path(os.environ.get("RAGFLEET_E2E_CACHE", "/var/cache/ragfleet-e2e"))
WHEELHOUSE = CACHE_DIR / "wheelhouse-x86_64"
BIN = Path(sys.executable).parent
DEBIAN_PYTHON = "/usr/bin/python3"  # Debian 12's 3.11.2, as on the hosts
# A host's install, in the executor role's order (scripts/build_wheelhouse.sh documents it).
INSTALL_STEPS = (
    ("build.txt", ()),
    ("runtime.txt", ("--no-build-isolation",)),
    ("nodeps.txt", ("--no-deps",)),
    ("ragfleet.txt", ("--no-deps",)),
)
SNAPSHOT_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "out", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "tests"
)


def run(argv: list[str | Path], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, check=False, **kwargs
    )


def offline_pip_env() -> dict[str, str]:
    """No pip configuration of this machine (its find-links, constraints, index): as a host."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    return {**env, "PIP_CONFIG_FILE": os.devnull, "PIP_NO_CACHE_DIR": "1"}


def pins(*locks: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    for lock in locks:
        for name, version in re.findall(r"^([A-Za-z0-9._-]+)==(\S+)", lock.read_text(), re.M):
            found[str(canonicalize_name(name))] = version
    return found


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The x86_64 wheelhouse with this checkout's ragfleet wheel (built from a copy of it:
    an in-place build would leave build/ in the checkout)."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    shutil.copytree(REPO, source, ignore=SNAPSHOT_IGNORE, symlinks=True)
    env = {**os.environ, "SOURCE_DATE_EPOCH": "315532800"}
    built = run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", work, source], env=env
    )
    assert built.returncode == 0, built.stderr[-4000:]
    (wheel,) = work.glob("ragfleet-*.whl")
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / "wheelhouse-x86_64.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test run building it at the same time
        done = run(
            [REPO / "scripts/build_wheelhouse.sh", "x86_64", WHEELHOUSE, wheel],
            env={**env, "PYTHON": sys.executable},
            timeout=1200,
        )
        assert done.returncode == 0, done.stderr[-4000:]
        # A private copy (hard links): other runs may rebuild the cached one meanwhile.
        copy = work / "wheelhouse"
        shutil.copytree(WHEELHOUSE, copy, copy_function=os.link)
    return copy


def package_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.name.endswith((".whl", ".tar.gz")))


def test_sha256sums_list_every_file_and_match(wheelhouse: Path) -> None:
    done = run(["sha256sum", "--check", "--strict", "SHA256SUMS"], cwd=wheelhouse)
    assert done.returncode == 0, done.stdout + done.stderr
    listed = {
        line.split("  ", 1)[1] for line in (wheelhouse / "SHA256SUMS").read_text().splitlines()
    }
    assert listed == {p.name for p in wheelhouse.iterdir()} - {"SHA256SUMS"}
    assert {"sbom.cdx.json", "build.txt", "runtime.txt", "nodeps.txt", "ragfleet.txt"} <= listed
    for lock in ("build.txt", "runtime.txt", "nodeps.txt"):  # the checkout's locks, as they are
        assert (wheelhouse / lock).read_text() == (REPO / "lock" / lock).read_text()


def test_the_wheelhouse_holds_the_locked_packages_for_x86_64_only(wheelhouse: Path) -> None:
    names = [p.name for p in package_files(wheelhouse)]
    found = {}
    for name in names:
        stem = name.removesuffix(".tar.gz").removesuffix(".whl")
        project, version = stem.split("-")[:2]
        found[str(canonicalize_name(project))] = version
    locks = [wheelhouse / n for n in ("build.txt", "runtime.txt", "nodeps.txt", "ragfleet.txt")]
    assert found == pins(*locks)
    assert found["ragfleet"] == __version__
    assert not [n for n in names if "aarch64" in n]
    # Only the two projects without a Python 3.11 wheel come as sdists.
    assert sorted(n.split("-")[0] for n in names if n.endswith(".tar.gz")) == [
        "datrie",
        "hanziconv",
    ]
    assert "--hash=sha256:" in (wheelhouse / "ragfleet.txt").read_text()


def test_the_sbom_passes_cyclonedx_and_lists_every_file_with_its_sha256(wheelhouse: Path) -> None:
    from cyclonedx.model import HashAlgorithm
    from cyclonedx.model.bom import Bom
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    text = (wheelhouse / "sbom.cdx.json").read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text, all_errors=True) is None
    bom = Bom.from_json(json.loads(text))  # type: ignore[attr-defined]  # py-serializable
    hashes = {
        str(c.bom_ref): {h.content for h in c.hashes if h.alg == HashAlgorithm.SHA_256}
        for c in bom.components
    }
    files = package_files(wheelhouse)
    assert set(hashes) == {p.name for p in files}
    sums = dict(
        reversed(line.split("  ", 1))
        for line in (wheelhouse / "SHA256SUMS").read_text().splitlines()
    )
    for path in files:
        assert hashes[path.name] == {sums[path.name]}, path.name
    properties = {(p.name, p.value) for p in bom.metadata.properties}
    assert ("ragfleet:wheelhouse:architecture", "x86_64") in properties
    assert bom.metadata.component is not None and bom.metadata.component.version == __version__
    done = run([sys.executable, REPO / "scripts/wheelhouse.py", "verify", wheelhouse])
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def installed(wheelhouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv of Debian's python3 with the wheelhouse installed as a host does it."""
    venv = tmp_path_factory.mktemp("host") / "venv"
    done = run([DEBIAN_PYTHON, "-m", "venv", venv])
    assert done.returncode == 0, done.stderr
    for requirements, options in INSTALL_STEPS:
        argv = [venv / "bin/pip", "install", "-q", "--no-index", "--find-links", wheelhouse]
        argv += ["--require-hashes", *options, "-r", wheelhouse / requirements]
        done = run(argv, env=offline_pip_env(), timeout=900)
        assert done.returncode == 0, f"{requirements}: {done.stdout[-3000:]}{done.stderr[-3000:]}"
    return venv


@pytest.mark.timeout(1800)
def test_installs_offline_with_every_hash_checked_and_runs(
    installed: Path, wheelhouse: Path, tmp_path: Path
) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    version = run([installed / "bin/ragfleet", "--version"], env=env, cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith(f"ragfleet {__version__}")
    helped = run([installed / "bin/configc", "--help"], env=env, cwd=tmp_path)
    assert helped.returncode == 0 and "build" in helped.stdout, helped.stderr
    # RAGFlow's tokenizer (datrie compiled from its sdist here, infinity-sdk's dictionary)
    code = "from executor.ingest.ragtokens import query_tokens; print(query_tokens('hello 世界'))"
    loaded = run([installed / "bin/python", "-c", code], env=env, cwd=tmp_path)
    assert loaded.returncode == 0 and "hello" in loaded.stdout, loaded.stderr[-3000:]
    # Exactly the lock's pins, and ragfleet: nothing missing, nothing extra (pip: the venv's).
    frozen = run([installed / "bin/pip", "freeze", "--all"], env=offline_pip_env()).stdout
    got = pins_of_freeze(frozen)
    got.pop("pip")
    locks = [wheelhouse / n for n in ("build.txt", "runtime.txt", "nodeps.txt", "ragfleet.txt")]
    assert got == pins(*locks)


def pins_of_freeze(text: str) -> dict[str, str]:
    return {
        str(canonicalize_name(name)): version
        for name, version in (line.split("==") for line in text.splitlines() if "==" in line)
    }


def tampered_copy(wheelhouse: Path, directory: Path, victim: str) -> Path:
    """A copy of the wheelhouse (hard links) whose *victim* wheel has one byte more."""
    shutil.copytree(wheelhouse, directory, copy_function=os.link)
    (path,) = directory.glob(f"{victim}-*.whl")
    data = path.read_bytes()
    path.unlink()  # not the cached file's inode
    path.write_bytes(data + b"\0")
    assert zipfile.is_zipfile(path)  # still a wheel to look at; only its hash tells
    return directory


def test_a_tampered_wheel_is_refused_by_pip(wheelhouse: Path, tmp_path: Path) -> None:
    bad = tampered_copy(wheelhouse, tmp_path / "wheelhouse", "six")
    six = [
        b
        for b in re.split(r"\n(?=[a-z])", (bad / "runtime.txt").read_text())
        if b.startswith("six==")
    ]
    (tmp_path / "six.txt").write_text(six[0] + "\n")
    venv = tmp_path / "venv"
    assert run([DEBIAN_PYTHON, "-m", "venv", venv]).returncode == 0
    done = run(
        [
            venv / "bin/pip",
            "install",
            "--no-index",
            "--find-links",
            bad,
            "--require-hashes",
            "--no-deps",
            "-r",
            tmp_path / "six.txt",
        ],
        env=offline_pip_env(),
    )
    assert done.returncode != 0
    assert "THESE PACKAGES DO NOT MATCH THE HASHES" in done.stdout + done.stderr
    assert run([venv / "bin/python", "-c", "import six"]).returncode != 0
    checked = run(["sha256sum", "--check", "--strict", "--quiet", "SHA256SUMS"], cwd=bad)
    assert checked.returncode != 0 and "six-" in checked.stdout
    verified = run([sys.executable, REPO / "scripts/wheelhouse.py", "verify", bad])
    assert verified.returncode == 1 and "six-" in verified.stderr


@pytest.mark.timeout(600)
def test_the_role_refuses_to_ship_a_tampered_wheelhouse(wheelhouse: Path, tmp_path: Path) -> None:
    """The wheelhouse play with executor_wheelhouse_build false (an air-gapped site's) checks
    SHA256SUMS on the control machine before anything reaches a host."""
    bad = tampered_copy(wheelhouse, tmp_path / "wheelhouse", "six")
    inventory = REPO / "tests/golden/five-hosts/inventory.yml"
    argv = [BIN / "ansible-playbook", "-i", inventory, "site.yml", "--tags", "executor_wheelhouse"]
    argv += ["-c", "local", "-e", f"ansible_python_interpreter={DEBIAN_PYTHON}"]
    argv += ["-e", "executor_wheelhouse_build=false", "-e", f"executor_wheelhouse_dir={bad}"]
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_CALLBACK_RESULT_FORMAT": "json"}
    done = run(argv, cwd=REPO / "deploy", env=env, timeout=500)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output[-4000:]
    assert "does not match its SHA256SUMS" in output and "six-" in output, output[-4000:]
    assert not (tmp_path / "wheelhouse.tar").exists()  # nothing packed to ship


def test_a_rebuild_would_download_nothing(wheelhouse: Path) -> None:
    """Every pinned file is in the cached wheelhouse: `missing` finds nothing to fetch."""
    for lock in ("build.txt", "runtime.txt", "nodeps.txt"):
        done = run(
            [
                sys.executable,
                REPO / "scripts/wheelhouse.py",
                "missing",
                wheelhouse / lock,
                wheelhouse,
                "--arch",
                "x86_64",
            ]
        )
        assert done.returncode == 0 and done.stdout == "", (lock, done.stdout[:2000])
