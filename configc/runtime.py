"""The compiled runtime config of one executor host: only what that host needs, resolved.

A service with a host in the ``hosts`` topology is reached at that host's address (a section
address that names another host is refused by services.py); the upstream sections contribute
ports, credentials and options. A service with no host in the topology (an external Redis,
MariaDB, PostgreSQL, Elasticsearch, OpenSearch or S3) is used at the address its section names.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from executor.settings_spec import RUNTIME_KEYS, metrics_host

from . import sentinel
from .models import resolve_models
from .schema import split_hostport, split_url


def host_with_role(doc: dict[str, Any], role: str) -> dict[str, Any] | None:
    return next((h for h in doc["hosts"] if role in h["roles"]), None)


def redis_endpoint(doc: dict[str, Any]) -> dict[str, Any]:
    section = doc.get("redis") or {}
    host, port = split_hostport(section.get("host", "localhost:6379"))
    server = host_with_role(doc, "redis")
    return {
        "host": server["address"] if server else host,
        "port": port,
        "db": section.get("db", 1),
        "username": section.get("username") or "",
        "password": section.get("password") or "",
    }


CA_CERT = "/etc/ragfleet/ca.crt"
"""Where an executor host keeps the CA it verifies the TLS services' certificates with."""


def acl_enabled(doc: dict[str, Any]) -> bool:
    """Whether Redis gets the ACL users (the executors' password is set): see redis.conf.j2."""
    return bool((doc.get("redis") or {}).get("executor_password"))


def client_redis(doc: dict[str, Any], role: str, tls: Collection[str] = ()) -> dict[str, Any]:
    """The Redis endpoint as *role* (``executor`` or ``operator``) logs in: its ACL user when
    there are ACL users, else the default user; over TLS, verifying against CA_CERT."""
    endpoint = redis_endpoint(doc)
    if acl_enabled(doc):
        section = doc["redis"]
        endpoint["username"] = section[f"{role}_user"]
        endpoint["password"] = section.get(f"{role}_password") or ""
    if "redis" in tls:
        endpoint.update(tls=True, ca_cert=CA_CERT)
    # Under Sentinel: the master is whichever server the sentinels name (host and port
    # above are the initial master's, for messages).
    endpoint.update(sentinel.client_fields(doc))
    return endpoint


def database_config(doc: dict[str, Any], tls: Collection[str] = ()) -> dict[str, Any]:
    db_type = doc["executor"]["db_type"]
    if db_type == "sqlite":
        return {"type": "sqlite", "path": f"{doc['executor']['state_dir']}/ragfleet.db"}
    section = dict(doc[db_type])
    server = host_with_role(doc, db_type)
    if server:
        section["host"] = server["address"]
    keys = ("host", "port", "name", "user", "password", "max_connections", "stale_timeout")
    out = {"type": db_type, **{k: section[k] for k in keys if k in section}}
    if db_type in tls:
        out["ssl_ca"] = CA_CERT
    return out


def doc_store_config(doc: dict[str, Any], tls: Collection[str] = ()) -> dict[str, Any]:
    engine = doc["executor"]["doc_engine"]
    if engine == "embedded":
        return {"engine": "embedded", "path": f"{doc['executor']['state_dir']}/docstore.db"}
    section = doc["es" if engine == "elasticsearch" else "os"]
    urls = [u.strip() for u in section["hosts"].split(",")]
    servers = [h for h in doc["hosts"] if "elasticsearch" in h["roles"]]
    if engine == "elasticsearch" and servers:
        scheme = "https" if "elasticsearch" in tls else urls[0].split("://")[0]
        port = split_url(urls[0])[1] or 9200
        urls = [f"{scheme}://{h['address']}:{port}" for h in servers]
    out: dict[str, Any] = {"engine": engine, "hosts": urls}
    if engine == "elasticsearch" and servers and "elasticsearch" in tls:
        out["ca_certs"] = CA_CERT
    out.update({k: section[k] for k in ("username", "password", "api_key") if section.get(k)})
    return out


def storage_config(doc: dict[str, Any]) -> dict[str, Any]:
    backend = doc["executor"]["storage"]
    if backend == "local":
        return {"backend": "local", "path": f"{doc['executor']['state_dir']}/files"}
    if backend == "database":
        return {"backend": "database"}
    return {"backend": backend, **doc[backend]}


def runtime_config(
    doc: dict[str, Any], host: dict[str, Any], tls: Collection[str] = ()
) -> dict[str, Any]:
    """Everything ``ragfleet run`` on *host* reads, and nothing it does not; *tls*: the
    services that speak TLS (pki.tls_services)."""
    executor = {key.name: doc["executor"][key.name] for key in RUNTIME_KEYS}
    fleet = len(doc["hosts"]) > 1
    executor["metrics_bind"] = metrics_host(executor["metrics_bind"], host["address"], fleet)
    return {
        "host_id": host["name"],
        "executor": executor,
        "redis": client_redis(doc, "executor", tls),
        "database": database_config(doc, tls),
        "doc_store": doc_store_config(doc, tls),
        "storage": storage_config(doc),
        "models": resolve_models(doc.get("user_default_llm"), doc["executor"]["lighten"]),
    }
