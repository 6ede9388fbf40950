"""Service passwords: refuse known and weak ones off loopback; generate them on one loopback host.

A password a service needs is *unset* when it is empty, upstream RAGFlow's published default
(docker/.env, service_conf.yaml.template) or a ``change-me`` placeholder, and *weak* when it
is unset or shorter than ``MIN_LENGTH``. A weak password of a service reachable off loopback
(a fleet of several hosts, or a host or server address that is not loopback) is refused at
the file:line that set it. On a single host where everything listens on loopback, an unset
password of a service configc deploys (the Redis, MariaDB and Elasticsearch roles) is
replaced by a random one, generated once and kept in ``conf/.secrets.yaml`` (mode 0600,
ignored by git; vault-encrypted in vault mode), so the shipped default needs no set-up.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError, Location, Problem
from .loader import KeyPath, dotted
from .merge import Merged
from .schema import split_hostport, split_url
from .vault import Vault, is_encrypted, read_secret_file, write_secret_file

MIN_LENGTH = 16
SECRETS_FILE = ".secrets.yaml"
# Upstream RAGFlow's published defaults (docker/.env, docker/service_conf.yaml.template,
# conf/service_conf.yaml) and the vendors' own well-known ones. Shorter ones are refused for
# their length anyway; they are listed so the message can say where they come from.
PUBLISHED_DEFAULTS = frozenset(
    {
        "infini_rag_flow",
        "infini_rag_flow_os_01",
        "ragflow-crypto-key",
        "your_client_secret",
        "sk-xxxxxxxxxxxxx",
        "minioadmin",
        "changeme",
        "password",
        "secret",
        "secret_key",
        "access_key",
        "admin",
        "xxx",
    }
)
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")


@dataclass(frozen=True)
class ServiceSecret:
    """One password the compiled fleet uses: its key, whom it guards and where they listen."""

    path: KeyPath
    service: str
    addresses: tuple[str, ...]
    deployed: bool  # a role of configc's runs the service (so configc may choose its password)


def unset_reason(value: str) -> str | None:
    """Why *value* is not a password anyone chose, or None if someone did."""
    if not value:
        return "is empty"
    if value.lower() in PUBLISHED_DEFAULTS:
        return "is a published default (upstream RAGFlow's or the vendor's)"
    if value.lower().startswith("change-me"):
        return "is a placeholder (change-me...)"
    return None


def weakness(value: str) -> str | None:
    """Why *value* may not guard a service reachable off loopback, or None."""
    reason = unset_reason(value)
    if reason is None and len(value) < MIN_LENGTH:
        reason = f"has {len(value)} characters; at least {MIN_LENGTH} are needed"
    return reason


def is_loopback(address: str) -> bool:
    if address.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]").split("%")[0]).is_loopback
    except ValueError:
        return False


def service_secrets(doc: dict[str, Any]) -> Iterator[ServiceSecret]:
    """The service passwords the compiled fleet uses (an unused section's are never written):
    those of the services a role deploys, and of the external ones the executors use."""
    executor = doc["executor"]

    def deployed(role: str) -> tuple[str, ...]:
        return tuple(h["address"] for h in doc["hosts"] if role in h["roles"])

    # An external Redis (no host has the role): configc neither deploys it nor chooses its
    # passwords; they guard it where redis.host names it.
    redis_at, redis_deployed = deployed("redis"), bool(deployed("redis"))
    if not redis_deployed:
        host = _get(doc, ("redis", "host")) or "localhost:6379"
        redis_at = ((split_hostport(host) or (host, 0))[0],)
    yield ServiceSecret(("redis", "password"), "Redis", redis_at, redis_deployed)
    # The ACL users (least privilege): on once either password is set, and required for a
    # Redis other hosts reach (the executors must not log in as the all-powerful default user).
    fleet_redis = len(doc["hosts"]) > 1 or not all(map(is_loopback, deployed("redis")))
    acl_set = _get(doc, ("redis", "executor_password")) or _get(doc, ("redis", "operator_password"))
    if acl_set or (deployed("redis") and fleet_redis):
        for role in ("executor", "operator"):
            path = ("redis", f"{role}_password")
            yield ServiceSecret(path, f"Redis's {role} user", redis_at, redis_deployed)
    if deployed("sentinel"):
        # The sentinels' own requirepass: the executors find the master with it.
        path = ("redis", "sentinel_password")
        yield ServiceSecret(path, "Redis Sentinel", deployed("sentinel"), True)
    for role, section, service in (
        ("mysql", "mysql", "MariaDB"),
        ("elasticsearch", "es", "Elasticsearch"),
    ):
        if deployed(role) and doc.get(section):
            yield ServiceSecret((section, "password"), service, deployed(role), True)
    db = executor["db_type"]
    if db in ("mysql", "postgres") and doc.get(db) and not deployed(db):
        name = "MariaDB" if db == "mysql" else "PostgreSQL"
        yield ServiceSecret((db, "password"), name, (doc[db]["host"],), False)
    engine = executor["doc_engine"]
    section = {"elasticsearch": "es", "opensearch": "os"}.get(engine)
    if section and doc.get(section) and not (section == "es" and deployed("elasticsearch")):
        urls = [u.strip() for u in doc[section]["hosts"].split(",")]
        where = tuple(split_url(u)[0].strip("[]") for u in urls)
        yield ServiceSecret((section, "password"), engine.capitalize(), where, False)
    if executor["storage"] == "minio" and doc.get("minio"):
        host = doc["minio"].get("host") or "localhost:9000"
        where = ((split_hostport(host) or (host, 0))[0],)
        yield ServiceSecret(("minio", "password"), "MinIO", where, False)


def _get(doc: dict[str, Any], path: KeyPath) -> str:
    return (doc.get(path[0]) or {}).get(path[1]) or ""


class SecretStore:
    """conf/.secrets.yaml: passwords configc generated, by key path; saved only by ``build``."""

    def __init__(self, conf_dir: Path, vault: Vault | None = None, strict: bool = False) -> None:
        """*strict*: an unreadable file is an error; else its passwords are stood in for
        (``check`` needs no vault password to validate). The file is read only when a
        password is needed: a fleet's build never touches a single-host demo's file."""
        self.path = conf_dir / SECRETS_FILE
        self.vault = vault
        self.strict = strict
        self.values: dict[str, str] | None = None
        self.changed = False

    def get(self, key: str) -> str:
        if self.values is None:
            self.values = self._read()
        if key not in self.values:
            self.values[key] = secrets.token_urlsafe(24)  # 32 characters, 192 random bits
            self.changed = True
        return self.values[key]

    def _read(self) -> dict[str, str]:
        try:
            return read_secret_file(self.path, self.vault)
        except ConfigError:
            if self.strict:
                raise
            return {}

    def save(self) -> None:
        """Write the file (0600) if a password was generated, or, in vault mode, to encrypt
        one this build used (a fleet's build leaves a single-host demo's file alone)."""
        if self.values is None:
            return  # not used by this build
        if not self.strict:
            raise OSError(f"{self.path}: opened for checking only")
        plaintext = self.path.exists() and not is_encrypted(self.path.read_bytes())
        if self.changed or (self.vault and plaintext):
            write_secret_file(self.path, self.values, self.vault)
            self.changed = False


def apply_secrets(
    doc: dict[str, Any], merged: Merged, store: SecretStore, local_file: Path
) -> list[Problem]:
    """Put generated passwords into *doc*; return the problems of weak ones off loopback."""
    problems: list[Problem] = []
    single_host = len(doc["hosts"]) == 1
    for secret in service_secrets(doc):
        value = _get(doc, secret.path)
        local = single_host and all(is_loopback(a) for a in secret.addresses)
        if local and secret.deployed and unset_reason(value):
            section = doc.get(secret.path[0]) or {}  # an upstream conf may have no redis:
            doc[secret.path[0]] = {**section, secret.path[1]: store.get(dotted(secret.path))}
            continue
        reason = weakness(value)
        if local or reason is None or (not value and not secret.deployed):
            # On loopback the operator's choice stands; an external service with no password
            # may authenticate otherwise (an API key, a client certificate).
            continue
        exposure = f"at {', '.join(secret.addresses)} is reachable off loopback"
        if all(is_loopback(a) for a in secret.addresses):
            exposure = f"serves a fleet of {len(doc['hosts'])} hosts"
        problems.append(_weak_problem(secret, exposure, reason, merged, local_file))
    return problems


def _weak_problem(
    secret: ServiceSecret, exposure: str, reason: str, merged: Merged, local: Path
) -> Problem:
    location = merged.origin(secret.path)
    key = dotted(secret.path)
    variable = _variable_at(location)
    how = f"set {key} in {local}"
    if variable:
        how = f"set {variable} (read on this line) or {key} in {local}"
    return Problem(
        f"{secret.service} {exposure} and this password {reason}: "
        f"{how} to a random password of {MIN_LENGTH} or more characters "
        "(e.g. `openssl rand -base64 24`); see docs/security.md",
        key,
        location,
    )


def _variable_at(location: Location | None) -> str | None:
    """The ${VARIABLE} the line at *location* reads, if any."""
    if location is None:
        return None
    try:
        line = Path(location.file).read_text(errors="replace").splitlines()[location.line - 1]
    except (OSError, IndexError):
        return None
    match = _VARIABLE.search(line)
    return match.group(1) if match else None
