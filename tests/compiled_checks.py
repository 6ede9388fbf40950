"""Read a compiled tree back with each consuming program's own parser (helpers, not tests).

- the Redis fragment: redis-server is started on it (on a free loopback port, which the
  command line overrides, as it does ``dir`` and persistence) and must answer PING after
  AUTH with the configured password;
- the MariaDB option file: ``my_print_defaults`` must print the configured options;
- the units: ``systemd-analyze verify`` (tests/systemd_checks.py) must say nothing;
- every YAML file: PyYAML (what Ansible reads with) and ruamel (what the executor reads
  with) must load it, and the runtime config must be one the executor accepts;
- a variable of the inventory or host_vars: Ansible itself must give its value untemplated.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
import yaml
from ruamel.yaml import YAML
from servers import HOST, find_binary, free_port, no_retry
from systemd_checks import verify_units

from executor.settings import load_settings


class _PyYAMLWithUnsafe(yaml.SafeLoader):
    """PyYAML's safe loader, reading Ansible's ``!unsafe`` tag as the string it tags."""


_PyYAMLWithUnsafe.add_constructor("!unsafe", yaml.SafeLoader.construct_scalar)


def load_both(text: str) -> Any:
    """*text* loaded by PyYAML and by ruamel, which must agree (``!unsafe`` read as text)."""
    ruamel = YAML(typ="safe", pure=True)
    ruamel.constructor.add_constructor("!unsafe", ruamel.constructor.__class__.construct_scalar)
    data = ruamel.load(text)
    assert yaml.load(text, Loader=_PyYAMLWithUnsafe) == data
    return data


def check_yaml_files(out: Path) -> None:
    """Every .yml/.yaml file loads with PyYAML and ruamel, to the same data; only Ansible's
    files (the inventory, host_vars) may use ``!unsafe``."""
    for path in sorted([*out.rglob("*.yml"), *out.rglob("*.yaml")]):
        text = path.read_text(encoding="utf-8")
        load_both(text)
        if "!unsafe" in text:
            assert path.name == "inventory.yml" or path.parent.name == "host_vars", path
    for path in out.glob("hosts/*/etc/ragfleet/ragfleet.yaml"):
        load_settings(path, environ={})


def redis_answers(
    fragment: Path,
    password: str,
    tls: Path | None = None,
    username: str | None = None,
    config: dict[str, str] | None = None,
) -> None:
    """Start redis-server on *fragment*; it must accept *password* of *username* (default
    user if None; or need none). *tls*: the compiled tree's folder of the fragment's
    certificate and key (the fragment names them by their paths on the host), which
    redis-server must load; it is then reached over TLS only. The ACL users' file
    (``ragfleet-users.acl``) beside *fragment*, if any, is loaded in place of the path on the
    host that the fragment names."""
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        listen = ("--port", str(port))
        if tls is not None:
            listen = (
                *("--port", "0", "--tls-port", str(port)),
                *(
                    "--tls-cert-file",
                    str(tls / "redis.crt"),
                    "--tls-key-file",
                    str(tls / "redis.key"),
                ),
                *("--tls-ca-cert-file", str(tls / "ca.crt")),
            )
        aclfile = fragment.parent / "ragfleet-users.acl"
        if aclfile.exists():
            listen = (*listen, "--aclfile", str(aclfile))
        args = [
            find_binary("redis-server"),
            str(fragment),
            *listen,
            *("--bind", HOST, "--dir", workdir),
            *("--appendonly", "no", "--save", "", "--daemonize", "no"),
        ]
        log = Path(workdir) / "out.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(args, stdout=sink, stderr=subprocess.STDOUT)
        # The certificate names the host's address, not this loopback: check the chain only.
        options = (
            {"ssl": True, "ssl_ca_certs": str(tls / "ca.crt"), "ssl_check_hostname": False}
            if tls is not None
            else {}
        )
        try:
            client = _ping(port, password, process, log, username=username, **options)
            with client:
                for key, value in (config or {}).items():
                    got = {
                        k: v.decode() if isinstance(v, bytes) else v
                        for k, v in client.config_get(key).items()
                    }
                    assert got == {key: value}, key
        finally:
            process.kill()
            process.wait(10)


def _ping(
    port: int, password: str, process: subprocess.Popen, log: Path, **options: Any
) -> redis.Redis:
    """A client of the server on *port*, once it answers PING."""
    client = redis.Redis(
        host=HOST,
        port=port,
        password=password or None,
        socket_timeout=2,
        retry=no_retry(),
        **options,
    )
    deadline = time.monotonic() + 10
    while True:
        if process.poll() is not None:
            client.close()
            raise AssertionError(f"redis-server refused {log}: {log.read_text()[-2000:]}")
        try:
            assert client.ping()
            return client
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                client.close()
                raise
            time.sleep(0.02)


def mariadb_options(cnf: Path) -> list[str]:
    """The [mysqld] options my_print_defaults reads from *cnf*."""
    proc = subprocess.run(
        [find_binary("my_print_defaults"), f"--defaults-file={cnf}", "mysqld"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    return proc.stdout.splitlines()


def check_mariadb(cnf: Path, host: dict[str, Any], mysql: dict[str, Any]) -> None:
    options = mariadb_options(cnf)
    assert f"--bind-address={host['address']}" in options, options
    assert f"--port={mysql['port']}" in options, options


def ansible_value(inventory: Path, host: str, variable: str) -> Any:
    """*variable* of *host* as Ansible gives it to a task (templated, if it is a template)."""
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "ansible.cli.adhoc", host, "-i", str(inventory)),
            *("-m", "ansible.builtin.debug", "-a", f"var={variable}"),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={"ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCALHOST_WARNING": "0", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.split("=>", 1)[1])[variable]


def check_units(host_dir: Path, venv: str) -> None:
    units = sorted((host_dir / "etc/systemd/system").glob("*"))
    verify_units(units, [f"{venv}/bin/ragfleet"])
