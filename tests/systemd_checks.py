"""Check compiled systemd units with the machine's systemd-analyze (systemd 252, Debian 12).

Helpers for tests, not tests themselves. Neither helper needs systemd as PID 1: both work
offline on a throwaway root directory built by ``unit_root``:

* ``DIR/etc/systemd/system/`` holds the units under test;
* ``DIR/usr/lib/systemd/system/`` is a copy of this machine's vendor units. Without it, verify
  fails with "Unit sysinit.target not found", because every service gets default dependencies
  on sysinit.target, basic.target and shutdown.target, and ``--root`` looks for them only
  inside the root;
* a stub executable at each given ExecStart path, because verify checks each command inside
  the root and otherwise warns "Command ... is not executable". Only the listed paths are
  stubbed, so a typo in a unit's ExecStart path still fails.

Any output from verify counts as a failure: systemd 252 only warns about bad values (for
example ``Restart=on-falure``) and unknown keys, and still exits 0.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

SYSTEMD_ANALYZE = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
VENDOR_UNIT_DIR = Path("/usr/lib/systemd/system")
TIMEOUT_S = 120

_EXPOSURE_RE = re.compile(r"Overall exposure level for (\S+): (\d+(?:\.\d+)?)")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # Plain, unpaged, uncoloured output; C.UTF-8 keeps messages in English.
    env.update(
        SYSTEMD_COLORS="0",
        SYSTEMD_LOG_COLOR="0",
        SYSTEMD_PAGER="",
        PAGER="cat",
        LC_ALL="C.UTF-8",
    )
    return env


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SYSTEMD_ANALYZE, *args],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=TIMEOUT_S,
        check=False,
    )


def _describe(proc: subprocess.CompletedProcess[str]) -> str:
    return (
        f"$ {' '.join(proc.args)}\n"
        f"exit status {proc.returncode}\n"
        f"--- stdout ---\n{proc.stdout}"
        f"--- stderr ---\n{proc.stderr}"
    )


@contextmanager
def unit_root(unit_paths: Sequence[Path], exec_paths: Sequence[str] = ()) -> Iterator[Path]:
    """A temporary root with ``unit_paths`` installed and ``exec_paths`` stubbed; yields it."""
    with tempfile.TemporaryDirectory(prefix="ragfleet-units-") as tmp:
        root = Path(tmp)
        unit_dir = root / "etc/systemd/system"
        unit_dir.mkdir(parents=True)
        if not VENDOR_UNIT_DIR.is_dir():
            raise AssertionError(f"{VENDOR_UNIT_DIR} missing: is the systemd package installed?")
        # symlinks=True keeps aliases and /dev/null masks as they are on the host.
        shutil.copytree(VENDOR_UNIT_DIR, root / "usr/lib/systemd/system", symlinks=True)
        for unit in unit_paths:
            target = unit_dir / Path(unit).name
            if target.exists():
                raise AssertionError(f"two units named {target.name}")
            shutil.copyfile(unit, target)
        for exe in exec_paths:
            if not exe.startswith("/"):
                raise AssertionError(f"exec path must be absolute: {exe!r}")
            stub = root / exe.lstrip("/")
            stub.parent.mkdir(parents=True, exist_ok=True)
            stub.write_text("#!/bin/sh\nexit 0\n")
            stub.chmod(0o755)
        yield root


def verify_units(unit_paths: list[Path], exec_paths: list[str]) -> None:
    """Run ``systemd-analyze verify`` on the units; raise AssertionError on any output.

    Template units (``name@.service``) are verified as systemd instantiates them itself
    (instance ``i``); units they pull in (e.g. a target's ``Wants=name@1.service``) are
    loaded from the same root and their warnings count too.
    """
    if not unit_paths:
        raise AssertionError("no units to verify")
    with unit_root(unit_paths, exec_paths) as root:
        installed = [str(root / "etc/systemd/system" / Path(u).name) for u in unit_paths]
        proc = _run(["verify", "--man=no", f"--root={root}", *installed])
    if proc.returncode != 0 or proc.stdout.strip() or proc.stderr.strip():
        raise AssertionError("systemd-analyze verify reported problems:\n" + _describe(proc))


def security_exposure(unit_path: Path, instance: str = "1") -> float:
    """Overall exposure level from ``systemd-analyze security --offline=true``.

    A template unit is analysed as instance ``instance`` (``name@1.service``). Any stderr
    output (e.g. a value systemd could not parse) raises AssertionError.
    """
    unit_path = Path(unit_path)
    name = unit_path.name
    if "@." in name:
        prefix, suffix = name.split("@.", 1)
        name = f"{prefix}@{instance}.{suffix}"
    with unit_root([unit_path]) as root:
        proc = _run(["security", "--offline=true", "--no-pager", f"--root={root}", name])
    if proc.returncode != 0 or proc.stderr.strip():
        raise AssertionError("systemd-analyze security failed:\n" + _describe(proc))
    found = _EXPOSURE_RE.findall(proc.stdout)
    if len(found) != 1 or found[0][0] != name:
        raise AssertionError("no single overall exposure line:\n" + _describe(proc))
    return float(found[0][1])


def unit_directives(text: str) -> dict[str, dict[str, list[str]]]:
    """Parse unit text into {section: {key: [values in order]}}; keys may repeat.

    Minimal: comments, blank lines and sections; no line continuations (our templates use
    none, and a stray one shows up as a malformed line).
    """
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        if current is None or "=" not in line or line.endswith("\\"):
            raise AssertionError(f"line {n}: cannot parse {raw!r}")
        key, value = line.split("=", 1)
        current.setdefault(key.strip(), []).append(value.strip())
    return sections
