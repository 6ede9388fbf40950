"""The cerberus schema of service_conf.yaml: upstream's sections plus ``executor`` and ``hosts``.

Closed sections reject unknown keys (typo protection). Open sections, where upstream lets the
user add their own keys, are marked ``allow_unknown``: ``oauth`` (one entry per provider) and
``opendal.config`` (passed through to the storage driver).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, ClassVar

import cerberus

from executor.settings_spec import AUTO, KEYS, MEMORY_SIZE, Key

SECRET_KEYS = frozenset(
    {
        "password",
        "api_key",
        "secret",
        "secret_key",
        "access_key",
        "sas_token",
        "client_secret",
        "http_secret_key",
        "http_app_key",
        "mail_password",
        "session_token",
        "executor_password",
        "operator_password",
        "sentinel_password",
    }
)
"""Key names whose values are secrets: masked when shown, written only to 0600 files."""

ROLES = ("redis", "sentinel", "mysql", "elasticsearch", "executor", "monitoring")

_HOSTNAME = re.compile(
    r"(?=.{1,253}\Z)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\Z"
)
_URL = re.compile(r"https?://(?P<host>\[[0-9A-Fa-f:.]+\]|[^/:\s]+)(:(?P<port>\d+))?(/\S*)?\Z")


_SCOPE_ID = re.compile(r"[A-Za-z0-9_.-]+\Z")


def is_hostname_or_ip(text: str) -> bool:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return bool(_HOSTNAME.match(text))
    # Python takes any text after "%" as an IPv6 scope; only an interface name is one.
    scope = getattr(address, "scope_id", None)
    return scope is None or bool(_SCOPE_ID.match(scope))


def split_hostport(text: str) -> tuple[str, int] | None:
    """``"redis:6379"`` -> ``("redis", 6379)``; ``"[::1]:6379"`` too. None if malformed."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return (host, int(port)) if host and is_hostname_or_ip(host) else None


def split_url(text: str) -> tuple[str, int | None] | None:
    """``"http://es01:9200"`` -> ``("es01", 9200)``; None if not an http(s) URL."""
    match = _URL.match(text)
    if not match:
        return None
    port = match.group("port")
    if port is not None and not 0 < int(port) < 65536:
        return None
    host = match.group("host").strip("[]")
    return (host, int(port) if port else None) if is_hostname_or_ip(host) else None


def is_normal_directory(text: str) -> bool:
    """An absolute path systemd takes as it is (StateDirectory=, ReadWritePaths=): no empty,
    '.' or '..' component (one trailing slash is fine), and not the root itself."""
    parts = text.removesuffix("/").split("/")
    return len(parts) > 1 and parts[0] == "" and all(p not in ("", ".", "..") for p in parts[1:])


class ConfigValidator(cerberus.Validator):
    """cerberus with the few value formats service_conf.yaml needs."""

    # cerberus counts a bool as an integer (bool is an int subclass): `port: true` would be
    # written as "port True". An integer here is an int that is not a bool.
    types_mapping: ClassVar[dict[str, cerberus.TypeDefinition]] = {
        **cerberus.Validator.types_mapping,
        "integer": cerberus.TypeDefinition("integer", (int,), (bool,)),
    }

    def _check_with_hostport(self, field: str, value: Any) -> None:
        if isinstance(value, str) and split_hostport(value) is None:
            self._error(field, f"must be host:port (port 1-65535), got {value!r}")

    def _check_with_url_list(self, field: str, value: Any) -> None:
        if not isinstance(value, str):
            return
        for url in value.split(","):
            if split_url(url.strip()) is None:
                self._error(field, f"must be http(s)://host[:port], comma separated; got {url!r}")

    def _check_with_hostname(self, field: str, value: Any) -> None:
        if isinstance(value, str) and not is_hostname_or_ip(value):
            self._error(field, f"must be a host name or IP address, got {value!r}")

    def _check_with_bind_address(self, field: str, value: Any) -> None:
        if isinstance(value, str) and value != AUTO and not is_hostname_or_ip(value):
            self._error(
                field, f"must be {AUTO!r}, an IP address or a host name of this host; got {value!r}"
            )

    def _check_with_memory_size(self, field: str, value: Any) -> None:
        auto = field == "memory_high"  # auto: derived from memory_max
        if isinstance(value, str) and not (
            MEMORY_SIZE.fullmatch(value) or (auto and value == AUTO)
        ):
            also = f", or {AUTO!r}" if auto else ""
            self._error(
                field,
                "must be a size as systemd reads it, such as 2G or 1536M (K, M, G, T: powers "
                f"of 1024), or 'infinity'{also}; got {value!r}",
            )

    def _check_with_absolute_path(self, field: str, value: Any) -> None:
        if isinstance(value, str) and not is_normal_directory(value):
            self._error(
                field,
                f"must be an absolute path without '.', '..' or '//', and not '/'; got {value!r}",
            )

    def _normalize_coerce_flag(self, value: Any) -> Any:
        """Upstream reads flags such as LIGHTEN as ints from the environment: 0/1 count."""
        if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _FLAG_WORDS:
            return _FLAG_WORDS[value.strip().lower()]
        return value


