"""configc's TLS material: its private CA under conf/tls, the certificates it issues from the
topology, their reuse, an operator's own certificates, and where keys may (not) go."""

from __future__ import annotations

import json
import re
import secrets
import shutil
import stat
from pathlib import Path

import pytest
from ansible.parsing.vault import VaultLib, VaultSecret
from click.testing import CliRunner
from confdirs import FIVE_HOSTS, shipped_conf
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from ruamel.yaml import YAML

from configc.cli import main

REPO_TLS = Path(__file__).parent / "data" / "tls"


def build(conf: Path, out: Path, *args: str) -> None:
    result = CliRunner().invoke(main, ["build", str(conf), "-o", str(out), *args])
    assert result.exit_code == 0, result.output


def files(root: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(root)): (p.read_bytes(), stat.S_IMODE(p.stat().st_mode))
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def sans(pem: bytes) -> list[str]:
    cert = x509.load_pem_x509_certificate(pem)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [str(n.value) for n in names]


@pytest.fixture(autouse=True)
def _fleet_passwords(monkeypatch):
    """The five-host fleet's passwords: configc refuses its placeholders off loopback."""
    for name in (
        "REDIS_PASSWORD",
        "MYSQL_PASSWORD",
        "ELASTIC_PASSWORD",
        "REDIS_EXECUTOR_PASSWORD",
        "REDIS_OPERATOR_PASSWORD",
    ):
        monkeypatch.setenv(name, f"{name.lower()}-0123456789")


def _single_host_without_acl(monkeypatch) -> None:
    for name in ("REDIS_EXECUTOR_PASSWORD", "REDIS_OPERATOR_PASSWORD"):
        monkeypatch.delenv(name)


@pytest.fixture
def five(tmp_path) -> Path:
    return shipped_conf(tmp_path, FIVE_HOSTS.read_text())


def test_the_ca_and_certificates_are_made_once_and_reused(five, tmp_path):
    build(five, tmp_path / "a")
    store = files(five / "tls")
    assert {p: m for p, (_, m) in store.items()} == {
        "ca.crt": 0o644,
        "ca.key": 0o600,
        **{f"{s}.crt": 0o644 for s in ("redis", "mysql", "elasticsearch")},
        **{f"{s}.key": 0o600 for s in ("redis", "mysql", "elasticsearch")},
    }
    assert stat.S_IMODE((five / "tls").stat().st_mode) == 0o700
    build(five, tmp_path / "b")
    assert files(five / "tls") == store
    assert files(tmp_path / "a") == files(tmp_path / "b")  # byte for byte, modes too


def test_certificates_name_their_hosts_and_chain_to_the_ca(five, tmp_path):
    out = tmp_path / "out"
    build(five, out)
    ca = x509.load_pem_x509_certificate((five / "tls/ca.crt").read_bytes())
    expected = {
        "hosts/redis/etc/redis/tls/redis.crt": ["10.213.0.11", "redis"],
        "hosts/db/etc/mysql/tls/mysql.crt": ["10.213.0.12", "db"],
        "hosts/es/etc/elasticsearch/certs/http.crt": ["10.213.0.13", "es"],
    }
    for path, names in expected.items():
        pem = (out / path).read_bytes()
        assert sans(pem) == names, path
        x509.load_pem_x509_certificate(pem).verify_directly_issued_by(ca)
    for host in ("exec1", "exec2"):
        copy = (out / f"hosts/{host}/etc/ragfleet/ca.crt").read_bytes()
        assert copy == (five / "tls/ca.crt").read_bytes()


def test_a_moved_host_gets_a_new_certificate_and_the_others_are_kept(five, tmp_path):
    build(five, tmp_path / "a")
    before = files(five / "tls")
    local = five / "local.service_conf.yaml"
    local.write_text(local.read_text().replace("10.213.0.11", "10.213.0.31"))
    build(five, tmp_path / "b")
    after = files(five / "tls")
    assert after["redis.crt"] != before["redis.crt"] and after["redis.key"] != before["redis.key"]
    assert sans(after["redis.crt"][0]) == ["10.213.0.31", "redis"]
    for name in ("ca.crt", "ca.key", "mysql.crt", "mysql.key", "elasticsearch.crt"):
        assert after[name] == before[name], name


