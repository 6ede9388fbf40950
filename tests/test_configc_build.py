"""``configc build`` end to end: golden trees, determinism, modes, units, and the commands.

Golden trees live in tests/golden/<name>/; after an intended change to the output,
regenerate them with ``UPDATE_GOLDEN=1 pytest tests/test_configc_build.py`` and review the
diff like code.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from confdirs import REPO, shipped_conf, write
from ruamel.yaml import YAML
from systemd_checks import security_exposure, verify_units

from configc.cli import main

GOLDEN = Path(__file__).parent / "golden"
VARIABLES = (
    "RAGFLOW_HOST",
    "MYSQL_DBNAME",
    "MYSQL_USER",
    "MYSQL_PASSWORD",
    "ELASTIC_PASSWORD",
    "REDIS_PASSWORD",
    "REDIS_EXECUTOR_PASSWORD",
    "REDIS_OPERATOR_PASSWORD",
    "LIGHTEN",
)
yaml_load = YAML(typ="safe", pure=True).load
TOPOLOGIES = {
    "shipped": (),
    # With fixed certificates (tests/data/tls): configc's own CA would differ on every run.
    "five-hosts": ("conf/examples/five-hosts.yaml", "tests/data/tls/five-hosts-tls.yaml"),
}
# The golden trees' passwords: the one configc generates for the single host (fixed here in
# conf/.secrets.yaml), and the fleet's (refused unless set: they are read from variables).
GENERATED = "redis.password: golden-generated-redis-password\n"
FLEET_PASSWORDS = {
    "REDIS_PASSWORD": "golden-redis-password-0123456789",
    "MYSQL_PASSWORD": "golden-mysql-password-0123456789",
    "ELASTIC_PASSWORD": "golden-elastic-password-01234567",
    "REDIS_EXECUTOR_PASSWORD": "golden-redis-executor-password-0",
    "REDIS_OPERATOR_PASSWORD": "golden-redis-operator-password-0",
}


@pytest.fixture(autouse=True)
def _conf_copy_cwd_and_clean_env(monkeypatch, tmp_path):
    """Builds run beside a copy of the shipped conf/ (configc keeps its generated passwords
    there; not the checkout's, nor its CA, which a vault-mode build may have encrypted) with
    none of the conf's variables set, as in CI."""
    shutil.copytree(
        REPO / "conf",
        tmp_path / "repo" / "conf",
        ignore=shutil.ignore_patterns(".secrets.yaml", "tls"),
    )
    write(tmp_path / "repo" / "conf" / ".secrets.yaml", GENERATED).chmod(0o600)
    (tmp_path / "repo" / "tests").symlink_to(REPO / "tests")  # the fixed TLS material
    monkeypatch.chdir(tmp_path / "repo")
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)