_FLAG_WORDS = {"0": False, "1": True, "true": True, "false": False, "yes": True, "no": False}

# -- building blocks ---------------------------------------------------------------------------

STR = {"type": "string"}
OPT_STR = {"type": "string", "nullable": True}
REQ_STR = {"type": "string", "required": True, "empty": False}
SECRET = {"type": "string", "nullable": True}
REQ_SECRET = {"type": "string", "required": True}
PORT = {"type": "integer", "min": 1, "max": 65535}
REQ_PORT = {**PORT, "required": True}
BOOL = {"type": "boolean"}
HOSTPORT = {"type": "string", "required": True, "check_with": "hostport"}
URL = {"type": "string", "check_with": "url_list"}


# A duration (float in settings_spec) is whole seconds here: the units take them so.
_CERBERUS_TYPES = {int: "integer", float: "integer", bool: "boolean", str: "string"}


def _key_rule(key: Key) -> dict[str, Any]:
    """The cerberus rule of one ``executor:`` key, from its declaration in settings_spec."""
    rule: dict[str, Any] = {"type": _CERBERUS_TYPES[key.type], **key.check}
    if key.minimum is not None:
        rule["min"] = key.minimum
    if key.maximum is not None:
        rule["max"] = key.maximum
    if key.allowed:
        rule["allowed"] = list(key.allowed)
    return {**rule, "default": key.default}


def executor_schema() -> dict[str, Any]:
    return {key.name: _key_rule(key) for key in KEYS}


def _section(fields: dict[str, Any], **rules: Any) -> dict[str, Any]:
    return {"type": "dict", "schema": fields, **rules}


_MODEL_ENTRY = {
    "type": ["string", "dict"],
    "nullable": True,
    "schema": {
        "name": OPT_STR,
        "model": OPT_STR,
        "factory": OPT_STR,
        "api_key": SECRET,
        "base_url": OPT_STR,
    },
}

_SQL_DB = {
    "name": REQ_STR,
    "user": REQ_STR,
    "password": REQ_SECRET,
    "host": {**REQ_STR, "check_with": "hostname"},
    "port": REQ_PORT,
    "max_connections": {"type": "integer", "min": 1},
    "stale_timeout": {"type": "integer", "min": 0},
}

