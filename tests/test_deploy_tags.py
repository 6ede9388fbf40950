"""deploy/site.yml's phase tags and the roles' preflight checks, without a host.

The preflight checks run here for real, on the control machine (``-c local``, every
inventory host is this machine): they only read the compiled tree and variables, and the
platform check reads this machine's facts (a Debian 12 machine, like the hosts). The e2e test
(tests/e2e) runs the tagged phases against real hosts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
GOLDEN = REPO / "tests/golden/five-hosts"
PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
ROLES = ("common", "redis", "mysql", "elasticsearch", "executor", "monitoring")
PHASES = ("install", "configure", "run")
PASSWORDS = (
    "REDIS_PASSWORD",
    "MYSQL_PASSWORD",
    "ELASTIC_PASSWORD",
    "REDIS_EXECUTOR_PASSWORD",
    "REDIS_OPERATOR_PASSWORD",
)


def playbook(inventory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    if not PLAYBOOK.exists():
        pytest.fail(f"{PLAYBOOK} is missing: run scripts/setup.sh (deploy extra)", pytrace=False)
    argv = [str(PLAYBOOK), "-i", str(inventory), "site.yml", *args]
    # JSON results keep each message on one line.
    env = {**os.environ, "ANSIBLE_CALLBACK_RESULT_FORMAT": "json", "ANSIBLE_NOCOLOR": "1"}
    return subprocess.run(
        argv, cwd=DEPLOY, env=env, capture_output=True, text=True, check=False, timeout=300
    )


def listed_tasks(*args: str) -> dict[str, list[str]]:
    """``--list-tasks``: the task names per role (``role : task``), in play order."""
    result = playbook(GOLDEN / "inventory.yml", "--list-tasks", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    tasks: dict[str, list[str]] = {role: [] for role in ROLES}
    for line in result.stdout.splitlines():
        role, sep, rest = line.strip().partition(" : ")
        if sep and role in tasks and not rest.startswith("Validating arguments"):
            tasks[role].append(rest.split("\tTAGS:")[0].strip())
    return tasks


def test_every_role_has_a_preflight_and_a_readme() -> None:
    for role in ROLES:
        assert (DEPLOY / "roles" / role / "tasks/preflight.yml").is_file(), role
        readme = (DEPLOY / "roles" / role / "README.md").read_text()
        for phase in ("preflight", *PHASES):
            if role != "common" or phase in ("preflight", "install"):
                assert f"`{role}_{phase}`" in readme, f"{role}'s README lacks {role}_{phase}"


@pytest.mark.parametrize("phase", PHASES)
def test_a_phase_tag_selects_that_phase_and_the_preflight_checks(phase: str) -> None:
    """Each phase tag runs every role's preflight and only its own phase's changes."""
    everything = listed_tasks()
    selected = listed_tasks("--tags", phase)
    marker = {  # a task of each phase, per role
        "install": {
            "redis": "Install Debian's redis-server",
            "mysql": "Install Debian's mariadb-server",
            "elasticsearch": "Install elasticsearch from the repository",
            "executor": "Install ragfleet and its dependencies",
            "monitoring": "Install Debian's prometheus and exporters",
        },
        "configure": {
            "redis": "Install the compiled ragfleet fragment (holds requirepass)",
            "mysql": "Create the executor's user, reachable from the executor hosts only",
            "elasticsearch": "Install the compiled elasticsearch.yml",
            "executor": "Install the compiled units",
            "monitoring": "Install the compiled alert rules (checked by promtool first)",
        },
        "run": {
            "redis": "Enable and start redis-server (Debian's hardened unit)",
            "mysql": "Enable and start MariaDB",
            "elasticsearch": "Enable and start elasticsearch",
            "executor": "Enable and start ragfleet-executor.target (instances 1..N)",
            "monitoring": "Enable and start prometheus and the exporters",
        },
    }
    for role in ROLES:
        assert set(selected[role]) <= set(everything[role]), role
        for other, tasks in marker.items():
            if role in tasks:
                assert (tasks[role] in selected[role]) == (other == phase), (role, other)
    # Every role's preflight runs: the others import common's platform check.
    assert selected["common"].count("Check that the host runs Debian 12") == 6
    # The wheelhouse is built for the install phase only.
    building = "Build ragfleet and its dependencies into the wheelhouse" in selected["executor"]
    assert building == (phase == "install")


def preflight(inventory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Only the preflight checks, every host on this machine, without become."""
    python = shutil.which("python3") or sys.executable
    return playbook(
        inventory,
        *("--tags", "preflight", "-c", "local"),
        *("-e", f"ansible_python_interpreter={python}", "-e", "ansible_become=false"),
        *args,
    )


