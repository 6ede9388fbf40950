"""deploy/ passes ansible-lint (production profile) and yamllint, and the Vagrantfile parses."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
BIN = Path(sys.executable).parent


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    tool = Path(argv[0])
    if not tool.exists() and shutil.which(argv[0]) is None:
        pytest.fail(f"{argv[0]} is missing: run scripts/setup.sh (deploy extra)", pytrace=False)
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False, timeout=300)


def test_yamllint_clean() -> None:
    result = _run([str(BIN / "yamllint"), "--strict", "-c", ".yamllint", "."], DEPLOY)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ansible_lint_production_profile() -> None:
    result = _run([str(BIN / "ansible-lint"), "--profile", "production", "--offline"], DEPLOY)
    assert result.returncode == 0, result.stdout + result.stderr


def test_playbook_syntax() -> None:
    inventory = REPO / "tests/golden/five-hosts/inventory.yml"
    result = _run(
        [str(BIN / "ansible-playbook"), "--syntax-check", "-i", str(inventory), "site.yml"], DEPLOY
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_vagrantfile_is_valid_ruby() -> None:
    result = _run(["ruby", "-c", str(REPO / "Vagrantfile")], REPO)
    assert result.returncode == 0 and "Syntax OK" in result.stdout, result.stderr


def test_vagrant_validate(tmp_path: Path) -> None:
    """`vagrant validate` (Debian's vagrant; no provider or box is needed, none runs here)."""
    env = {
        **os.environ,
        "VAGRANT_DOTFILE_PATH": str(tmp_path / "dot"),
        "VAGRANT_CHECKPOINT_DISABLE": "1",
    }
    if shutil.which("vagrant") is None:
        pytest.fail("vagrant is missing: run scripts/setup.sh", pytrace=False)
    result = subprocess.run(
        ["vagrant", "validate", "--ignore-provider"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "validated successfully" in result.stdout


def test_elasticsearch_templates_render(tmp_path: Path) -> None:
    """The elasticsearch role's heap file and its URL (https: TLS) from configc's golden
    elasticsearch.yml.

    Elasticsearch cannot run here; this renders what the role would install (the e2e test
    runs the role in check mode against a host).
    """
    playbook = tmp_path / "render.yml"
    playbook.write_text(
        f"""---
- name: Render the elasticsearch role's files
  hosts: localhost
  gather_facts: false
  vars:
    elasticsearch_heap: 2g
    ragfleet_files: hosts/es
    inventory_dir: {REPO / "tests/golden/five-hosts"}
  tasks:
    - name: Load the role's defaults
      ansible.builtin.include_vars:
        file: {DEPLOY / "roles/elasticsearch/defaults/main.yml"}
        name: defaults
    - name: Render the heap options
      ansible.builtin.template:
        src: {DEPLOY / "roles/elasticsearch/templates/heap.options.j2"}
        dest: {tmp_path / "heap.options"}
        mode: "0640"
    - name: Write the URL the health checks use
      ansible.builtin.copy:
        content: "{{{{ defaults.elasticsearch_url }}}}"
        dest: {tmp_path / "url"}
        mode: "0644"
      vars:
        elasticsearch_files_dir: "{{{{ defaults.elasticsearch_files_dir }}}}"
        elasticsearch_settings: "{{{{ defaults.elasticsearch_settings }}}}"
        elasticsearch_tls: "{{{{ defaults.elasticsearch_tls }}}}"
"""
    )
    result = _run(
        [str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(playbook)], DEPLOY
    )
    assert result.returncode == 0, result.stdout + result.stderr
    heap = (tmp_path / "heap.options").read_text().splitlines()
    assert heap[-2:] == ["-Xms2g", "-Xmx2g"]
    # The golden tree's node has configc's certificate: the health check speaks https.
    assert (tmp_path / "url").read_text() == "https://10.213.0.13:9200"


def test_monitoring_exporter_settings_render(tmp_path: Path) -> None:
    """The monitoring role's exporter settings from configc's golden tree: the Redis
    exporter reaches the fragment's TLS port with configc's CA, its password only in the
    password file; the MariaDB exporter uses the socket with no password."""
    role = DEPLOY / "roles/monitoring"
    playbook = tmp_path / "render.yml"
    playbook.write_text(
        f"""---
- name: Render the monitoring role's exporter settings
  hosts: localhost
  gather_facts: false
  vars:
    ragfleet_files: hosts/redis
    ragfleet_redis_password: not-a-real-password-0123
    inventory_dir: {REPO / "tests/golden/five-hosts"}
  tasks:
    - name: Load the role's defaults
      ansible.builtin.include_vars:
        file: {role / "defaults/main.yml"}
    - name: Render the settings
      ansible.builtin.template:
        src: {role / "templates"}/{{{{ item }}}}.j2
        dest: {tmp_path}/{{{{ item }}}}
        mode: "0644"
      loop: [prometheus-redis-exporter, prometheus-mysqld-exporter]
    - name: Write the password file's content
      ansible.builtin.copy:
        content: "{{{{ {{monitoring_redis_addr: ragfleet_redis_password}} | to_json }}}}"
        dest: {tmp_path / "password.json"}
        mode: "0600"
"""
    )
    # localhost is in no redis group: say it runs the Redis exporter (over include_vars).
    argv = [str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(playbook)]
    result = _run([*argv, "-e", "monitoring_redis_exporter=true"], DEPLOY)
    assert result.returncode == 0, result.stdout + result.stderr
    redis = (tmp_path / "prometheus-redis-exporter").read_text().splitlines()
    folder = "/etc/prometheus-redis-exporter"
    assert redis[-1] == (
        f'ARGS="--redis.addr=rediss://10.213.0.11:6379 --redis.password-file={folder}/'
        f'password.json --tls-ca-cert-file={folder}/ca.crt"'
    )
    assert "not-a-real-password" not in "\n".join(redis)
    password = json.loads((tmp_path / "password.json").read_text())
    assert password == {"rediss://10.213.0.11:6379": "not-a-real-password-0123"}
    mysqld = (tmp_path / "prometheus-mysqld-exporter").read_text().splitlines()
    assert mysqld[-1] == 'DATA_SOURCE_NAME="prometheus@unix(/run/mysqld/mysqld.sock)/"'
