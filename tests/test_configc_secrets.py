"""Passwords: refused when known or weak off loopback, generated on one loopback host, never
in a file others can read (nor a digest of one), and the vault mode (docs/security.md)."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from ansible.parsing.utils.yaml import from_yaml
from ansible.parsing.vault import VaultLib, VaultSecret
from click.testing import CliRunner
from compiled_checks import redis_answers
from confdirs import FIVE_HOSTS, shipped_conf, write
from ruamel.yaml import YAML

from configc.cli import main

BIN = Path(sys.executable).parent
VARIABLES = (
    "REDIS_PASSWORD",
    "MYSQL_PASSWORD",
    "ELASTIC_PASSWORD",
    "REDIS_EXECUTOR_PASSWORD",
    "REDIS_OPERATOR_PASSWORD",
)
yaml_load = YAML(typ="safe", pure=True).load


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)


def configc(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env, catch_exceptions=False)


def strong() -> dict[str, str]:
    """The five-host fleet's passwords, long and random, with quotes, a backslash and a Jinja
    marker in two (the roles must write them back unchanged)."""
    return {
        "REDIS_PASSWORD": f"{secrets.token_urlsafe(18)}'\"{{{{ x }}}}\\",
        "MYSQL_PASSWORD": f"{secrets.token_urlsafe(18)}'\\",
        "ELASTIC_PASSWORD": secrets.token_urlsafe(18),
        "REDIS_EXECUTOR_PASSWORD": secrets.token_urlsafe(18),
        "REDIS_OPERATOR_PASSWORD": f'{secrets.token_urlsafe(18)}"\\',
    }


def files_under(*roots: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for root in roots for p in sorted(root.rglob("*")) if p.is_file()}


def holders(roots: tuple[Path, ...], values: list[str]) -> list[str]:
    """Files under *roots* holding any of *values* in plaintext."""
    return [
        str(path)
        for path, data in files_under(*roots).items()
        if any(value.encode() in data for value in values)
    ]


# -- refused off loopback ------------------------------------------------------------------


def test_five_hosts_with_no_passwords_set_is_refused_at_each_line(tmp_path):
    conf = shipped_conf(tmp_path)
    result = configc("check", conf, "--overlay", FIVE_HOSTS)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    lines = FIVE_HOSTS.read_text().splitlines()
    for key, variable, service in (
        ("redis.password", "REDIS_PASSWORD", "Redis at 10.213.0.11"),
        ("mysql.password", "MYSQL_PASSWORD", "MariaDB at 10.213.0.12"),
        ("es.password", "ELASTIC_PASSWORD", "Elasticsearch at 10.213.0.13"),
    ):
        line = next(n for n, text in enumerate(lines, 1) if "${" + variable in text)
        (error,) = [e for e in errors if f" {key}: " in e]
        assert error.startswith(f"error: {FIVE_HOSTS}:{line}:3: {key}: {service} is reachable")
        assert "is a placeholder (change-me...)" in error
        assert f"set {variable} (read on this line) or {key} in {conf}/local" in error


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("infini_rag_flow", "is a published default"),
        ("infini_rag_flow_OS_01", "is a published default"),
        ("change-me-please-0123456789", "is a placeholder"),
        ("fifteen-chars-x", "has 15 characters; at least 16 are needed"),
        ("", "is a placeholder"),  # ${MYSQL_PASSWORD:-change-me-mysql}: empty reads the default
    ],
)
def test_weak_passwords_are_refused_off_loopback(tmp_path, password, reason):
    env = {**strong(), "MYSQL_PASSWORD": password}
    result = configc("check", shipped_conf(tmp_path), "--overlay", FIVE_HOSTS, env=env)
    assert result.exit_code == 2, result.output
    (error,) = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert " mysql.password: MariaDB at 10.213.0.12 " in error and reason in error
    if password:
        assert password not in result.output


def test_sixteen_random_characters_are_enough(tmp_path):
    env = {name: secrets.token_hex(8) for name in VARIABLES}
    result = configc("check", shipped_conf(tmp_path), "--overlay", FIVE_HOSTS, env=env)
    assert result.exit_code == 0, result.output


def test_one_host_on_a_network_address_is_off_loopback(tmp_path):
    local = "hosts:\n  - {name: node1, address: 192.0.2.10, roles: [redis, executor]}\n"
    result = configc("check", shipped_conf(tmp_path, local))
    assert result.exit_code == 2
    assert "redis.password: Redis at 192.0.2.10 is reachable off loopback" in result.output
    assert "is empty" in result.output


def test_external_services_weak_passwords_are_refused_but_none_is_their_business(tmp_path):
    # PostgreSQL elsewhere with upstream's default; OpenSearch with no password at all (it
    # may authenticate otherwise: configc does not run it).
    local = """
        redis:
          password: long-enough-redis-pw
          executor_password: long-enough-executor-pw
          operator_password: long-enough-operator-pw
        postgres: {name: rag, user: rag, password: infini_rag_flow, host: 10.0.0.5, port: 5432}
        os: {hosts: 'http://10.0.0.6:9200'}
        executor: {db_type: postgres, doc_engine: opensearch, storage: database}
        hosts:
          - {name: a, address: 10.0.0.1, roles: [redis, executor]}
    """
    result = configc("check", shipped_conf(tmp_path, local))
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "postgres.password: PostgreSQL at 10.0.0.5" in errors[0]


# -- generated on one loopback host ------------------------------------------------------


def test_a_fleet_build_in_vault_mode_leaves_a_plaintext_store_alone(tmp_path):
    """conf/.secrets.yaml of the single-host demo is not the fleet's: a vault-mode fleet
    build neither uses nor encrypts it (scripts/main.sh would then need the vault)."""
    conf = shipped_conf(tmp_path)
    assert configc("build", conf, "-o", tmp_path / "demo").exit_code == 0
    before = (conf / ".secrets.yaml").read_bytes()
    password_file, _ = vault_file(tmp_path)
    args = ("-o", tmp_path / "fleet", "--overlay", FIVE_HOSTS, "--vault-password-file")
    assert configc("build", conf, *args, password_file, env=strong()).exit_code == 0
    assert (conf / ".secrets.yaml").read_bytes() == before


def test_the_single_host_default_gets_a_generated_password_once(tmp_path):
    conf = shipped_conf(tmp_path)
    out = tmp_path / "out"
    assert configc("check", conf).exit_code == 0
    assert not (conf / ".secrets.yaml").exists()  # check writes nothing
    result = configc("build", conf, "-o", out)
    assert result.exit_code == 0, result.output
    store = conf / ".secrets.yaml"
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    password = yaml_load(store.read_text())["redis.password"]
    assert len(password) >= 32 and password not in result.output
    config = yaml_load((out / "hosts/localhost/etc/ragfleet/ragfleet.yaml").read_text())
    assert config["redis"]["password"] == password
    redis_answers(out / "hosts/localhost/etc/redis/ragfleet.conf", password)
    result = configc("build", conf, "-o", out)
    assert "0 written" in result.output  # reused, not generated again
    assert yaml_load(store.read_text())["redis.password"] == password


def test_a_password_chosen_for_a_loopback_host_is_kept(tmp_path):
    conf = shipped_conf(tmp_path, "redis:\n  password: short\n")
    assert configc("build", conf, "-o", tmp_path / "out").exit_code == 0
    assert not (conf / ".secrets.yaml").exists()
    config = yaml_load((tmp_path / "out/hosts/localhost/etc/ragfleet/ragfleet.yaml").read_text())
    assert config["redis"]["password"] == "short"


def test_upstreams_default_is_replaced_on_a_loopback_host_that_runs_mariadb(tmp_path):
    local = """
        executor: {db_type: mysql}
        hosts:
          - {name: localhost, address: 127.0.0.1, roles: [redis, mysql, executor]}
    """
    conf = shipped_conf(tmp_path, local)
    assert configc("build", conf, "-o", tmp_path / "out").exit_code == 0
    generated = yaml_load((conf / ".secrets.yaml").read_text())
    assert set(generated) == {"redis.password", "mysql.password"}
    host_vars = yaml_load((tmp_path / "out/host_vars/localhost.yml").read_text())
    assert host_vars["ragfleet_mysql_password"] == generated["mysql.password"]
    assert "infini_rag_flow" not in str(files_under(tmp_path / "out"))


# -- no secret, nor a digest of one, where others can read -----------------------------------


def test_no_file_others_can_read_holds_a_secret_or_its_digest(tmp_path):
    env = strong()
    conf = shipped_conf(tmp_path, f"mysql:\n  password: {secrets.token_hex(12)}\n")
    local = conf / "local.service_conf.yaml"
    local.chmod(0o600)
    out = tmp_path / "out"
    assert configc("build", conf, "-o", out, "--overlay", FIVE_HOSTS, env=env).exit_code == 0
    private = [data for path, data in files_under(out).items() if not path.stat().st_mode & 0o044]
    # 3 host_vars, 2 ragfleet.yaml, 2 operator.yaml, the Redis fragment and its users' file
    # (password hashes), 3 TLS private keys
    assert len(private) == 12
    private.append(local.read_bytes())
    digests = [hashlib.sha256(data).hexdigest() for data in private]
    digests += [hashlib.sha256(value.encode()).hexdigest() for value in env.values()]
    for path, data in files_under(out).items():
        if path.stat().st_mode & 0o044:
            assert not any(value.encode() in data for value in env.values()), path
            assert not any(digest.encode() in data for digest in digests), path
    manifest = json.loads((out / "manifest.json").read_text())
    assert [entry["path"] for entry in manifest["inputs"] if "sha256" not in entry] == [str(local)]


# -- vault mode ----------------------------------------------------------------------------


def vault_file(tmp_path: Path) -> tuple[Path, VaultLib]:
    password = secrets.token_urlsafe(16)
    path = write(tmp_path / "vault-password", password + "\n")
    return path, VaultLib([("default", VaultSecret(password.encode()))])


def test_vault_mode_writes_no_secret_in_plaintext(tmp_path):
    env = strong()
    conf = shipped_conf(tmp_path)
    out = tmp_path / "out"
    password_file, vault = vault_file(tmp_path)
    args = ("build", conf, "-o", out, "--overlay", FIVE_HOSTS, "--vault-password-file")
    result = configc(*args, password_file, env=env)
    assert result.exit_code == 0, result.output
    assert holders((out, conf), [*env.values(), "PRIVATE KEY"]) == []  # keys too (TLS)
    variables = {}
    for path in sorted((out / "host_vars").iterdir()):
        assert path.read_bytes().startswith(b"$ANSIBLE_VAULT;1.1;AES256\n")
        # Ansible's own YAML loader: the values may carry its !unsafe tag.
        variables[path.stem] = from_yaml(vault.decrypt(path.read_bytes()).decode())
    acl = {  # the executors' and the operator CLI's Redis users (least privilege)
        "ragfleet_redis_executor_password": env["REDIS_EXECUTOR_PASSWORD"],
        "ragfleet_redis_operator_password": env["REDIS_OPERATOR_PASSWORD"],
    }
    assert variables["redis"] == {"ragfleet_redis_password": env["REDIS_PASSWORD"], **acl}
    assert variables["exec1"] == {
        **acl,
        "ragfleet_mysql_password": env["MYSQL_PASSWORD"],
        "ragfleet_elasticsearch_password": env["ELASTIC_PASSWORD"],
    }
    runtime = (out / "hosts/exec1/etc/ragfleet/ragfleet.yaml").read_text()
    assert "  password: '{{ ragfleet_mysql_password | replace(" in runtime
    # The Redis users' file holds each password's hash, computed by Ansible from the vault.
    users = (out / "hosts/redis/etc/redis/ragfleet-users.acl").read_text()
    assert "user default reset on #{{ ragfleet_redis_password | hash('sha256') }} " in users
    assert "on #{{ ragfleet_redis_operator_password | hash('sha256') }} " in users
    inventory = yaml_load((out / "inventory.yml").read_text())
    assert inventory["all"]["vars"]["ragfleet_vault"] is True
    before = files_under(out)
    result = configc(*args, password_file, env=env)
    assert "0 written" in result.output and files_under(out) == before
    diff = ("diff", conf, out, "--overlay", FIVE_HOSTS, "--vault-password-file", password_file)
    result = configc(*diff, env=env)
    assert result.exit_code == 0, result.output


def test_vault_mode_encrypts_the_generated_passwords_too(tmp_path):
    conf = shipped_conf(tmp_path)
    password_file, vault = vault_file(tmp_path)
    args = ("build", conf, "-o", tmp_path / "out", "--vault-password-file", password_file)
    assert configc(*args).exit_code == 0
    store = (conf / ".secrets.yaml").read_bytes()
    generated = yaml_load(vault.decrypt(store).decode())["redis.password"]
    assert holders((tmp_path / "out", conf), [generated]) == []
    five_hosts = ("--overlay", FIVE_HOSTS, "--vault-password-file", password_file)
    result = configc("build", conf, "-o", tmp_path / "fleet", *five_hosts, env=strong())
    assert result.exit_code == 0 and (conf / ".secrets.yaml").read_bytes() == store  # unused
    result = configc("build", conf, "-o", tmp_path / "other")  # no vault password: refused
    assert result.exit_code == 2
    assert ".secrets.yaml:1:1: is vault-encrypted: pass --vault-password-file" in result.output


def test_host_vars_encrypted_with_ansible_vault_survive_a_rebuild(tmp_path):
    env = strong()
    conf = shipped_conf(tmp_path)
    out = tmp_path / "out"
    password_file, _ = vault_file(tmp_path)
    build = ("build", conf, "-o", out, "--overlay", FIVE_HOSTS)
    assert configc(*build, env=env).exit_code == 0
    host_vars = sorted((out / "host_vars").glob("*.yml"))
    subprocess.run(
        [BIN / "ansible-vault", "encrypt", "--vault-password-file", password_file, *host_vars],
        check=True,
        capture_output=True,
        env={**os.environ, "ANSIBLE_HOME": str(tmp_path / "ansible")},
    )
    encrypted = {p: p.read_bytes() for p in host_vars}
    result = CliRunner().invoke(main, [str(a) for a in build], env=env)
    assert result.exit_code == 0, result.output
    assert "host_vars/db.yml is vault-encrypted: left as it is" in result.output
    assert {p: p.read_bytes() for p in host_vars} == encrypted
    result = configc(*build, "--vault-password-file", password_file, env=env)
    assert result.exit_code == 0
    # Same variables: kept. The Redis host's gain its ACL users' passwords in vault mode
    # (in plaintext mode only its fragment holds them), so that file is rewritten.
    kept = {p: data for p, data in encrypted.items() if p.stem != "redis"}
    assert {p: p.read_bytes() for p in kept} == kept


def test_ansible_templates_the_vault_mode_files_into_the_plaintext_ones(tmp_path):
    """The roles' template tasks, run by ansible-playbook with the vault password, give the
    files a plaintext build compiles (the same values; quoting may differ); their copy tasks
    install the vault-encrypted TLS key decrypted (``copy`` decrypts by default)."""
    env = strong()
    conf = shipped_conf(tmp_path)
    password_file, vault = vault_file(tmp_path)
    base = ("build", conf, "--overlay", FIVE_HOSTS)
    assert configc(*base, "-o", tmp_path / "plain", env=env).exit_code == 0
    assert (
        configc(
            *base, "-o", tmp_path / "out", "--vault-password-file", password_file, env=env
        ).exit_code
        == 0
    )
    playbook = write(
        tmp_path / "render.yml",
        f"""
        - name: Template the secret-holding files as the roles do
          hosts: exec1,redis
          gather_facts: false
          tasks:
            - name: Template
              ansible.builtin.template:
                src: "{{{{ inventory_dir }}}}/{{{{ ragfleet_files }}}}/{{{{ item }}}}"
                dest: "{tmp_path}/rendered/{{{{ inventory_hostname }}}}/{{{{ item | basename }}}}"
                mode: "0600"
              loop: "{{{{ ['etc/ragfleet/ragfleet.yaml', 'etc/ragfleet/operator.yaml']
                         if 'executor' in group_names
                         else ['etc/redis/ragfleet.conf', 'etc/redis/ragfleet-users.acl'] }}}}"
              delegate_to: localhost
              no_log: true
            - name: Copy the TLS files as the redis role does
              ansible.builtin.copy:
                src: "{{{{ inventory_dir }}}}/{{{{ ragfleet_files }}}}/etc/redis/tls/{{{{ item }}}}"
                dest: "{tmp_path}/rendered/redis/tls/{{{{ item }}}}"
                mode: "0600"
              loop: [ca.crt, redis.crt, redis.key]
              when: "'redis' in group_names"
              delegate_to: localhost
              no_log: true
        """,
    )
    for folder in ("exec1", "redis/tls"):
        (tmp_path / "rendered" / folder).mkdir(parents=True)
    result = subprocess.run(
        [
            BIN / "ansible-playbook",
            "-i",
            tmp_path / "out/inventory.yml",
            "-c",
            "local",
            "--vault-password-file",
            password_file,
            playbook,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "ANSIBLE_HOME": str(tmp_path / "ansible")},
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert not any(v in result.stdout + result.stderr for v in env.values())
    assert "PRIVATE KEY" not in result.stdout + result.stderr
    rendered = yaml_load((tmp_path / "rendered/exec1/ragfleet.yaml").read_text())
    plain = yaml_load((tmp_path / "plain/hosts/exec1/etc/ragfleet/ragfleet.yaml").read_text())
    assert rendered == plain
    assert plain["redis"]["password"] == env["REDIS_EXECUTOR_PASSWORD"]  # its ACL user's
    operator = yaml_load((tmp_path / "rendered/exec1/operator.yaml").read_text())
    assert operator["redis"]["password"] == env["REDIS_OPERATOR_PASSWORD"]
    # redis-server loads the key the copy task decrypted (it cannot read a vault file).
    fragment, tls = tmp_path / "rendered/redis/ragfleet.conf", tmp_path / "rendered/redis/tls"
    key = (tls / "redis.key").read_bytes()
    assert key.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert key == vault.decrypt((tmp_path / "out/hosts/redis/etc/redis/tls/redis.key").read_bytes())
    redis_answers(fragment, env["REDIS_PASSWORD"], tls)
    for role in ("executor", "operator"):
        password = env[f"REDIS_{role.upper()}_PASSWORD"]
        redis_answers(fragment, password, tls, username=f"ragfleet-{role}")


def test_vault_mode_refuses_jinja_in_a_templated_file(tmp_path):
    """Outside its placeholders a templated file must hold no Jinja: Ansible would run it."""
    password_file, _ = vault_file(tmp_path)
    local = 'user_default_llm:\n  base_url: \'http://models.example/{{ lookup("pipe", "id") }}\'\n'
    conf = shipped_conf(tmp_path, local)
    assert configc("check", conf).exit_code == 0  # plaintext mode: the file is copied as is
    result = configc("check", conf, "--vault-password-file", password_file)
    assert result.exit_code == 2
    assert (
        "error: in vault mode hosts/localhost/etc/ragfleet/ragfleet.yaml is an Ansible "
        "template, and a value in it holds '{{': Ansible would evaluate it" in result.output
    )
