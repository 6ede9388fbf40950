"""Where the executors reach each service: the topology's host, or the section's address.

A service with a host in the topology (a host with the role of its name: ``redis``, ``mysql``,
``elasticsearch``) is reached at that host's address; its section gives the port. A service
no host serves is external: used at the address its section names (``redis.host``,
``mysql.host``, ``postgres.host``, ``es.hosts``, ``os.hosts``).

An address set in ``local.service_conf.yaml`` or an overlay must name a host of that role
(its name or its address; ``localhost`` and loopback addresses name a loopback host): one
that names another host is an error at the line that set it, never silently replaced. The
conf directory's own ``service_conf.yaml`` (ragfleet's shipped defaults, or upstream's file
used as the base) is exempt: its addresses are placeholders the topology replaces.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .loader import KeyPath
from .merge import Merged
from .schema import split_hostport, split_url
from .secrets import is_loopback


@dataclass(frozen=True)
class Service:
    """A service the executors may use, the section key naming its address, and its role."""

    name: str
    key: KeyPath
    role: str | None  # None: configc never deploys it (always external)


SERVICES = (
    Service("Redis", ("redis", "host"), "redis"),
    Service("MariaDB", ("mysql", "host"), "mysql"),
    Service("PostgreSQL", ("postgres", "host"), None),
    Service("Elasticsearch", ("es", "hosts"), "elasticsearch"),
    Service("OpenSearch", ("os", "hosts"), None),
)


def used_services(doc: dict[str, Any]) -> list[Service]:
    """The services this configuration's executors connect to."""
    executor = doc["executor"]
    wanted = {("redis", "host")}
    if executor["db_type"] in ("mysql", "postgres"):
        wanted.add((executor["db_type"], "host"))
    engine = {"elasticsearch": "es", "opensearch": "os"}.get(executor["doc_engine"])
    if engine:
        wanted.add((engine, "hosts"))
    return [s for s in SERVICES if s.key in wanted and doc.get(s.key[0])]


def servers(doc: dict[str, Any], service: Service) -> list[tuple[int, dict[str, Any]]]:
    """The topology's hosts of *service* (index, host), in topology order."""
    if service.role is None:
        return []
    return [(i, h) for i, h in enumerate(doc["hosts"]) if service.role in h["roles"]]


def section_hosts(doc: dict[str, Any], service: Service) -> list[str]:
    """The host names or addresses *service*'s section names (one per URL for es/os)."""
    section, key = service.key
    value = doc[section][key]
    if key == "host" and section == "redis":
        return [(split_hostport(value) or (value, 0))[0]]
    if key == "host":
        return [value]
    return [(split_url(u.strip()) or (u.strip(), 0))[0] for u in value.split(",")]


def names_host(text: str, host: dict[str, Any]) -> bool:
    """Whether the section's *text* names *host*: its name or address, or both loopback."""
    return text in (host["name"], host["address"]) or (
        is_loopback(text) and is_loopback(host["address"])
    )


def from_base_file(merged: Merged, path: KeyPath) -> bool:
    """Whether *path* was set by the conf dir's service_conf.yaml (or is a default)."""
    location = merged.origins.get(path)
    return location is None or location.file == merged.sources[0]


def address_problems(doc: dict[str, Any], merged: Merged, problem: Callable) -> Iterator[Any]:
    """A section address that contradicts the topology; an external service at a loopback
    address that several executor hosts would each reach on their own machine."""
    executor_hosts = [h for h in doc["hosts"] if "executor" in h["roles"]]
    for service in used_services(doc):
        hosts = servers(doc, service)
        named = section_hosts(doc, service)
        if hosts and not from_base_file(merged, service.key):
            for text in named:
                if not any(names_host(text, h) for _, h in hosts):
                    yield problem(_contradiction(service, text, hosts), *service.key)
        elif not hosts and len(executor_hosts) > 1 and any(map(is_loopback, named)):
            yield problem(
                f"no host has the {service.role!r} role, so the executors use the {service.name} "
                f"this names, but it is a loopback address that each of the "
                f"{len(executor_hosts)} executor hosts would reach on itself: give a host the "
                f"{service.role!r} role, or name the external server's address"
                if service.role
                else f"{service.name} is external to the topology and this is a loopback address "
                f"that each of the {len(executor_hosts)} executor hosts would reach on itself: "
                "name the server's address",
                *service.key,
            )


def _contradiction(service: Service, text: str, hosts: list[tuple[int, dict[str, Any]]]) -> str:
    where = ", ".join(f"{h['name']!r} ({h['address']}, hosts[{i}])" for i, h in hosts)
    first = hosts[0][1]
    return (
        f"{text!r} is not a host with the {service.role!r} role, which the executors would use "
        f"instead: {where}; name {first['name']!r} or {first['address']!r} here, or take the "
        f"{service.role!r} role off the hosts to use an external {service.name} at {text!r}"
    )


def explanation(doc: dict[str, Any], merged: Merged, path: KeyPath) -> str | None:
    """Why the executors reach the service of *path* where they do, or None for other keys."""
    service = next((s for s in SERVICES if s.key == path), None)
    if service is None or not doc.get(path[0]):
        return None
    if service not in used_services(doc):
        return "not used: the executors use no " + service.name
    hosts = servers(doc, service)
    if not hosts:
        because = f"no host has the {service.role!r} role" if service.role else "not deployed"
        return f"{because}: an external {service.name} at the address written here"
    names = ", ".join(f"{h['name']} (hosts[{i}])" for i, h in hosts)
    note = ""
    if from_base_file(merged, path):
        note = "; the address here is the base file's placeholder"
    return f"the topology's {service.role!r} host {names}: its address, the port here{note}"