def test_a_stored_key_that_is_not_its_certificates_is_replaced(five, tmp_path):
    """configc reuses a stored certificate only with its own key (say conf/tls was restored
    from two backups): otherwise the service could not start with them."""
    build(five, tmp_path / "a")
    store = five / "tls"
    (store / "redis.key").write_bytes((store / "mysql.key").read_bytes())
    build(five, tmp_path / "b")
    key = serialization.load_pem_private_key((store / "redis.key").read_bytes(), password=None)
    cert = x509.load_pem_x509_certificate((store / "redis.crt").read_bytes())
    assert key.public_key() == cert.public_key()
    assert (store / "redis.key").read_bytes() != (store / "mysql.key").read_bytes()


def test_private_keys_are_0600_and_have_no_digest_in_the_manifest(five, tmp_path):
    out = tmp_path / "out"
    build(five, out)
    tree = files(out)
    keys = {p for p in tree if p.endswith(".key")}
    assert keys == {
        "hosts/redis/etc/redis/tls/redis.key",
        "hosts/db/etc/mysql/tls/mysql.key",
        "hosts/es/etc/elasticsearch/certs/http.key",
    }
    assert all(tree[k][1] == 0o600 for k in keys)
    manifest = json.loads(tree["manifest.json"][0])
    entries = {e["path"]: e for e in manifest["files"]}
    for path, (_, mode) in tree.items():
        if path == "manifest.json":
            continue
        assert ("sha256" in entries[path]) == (mode != 0o600), path
    key_bytes = [tree[k][0] for k in keys] + [(five / "tls/ca.key").read_bytes()]
    for path, (content, mode) in tree.items():
        if mode != 0o600:
            assert not any(k in content for k in key_bytes), path
    assert "ca.key" not in json.dumps(manifest)


def test_the_single_host_default_stays_plain_on_loopback(tmp_path):
    conf = shipped_conf(tmp_path)
    out = tmp_path / "out"
    build(conf, out)
    assert not (conf / "tls").exists()
    runtime = YAML(typ="safe").load(
        (out / "hosts/localhost/etc/ragfleet/ragfleet.yaml").read_text()
    )
    assert "tls" not in runtime["redis"] and "ssl_ca" not in runtime["database"]
    fragment = (out / "hosts/localhost/etc/redis/ragfleet.conf").read_text()
    assert "tls-port" not in fragment and "\nport 6379" in fragment


def test_tls_mode_off_keeps_a_fleet_plain(five, tmp_path):
    local = five / "local.service_conf.yaml"
    local.write_text(local.read_text() + "tls: {mode: 'off'}\n")
    out = tmp_path / "out"
    build(five, out)
    assert not (five / "tls").exists()
    assert not list(out.rglob("*.key")) and not list(out.rglob("*.crt"))
    es = (out / "hosts/es/etc/elasticsearch/elasticsearch.yml").read_text()
    assert "xpack.security.http.ssl.enabled: false" in es


