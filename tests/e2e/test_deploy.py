"""deploy/site.yml for real on five systemd-nspawn Debian 12 hosts over SSH.

The session fixture `deployment` (conftest.py, deployment.py) boots and converges the
fleet; the tests here check it. They run in file order: the last ones kill and stop
executors (tests/e2e/test_fleet_monitoring.py, which runs after, starts them again).

Elasticsearch cannot be installed here: the es host runs osmem-server (an in-memory
Elasticsearch API emulator from PyPI) as a stand-in, the real runs skip the elasticsearch
tag, and the elasticsearch role runs in check mode against the es host.
"""

from __future__ import annotations

import json
import re
import shlex
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from deployment import (
    INSTALL_DIR,
    LOCKS,
    OVERLAYS,
    PIP,
    PYTHON,
    RAGFLEET,
    REAL_RUN,
    SITE,
    STATE_DIR,
    USER,
    Deployment,
    converged,
    main_pids,
    submit_sleep,
    task_row,
    unit_property,
    wait_running,
)
from executors import wait_for
from playbook import REPO, configc_build
from testbed import BRIDGE_ADDRESS, CACHE_DIR

from configc.vault import Vault
from executor import __version__

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]

# -- the deployment -------------------------------------------------------------------------


def test_converge_succeeds(deployment: Deployment) -> None:
    run = converged(deployment).runs["converge"]
    assert set(run.recap) == {spec.name for spec in deployment.testbed.specs}
    assert run.total("changed") > 0


def test_check_mode_plans_a_bare_fleet(deployment: Deployment) -> None:
    """``--check --diff`` on the bare hosts (before the converge) runs through: the plan."""
    run = deployment.runs["plan"]
    assert run.returncode == 0, run.describe()
    assert run.total("failed") == 0 and run.total("changed") > 0


def test_second_run_changes_nothing(deployment: Deployment) -> None:
    run = converged(deployment).runs["rerun"]
    assert run.returncode == 0, run.describe()
    assert run.total("changed") == 0, f"changed on the second run: {run.changed_tasks()}"


def test_check_mode_plans_nothing_on_a_converged_fleet(deployment: Deployment) -> None:
    run = converged(deployment).playbook("check", SITE, "--check", "--diff", *REAL_RUN)
    assert run.returncode == 0, run.describe()
    assert run.total("changed") == 0, f"check mode would change: {run.changed_tasks()}"


# A task of each phase of the redis and executor roles: the phase's own run lists it, and a
# run of another phase does not.
PHASE_TASKS = {
    "install": (
        "TASK [redis : Install Debian's redis-server]",
        "TASK [executor : Install ragfleet and its dependencies]",
    ),
    "configure": (
        "TASK [redis : Install the compiled ragfleet fragment (holds requirepass)]",
        "TASK [executor : Install the compiled units]",
    ),
    "run": (
        "TASK [redis : Enable and start redis-server (Debian's hardened unit)]",
        "TASK [executor : Enable and start ragfleet-executor.target (instances 1..N)]",
    ),
}


@pytest.mark.parametrize("phase", PHASE_TASKS)
def test_a_phase_run_on_the_converged_fleet_changes_nothing(
    deployment: Deployment, phase: str
) -> None:
    """``--tags install|configure|run`` runs every role's preflight and that phase alone (a
    configure or run phase ends with the health waits), on every host, and changes nothing."""
    run = converged(deployment).playbook(f"phase_{phase}", SITE, "--tags", phase, *REAL_RUN)
    assert run.returncode == 0, run.describe()
    assert set(run.recap) == {spec.name for spec in deployment.testbed.specs}
    assert run.total("changed") == 0, f"--tags {phase} changed: {run.changed_tasks()}"
    assert "TASK [executor : Check the instance count and the compiled tree]" in run.output
    for other, tasks in PHASE_TASKS.items():
        for task in tasks:
            assert (task in run.output) == (other == phase), (task, run.describe())
    waits = "TASK [executor : Wait until every instance heartbeats alive]" in run.output
    assert waits == (phase != "install")


