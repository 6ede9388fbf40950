"""The e2e's deployment: five systemd-nspawn Debian 12 hosts converged by deploy/site.yml.

`deploy()` boots redis, db, es, exec1 and exec2 (testbed.py), compiles conf/ with
conf/examples/five-hosts.yaml and tests/e2e/topology.yaml in vault mode (configc
--vault-password-file: no secret in plaintext on the control machine; ansible-playbook gets
the same file), runs site.yml three times (a plan in check mode, converge, idempotent
re-run) and the document store stand-in's playbook. conftest.py makes it the session
fixture `deployment`, shared by every e2e module; the helpers below read the fleet.

Needs root, systemd-nspawn, debootstrap and apt-cacher-ng (scripts/setup.sh installs them);
without them every e2e test fails with the reason (none is skipped).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from executors import wait_for
from playbook import (
    BIN,
    REPO,
    PlaybookRun,
    ansible_environment,
    ansible_playbook,
    configc_build,
    snapshot_source,
)
from ruamel.yaml import YAML
from testbed import (
    CACHE_DIR,
    TIMINGS_FILE,
    HostSpec,
    Testbed,
    TestbedUnavailable,
    log,
    require_environment,
)

Testbed.__test__ = False  # type: ignore[attr-defined]  # not a test class
TestbedUnavailable.__test__ = False  # type: ignore[attr-defined]

OVERLAYS = (REPO / "conf/examples/five-hosts.yaml", Path(__file__).with_name("topology.yaml"))
SITE = REPO / "deploy" / "site.yml"
STANDIN = Path(__file__).with_name("docstore-standin.yml")
STANDIN_WHEELHOUSE = CACHE_DIR / "standin-wheels"
# The executors' locked wheelhouse, kept between runs: a rebuild downloads only what it lacks.
WHEELHOUSE = CACHE_DIR / "wheelhouse-e2e"
USER = "rfexec"  # executor.user in topology.yaml, like install_dir and state_dir below
RAGFLEET = "/opt/rfleet/venv/bin/ragfleet"
PIP = "/opt/rfleet/venv/bin/pip"
PYTHON = "/opt/rfleet/venv/bin/python"  # the executors' venv: redis-py and PyMySQL
STATE_DIR = "/srv/rfleet"
INSTALL_DIR = "/opt/rfleet"
LOCKS = ("build.txt", "runtime.txt", "nodeps.txt")
REAL_RUN = ("--skip-tags", "elasticsearch")


@dataclass
class Deployment:
    """The converged testbed and what it took to get there."""

    testbed: Testbed
    out: Path
    env: dict[str, str]
    secrets: dict[str, str]
    inventory: dict[str, Any]
    source: Path
    vault_file: Path
    runs: dict[str, PlaybookRun] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def playbook(self, name: str, playbook: Path, *extra: str) -> PlaybookRun:
        """Run a playbook against the compiled inventory and keep its result under *name*."""
        log(f"ansible-playbook {playbook.name} {' '.join(extra)} ({name})")
        result = ansible_playbook(
            playbook,
            self.out / "inventory.yml",
            self.env,
            (
                *("-e", f"executor_source_dir={self.source}"),
                *("-e", f"executor_wheelhouse_dir={WHEELHOUSE}"),
                *("--vault-password-file", str(self.vault_file)),
                *extra,
            ),
            log_file=self.out.parent / f"{name}.log",
        )
        self.runs[name] = result
        self.timings[name] = result.seconds
        log(f"{name}: exit {result.returncode} in {result.seconds:.1f} s")
        return result

    def record(self, name: str, seconds: float) -> None:
        """Keep a measured delay under *name* in this run's timings file (printed at the end
        of the run, so a passing run keeps its numbers: docs/deploy.md quotes them)."""
        self.timings[name] = round(seconds, 1)
        TIMINGS_FILE.write_text(json.dumps(self.timings, indent=2))

    def instances(self) -> dict[str, int]:
        """Executor hosts and their instance counts, per the compiled inventory."""
        hosts = self.inventory["all"]["hosts"]
        return {name: hosts[name]["ragfleet_instances"] for name in self.group("executor")}

    def group(self, name: str) -> list[str]:
        return list(self.inventory["all"]["children"][name]["hosts"])

    def ssh(self, host: str, command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.testbed.ssh(host, command, check=check)

    def ragfleet_json(self, host: str, args: str) -> Any:
        """``ragfleet ARGS --json`` on *host*, parsed (status exits 1 while one is stale)."""
        result = self.ssh(host, f"{RAGFLEET} {args} --json", check=False)
        if result.returncode not in (0, 1):
            raise RuntimeError(f"ragfleet {args} on {host}: {result.returncode} {result.stderr}")
        return json.loads(result.stdout)


def host_specs(inventory: dict[str, Any]) -> list[HostSpec]:
    """The hosts of the compiled inventory."""
    return [HostSpec(name, h["ansible_host"]) for name, h in inventory["all"]["hosts"].items()]


def standin_wheelhouse() -> Path:
    """osmem-server's wheel, downloaded once from PyPI into the cache."""
    if not any(STANDIN_WHEELHOUSE.glob("osmem_server-*.whl")):
        STANDIN_WHEELHOUSE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [BIN / "pip", "download", "--no-deps", "-q", "-d", STANDIN_WHEELHOUSE, "osmem-server"],
            check=True,
        )
    return STANDIN_WHEELHOUSE


