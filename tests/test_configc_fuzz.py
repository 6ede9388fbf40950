"""Property: whatever is done to the shipped conf or a site's override, ``configc check``
exits 0 or 2 without a traceback, every error line has file:line:col, and what it accepts
builds into files the consuming programs read back.

Examples mutate conf/service_conf.yaml or an override (conf/examples/, and a one-host site):
values replaced by other types, unicode, control characters, huge numbers, lists and
mappings; keys deleted; bytes inserted; explicit tags; anchors, aliases and merge keys; deep
nesting; alias bombs; UTF-16; truncation. Seeded (derandomize) and bounded, so the run is
the same every time and takes well under a minute.

Every accepted example's YAML files are loaded with PyYAML and ruamel, its runtime config
with the executor's loader, its MariaDB option file with my_print_defaults. Starting
redis-server and running systemd-analyze take about a second, so those run only on a
sample (with Ansible reading the Redis password from host_vars, for those whose fragment
changed): the accepted examples whose Redis fragment or units differ from the unmutated
build's (a mutation reached them). Which examples those are depends on the example only,
so a failure replays (hypothesis would call a check skipped on replay flaky).
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from compiled_checks import (
    ansible_value,
    check_mariadb,
    check_units,
    check_yaml_files,
    load_both,
    redis_answers,
)
from confdirs import SHIPPED_CONF
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from configc import yamlout
from configc.cli import main

ERROR_LINE = re.compile(r"error: \S+:[1-9]\d*:[1-9]\d*: ")

SITE = """\
# A one-host site: its own address, a Redis password, state on /srv.
redis:
  password: 's3cret-pass-0123456789'
executor:
  instances: 3
  state_dir: /srv/ragfleet
hosts:
  - name: node1
    address: 192.0.2.10
    roles: [redis, executor]
"""
OVERRIDES = {
    "none": None,
    "site": SITE,
    "five-hosts": (SHIPPED_CONF / "examples/five-hosts.yaml").read_text(),
    "checkout": (SHIPPED_CONF / "examples/checkout.yaml").read_text(),
}
BASE = (SHIPPED_CONF / "service_conf.yaml").read_text()
# The fleet's passwords must be set (configc refuses five-hosts.yaml's placeholders).
ENV = {
    "RAGFLEET_STATE_DIR": "/tmp/ragfleet-state",
    "REDIS_PASSWORD": "fuzz-redis-password-0123",
    "MYSQL_PASSWORD": "fuzz-mysql-password-0123",
    "ELASTIC_PASSWORD": "fuzz-elastic-password-0123",
    "REDIS_EXECUTOR_PASSWORD": "fuzz-redis-executor-password-0123",
    "REDIS_OPERATOR_PASSWORD": "fuzz-redis-operator-password-0123",
    "LIGHTEN": None,
}

# Keys whose values reach redis.conf, the .cnf, the units or elasticsearch.yml; the Redis
# password, the one free-form text among them, thrice as often.
RENDERED = [
    *[("redis", "password")] * 3,
    ("redis", "host"),
    ("mysql", "port"),
    ("mysql", "max_connections"),
    ("mysql", "max_allowed_packet"),
    ("executor", "state_dir"),
    ("executor", "install_dir"),
    ("executor", "user"),
    ("executor", "heartbeat_interval"),
    ("executor", "drain_timeout"),
    ("executor", "instances"),
    ("es", "hosts"),
    ("hosts", 0, "name"),
    ("hosts", 0, "address"),
]
TRICKY = [
    "two words", "it's", 'say "hi"', "a\\b", "#x", "x #y", "%i", "$HOME", "a;b", "{{ x }}",
    "pässwörd", "0x1F", "yes", "~", "", " ", "/var/lib/x y", "/opt/%h", "/var/lib/", "/",
    "::1", "fe80::1%eth0", "a:b", "[x]", "- x", "*a", "&a", "!x", "@x", "`x`", "a\tb",
    "a\nb", "a\rb", "\x00", "\x7f", "\x85", "\u2028", "\ud800", "\ufeff", "é" * 300,
]  # fmt: skip
TAGS = [
    "!!int ", "!!float ", "!!set ", "!!str ", "!!bool ", "!!null ", "!!binary ",
    "!!timestamp ", "!replace ", "!!map ", "!!seq ", "!!omap ", "!foo ", "!!merge ",
    "!!python/object/apply:os.system ",
]  # fmt: skip

printable_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x17F), max_size=16)
any_text = st.text(st.characters(exclude_categories=()), max_size=12)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(),
    any_text,
    st.sampled_from(TRICKY),
)
values = st.one_of(
    scalars,
    st.lists(scalars, max_size=3),
    st.dictionaries(st.sampled_from(["a", "name", "db", "port"]), scalars, max_size=3),
)


@dataclass
class Budget:
    """The unmutated builds' files, and how many examples each check has seen."""

    baselines: dict[str, dict[str, bytes]] = field(default_factory=dict)
    redis: int = 0
    units: int = 0
    accepted: int = 0