def test_the_compiled_configs_use_tls(five, tmp_path):
    out = tmp_path / "out"
    build(five, out)
    runtime = YAML(typ="safe").load((out / "hosts/exec1/etc/ragfleet/ragfleet.yaml").read_text())
    assert runtime["redis"]["tls"] is True and runtime["redis"]["ca_cert"] == "/etc/ragfleet/ca.crt"
    assert runtime["database"]["ssl_ca"] == "/etc/ragfleet/ca.crt"
    assert runtime["doc_store"]["hosts"] == ["https://10.213.0.13:9200"]
    assert runtime["doc_store"]["ca_certs"] == "/etc/ragfleet/ca.crt"
    cnf = (out / "hosts/db/etc/mysql/mariadb.conf.d/60-ragfleet.cnf").read_text()
    assert "require_secure_transport = ON" in cnf and "ssl_key = /etc/mysql/tls/mysql.key" in cnf
    es = (out / "hosts/es/etc/elasticsearch/elasticsearch.yml").read_text()
    assert "xpack.security.http.ssl.enabled: true" in es
    assert "xpack.security.http.ssl.key: certs/http.key" in es
    fragment = (out / "hosts/redis/etc/redis/ragfleet.conf").read_text()
    assert "\nport 0\ntls-port 6379\n" in fragment


def test_operator_certificates_are_used_as_they_are(five, tmp_path):
    local = five / "local.service_conf.yaml"
    overlay = (
        (REPO_TLS / "five-hosts-tls.yaml").read_text().replace("../tests/data/tls", str(REPO_TLS))
    )
    local.write_text(local.read_text() + overlay)
    out = tmp_path / "out"
    build(five, out)
    assert not (five / "tls").exists()
    assert (out / "hosts/redis/etc/redis/tls/redis.key").read_bytes() == (
        REPO_TLS / "redis.key"
    ).read_bytes()
    assert (out / "hosts/exec1/etc/ragfleet/ca.crt").read_bytes() == (
        REPO_TLS / "ca.crt"
    ).read_bytes()


@pytest.mark.parametrize(
    ("tls", "message"),
    [
        ("tls: {ca_cert: missing.crt}", r"tls\.ca_cert: cannot read .*missing\.crt"),
        (
            "tls: {ca_cert: CA}",
            r"tls\.redis: tls\.ca_cert is set, so redis needs its own cert and key",
        ),
        ("tls: {ca_cert: KEY}", r"tls\.ca_cert: not a PEM certificate"),
        (
            "tls: {ca_cert: CA, redis: {cert: DIR/mysql.crt, key: DIR/mysql.key}, "
            "mysql: {cert: DIR/mysql.crt, key: DIR/mysql.key}, "
            "elasticsearch: {cert: DIR/elasticsearch.crt, key: DIR/elasticsearch.key}}",
            r"tls\.redis\.cert: does not name 10\.213\.0\.11 \(it names: 10\.213\.0\.12, db\)",
        ),
        (
            "tls: {ca_cert: CA, redis: {cert: DIR/redis.crt, key: DIR/mysql.key}, "
            "mysql: {cert: DIR/mysql.crt, key: DIR/mysql.key}, "
            "elasticsearch: {cert: DIR/elasticsearch.crt, key: DIR/elasticsearch.key}}",
            r"tls\.redis\.key: is not the key of tls\.redis\.cert",
        ),
    ],
)
def test_operator_certificates_are_checked(five, tmp_path, tls, message):
    local = five / "local.service_conf.yaml"
    tls = tls.replace("CA", str(REPO_TLS / "ca.crt")).replace("KEY", str(REPO_TLS / "redis.key"))
    tls = tls.replace("DIR", str(REPO_TLS))
    local.write_text(local.read_text() + tls + "\n")
    result = CliRunner().invoke(main, ["check", str(five)])
    assert result.exit_code == 2
    assert re.search(message, result.output), result.output


@pytest.mark.parametrize(
    ("redis", "message"),
    [
        (
            "{executor_password: e-secret-1}",
            "redis.operator_password: executor_password and operator_password turn the ACL "
            "users on together",
        ),
        (
            "{executor_password: same, operator_password: same}",
            "redis.executor_password: redis.password, executor_password and operator_password "
            "must all differ",
        ),
    ],
)
def test_the_acl_passwords_come_as_a_distinct_pair(tmp_path, monkeypatch, redis, message):
    _single_host_without_acl(monkeypatch)
    conf = shipped_conf(tmp_path, f"redis: {redis}\n")
    result = CliRunner().invoke(main, ["check", str(conf)])
    assert result.exit_code == 2 and message in result.output, result.output


