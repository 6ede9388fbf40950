"""deploy/ passes ansible-lint (production profile) and yamllint, and the Vagrantfile parses."""

from __future__ import annotations

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