_ACL_USER = {"type": "string", "regex": r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"}
_CERT_FILES = {"cert": OPT_STR, "key": OPT_STR}
TLS_SERVICES = ("redis", "mysql", "elasticsearch")
"""The services with a host in the topology that can speak TLS (the role of that name)."""

SCHEMA: dict[str, Any] = {
    "ragflow": _section({"host": {**REQ_STR, "check_with": "hostname"}, "http_port": REQ_PORT}),
    "mysql": _section({**_SQL_DB, "max_allowed_packet": {"type": "integer", "min": 1024}}),
    "postgres": _section(_SQL_DB),
    "minio": _section(
        {
            "user": REQ_STR,
            "password": REQ_SECRET,
            "host": HOSTPORT,
            "bucket": STR,
            "prefix_path": STR,
        }
    ),
    "es": _section(
        {
            "hosts": {**URL, "required": True},
            "username": OPT_STR,
            "password": SECRET,
            "api_key": SECRET,
        }
    ),
    "os": _section({"hosts": {**URL, "required": True}, "username": OPT_STR, "password": SECRET}),
    "infinity": _section({"uri": HOSTPORT, "db_name": STR, "postgres_port": PORT}),
    "redis": _section(
        {
            "db": {"type": "integer", "min": 0, "max": 15},
            "username": OPT_STR,
            "password": SECRET,
            "host": HOSTPORT,
            # ragfleet's: the ACL users of the executors and of the operator CLI.
            "executor_user": {**_ACL_USER, "default": "ragfleet-executor"},
            "executor_password": SECRET,
            "operator_user": {**_ACL_USER, "default": "ragfleet-operator"},
            "operator_password": SECRET,
            # ragfleet's: redis-server's maxmemory (redis.conf syntax: 512mb, 2gb; 0 or unset:
            # no limit). With noeviction, writes fail at the limit instead of evicting a queue.
            "maxmemory": {
                "type": "string",
                "nullable": True,
                "regex": r"(?i)[0-9]+(k|kb|m|mb|g|gb)?",
            },
            # ragfleet's: replication under Sentinel (configc/sentinel.py), used when hosts
            # have the `sentinel` role. null quorum: a majority of the sentinels; null
            # min_replicas_to_write: 1 when there is a replica.
            "sentinel_master": {**_ACL_USER, "default": "ragfleet"},
            "sentinel_port": {**PORT, "default": 26379},
            "sentinel_password": SECRET,
            "sentinel_quorum": {"type": "integer", "min": 1, "nullable": True, "default": None},
            "sentinel_down_after_ms": {"type": "integer", "min": 100, "default": 5000},
            "sentinel_failover_timeout_ms": {"type": "integer", "min": 1000, "default": 60000},
            "min_replicas_to_write": {
                "type": "integer",
                "min": 0,
                "nullable": True,
                "default": None,
            },
            "min_replicas_max_lag": {"type": "integer", "min": 1, "default": 10},
        }
    ),
    "tls": _section(
        {
            "mode": {"type": "string", "allowed": ["auto", "on", "off"], "default": "auto"},
            "ca_cert": OPT_STR,
            **{service: _section(_CERT_FILES, nullable=True) for service in TLS_SERVICES},
        },
        default={},
    ),
    "s3": _section(
        {
            "access_key": SECRET,
            "secret_key": SECRET,
            "session_token": SECRET,
            "region": OPT_STR,
            "endpoint_url": {**URL, "nullable": True},
            "bucket": OPT_STR,
            "prefix_path": OPT_STR,
            "signature_version": {"type": "string", "allowed": ["v2", "v4", "s3", "s3v4"]},
            "addressing_style": {"type": "string", "allowed": ["path", "virtual", "auto"]},
        },
        nullable=True,
    ),
    "oss": _section(
        {
            "access_key": SECRET,
            "secret_key": SECRET,
            "endpoint_url": {**URL, "nullable": True},
            "region": OPT_STR,
            "bucket": OPT_STR,
            "prefix_path": OPT_STR,
        }
    ),
    "azure": _section(
        {
            "auth_type": {"type": "string", "required": True, "allowed": ["sas", "spn"]},
            "container_url": OPT_STR,
            "sas_token": SECRET,
            "account_url": OPT_STR,
            "client_id": OPT_STR,
            "secret": SECRET,
            "tenant_id": OPT_STR,
            "container_name": OPT_STR,
        }
    ),
    "opendal": _section(
        {"scheme": REQ_STR, "config": {"type": "dict", "allow_unknown": True, "nullable": True}}
    ),
    "user_default_llm": _section(
        {
            "factory": OPT_STR,
            "api_key": SECRET,
            "base_url": OPT_STR,
            "parsers": OPT_STR,
            "default_models": _section(
                {
                    kind: _MODEL_ENTRY
                    for kind in (
                        "chat_model",
                        "embedding_model",
                        "rerank_model",
                        "asr_model",
                        "image2text_model",
                    )
                },
                nullable=True,
            ),
        },
        nullable=True,
    ),
    "oauth": {
        "type": "dict",
        "nullable": True,
        "allow_unknown": True,
        "valuesrules": {"type": "dict", "nullable": True, "allow_unknown": True},
    },
    "authentication": _section(
        {
            "client": _section(
                {"switch": BOOL, "http_app_key": SECRET, "http_secret_key": SECRET}, nullable=True
            ),
            "site": _section({"switch": BOOL}, nullable=True),
        },
        nullable=True,
    ),
    "permission": _section({"switch": BOOL, "component": BOOL, "dataset": BOOL}, nullable=True),
    "smtp": _section(
        {
            "mail_server": OPT_STR,
            "mail_port": {"type": "integer", "min": 0, "max": 65535},
            "mail_use_ssl": BOOL,
            "mail_use_tls": BOOL,
            "mail_username": OPT_STR,
            "mail_password": SECRET,
            "mail_default_sender": {
                "type": "list",
                "minlength": 2,
                "maxlength": 2,
                "schema": OPT_STR,
            },
            "mail_frontend_url": OPT_STR,
        },
        nullable=True,
    ),
    "executor": _section(executor_schema(), default={}),
    # ragfleet's: the alert thresholds of the host with the `monitoring` role (seconds,
    # percent); see configc/monitoring.py and docs/operations.md.
    "monitoring": _section(
        {
            "scrape_interval": {"type": "integer", "min": 5, "max": 300, "default": 15},
            "executor_down_for": {"type": "integer", "min": 0, "default": 120},
            "queue_oldest_age": {"type": "integer", "min": 60, "default": 1800},
            "dead_letter_window": {"type": "integer", "min": 60, "default": 900},
            "dependency_down_for": {"type": "integer", "min": 0, "default": 300},
            "disk_free_percent": {"type": "integer", "min": 1, "max": 50, "default": 10},
            "redis_memory_percent": {"type": "integer", "min": 50, "max": 99, "default": 90},
        },
        default={},
    ),
    "hosts": {
        "type": "list",
        "minlength": 1,
        "default": [{"name": "localhost", "address": "127.0.0.1", "roles": ["redis", "executor"]}],
        "schema": _section(
            {
                "name": {
                    "type": "string",
                    "required": True,
                    "regex": r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?",
                },
                "address": {**REQ_STR, "check_with": "hostname"},
                "ssh_user": {"type": "string", "default": "root", "empty": False},
                "ssh_port": {**PORT, "default": 22},
                "roles": {
                    "type": "list",
                    "required": True,
                    "minlength": 1,
                    "schema": {"type": "string", "allowed": list(ROLES)},
                },
                "executor_instances": {"type": "integer", "min": 1, "max": 64},
            }
        ),
    },
}