def test_no_acl_users_without_their_passwords(tmp_path, monkeypatch):
    """On one loopback host the ACL users are off unless set (a fleet requires them)."""
    _single_host_without_acl(monkeypatch)
    out = tmp_path / "out"
    build(shipped_conf(tmp_path), out)
    fragment = (out / "hosts/localhost/etc/redis/ragfleet.conf").read_text()
    assert "\nuser " not in fragment and "\naclfile " not in fragment
    assert "\nrequirepass " in fragment  # the default user's password, as before
    assert not (out / "hosts/localhost/etc/redis/ragfleet-users.acl").exists()
    assert not (out / "hosts/localhost/etc/ragfleet/operator.yaml").exists()


def test_only_build_writes_the_ca(five, tmp_path):
    """check and diff write nothing: without conf/tls they make the material in memory (diff
    then shows the certificates a build would add)."""
    runner = CliRunner()
    assert runner.invoke(main, ["check", str(five)]).exit_code == 0
    diff = runner.invoke(main, ["diff", str(five), str(tmp_path / "out")])
    assert diff.exit_code == 1 and "+ hosts/redis/etc/redis/tls/redis.key" in diff.output
    assert "BEGIN" not in diff.output
    assert not (five / "tls").exists()
    build(five, tmp_path / "out")
    diff = runner.invoke(main, ["diff", str(five), str(tmp_path / "out")])
    assert diff.exit_code == 0, diff.output


# -- vault mode: the private keys are ansible-vault files ------------------------------------

OUT_KEYS = {  # each compiled key and the certificate beside it
    "hosts/redis/etc/redis/tls/redis.key": "hosts/redis/etc/redis/tls/redis.crt",
    "hosts/db/etc/mysql/tls/mysql.key": "hosts/db/etc/mysql/tls/mysql.crt",
    "hosts/es/etc/elasticsearch/certs/http.key": "hosts/es/etc/elasticsearch/certs/http.crt",
}


@pytest.fixture
def vault(tmp_path) -> tuple[Path, VaultLib]:
    """A vault password file, and ansible-core's VaultLib with that password."""
    password = secrets.token_urlsafe(16)
    path = tmp_path / "vault-password"
    path.write_text(password + "\n")
    return path, VaultLib([("default", VaultSecret(password.encode()))])


def plaintext_keys(*roots: Path) -> list[str]:
    """Files under *roots* holding a PEM private key in plaintext."""
    return [str(p) for p in files_under(*roots) if b"PRIVATE KEY" in p.read_bytes()]


def files_under(*roots: Path) -> list[Path]:
    return [p for root in roots for p in sorted(root.rglob("*")) if p.is_file()]


def assert_key_of(encrypted: bytes, cert_pem: bytes, lib: VaultLib) -> bytes:
    """*encrypted* is a vault file whose plaintext is the key of *cert_pem*; that plaintext."""
    assert encrypted.startswith(b"$ANSIBLE_VAULT;1.1;AES256\n")
    pem = lib.decrypt(encrypted)
    key = serialization.load_pem_private_key(pem, password=None)
    assert key.public_key() == x509.load_pem_x509_certificate(cert_pem).public_key()
    return pem


def test_vault_mode_writes_every_private_key_encrypted(five, tmp_path, vault):
    password_file, lib = vault
    out = tmp_path / "out"
    build(five, out, "--vault-password-file", str(password_file))
    assert plaintext_keys(out, five) == []
    tree, store = files(out), files(five / "tls")
    for key, cert in OUT_KEYS.items():
        assert tree[key][1] == 0o600
        assert_key_of(tree[key][0], tree[cert][0], lib)
    for name in ("ca", "redis", "mysql", "elasticsearch"):
        assert store[f"{name}.key"][1] == 0o600
        assert_key_of(store[f"{name}.key"][0], store[f"{name}.crt"][0], lib)
    # The compiled keys are configc's (the same plaintext, salted otherwise).
    assert lib.decrypt(tree["hosts/redis/etc/redis/tls/redis.key"][0]) == lib.decrypt(
        store["redis.key"][0]
    )
    result = CliRunner().invoke(
        main, ["build", str(five), "-o", str(out), "--vault-password-file", str(password_file)]
    )
    assert "0 written" in result.output, result.output
    assert files(out) == tree and files(five / "tls") == store  # not re-encrypted
    diff = ["diff", str(five), str(out), "--vault-password-file", str(password_file)]
    assert CliRunner().invoke(main, diff).exit_code == 0