def test_elasticsearch_role_in_check_mode(deployment: Deployment) -> None:
    """The role cannot install Elasticsearch here: its plan must run cleanly on the es host.

    Elastic's servers are unreachable from the hosts (get_url and deb822_repository fetch the
    key even in check mode), so this plans with the local-mirror variables: a mirror URL and a
    key file on the host. Check mode contacts neither.
    """
    run = converged(deployment).playbook(
        "elasticsearch_check",
        SITE,
        "--check",
        "--diff",
        "--tags",
        "elasticsearch",
        "-e",
        f"elasticsearch_repo_url=http://{BRIDGE_ADDRESS}/elastic-mirror/8.x/apt",
        "-e",
        "elasticsearch_repo_key=/usr/share/keyrings/debian-archive-keyring.gpg",
    )
    assert run.returncode == 0, run.describe()
    assert "TASK [elasticsearch : Add Elastic's apt repository]" in run.output
    assert run.recap["es"]["failed"] == 0
    assert run.recap["es"]["changed"] >= 1, "a fresh node should plan the repository"


def test_secrets_never_logged(deployment: Deployment) -> None:
    for name, run in converged(deployment).runs.items():
        for variable, password in deployment.secrets.items():
            assert password not in run.output, f"{variable} appears in the {name} output"