def deploy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """Boot the testbed, plan (check mode), converge it with site.yml, run it again; torn
    down at the end (conftest.py's session fixture `deployment`)."""
    try:
        require_environment()
    except TestbedUnavailable as exc:
        pytest.fail(f"e2e deployment test cannot run: {exc}", pytrace=False)
    started = time.monotonic()
    work = tmp_path_factory.mktemp("e2e")
    # Long random passwords (configc refuses short or known ones for a fleet), and the vault
    # password configc encrypts them with and ansible-playbook decrypts them with.
    passwords = {
        "REDIS_PASSWORD": secrets.token_hex(12),
        "REDIS_EXECUTOR_PASSWORD": secrets.token_hex(12),
        "REDIS_OPERATOR_PASSWORD": secrets.token_hex(12),
        "REDIS_SENTINEL_PASSWORD": secrets.token_hex(12),
        "MYSQL_PASSWORD": secrets.token_hex(12),
        "ELASTIC_PASSWORD": secrets.token_hex(12),
    }
    vault_file = work / "vault-password"
    vault_file.write_text(secrets.token_urlsafe(24) + "\n")
    vault_file.chmod(0o600)
    out = work / "out"
    configc_build(OVERLAYS, out, passwords, vault_file)
    inventory = YAML(typ="safe").load((out / "inventory.yml").read_text())
    wheels = standin_wheelhouse()
    with Testbed(host_specs(inventory)) as testbed:
        deployment = Deployment(
            testbed,
            out,
            ansible_environment(testbed.key, work),
            passwords,
            inventory,
            snapshot_source(work / "source"),
            vault_file,
        )
        deployment.timings.update(testbed.timings)
        deployment.playbook("plan", SITE, "--check", "--diff", *REAL_RUN)
        deployment.playbook("converge", SITE, *REAL_RUN)
        if deployment.runs["converge"].returncode == 0:
            deployment.playbook("standin", STANDIN, "-e", f"standin_wheelhouse={wheels}")
            deployment.playbook("rerun", SITE, *REAL_RUN)
        deployment.timings["setup_total"] = time.monotonic() - started
        try:
            yield deployment
        finally:
            TIMINGS_FILE.write_text(json.dumps(deployment.timings, indent=2))


def converged(deployment: Deployment) -> Deployment:
    """The deployment, failing the test at once if the converge did not succeed."""
    run = deployment.runs["converge"]
    if run.returncode != 0 or run.total("failed") or run.total("unreachable"):
        pytest.fail(f"the converge failed: {run.describe()}", pytrace=False)
    return deployment


def task_row(deployment: Deployment, task_id: str) -> dict[str, Any] | None:
    rows = deployment.ragfleet_json("exec1", "tasks --limit 200")
    return next((row for row in rows if row["id"] == task_id), None)


def wait_running(deployment: Deployment, task_id: str) -> None:
    """Wait (up to a minute) until an executor has begun the task."""
    wait_for(
        lambda: (row := task_row(deployment, task_id)) and row["state"] == "running",
        60,
        f"task {task_id} to run",
        interval=1,
    )


def submit_sleep(deployment: Deployment, seconds: int, steps: int = 1) -> str:
    """Submit one sleep task from the control machine (the CLI runs on exec1) and return its id.
    It reports progress after each of its *steps*."""
    payload = json.dumps({"seconds": seconds, "steps": steps})
    result = deployment.ssh("exec1", f"{RAGFLEET} submit -t sleep -p '{payload}'")
    return result.stdout.strip()


def unit_property(deployment: Deployment, host: str, unit: str, prop: str) -> str:
    return deployment.ssh(host, f"systemctl show --property={prop} --value {unit}").stdout.strip()


def main_pids(deployment: Deployment, host: str, instances: int) -> list[str]:
    units = " ".join(f"ragfleet-executor@{n}" for n in range(1, instances + 1))
    result = deployment.ssh(host, f"systemctl show --property=MainPID --value {units}")
    return result.stdout.split()