def test_a_vault_build_encrypts_the_plaintext_keys_it_finds(five, tmp_path, vault):
    """A conf/tls made by a plaintext build: its keys are encrypted in place, not replaced
    (the certificates the fleet runs with stay valid)."""
    password_file, lib = vault
    build(five, tmp_path / "plain")
    before = files(five / "tls")
    build(five, tmp_path / "out", "--vault-password-file", str(password_file))
    after = files(five / "tls")
    assert plaintext_keys(tmp_path / "out", five / "tls") == []
    for name in ("ca", "redis", "mysql", "elasticsearch"):
        assert after[f"{name}.crt"] == before[f"{name}.crt"]
        assert lib.decrypt(after[f"{name}.key"][0]) == before[f"{name}.key"][0]
        assert after[f"{name}.key"][1] == 0o600


def test_encrypted_keys_without_the_vault_password_are_refused(five, tmp_path, vault):
    """After a vault build, a build without the password (or with another) stops at the
    first key it cannot read, naming it; so does a compiled key it would have to replace."""
    password_file, _ = vault
    out = tmp_path / "out"
    build(five, out, "--vault-password-file", str(password_file))
    tree = files(out)
    for command in (["build", str(five), "-o", str(out)], ["check", str(five)]):
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 2, result.output
        assert f"{five}/tls/ca.key is vault-encrypted: pass --vault-password-file" in result.output
    other = tmp_path / "other-password"
    other.write_text("another-password\n")
    result = CliRunner().invoke(
        main, ["build", str(five), "-o", str(out), "--vault-password-file", str(other)]
    )
    assert result.exit_code == 2 and "tls/ca.key cannot decrypt" in result.output, result.output
    # conf/tls deleted: a plaintext build makes new keys, but will not put them in plaintext
    # over the encrypted ones of out/.
    shutil.rmtree(five / "tls")
    result = CliRunner().invoke(main, ["build", str(five), "-o", str(out)])
    assert result.exit_code == 2, result.output
    for key in OUT_KEYS:
        assert f"{key}:1:1: is vault-encrypted (a vault-mode build wrote it)" in result.output
    assert files(out) == tree


def test_operator_keys_may_be_vault_encrypted(five, tmp_path, vault):
    password_file, lib = vault
    given = tmp_path / "given"
    shutil.copytree(REPO_TLS, given)
    for key in given.glob("*.key"):
        key.write_bytes(lib.encrypt(key.read_bytes()))
    local = five / "local.service_conf.yaml"
    overlay = (
        (REPO_TLS / "five-hosts-tls.yaml").read_text().replace("../tests/data/tls", str(given))
    )
    local.write_text(local.read_text() + overlay)
    out = tmp_path / "out"
    build(five, out, "--vault-password-file", str(password_file))
    tree = files(out)
    key = assert_key_of(tree[next(iter(OUT_KEYS))][0], (REPO_TLS / "redis.crt").read_bytes(), lib)
    assert key == (REPO_TLS / "redis.key").read_bytes()
    assert plaintext_keys(out) == []
    result = CliRunner().invoke(main, ["build", str(five), "-o", str(tmp_path / "plain")])
    assert result.exit_code == 2
    assert f"tls.redis.key: {given}/redis.key is vault-encrypted: pass" in result.output