def test_preflight_passes_on_the_golden_tree() -> None:
    result = preflight(GOLDEN / "inventory.yml")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr
    assert "changed=0" in result.stdout and "failed=1" not in result.stdout


def preflight_in_vault_mode(tmp_path: Path, *overlays: Path) -> subprocess.CompletedProcess[str]:
    """configc's five-host tree (with *overlays*) built in vault mode, and every role's
    preflight run on it with the vault password: it must pass, change nothing and print no
    password."""
    from click.testing import CliRunner
    from confdirs import FIVE_HOSTS, shipped_conf

    from configc.cli import main

    vault = tmp_path / "vault"
    vault.write_text("preflight-vault-password\n")
    env = {name: f"{name.lower()}-0123456789" for name in PASSWORDS}
    args = ["build", str(shipped_conf(tmp_path)), "-o", str(tmp_path / "out")]
    for overlay in (FIVE_HOSTS, *overlays):
        args += ["--overlay", str(overlay)]
    result = CliRunner().invoke(main, [*args, "--vault-password-file", str(vault)], env=env)
    assert result.exit_code == 0, result.output
    ran = preflight(tmp_path / "out/inventory.yml", "--vault-password-file", str(vault))
    assert ran.returncode == 0, ran.stdout[-4000:] + ran.stderr
    assert "changed=0" in ran.stdout and "failed=1" not in ran.stdout
    assert not any(value in ran.stdout + ran.stderr for value in env.values())
    return ran


def test_preflight_passes_on_a_vault_mode_tree(tmp_path: Path) -> None:
    """configc's vault mode: encrypted host_vars, templated ragfleet.yaml and Redis fragment;
    every role's preflight reads them with the vault password."""
    preflight_in_vault_mode(tmp_path)


def test_preflight_passes_on_a_sentinel_tree(tmp_path: Path) -> None:
    """Redis under Sentinel (configc/sentinel.py): two Redis servers, three sentinels, one on
    a host with no server; the redis play runs on both groups, each host's checks on what it
    runs (vault mode: the sentinel password comes from the encrypted host_vars)."""
    from confdirs import write

    overlay = write(
        tmp_path / "ha.yaml",
        """
        redis: {sentinel_password: sentinel-password-0123456789}
        hosts:
          - {name: redis, address: 10.213.0.11, roles: [redis, sentinel]}
          - {name: db, address: 10.213.0.12, roles: [mysql, redis, sentinel]}
          - {name: es, address: 10.213.0.13, roles: [elasticsearch, sentinel]}
          - {name: exec1, address: 10.213.0.21, roles: [executor]}
        """,
    )
    result = preflight_in_vault_mode(tmp_path, overlay)
    checked = "Check that configc compiled the sentinel config for this host, and its password"
    play = result.stdout[result.stdout.index("PLAY [Redis") :]
    assert play.count(f"TASK [redis : {checked}]") == 3  # once per host, serial: 1
    assert "sentinel-password-0123456789" not in result.stdout + result.stderr


def replace_in(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))


