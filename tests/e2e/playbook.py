"""Run configc and ansible-playbook from the test's virtualenv, and read the PLAY RECAP."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
RECAP_LINE = re.compile(r"^(?P<host>\S+)\s+:\s+(?P<counts>(?:\w+=\d+\s*)+)$")


@dataclass(frozen=True)
class PlaybookRun:
    """One ansible-playbook run: exit code, output, seconds, and the recap per host."""

    returncode: int
    output: str
    seconds: float
    recap: dict[str, dict[str, int]]

    def total(self, counter: str) -> int:
        """The sum of one recap counter (ok, changed, failed, ...) over every host."""
        return sum(counts.get(counter, 0) for counts in self.recap.values())

    def describe(self) -> str:
        """The tail of the output, for assertion messages."""
        return f"ansible-playbook exited {self.returncode}:\n{self.output[-6000:]}"

    def changed_tasks(self) -> list[str]:
        """Headers of the tasks that reported a change (for an idempotence failure)."""
        changed, task = [], ""
        for line in self.output.splitlines():
            if line.startswith(("TASK [", "RUNNING HANDLER [")):
                task = line.rstrip(" *")
            elif line.startswith("changed:") and task:
                changed.append(f"{task} {line.split(']')[0]}]")
        return changed


def parse_recap(output: str) -> dict[str, dict[str, int]]:
    """The PLAY RECAP: {host: {"ok": n, "changed": n, ...}}."""
    recap: dict[str, dict[str, int]] = {}
    lines = output.splitlines()
    try:
        start = max(i for i, line in enumerate(lines) if line.startswith("PLAY RECAP"))
    except ValueError:
        return recap
    for line in lines[start + 1 :]:
        match = RECAP_LINE.match(line.strip())
        if match:
            counts = dict(item.split("=") for item in match["counts"].split())
            recap[match["host"]] = {key: int(value) for key, value in counts.items()}
    return recap


SNAPSHOT_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "out", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "tests"
)


def snapshot_source(destination: Path) -> Path:
    """A copy of the checkout to build the wheelhouse from.

    The working tree may change while the test runs (other work in progress); every playbook
    run then builds the same wheels, as it would from one release.
    """
    shutil.copytree(REPO, destination, ignore=SNAPSHOT_IGNORE, symlinks=True)
    return destination


def configc_build(
    overlays: Sequence[Path], out: Path, env: dict[str, str], vault_file: Path | None = None
) -> None:
    """Compile a copy of conf/ with the overlays into *out* (in vault mode with *vault_file*).

    The copy, beside *out* and made once (a rebuild keeps its CA), keeps this run's
    throwaway vault password away from the checkout's conf/tls: the keys configc makes there
    are encrypted with it, and the next run, or a build without it, could not read them."""
    conf = out.parent / "conf"
    if not conf.exists():
        shutil.copytree(REPO / "conf", conf, ignore=shutil.ignore_patterns(".secrets.yaml", "tls"))
    argv = [str(BIN / "configc"), "build", str(conf), "-o", str(out)]
    for overlay in overlays:
        argv += ["--overlay", str(overlay)]
    if vault_file is not None:
        argv += ["--vault-password-file", str(vault_file)]
    result = subprocess.run(
        argv, capture_output=True, text=True, env={**os.environ, **env}, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"configc build failed ({result.returncode}):\n{result.stderr}")


def ansible_environment(key: Path, workdir: Path) -> dict[str, str]:
    """Environment of ansible-playbook: deploy/ansible.cfg, the throwaway key, no host keys."""
    return {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "deploy" / "ansible.cfg"),
        "ANSIBLE_PRIVATE_KEY_FILE": str(key),
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_SSH_ARGS": (
            "-o ControlMaster=auto -o ControlPersist=60s -o StrictHostKeyChecking=no "
            "-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
        ),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(workdir / "cp"),
        "ANSIBLE_HOME": str(workdir / "ansible-home"),
        "ANSIBLE_LOCAL_TEMP": str(workdir / "ansible-tmp"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def ansible_playbook(
    playbook: Path,
    inventory: Path,
    env: dict[str, str],
    extra: Sequence[str] = (),
    log_file: Path | None = None,
    timeout: float = 900,
) -> PlaybookRun:
    """Run a playbook against the inventory; a failed run does not raise (see returncode),
    only one over the 15-minute timeout does."""
    argv = [str(BIN / "ansible-playbook"), "-i", str(inventory), str(playbook), *extra]
    started = time.monotonic()
    result = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=timeout,
        check=False,
    )
    seconds = time.monotonic() - started
    output = result.stdout + result.stderr
    if log_file is not None:
        log_file.write_text(output)
    return PlaybookRun(result.returncode, output, seconds, parse_recap(result.stdout))
