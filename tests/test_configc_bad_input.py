"""Bad input to ``configc check``: every case exits 2 with file:line:col lines, never a
traceback; values that other programs read are quoted by their rules or refused.

Each case is a conf/local.service_conf.yaml (bytes) laid over the shipped conf.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from compiled_checks import (
    ansible_value,
    check_mariadb,
    check_units,
    check_yaml_files,
    redis_answers,
)
from confdirs import FIVE_HOSTS, shipped_conf

from configc.cli import main

LOCAL = "conf/local.service_conf.yaml"
ERROR_LINE = re.compile(r"error: \S+:\d+:\d+: ")

# The many-levels document: a mapping 500 levels deep, written block-style.
DEEP = ("a:\n" + "".join(" " * i + "b:\n" for i in range(1, 500))).encode()
# A 1 KB "billion laughs": ten lists of ten aliases of the previous one.
BOMB = b"a: &a [x, x, x, x, x, x, x, x, x, x]\n" + b"".join(
    f"{n}: &{n} [{', '.join(['*' + p] * 10)}]\n".encode()
    for p, n in zip("abcdefgh", "bcdefghi", strict=True)
)

# Anchors that each nest the previous one: few levels written, hundreds once expanded.
ALIAS_CHAIN = b"a0: &a0 {k: 1}\n" + b"".join(
    f"a{n}: &a{n} {{k: *a{n - 1}}}\n".encode() for n in range(1, 400)
)
MERGE_CHAIN = b"a0: &a0 {k0: 1}\n" + b"".join(
    f"a{n}: &a{n} {{<<: *a{n - 1}, k{n}: 1}}\n".encode() for n in range(1, 400)
)

# (case, local file bytes, the error line expected, after "error: ")
CASES = [
    ("not UTF-8", b"redis:\n  db: \xff\n", f"{LOCAL}:2:7: byte 0xff is not UTF-8"),
    (
        "UTF-16",
        "redis:\n  db: 2\n".encode("utf-16"),
        f"{LOCAL}:1:1: the file is UTF-16: save it as UTF-8",
    ),
    (
        "raw NUL",
        b"redis:\n  password: a\x00b\n",
        f"{LOCAL}:2:14: character U+0000 is not allowed",
    ),
    (
        "raw control character",
        b"redis:\n  password: a\x1bb\n",
        f"{LOCAL}:2:14: character U+001B is not allowed",
    ),
    (
        "escaped NUL",
        b'redis:\n  password: "a\\0b"\n',
        f"{LOCAL}:2:13: redis.password: character U+0000 is not allowed in a value",
    ),
    ("deep nesting", DEEP, f"{LOCAL}:65:65: nested more than 64 levels deep"),
    (
        "deep flow nesting",
        b"x: " + b"[" * 5000 + b"]" * 5000 + b"\n",
        f"{LOCAL}:1:67: nested more than 64 levels deep",
    ),
    ("alias chain", ALIAS_CHAIN, f"{LOCAL}:64:15: nested more than 64 levels deep"),
    ("merge key chain", MERGE_CHAIN, f"{LOCAL}:64:16: nested more than 64 levels deep"),
    ("alias bomb", BOMB, f"{LOCAL}:5:44: the document has more than 100000 values"),
    ("anchor defined twice", b"a: &x 1\nb: &x 2\n", f"{LOCAL}:2:4: the anchor &x is defined twice"),
    ("recursive alias", b"redis: &r {db: *r}\n", f"{LOCAL}:1:16: the alias *r is inside"),
    ("!!set on a scalar", b"redis: !!set x\n", f"{LOCAL}:1:8: redis: the tag !!set cannot"),
    ("!!int on text", b"redis:\n  db: !!int x\n", f"{LOCAL}:2:7: redis.db: the tag !!int"),
    (
        "!!float on text",
        b"redis:\n  password: !!float abc\n",
        f"{LOCAL}:2:13: redis.password: the tag !!float cannot",
    ),
    ("!!map on a list", b"hosts: !!map [a]\n", f"{LOCAL}:1:8: hosts: the tag !!map cannot"),
    (
        "!replace on a scalar",
        b"redis:\n  db: !replace 2\n",
        f"{LOCAL}:2:7: redis.db: the tag !replace cannot",
    ),
    (
        "merge key of a scalar",
        b"redis:\n  <<: 3\n",
        f"{LOCAL}:2:7: redis: a merge key (<<) takes a mapping",
    ),
    (
        "merge key brings a bad value",
        b"redis:\n  <<: {db: 99}\n",
        f"{LOCAL}:2:8: redis.db: max value is 15",
    ),
    ("duplicate key", b"redis:\n  db: 2\n  db: 3\n", f"{LOCAL}:3:3: redis.db: this key is"),
    ("mapping as a key", b"? [a]\n: b\n", f"{LOCAL}:1:3: a key must be a plain value"),
    (
        "huge integer",
        b"redis:\n  db: " + b"9" * 5000 + b"\n",
        f"{LOCAL}:2:7: redis.db: cannot read '9999",
    ),
    (
        "lone surrogate",
        b'redis:\n  password: "\\ud800"\n',
        f"{LOCAL}:2:13: redis.password: character U+D800 is not allowed",
    ),
    (
        "newline in a password",
        b'redis:\n  password: "a\\nrequirepass x"\n',
        f"{LOCAL}:2:13: redis.password: character U+000A is not allowed",
    ),
    (
        "newline ending a host name (cerberus' regex allows it)",
        b'hosts:\n  - name: "h\\n"\n    address: 127.0.0.1\n    roles: [redis, executor]\n',
        f"{LOCAL}:2:11: hosts[0].name: character U+000A is not allowed",
    ),
    (
        "line separator",
        b'executor:\n  user: "a\\u2028b"\n',
        f"{LOCAL}:2:9: executor.user: character U+2028 (LINE SEPARATOR) is not allowed",
    ),
    ("a bool for a port", b"mysql:\n  port: true\n", f"{LOCAL}:2:3: mysql.port: must be of"),
    (
        "infinity, which the executor cannot open",
        b"executor:\n  doc_engine: infinity\ninfinity:\n  uri: 'infinity:23817'\n",
        f"{LOCAL}:2:3: executor.doc_engine: unallowed value infinity",
    ),
    (
        "a space in state_dir (systemd unit)",
        b"executor:\n  state_dir: '/var/lib/my dir'\n",
        f"{LOCAL}:2:3: executor.state_dir: cannot be written into the systemd unit",
    ),
    (
        "a specifier in install_dir (systemd unit)",
        b"executor:\n  install_dir: '/opt/100%'\n",
        f"{LOCAL}:2:3: executor.install_dir: cannot be written into the systemd unit",
    ),
    (
        "'..' in state_dir",
        b"executor:\n  state_dir: /var/lib/../etc\n",
        f"{LOCAL}:2:3: executor.state_dir: must be an absolute path without",
    ),
    (
        "an IPv6 scope that is no interface name",
        b"hosts:\n  - name: h\n    address: 'fe80::1%a b'\n    roles: [redis, executor]\n",
        f"{LOCAL}:3:5: hosts[0].address: must be a host name or IP address",
    ),
]


def check(conf: Path):
    return CliRunner().invoke(main, ["check", str(conf)], catch_exceptions=True)


@pytest.mark.parametrize(("local", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_a_located_error(tmp_path, monkeypatch, local, expected):
    conf = shipped_conf(tmp_path)
    (conf / "local.service_conf.yaml").write_bytes(local)
    monkeypatch.chdir(tmp_path)
    started = time.monotonic()
    result = check(Path("conf"))
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), result.exc_info
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert errors and all(ERROR_LINE.match(line) for line in errors), result.output
    assert any(line.startswith(f"error: {expected}") for line in errors), result.output
    assert time.monotonic() - started < 5


# (case, local file, password Redis must then accept)
PASSWORDS = [
    ("space", "redis:\n  password: 'two words'\n", "two words"),
    ("quotes", "redis:\n  password: 'it''s \"x\"'\n", 'it\'s "x"'),
    ("backslash and hash", "redis:\n  password: 'a\\b #c'\n", "a\\b #c"),
    ("non-ASCII", "redis:\n  password: 'pässwörd ✓'\n", "pässwörd ✓"),
    ("a Jinja template", "redis:\n  password: '{{ 7 * 6 }}{% raw %}'\n", "{{ 7 * 6 }}{% raw %}"),
]


@pytest.mark.parametrize(
    ("local", "password"), [c[1:] for c in PASSWORDS], ids=[c[0] for c in PASSWORDS]
)
def test_redis_reads_back_the_password(tmp_path, local, password):
    conf = shipped_conf(tmp_path, local)
    result = CliRunner().invoke(main, ["build", str(conf), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    redis_answers(tmp_path / "out/hosts/localhost/etc/redis/ragfleet.conf", password)
    check_yaml_files(tmp_path / "out")
    inventory = tmp_path / "out/inventory.yml"
    assert ansible_value(inventory, "localhost", "ragfleet_redis_password") == password


def test_merge_keys_apply_with_positions(tmp_path):
    conf = shipped_conf(tmp_path, "redis:\n  <<: {db: 3, host: 'localhost:6380'}\n  db: 4\n")
    result = CliRunner().invoke(main, ["explain", str(conf), "redis"])
    assert result.exit_code == 0, result.output
    lines = result.output.replace(f"{conf}/", "").splitlines()
    assert "redis.db = 4  (local.service_conf.yaml:3:3)" in lines  # written beside <<: wins
    assert "redis.host = localhost:6380  (local.service_conf.yaml:2:15)" in lines  # from <<


def test_five_hosts_compiled_files_read_back(tmp_path):
    conf = shipped_conf(tmp_path, FIVE_HOSTS.read_text())
    out = tmp_path / "out"
    env = {
        "REDIS_PASSWORD": 'redis password with "quotes" and \\',
        "MYSQL_PASSWORD": "mysql-password-0123456789",
        "ELASTIC_PASSWORD": "elastic-password-0123456789",
        "REDIS_EXECUTOR_PASSWORD": 'executor "password" \\ 0123',
        "REDIS_OPERATOR_PASSWORD": "operator-password-0123456789",
    }
    result = CliRunner().invoke(main, ["build", str(conf), "-o", str(out)], env=env)
    assert result.exit_code == 0, result.output
    check_yaml_files(out)
    check_mariadb(
        out / "hosts/db/etc/mysql/mariadb.conf.d/60-ragfleet.cnf",
        {"address": "10.213.0.12"},
        {"port": 3306},
    )
    fragment, tls = out / "hosts/redis/etc/redis/ragfleet.conf", out / "hosts/redis/etc/redis/tls"
    redis_answers(fragment, env["REDIS_PASSWORD"], tls)
    executor, operator = env["REDIS_EXECUTOR_PASSWORD"], env["REDIS_OPERATOR_PASSWORD"]
    redis_answers(fragment, executor, tls, username="ragfleet-executor")
    redis_answers(fragment, operator, tls, username="ragfleet-operator")
    check_units(out / "hosts/exec2", "/opt/ragfleet/venv")


@pytest.mark.parametrize(
    ("overlay", "expected"),
    [
        ("/dev/zero", "/dev/zero:1:1: larger than 1 MiB: not a configuration file"),
        ("big.yaml", "big.yaml:1:1: larger than 1 MiB"),
    ],
)
def test_endless_or_huge_files_are_refused(tmp_path, monkeypatch, overlay, expected):
    shipped_conf(tmp_path)
    (tmp_path / "big.yaml").write_text("# padding\n" * 200_000)
    monkeypatch.chdir(tmp_path)
    started = time.monotonic()
    result = CliRunner().invoke(main, ["check", "conf", "--overlay", overlay])
    assert result.exit_code == 2, result.output
    assert f"error: {expected}" in result.output
    assert time.monotonic() - started < 5


def test_a_variable_cannot_bring_a_line_break(tmp_path, monkeypatch):
    # ${REDIS_PASSWORD} is read when check runs: its value obeys the rules a written one does.
    shipped_conf(tmp_path, "redis:\n  password: '${REDIS_PASSWORD}'\n")
    monkeypatch.chdir(tmp_path)
    env = {"REDIS_PASSWORD": "x\nrequirepass evil"}
    result = CliRunner().invoke(main, ["check", "conf"], env=env)
    assert result.exit_code == 2, result.output
    assert f"error: {LOCAL}:2:13: redis.password: character U+000A is not allowed" in (
        result.output
    )


def test_redis_maxmemory_reaches_redis_server(tmp_path):
    """redis.maxmemory is read back by redis-server itself, with noeviction kept."""
    local = "redis:\n  password: 'a-long-enough-password'\n  maxmemory: 64mb\n"
    conf = shipped_conf(tmp_path, local)
    result = CliRunner().invoke(main, ["build", str(conf), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    redis_answers(
        tmp_path / "out/hosts/localhost/etc/redis/ragfleet.conf",
        "a-long-enough-password",
        config={"maxmemory": str(64 << 20), "maxmemory-policy": "noeviction"},
    )


def test_a_malformed_redis_maxmemory_is_refused_at_its_line(tmp_path):
    conf = shipped_conf(tmp_path, "redis:\n  maxmemory: lots\n")
    result = CliRunner().invoke(main, ["build", str(conf), "-o", str(tmp_path / "out")])
    assert result.exit_code != 0
    assert "local.service_conf.yaml:2" in result.output and "redis.maxmemory" in result.output