def _paths(data: Any, path: tuple = ()) -> list[tuple]:
    out = [path] if path else []
    if isinstance(data, dict):
        for key, value in data.items():
            out += _paths(value, (*path, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            out += _paths(value, (*path, index))
    return out


def _set(data: dict, path: tuple, value: Any) -> None:
    node: Any = data
    for part in path[:-1]:
        if isinstance(node, dict):
            node = node.setdefault(part, {}) if not isinstance(node.get(part), list) else node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            return
        if not isinstance(node, dict | list):
            return
    last = path[-1]
    if isinstance(node, dict) or (
        isinstance(node, list) and isinstance(last, int) and last < len(node)
    ):
        node[last] = value


def _delete(data: dict, path: tuple) -> None:
    node: Any = data
    for part in path[:-1]:
        node = node[part]
    del node[path[-1]]


def mutate_data(draw, text: str) -> str:
    try:
        data = YAML(typ="safe", pure=True).load(text) or {}
    except Exception:  # an earlier mutation broke the YAML: nothing to walk
        return text
    if not isinstance(data, dict):
        return text
    operation = draw(st.sampled_from(["set", "set rendered", "set rendered", "password", "delete"]))
    if operation == "password":  # printable text, the kind of value that must be quoted
        _set(data, ("redis", "password"), draw(printable_text))
    elif operation == "set rendered":
        text_first = st.one_of(st.sampled_from(TRICKY), any_text, values)
        _set(data, draw(st.sampled_from(RENDERED)), draw(text_first))
    else:
        paths = _paths(data)
        if not paths:
            return text
        path = draw(st.sampled_from(paths))
        if operation == "delete":
            _delete(data, path)
        else:
            _set(data, path, draw(values))
    try:
        return yamlout.dump(data) if data else ""
    except TypeError:  # a key an earlier mutation made a number: yamlout writes str keys only
        return text


def mutate_text(draw, text: str) -> bytes:
    lines = text.splitlines(keepends=True) or ["\n"]
    index = draw(st.integers(0, len(lines) - 1))
    line = lines[index]
    kind = draw(
        st.sampled_from(
            ["bytes", "tag", "merge", "anchor", "deep", "bomb", "huge", "garbage", "cut", "noise"]
        )
    )
    if kind == "tag" and ": " in line:
        key, _, rest = line.partition(": ")
        lines[index] = f"{key}: {draw(st.sampled_from(TAGS))}{rest}"
    elif kind == "merge" and line.rstrip().endswith(":") and not line.startswith(" "):
        lines[index] = line + f"  <<: {draw(st.sampled_from(['{db: 3}', '{}', '[{a: 1}]', '3']))}\n"
    elif kind == "anchor" and line.rstrip().endswith(":") and not line.startswith(" "):
        name = line.split(":")[0]
        lines[index] = line.rstrip("\n") + " &anchor\n"
        target = draw(st.sampled_from(["alias", "merge"]))
        tail = f"\n{name}_copy: *anchor\n" if target == "alias" else f"\n{name}:\n  <<: *anchor\n"
        lines.append(tail)
    elif kind == "deep":
        depth = draw(st.integers(2, 400))
        nested = "".join(" " * i + "k:\n" for i in range(depth))
        lines.append("deep:\n " + nested.lstrip())
    elif kind == "bomb":
        width = draw(st.integers(2, 12))
        lines.append(f"a0: &a0 [{', '.join(['x'] * width)}]\n")
        for level in range(1, draw(st.integers(1, 9))):
            lines.append(f"a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * width)}]\n")
    elif kind == "huge" and ": " in line:
        key = line.partition(": ")[0]
        number = draw(st.sampled_from(["9" * 5000, "1e999", "-0x", "0o9", "1_2_3", ".nan"]))
        lines[index] = f"{key}: {number}\n"
    elif kind == "garbage":
        lines[index] = draw(any_text) + "\n"
    elif kind == "cut":
        lines = lines[: index + 1]
        lines[-1] = lines[-1][: draw(st.integers(0, len(lines[-1])))]
    raw = "".join(lines).encode("utf-8", "surrogatepass")
    if kind == "bytes":
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.binary(min_size=1, max_size=6)) + raw[at:]
    elif kind == "noise":  # the whole file is random bytes, or random YAML-ish punctuation
        noise = st.text(st.sampled_from("{}[],:-?&*!|>'\"%@`#\n a1"), max_size=80)
        raw = draw(st.one_of(st.binary(max_size=200), noise.map(str.encode)))
    return raw


@st.composite
def mutated_confs(draw) -> tuple[str, bytes, bytes | None]:
    override = draw(st.sampled_from(sorted(OVERRIDES)))
    base, local = BASE.encode(), OVERRIDES[override]
    target = "local" if local is not None and draw(st.booleans()) else "base"
    text = local if target == "local" else BASE
    for _ in range(draw(st.integers(1, 2))):
        if draw(st.booleans()):
            text = mutate_data(draw, text)
            raw = text.encode("utf-8")
        else:
            raw = mutate_text(draw, text)
            text = raw.decode("utf-8", "replace")
    if draw(st.integers(0, 30)) == 0:
        raw = raw.decode("utf-8", "replace").encode("utf-16")
    if target == "local":
        return override, base, raw
    return override, raw, None if local is None else local.encode()


def run_configc(*args: str):
    result = CliRunner().invoke(main, list(args), env=ENV, catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"configc {' '.join(args)} raised:\n{result.output}") from (
            result.exception
        )
    return result


def write_conf(root: Path, base: bytes, local: bytes | None) -> Path:
    conf = root / "conf"
    conf.mkdir(parents=True)
    (conf / "service_conf.yaml").write_bytes(base)
    if local is not None:
        (conf / "local.service_conf.yaml").write_bytes(local)
    return conf


def compiled(out: Path, pattern: str) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.glob(pattern))}


