"""Build throwaway configuration directories for configc tests."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHIPPED_CONF = REPO / "conf"
FIVE_HOSTS = SHIPPED_CONF / "examples" / "five-hosts.yaml"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def shipped_conf(tmp_path: Path, local: str | None = None) -> Path:
    """A copy of the shipped conf/ with an optional local.service_conf.yaml."""
    conf = tmp_path / "conf"
    # Not the passwords configc generated for this checkout (scripts/main.sh's), nor conf/tls:
    # the CA a build from the repository's conf/ may have left there.
    shutil.copytree(SHIPPED_CONF, conf, ignore=shutil.ignore_patterns(".secrets.yaml", "tls"))
    if local is not None:
        write(conf / "local.service_conf.yaml", local)
    return conf