BREAKAGES = {
    # host: (file of the compiled tree, text in it, its replacement, the message expected)
    "redis": (
        "hosts/redis/etc/redis/ragfleet.conf",
        "port 6379",
        "port 70000",
        "must have one `bind ADDRESS` and one `port N` line with N in 1-65535",
    ),
    "db": (
        "host_vars/db.yml",
        "golden-mysql-password-0123456789",
        "''",
        "and a non-empty ragfleet_mysql_password",
    ),
    "es": (
        "host_vars/es.yml",
        "ragfleet_elasticsearch_password:",
        "elasticsearch_heap: 40g\nragfleet_elasticsearch_password:",
        "elasticsearch_heap (40g) must be a JVM size like 512m or 4g, below 31g",
    ),
    "exec1": (
        "hosts/exec1/etc/systemd/system/ragfleet-executor.target",
        "[Unit]",
        None,  # the file is deleted
        "units ragfleet-executor@.service and ragfleet-executor.target: give this host",
    ),
}


@pytest.mark.parametrize("host", BREAKAGES)
def test_preflight_names_what_is_wrong(tmp_path: Path, host: str) -> None:
    """A compiled tree broken for one host: the host fails its role's preflight with a
    message that says what to fix (and no secret)."""
    out = tmp_path / "out"
    shutil.copytree(GOLDEN, out)
    path, old, new, message = BREAKAGES[host]
    if new is None:
        (out / path).unlink()
    else:
        replace_in(out / path, old, new)
    result = preflight(out / "inventory.yml", "--limit", host)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-4000:]
    assert message in output, output[-4000:]
    recap = output[output.rindex("PLAY RECAP") :]
    assert f"{host} " in recap and "failed=1" in recap and "changed=0" in recap, recap
    assert "golden-" not in output  # the golden tree's passwords


def unmonitored_tree(tmp_path: Path) -> Path:
    """configc's five-host tree without its monitoring host (exec1 an executor only)."""
    from click.testing import CliRunner
    from confdirs import FIVE_HOSTS, shipped_conf, write

    from configc.cli import main

    hosts = (FIVE_HOSTS.read_text().split("\nhosts:\n")[1]).replace(
        "roles: [executor, monitoring]\n", "roles: [executor]\n", 1
    )
    overlay = write(tmp_path / "monitoring.yaml", "hosts:\n" + hosts)
    env = {name: f"{name.lower()}-0123456789" for name in PASSWORDS}
    args = ["build", str(shipped_conf(tmp_path)), "-o", str(tmp_path / "out")]
    args += ["--overlay", str(FIVE_HOSTS), "--overlay", str(overlay)]
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == 0, result.output
    return tmp_path / "out"


def test_monitoring_play_runs_only_with_a_monitoring_host(tmp_path: Path) -> None:
    """Without a monitoring host the play matches no host (the fleet deploys as if it did
    not exist); with one (the golden five-host tree), every host passes its preflight."""
    unmonitored = unmonitored_tree(tmp_path)
    result = preflight(unmonitored / "inventory.yml")
    play = result.stdout[result.stdout.index("PLAY [Monitoring") :]
    assert "skipping: no hosts matched" in play.split("PLAY RECAP")[0], play[:2000]
    out = tmp_path / "golden"
    shutil.copytree(GOLDEN, out)
    # Only the preflight tags: a play tag (`monitoring`) would select every phase, here.
    result = preflight(out / "inventory.yml")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr
    play = result.stdout[result.stdout.index("PLAY [Monitoring") :]
    assert "TASK [monitoring : Check that configc compiled Prometheus's config" in play
    recap = play[play.rindex("PLAY RECAP") :]
    assert all(f"{host} " in recap for host in ("redis", "db", "es", "exec1", "exec2")), recap
    assert "failed=1" not in recap and "changed=1" not in recap
    # The preflight names a missing compiled config.
    (out / "hosts/exec1/etc/prometheus/prometheus.yml").unlink()
    result = preflight(out / "inventory.yml", "--limit", "exec1")
    assert result.returncode != 0
    assert "give exec1 the monitoring role in conf/ and rebuild" in result.stdout + result.stderr