def test_no_secret_in_plaintext_on_the_control_machine(deployment: Deployment) -> None:
    """Vault mode: every file configc wrote is free of the
    passwords; the host_vars are ansible-vault files; the hosts got them all the same (the
    converge's health checks log in with each, and test_redis_requires_the_password)."""
    converged(deployment)
    assert deployment.inventory["all"]["vars"]["ragfleet_vault"] is True
    for path in sorted(deployment.out.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            for variable, password in deployment.secrets.items():
                assert password.encode() not in data, f"{variable} in {path}"
            assert b"PRIVATE KEY" not in data, f"a TLS key in plaintext in {path}"
    host_vars = sorted((deployment.out / "host_vars").glob("*.yml"))
    assert host_vars and all(p.read_bytes().startswith(b"$ANSIBLE_VAULT;") for p in host_vars)


def test_private_keys_never_logged(deployment: Deployment) -> None:
    """The TLS keys the roles copy (no_log) appear in no Ansible output, even with --diff.
    Vault mode: they are ansible-vault files in out/, searched for decrypted."""
    keys = sorted(deployment.out.glob("hosts/*/etc/**/*.key"))
    assert keys, "configc compiled no TLS key: is TLS on in the e2e topology?"
    vault = Vault.from_file(deployment.vault_file)
    for key in keys:
        assert key.read_bytes().startswith(b"$ANSIBLE_VAULT;"), key
        pem = vault.decrypt(key.read_bytes())
        body = "".join(line for line in pem.splitlines() if "-----" not in line)
        for name, run in converged(deployment).runs.items():
            assert body[:40] not in run.output.replace("\n", ""), f"{key.name} in the {name} output"


def frozen_pins(text: str) -> dict[str, str]:
    """``pip freeze`` (or a lock file's ``name==version`` lines) as {normalized name: version}."""
    pins = re.findall(r"^([A-Za-z0-9._-]+)==(\S+)", text, re.M)
    return {re.sub(r"[-_.]+", "-", name).lower(): version for name, version in pins}


def test_executor_venvs_hold_exactly_the_locked_wheelhouse(deployment: Deployment) -> None:
    """Each executor host installed from the locked wheelhouse (pip --no-index
    --require-hashes): its venv holds the pins of lock/*.txt and ragfleet, nothing else but
    the venv's own pip; the shipped wheelhouse still matches its SHA256SUMS there."""
    converged(deployment)
    expected = frozen_pins("".join((REPO / "lock" / f).read_text() for f in LOCKS))
    expected["ragfleet"] = __version__
    for host in deployment.instances():
        frozen = frozen_pins(deployment.ssh(host, f"{PIP} freeze --all").stdout)
        assert frozen.pop("pip", None), f"{host}: no pip in the venv"
        assert frozen == expected, (
            f"{host}: missing {sorted(expected.items() - frozen.items())}, "
            f"extra {sorted(frozen.items() - expected.items())}"
        )
        deployment.ssh(
            host, f"cd {INSTALL_DIR}/wheelhouse && sha256sum --check --strict --quiet SHA256SUMS"
        )


def test_compiled_files_have_the_manifest_modes(deployment: Deployment) -> None:
    """Modes and owners of the compiled files and directories, and the executor account."""
    converged(deployment)
    stat = "stat -c '%a %U %G'"
    for host in deployment.instances():
        assert deployment.ssh(host, f"{stat} /etc/ragfleet").stdout.split() == ["750", "root", USER]
        config = deployment.ssh(host, f"{stat} /etc/ragfleet/ragfleet.yaml").stdout.split()
        assert config == ["600", USER, USER]
        assert deployment.ssh(host, f"{stat} {STATE_DIR}").stdout.split() == ["750", USER, USER]
        assert deployment.ssh(host, f"getent passwd {USER}").stdout.endswith(
            f":{STATE_DIR}:/usr/sbin/nologin\n"
        )
    redis_host = deployment.group("redis")[0]
    fragment = deployment.ssh(redis_host, f"{stat} /etc/redis/ragfleet.conf").stdout.split()
    assert fragment == ["600", "redis", "redis"]
    # The executors' account and directories exist only where executors run.
    for host in {spec.name for spec in deployment.testbed.specs} - set(deployment.instances()):
        absent = deployment.ssh(
            host, f"getent passwd {USER}; ls -d /etc/ragfleet {STATE_DIR}", check=False
        )
        assert absent.stdout == "" and absent.returncode != 0, f"{host}: {absent.stdout}"


REDIS_TLS = "--tls --cacert /etc/redis/tls/ca.crt"  # Redis speaks TLS only between hosts


def test_redis_requires_the_password(deployment: Deployment) -> None:
    converged(deployment)
    redis_host = deployment.group("redis")[0]
    address = deployment.inventory["all"]["hosts"][redis_host]["ansible_host"]
    cli = f"redis-cli {REDIS_TLS} -h {address}"
    anonymous = deployment.ssh(redis_host, f"{cli} ping", check=False)
    assert "NOAUTH" in anonymous.stdout + anonymous.stderr
    settings = deployment.ssh(
        redis_host,
        f"REDISCLI_AUTH={deployment.secrets['REDIS_PASSWORD']} {cli} --no-auth-warning "
        "config get appendfsync",
    ).stdout.split()
    assert settings == ["appendfsync", "everysec"]


# Run on an executor host with its venv's Python, as root: the executors' own logins (from
# /etc/ragfleet/ragfleet.yaml), once without TLS and once as the executors connect.
TRANSPORT_PROBE = """
import json, pymysql, redis
from ruamel.yaml import YAML

from configc.vault import Vault
config = YAML(typ="safe").load(open("/etc/ragfleet/ragfleet.yaml"))
r, db = config["redis"], config["database"]
out = {}
def attempt(name, connect):
    try:
        out[name] = ["ok", connect()]
    except Exception as exc:
        out[name] = ["refused", f"{type(exc).__name__}: {exc}"]
login = dict(host=r["host"], port=r["port"], username=r["username"], password=r["password"])
attempt("redis_plain", lambda: redis.Redis(**login, socket_timeout=5).ping())
attempt("redis_tls", lambda: redis.Redis(**login, ssl=True, ssl_ca_certs=r["ca_cert"],
        ssl_cert_reqs="required", ssl_check_hostname=True).ping())
attempt("redis_config", lambda: redis.Redis(**login, ssl=True, ssl_ca_certs=r["ca_cert"],
        ssl_check_hostname=True).config_get("maxmemory"))
sql = dict(host=db["host"], port=db["port"], user=db["user"], password=db["password"],
           database=db["name"], connect_timeout=5)
def cipher(**tls):
    with pymysql.connect(**sql, **tls) as conn, conn.cursor() as cur:
        cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        return cur.fetchone()[1]
attempt("mysql_plain", lambda: cipher(ssl_disabled=True))
attempt("mysql_tls", lambda: cipher(ssl={"ca": db["ssl_ca"], "check_hostname": True,
        "verify_mode": True}))
print(json.dumps(out))
"""


def transport_probe(deployment: Deployment, host: str) -> dict[str, list[Any]]:
    result = deployment.ssh(host, f"{PYTHON} -c {shlex.quote(TRANSPORT_PROBE)}")
    return json.loads(result.stdout)


def test_plaintext_from_an_executor_host_is_refused(deployment: Deployment) -> None:
    """Redis (TLS only: port 0) and MariaDB (require_secure_transport) refuse an executor
    host's plaintext connection with its own valid login; over TLS, verifying configc's
    certificates, the same login works. The executors -> document store link stays plain
    here: the stand-in (osmem-server) cannot speak TLS (the elasticsearch role's TLS
    settings run in check mode only)."""
    converged(deployment)
    for host in deployment.group("executor"):
        probe = transport_probe(deployment, host)
        assert probe["redis_plain"][0] == "refused", (host, probe)
        assert probe["redis_tls"] == ["ok", True], (host, probe)
        assert probe["mysql_plain"][0] == "refused", (host, probe)
        assert "Access denied" in probe["mysql_plain"][1] or "insecure" in probe["mysql_plain"][1]
        assert probe["mysql_tls"][0] == "ok" and probe["mysql_tls"][1], (host, probe)
        # Least privilege: the executors' ACL user may not run CONFIG (nor FLUSHALL, ...).
        assert probe["redis_config"][0] == "refused", (host, probe)
        assert "NOPERM" in probe["redis_config"][1] or "permission" in probe["redis_config"][1]


def test_the_fleet_works_over_tls_as_its_acl_users(deployment: Deployment) -> None:
    """Every executor instance is connected to Redis as the executors' ACL user (over TLS:
    Redis has no plaintext port), MariaDB admits TLS only, and the operator CLI's login
    is root's alone on the executor hosts."""
    converged(deployment)
    redis_host = deployment.group("redis")[0]
    address = deployment.inventory["all"]["hosts"][redis_host]["ansible_host"]
    clients = deployment.ssh(
        redis_host,
        f"REDISCLI_AUTH={deployment.secrets['REDIS_PASSWORD']} redis-cli {REDIS_TLS} "
        f"-h {address} --no-auth-warning client list",
    ).stdout.splitlines()
    executor_addresses = {
        deployment.inventory["all"]["hosts"][h]["ansible_host"] for h in deployment.instances()
    }
    users = {
        dict(f.split("=", 1) for f in line.split() if "=" in f)["user"]
        for line in clients
        if line.split("addr=")[1].split(":")[0] in executor_addresses
    }
    assert users == {"ragfleet-executor"}, clients
    port = deployment.ssh(redis_host, "grep -E '^(port|tls-port) ' /etc/redis/ragfleet.conf")
    assert port.stdout.split("\n")[0].strip() == "port 0", port.stdout
    db_host = deployment.group("mysql")[0]
    required = deployment.ssh(db_host, 'mariadb -N -e "SELECT @@require_secure_transport"')
    assert required.stdout.strip() == "1"
    for host in deployment.group("executor"):
        modes = deployment.ssh(
            host, "stat -c '%a %U' /etc/ragfleet/operator.yaml /etc/ragfleet/ca.crt"
        ).stdout.split("\n")
        assert modes[:2] == ["600 root", "644 root"], (host, modes)
        unreadable = deployment.ssh(
            host, f"runuser -u {USER} -- cat /etc/ragfleet/operator.yaml", check=False
        )
        assert unreadable.returncode != 0, f"{host}: {USER} can read the operator's login"
    # The operator CLI (as root: operator.yaml) reads the fleet.
    rows = deployment.ragfleet_json(deployment.group("executor")[0], "status")["executors"]
    assert any(row["state"] == "alive" for row in rows), rows


def test_mariadb_accounts_are_least_privilege(deployment: Deployment) -> None:
    converged(deployment)
    db_host = deployment.group("mysql")[0]
    accounts = deployment.ssh(db_host, "mariadb -N -e 'SELECT user, host FROM mysql.user'")
    rows = {tuple(line.split("\t")) for line in accounts.stdout.splitlines()}
    executor_addresses = {
        deployment.inventory["all"]["hosts"][h]["ansible_host"] for h in deployment.instances()
    }
    assert {host for user, host in rows if user == "ragfleet"} == executor_addresses
    assert {host for user, host in rows if user == "root"} <= {"localhost", "127.0.0.1", "::1"}
    assert not [row for row in rows if row[0] == ""], "anonymous accounts remain"
    grants = deployment.ssh(
        db_host, f"mariadb -N -e \"SHOW GRANTS FOR 'ragfleet'@'{min(executor_addresses)}'\""
    )
    assert "ALL PRIVILEGES" not in grants.stdout and "`rag_flow`.*" in grants.stdout


# -- the running fleet ----------------------------------------------------------------------


def test_every_instance_active_on_every_executor_host(deployment: Deployment) -> None:
    for host, count in converged(deployment).instances().items():
        for n in range(1, count + 1):
            state = deployment.ssh(host, f"systemctl is-active ragfleet-executor@{n}", check=False)
            assert state.stdout.strip() == "active", f"{host} ragfleet-executor@{n}: {state.stdout}"


def test_the_oom_killer_takes_an_executor_before_redis_or_mariadb(deployment: Deployment) -> None:
    """The running processes' own oom_score_adj, as the kernel reads it."""
    converged(deployment)
    unit = "ragfleet-executor@1"
    pid = unit_property(deployment, "exec1", unit, "MainPID")
    score = deployment.ssh("exec1", f"cat /proc/{pid}/oom_score_adj").stdout.strip()
    assert score == "500"
    for group, service in (("redis", "redis-server"), ("mysql", "mariadb")):
        host = deployment.group(group)[0]
        pid = unit_property(deployment, host, service, "MainPID")
        score = deployment.ssh(host, f"cat /proc/{pid}/oom_score_adj").stdout.strip()
        assert int(score) < 500, f"{service} on {host}: {score}"


def test_status_lists_every_instance_alive(deployment: Deployment) -> None:
    expected = {
        f"task_executor_{host}_{n}"
        for host, count in converged(deployment).instances().items()
        for n in range(1, count + 1)
    }
    for host in deployment.instances():
        rows = deployment.ragfleet_json(host, "status")["executors"]
        alive = {row["name"] for row in rows if row["state"] == "alive"}
        assert alive == expected, f"ragfleet status on {host}: {rows}"


def test_document_store_stand_in_reachable_from_executors(deployment: Deployment) -> None:
    """The es host serves the ES API (osmem-server standing in for Elasticsearch)."""
    es_host = deployment.group("elasticsearch")[0]
    url = deployment.inventory["all"]["hosts"][es_host]["ansible_host"]
    probe = (
        "python3 -c 'import json, urllib.request; "
        f'print(json.load(urllib.request.urlopen("http://{url}:9200/_cluster/health"))["status"])\''
    )
    for host in converged(deployment).instances():
        assert deployment.ssh(host, probe).stdout.strip() in ("green", "yellow")


def check_documents_searchable(deployment: Deployment) -> None:
    """A document submitted from the control machine (the CLI runs on exec1 over SSH) is
    parsed and chunked by the executors, indexed in the document store on the es host (the
    osmem-server stand-in for Elasticsearch) and found by ``ragfleet search``.
    """
    text = "The e2e lighthouse of Zanzibar guides ragfleet deployments home."
    deployment.ssh("exec1", f"printf '%s\\n' '{text}' > /root/e2e-lighthouse.txt")
    submit = deployment.ssh(
        "exec1", f"{RAGFLEET} submit /root/e2e-lighthouse.txt --kb e2e --wait -q", check=False
    )
    if submit.returncode != 0:
        tasks = deployment.ragfleet_json("exec1", "tasks --limit 3")
        (CACHE_DIR / "last-documents-failure.txt").write_text(f"{submit.stderr}\n{tasks}\n")
        pytest.fail(f"the document's task failed: {submit.stderr} {tasks}", pytrace=False)
    hits = deployment.ragfleet_json("exec1", "search Zanzibar --kb e2e")
    assert hits, "no hit for a word of the submitted document"
    assert "Zanzibar" in hits[0]["content"], hits


def test_documents_indexed_and_searchable(deployment: Deployment) -> None:
    check_documents_searchable(converged(deployment))


# -- failures and shutdown (these change the fleet: keep them last) ------------------------


def test_a_config_change_restarts_the_instances_and_the_deploy_waits_for_them(
    deployment: Deployment,
) -> None:
    """Rebuild with another log level and run the executor role's configure phase alone
    (``--tags executor_configure``: no wheelhouse, no venv): the restart handler restarts every
    instance, and the run ends only when each has heartbeated with its new PID. (The fleet
    stays at DEBUG for the tests after this one.)"""
    converged(deployment)
    before = {host: main_pids(deployment, host, n) for host, n in deployment.instances().items()}
    overlay = deployment.out.parent / "debug.yaml"
    overlay.write_text("executor:\n  log_level: DEBUG\n")
    configc_build((*OVERLAYS, overlay), deployment.out, deployment.secrets, deployment.vault_file)
    run = deployment.playbook("reconfigure", SITE, "--tags", "executor_configure", *REAL_RUN)
    assert run.returncode == 0 and not run.total("failed"), run.describe()
    assert "into the wheelhouse]" not in run.output, "a configure run built the wheelhouse"
    assert "RUNNING HANDLER [executor : Restart ragfleet executors]" in run.output
    for host, n in deployment.instances().items():
        after = main_pids(deployment, host, n)
        assert "0" not in after and not set(after) & set(before[host]), (host, before, after)
    assert not any(password in run.output for password in deployment.secrets.values())


BROKEN_INSTANCES = {
    # exits at once: no main process (or, if a check catches its short life, no heartbeat)
    "exits": (
        "ExecStart=\\nExecStart=/bin/false",
        ("ragfleet-executor@2.service on exec1: no main process", "task_executor_exec1_2 with PID"),
    ),
    # runs, but is no executor: a main process and no heartbeat from it
    "silent": (
        "Type=simple\\nExecStart=\\nExecStart=/bin/sleep infinity",
        ("task_executor_exec1_2 with PID",),
    ),
}


@contextmanager
def exec1_instance_2_with(deployment: Deployment, service: str) -> Iterator[str]:
    """exec1's instance 2 restarted with a runtime drop-in of *service* (``[Service]`` lines,
    as printf writes them); yields the unit. Afterwards the drop-in is gone and the
    instance runs again."""
    unit = "ragfleet-executor@2"
    dropin = f"/run/systemd/system/{unit}.service.d"
    deployment.ssh(
        "exec1",
        f"mkdir -p {dropin} && printf '[Service]\\n{service}\\n' > {dropin}/test.conf && "
        f"systemctl daemon-reload && systemctl restart {unit}",
        check=False,  # a broken instance fails its restart: that is the point
    )
    try:
        yield unit
    finally:
        deployment.ssh(
            "exec1",
            f"rm -rf {dropin} && systemctl daemon-reload && "
            f"(systemctl reset-failed {unit} || true) && systemctl restart {unit}",
        )
    wait_for(
        lambda: unit_property(deployment, "exec1", unit, "ActiveState") == "active",
        60,
        "exec1's instance 2 to run again",
        interval=1,
    )


@pytest.mark.parametrize("breakage", BROKEN_INSTANCES)
def test_an_instance_that_does_not_come_up_fails_the_deploy_by_name(
    deployment: Deployment, breakage: str
) -> None:
    """A runtime drop-in breaks exec1's instance 2: the executor plays must fail on exec1 with
    a message that names that instance (and not the healthy one), not with Ansible's retry
    count and the command's output."""
    converged(deployment)
    service, messages = BROKEN_INSTANCES[breakage]
    with exec1_instance_2_with(deployment, service):
        run = deployment.playbook(
            f"broken_instance_{breakage}",
            SITE,
            "--tags",
            "executor_run",  # the preflight and the run phase, which ends with the health wait
            "-e",
            "executor_health_retries=5",
            *REAL_RUN,
        )
        assert run.returncode != 0 and run.recap["exec1"]["failed"] == 1, run.describe()
        assert any(message in run.output for message in messages), run.describe()
        healthy = ("ragfleet-executor@1.service on exec1", "task_executor_exec1_1 with PID")
        assert not any(message in run.output for message in healthy), run.describe()


def test_a_configuration_error_fails_the_instance_without_a_restart_loop(
    deployment: Deployment,
) -> None:
    """Exit 2 is a configuration error (RestartPreventExitStatus=2): systemd leaves the
    instance failed, with ragfleet's one line in the journal, instead of restarting it
    every RestartSec for as long as the config stays wrong."""
    converged(deployment)
    run = f"{RAGFLEET} run --config /etc/ragfleet/missing.yaml --instance %%i"
    with exec1_instance_2_with(deployment, f"ExecStart=\\nExecStart={run}") as unit:
        time.sleep(5)  # two RestartSec=2s periods
        assert unit_property(deployment, "exec1", unit, "ActiveState") == "failed"
        assert unit_property(deployment, "exec1", unit, "NRestarts") == "0"
        journal = deployment.ssh("exec1", f"journalctl -u {unit} -n 20 --no-pager").stdout
        assert "ragfleet: cannot read /etc/ragfleet/missing.yaml" in journal, journal


def test_killed_instance_restarts_and_finishes_its_task(deployment: Deployment) -> None:
    """SIGKILL exec1's instance 1 mid-task: systemd restarts it and the task completes."""
    converged(deployment)
    others = [h for h in deployment.instances() if h != "exec1"]
    for host in others:
        deployment.ssh(host, "systemctl stop ragfleet-executor.target")
    for n in range(2, deployment.instances()["exec1"] + 1):
        deployment.ssh("exec1", f"systemctl stop ragfleet-executor@{n}")
    try:
        task_id = submit_sleep(deployment, 20, steps=10)
        # Killed once it has reported progress: mid-task, with a progress write behind it.
        wait_for(
            lambda: (row := task_row(deployment, task_id)) and 0 < row["progress"] < 1,
            60,
            f"task {task_id} to report progress",
            interval=0.5,
        )
        unit = "ragfleet-executor@1"
        restarts = int(unit_property(deployment, "exec1", unit, "NRestarts"))
        pid = unit_property(deployment, "exec1", unit, "MainPID")
        deployment.ssh("exec1", f"systemctl kill -s KILL {unit}")
        wait_for(
            lambda: (
                int(unit_property(deployment, "exec1", unit, "NRestarts")) > restarts
                and unit_property(deployment, "exec1", unit, "ActiveState") == "active"
                and unit_property(deployment, "exec1", unit, "MainPID") != pid
            ),
            60,
            "systemd to restart the killed instance",
            interval=1,
        )
        row = wait_for(
            lambda: (row := task_row(deployment, task_id)) and row["progress"] >= 1 and row,
            120,
            "the task to complete after the restart",
            interval=1,
        )
        assert row["state"] == "done", row
    finally:
        for host in deployment.instances():
            deployment.ssh(host, "systemctl start ragfleet-executor.target")


def test_stopping_the_target_drains_cleanly(deployment: Deployment) -> None:
    converged(deployment)
    task_id = submit_sleep(deployment, 6)
    wait_running(deployment, task_id)
    # The instances are ordered after the target, so they stop before it: `systemctl stop`
    # of the target returns only once each has drained, and nothing is left to wait for.
    for host, count in deployment.instances().items():
        stop = deployment.ssh(host, "systemctl stop ragfleet-executor.target", check=False)
        assert stop.returncode == 0, f"{host}: {stop.stderr}"
        for n in range(1, count + 1):
            unit = f"ragfleet-executor@{n}"
            state = unit_property(deployment, host, unit, "ActiveState")
            result = unit_property(deployment, host, unit, "Result")
            assert (state, result) == ("inactive", "success"), f"{host} {unit}: {state} {result}"
        target = deployment.ssh(host, "systemctl is-active ragfleet-executor.target", check=False)
        assert target.stdout.strip() == "inactive"
    row = task_row(deployment, task_id)
    assert row is not None and row["state"] == "done", f"the running task was not drained: {row}"