def configc(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def build(out: Path, *overlays: str, conf: str = "conf") -> None:
    flags = [arg for overlay in overlays for arg in ("--overlay", overlay)]
    result = configc("build", conf, "-o", str(out), *flags, env=FLEET_PASSWORDS if flags else None)
    assert result.exit_code == 0, result.output


def tree(root: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(root)): (p.read_bytes(), stat.S_IMODE(p.stat().st_mode))
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("name", TOPOLOGIES)
def test_golden_tree(tmp_path, name):
    build(tmp_path / "out", *TOPOLOGIES[name])
    got = tree(tmp_path / "out")
    if os.environ.get("UPDATE_GOLDEN"):
        shutil.rmtree(GOLDEN / name, ignore_errors=True)
        shutil.copytree(tmp_path / "out", GOLDEN / name)
    want = tree(GOLDEN / name)
    assert sorted(got) == sorted(want)
    for path, (content, _mode) in want.items():
        assert got[path][0].decode() == content.decode(), path
    # git does not keep modes below 0644/0755, so modes are checked against the manifest.
    manifest = json.loads(got["manifest.json"][0])
    assert {f["path"]: int(f["mode"], 8) for f in manifest["files"]} == {
        p: mode for p, (_, mode) in got.items() if p != "manifest.json"
    }


def test_build_is_deterministic(tmp_path):
    build(tmp_path / "a", *TOPOLOGIES["five-hosts"])
    build(tmp_path / "b", *TOPOLOGIES["five-hosts"])
    assert tree(tmp_path / "a") == tree(tmp_path / "b")


def test_secrets_only_in_0600_files(tmp_path):
    env = {
        "REDIS_PASSWORD": "s3cret-redis-0123456789",
        "MYSQL_PASSWORD": "s3cret-mysql-0123456789",
        "ELASTIC_PASSWORD": "s3cret-es-0123456789",
        "REDIS_EXECUTOR_PASSWORD": "s3cret-redis-executor-0123456789",
        "REDIS_OPERATOR_PASSWORD": "s3cret-redis-operator-0123456789",
    }
    overlays = [arg for o in TOPOLOGIES["five-hosts"] for arg in ("--overlay", o)]
    result = configc("build", "conf", "-o", str(tmp_path / "out"), *overlays, env=env)
    assert result.exit_code == 0
    holders = {
        path: mode
        for path, (content, mode) in tree(tmp_path / "out").items()
        if any(secret.encode() in content for secret in env.values())
    }
    assert holders, "the secrets must reach the hosts that need them"
    assert all(mode == 0o600 for mode in holders.values()), holders
    assert "hosts/exec1/etc/ragfleet/ragfleet.yaml" in holders
    assert "host_vars/redis.yml" in holders
    assert not any(secret in result.output for secret in env.values())


def test_rebuild_rewrites_only_changes_and_removes_stale_files(tmp_path):
    out = tmp_path / "out"
    build(out, *TOPOLOGIES["five-hosts"])
    (out / "unrelated.txt").write_text("mine")
    result = configc("build", "conf", "-o", str(out))
    assert "removed" in result.output
    assert not (out / "hosts" / "exec1" / "etc" / "ragfleet" / "ragfleet.yaml").exists()
    assert (out / "unrelated.txt").read_text() == "mine"  # never touches what it did not write
    result = configc("build", "conf", "-o", str(out))
    assert "0 written" in result.output and "0 removed" in result.output


def test_inventory_carries_what_the_units_assume_from_conf(tmp_path):
    """The roles create the user and directories the compiled units name: a user, install
    dir or state dir changed in conf/ must reach both (the e2e test deploys such a conf)."""
    local = """
        executor:
          user: rfexec
          install_dir: /opt/rfleet
          state_dir: /srv/rfleet
    """
    build(tmp_path / "out", conf=str(shipped_conf(tmp_path, local)))
    out = tmp_path / "out"
    fleet = yaml_load((out / "inventory.yml").read_text())["all"]["vars"]
    assert fleet == {
        "ragfleet_user": "rfexec",
        "ragfleet_install_dir": "/opt/rfleet",
        "ragfleet_state_dir": "/srv/rfleet",
        "ragfleet_vault": False,
    }
    unit = (out / "hosts/localhost/etc/systemd/system/ragfleet-executor@.service").read_text()
    assert "User=rfexec\nGroup=rfexec\n" in unit
    assert "ExecStart=/opt/rfleet/venv/bin/ragfleet run " in unit
    assert "ReadWritePaths=/srv/rfleet\n" in unit


def test_compiled_units_pass_systemd_analyze(tmp_path):
    build(tmp_path / "out", *TOPOLOGIES["five-hosts"])
    units = tmp_path / "out" / "hosts" / "exec2" / "etc" / "systemd" / "system"
    service = units / "ragfleet-executor@.service"
    verify_units([service, units / "ragfleet-executor.target"], ["/opt/ragfleet/venv/bin/ragfleet"])
    assert security_exposure(service) <= 1.5
    text = service.read_text()
    assert "TimeoutStopSec=90\n" in text and "WatchdogSec=90\n" in text  # drain 60 s + 30 s
    target = (units / "ragfleet-executor.target").read_text()
    assert (
        "Wants=ragfleet-executor@1.service ragfleet-executor@2.service "
        "ragfleet-executor@3.service\n" in target
    )


def _runtime(out: Path, host: str) -> dict:
    return yaml_load((out / f"hosts/{host}/etc/ragfleet/ragfleet.yaml").read_text())


def test_metrics_listen_on_loopback_alone_and_on_the_hosts_address_in_a_fleet(tmp_path):
    """executor.metrics_bind auto: nothing off the host reaches a single host's metrics; in
    a fleet each host listens on its own address (Prometheus scrapes it), never 0.0.0.0."""
    build(tmp_path / "single")
    assert _runtime(tmp_path / "single", "localhost")["executor"]["metrics_bind"] == "127.0.0.1"
    build(tmp_path / "fleet", *TOPOLOGIES["five-hosts"])
    for host, address in (("exec1", "10.213.0.21"), ("exec2", "10.213.0.22")):
        assert _runtime(tmp_path / "fleet", host)["executor"]["metrics_bind"] == address
    # A given address is kept (five-hosts.yaml's monitoring host must reach it: not loopback).
    local = "executor:\n  metrics_bind: '0.0.0.0'\n"
    build(
        tmp_path / "given", "conf/examples/five-hosts.yaml", conf=str(shipped_conf(tmp_path, local))
    )
    assert _runtime(tmp_path / "given", "exec1")["executor"]["metrics_bind"] == "0.0.0.0"


@pytest.mark.parametrize(
    ("local", "limits"),
    [
        ("", ("2G", "1638M")),
        ("executor:\n  memory_max: 3G\n", ("3G", "2457M")),
        ("executor:\n  memory_max: 1536M\n  memory_high: 1G\n", ("1536M", "1G")),
        ("executor:\n  memory_max: infinity\n", ("infinity", "infinity")),
    ],
)
def test_the_unit_gets_the_memory_limits_of_the_conf(tmp_path, local, limits):
    build(tmp_path / "out", conf=str(shipped_conf(tmp_path, local)))
    units = tmp_path / "out/hosts/localhost/etc/systemd/system"
    service = units / "ragfleet-executor@.service"
    verify_units([service, units / "ragfleet-executor.target"], ["/opt/ragfleet/venv/bin/ragfleet"])
    text = service.read_text()
    assert f"\nMemoryHigh={limits[1]}\nMemoryMax={limits[0]}\n" in text
    assert "memory_max" not in _runtime(tmp_path / "out", "localhost")["executor"]


def test_upstream_docker_style_conf_validates_unchanged_with_a_local_override(tmp_path):
    """A user's upstream service_conf.yaml, ${VAR:-default}s and all, plus a local override."""
    conf = tmp_path / "conf"
    shutil.copy(
        Path(__file__).parent / "data" / "upstream_service_conf.yaml",
        write(conf / "service_conf.yaml", "").parent / "service_conf.yaml",
    )
    write(conf / "local.service_conf.yaml", "redis:\n  host: 'localhost:6379'\n")
    env = {
        "ES_APIKEY": "",
        "OAUTH2_CLIENT_ID": "id",
        "OAUTH2_CLIENT_SECRET": "secret",
        "OAUTH2_AUTHORIZATION_URL": "",
        "OAUTH2_TOKEN_URL": "",
        "OAUTH2_USERINFO_URL": "",
        "OAUTH2_REDIRECT_URI": "",
    }
    result = configc("check", str(conf), env=env)
    assert result.exit_code == 0, result.output
    result = configc("explain", str(conf), "redis", env=env)
    assert (
        "redis.host = localhost:6379  (" + str(conf / "local.service_conf.yaml") + ":2:3)"
        in result.output
    )
    assert "redis.db = 1  (" + str(conf / "service_conf.yaml") in result.output
    assert "redis.password = ********" in result.output
    result = configc("explain", str(conf), "models.chat_model.model", env=env)
    assert (
        result.output == "models.chat_model.model = qwen-plus@Tongyi-Qianwen  "
        "(resolved by upstream's default-model rules)\n"
    )


def test_check_exit_codes_and_messages(tmp_path):
    conf = shipped_conf(tmp_path, "redis:\n  db: x\n  pasword: p\n")
    result = configc("check", str(conf))
    assert result.exit_code == 2
    local = conf / "local.service_conf.yaml"
    assert result.output.splitlines() == [
        f"error: {local}:2:3: redis.db: must be of integer type",
        f"error: {local}:3:3: redis.pasword: unknown field",
        "configc: 2 problems found",
    ]
    assert configc("check", "conf").exit_code == 0


def test_diff_reports_changes_and_exit_codes(tmp_path):
    out = tmp_path / "out"
    result = configc("diff", "conf", str(out))
    assert result.exit_code == 1 and "+ inventory.yml (new, mode 0644)" in result.output
    build(out)
    result = configc("diff", "conf", str(out))
    assert result.exit_code == 0 and "up to date" in result.output
    conf = shipped_conf(tmp_path, "executor:\n  instances: 3\nredis:\n  password: hunter2\n")
    result = configc("diff", str(conf), str(out))
    assert result.exit_code == 1
    assert (
        "+Wants=ragfleet-executor@1.service ragfleet-executor@2.service "
        "ragfleet-executor@3.service" in result.output
    )
    assert (
        "~ hosts/localhost/etc/ragfleet/ragfleet.yaml: content changes (secret file: "
        "not shown)" in result.output
    )
    assert "hunter2" not in result.output
    assert (
        not (out / "hosts/localhost/etc/systemd/system/ragfleet-executor.target")
        .read_text()
        .count("@3")
    )  # diff wrote nothing


def test_explain_masks_secrets_and_names_defaults(tmp_path):
    conf = shipped_conf(tmp_path, "redis:\n  password: hunter2\n")
    result = configc("explain", str(conf), "redis.password")
    assert result.output == f"redis.password = ********  ({conf}/local.service_conf.yaml:2:3)\n"
    result = configc("explain", str(conf), "hosts[0].ssh_user")
    assert result.output == "hosts[0].ssh_user = root  (default)\n"
    result = configc("explain", str(conf), "executor.nope")
    assert result.exit_code == 2 and "executor.nope is not set" in result.output


def test_init_writes_a_commented_local_file_that_changes_nothing(tmp_path):
    conf = shipped_conf(tmp_path)
    build(tmp_path / "before", conf=str(conf))
    result = configc("init", str(conf))
    assert result.exit_code == 0
    text = (conf / "local.service_conf.yaml").read_text()
    assert text.startswith("# local.service_conf.yaml: this site's settings")
    assert "instances: 2  # executor processes per host" in text
    # Only the manifest changes (it lists the new input file); every compiled file is the same.
    result = configc("diff", str(conf), str(tmp_path / "before"))
    assert result.output == "~ manifest.json: input or output digests change\n"
    (conf / "local.service_conf.yaml").write_text("executor:\n  instances: 4\n")
    result = configc("init", str(conf))
    assert result.exit_code == 0 and "left unchanged" in result.output
    assert "instances: 4" in (conf / "local.service_conf.yaml").read_text()


def test_installed_entry_point_and_help():
    configc_bin = Path(os.environ.get("VIRTUAL_ENV", REPO / ".venv")) / "bin" / "configc"
    if not configc_bin.exists():
        configc_bin = Path(shutil.which("configc") or "configc")
    for command in ([], ["build"], ["check"], ["diff"], ["explain"], ["init"]):
        result = subprocess.run([configc_bin, *command, "--help"], capture_output=True, text=True)
        assert result.returncode == 0 and "Usage: configc" in result.stdout
    result = subprocess.run([configc_bin, "build", "conf"], capture_output=True, text=True)
    assert result.returncode == 2 and "Missing option '-o'" in result.stderr
