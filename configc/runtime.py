"""The compiled runtime config of one executor host: only what that host needs, resolved.

Service addresses come from the ``hosts`` topology, so they cannot disagree with it; the
upstream sections contribute ports, credentials and options. A service with no host in the
topology (an external PostgreSQL, OpenSearch or S3) is used at the address its section names.
"""

from __future__ import annotations

from typing import Any

from executor.settings_spec import RUNTIME_KEYS, metrics_host

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


def database_config(doc: dict[str, Any]) -> dict[str, Any]:
    db_type = doc["executor"]["db_type"]
    if db_type == "sqlite":
        return {"type": "sqlite", "path": f"{doc['executor']['state_dir']}/ragfleet.db"}
    section = dict(doc[db_type])
    server = host_with_role(doc, db_type)
    if server:
        section["host"] = server["address"]
    keys = ("host", "port", "name", "user", "password", "max_connections", "stale_timeout")
    return {"type": db_type, **{k: section[k] for k in keys if k in section}}


def doc_store_config(doc: dict[str, Any]) -> dict[str, Any]:
    engine = doc["executor"]["doc_engine"]
    if engine == "embedded":
        return {"engine": "embedded", "path": f"{doc['executor']['state_dir']}/docstore.db"}
    section = doc["es" if engine == "elasticsearch" else "os"]
    urls = [u.strip() for u in section["hosts"].split(",")]
    servers = [h for h in doc["hosts"] if "elasticsearch" in h["roles"]]
    if engine == "elasticsearch" and servers:
        scheme = urls[0].split("://")[0]
        port = split_url(urls[0])[1] or 9200
        urls = [f"{scheme}://{h['address']}:{port}" for h in servers]
    out = {"engine": engine, "hosts": urls}
    out.update({k: section[k] for k in ("username", "password", "api_key") if section.get(k)})
    return out


def storage_config(doc: dict[str, Any]) -> dict[str, Any]:
    backend = doc["executor"]["storage"]
    if backend == "local":
        return {"backend": "local", "path": f"{doc['executor']['state_dir']}/files"}
    if backend == "database":
        return {"backend": "database"}
    return {"backend": backend, **doc[backend]}


def runtime_config(doc: dict[str, Any], host: dict[str, Any]) -> dict[str, Any]:
    """Everything ``ragfleet run`` on *host* reads, and nothing it does not."""
    executor = {key.name: doc["executor"][key.name] for key in RUNTIME_KEYS}
    fleet = len(doc["hosts"]) > 1
    executor["metrics_bind"] = metrics_host(executor["metrics_bind"], host["address"], fleet)
    return {
        "host_id": host["name"],
        "executor": executor,
        "redis": redis_endpoint(doc),
        "database": database_config(doc),
        "doc_store": doc_store_config(doc),
        "storage": storage_config(doc),
        "models": resolve_models(doc.get("user_default_llm"), doc["executor"]["lighten"]),
    }