def check_accepted(out: Path, override: str, budget: Budget) -> None:
    """The compiled tree reads back in every consumer (the slow ones on a sample)."""
    check_yaml_files(out)
    doc = YAML(typ="safe", pure=True)
    for cnf in out.glob("hosts/*/etc/mysql/mariadb.conf.d/60-ragfleet.cnf"):
        host_vars = doc.load((out / "inventory.yml").read_text())["all"]["hosts"]
        host = {"address": host_vars[cnf.parts[len(out.parts) + 1]]["ansible_host"]}
        port = next(line.split("=")[1].strip() for line in cnf.read_text().splitlines()
                    if line.startswith("port ="))  # fmt: skip
        check_mariadb(cnf, host, {"port": port})
    baseline = budget.baselines[override]
    redis_files = compiled(out, "hosts/*/etc/redis/ragfleet.conf")
    if redis_files != baseline["redis"]:
        budget.redis += 1
        for name in redis_files:
            host = Path(name).parts[1]
            secrets = load_both((out / f"host_vars/{host}.yml").read_text())
            password = secrets["ragfleet_redis_password"]
            tls = out / Path(name).parent / "tls"
            redis_answers(out / name, password, tls if tls.is_dir() else None)
            variable = "ragfleet_redis_password"
            assert ansible_value(out / "inventory.yml", host, variable) == password
    unit_files = compiled(out, "hosts/*/etc/systemd/system/*")
    if unit_files != baseline["units"]:
        budget.units += 1
        for host_dir in sorted(out.glob("hosts/*")):
            if (host_dir / "etc/systemd/system").is_dir():
                install = doc.load((out / "inventory.yml").read_text())["all"]["vars"]
                check_units(host_dir, f"{install['ragfleet_install_dir']}/venv")


def build_baselines(root: Path, budget: Budget) -> None:
    for name, local in OVERRIDES.items():
        conf = write_conf(root / name, BASE.encode(), None if local is None else local.encode())
        out = root / name / "out"
        assert run_configc("build", str(conf), "-o", str(out), "-q").exit_code == 0
        budget.baselines[name] = {
            "redis": compiled(out, "hosts/*/etc/redis/ragfleet.conf"),
            "units": compiled(out, "hosts/*/etc/systemd/system/*"),
        }


@pytest.mark.timeout(240)
@pytest.mark.filterwarnings("error")  # a warning is output a user sees, outside error lines
def test_check_and_build_never_crash(tmp_path):
    budget = Budget()
    build_baselines(tmp_path, budget)

    @settings(
        max_examples=300,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(mutated_confs())
    def property_holds(example: tuple[str, bytes, bytes | None]) -> None:
        override, base, local = example
        with tempfile.TemporaryDirectory() as scratch:
            conf = write_conf(Path(scratch), base, local)
            result = run_configc("check", str(conf))
            assert result.exit_code in (0, 2), result.output
            errors = [line for line in result.output.splitlines() if line.startswith("error:")]
            assert all(ERROR_LINE.match(line) for line in errors), result.output
            if result.exit_code == 2:
                assert errors, result.output
                return
            budget.accepted += 1
            out = Path(scratch) / "out"
            built = run_configc("build", str(conf), "-o", str(out), "-q")
            assert built.exit_code == 0, built.output
            check_accepted(out, override, budget)

    property_holds()
    # The sample of slow checks must not be empty: mutations reached Redis and the units.
    assert budget.accepted > 20 and budget.redis > 0 and budget.units > 0, budget
