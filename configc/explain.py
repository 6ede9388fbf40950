"""``configc explain``: a key's final value and the file:line that set it, secrets masked."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from . import sentinel
from .config import Config
from .loader import KeyPath, dotted
from .models import resolve_models
from .pki import tls_services
from .runtime import database_config, doc_store_config, redis_endpoint
from .schema import SECRET_KEYS
from .services import explanation

MASK = "********"
_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def parse_key(key: str) -> KeyPath:
    """``"hosts[0].address"`` -> ``("hosts", 0, "address")``."""
    parts: list[str | int] = []
    for match in _PART.finditer(key):
        parts.append(int(match.group(2)) if match.group(2) is not None else match.group(1))
    if not parts or dotted(tuple(parts)) != key:
        raise KeyError(f"cannot parse key {key!r}: use a dotted path such as hosts[0].address")
    return tuple(parts)


def is_secret(path: KeyPath) -> bool:
    return any(part in SECRET_KEYS for part in path if isinstance(part, str))


def show(path: KeyPath, value: Any) -> str:
    if is_secret(path) and value:
        return MASK
    return '""' if value == "" else ("null" if value is None else repr(value).strip("'"))


def explain_lines(config: Config, key: str) -> list[str]:
    """One line per leaf under *key*: ``path = value  (file:line:col)`` or ``(default)``."""
    path = parse_key(key)
    if path[0] == "models":
        doc = config.document
        tree: Any = {
            "models": resolve_models(doc.get("user_default_llm"), doc["executor"]["lighten"])
        }
        origin = "(resolved by upstream's default-model rules)"
        return [
            f"{dotted(p)} = {show(p, v)}  {origin}" for p, v in _leaves(_lookup(tree, path), path)
        ]
    value = _lookup(config.document, path)
    lines = []
    for leaf, leaf_value in _leaves(value, path):
        location = config.merged.origins.get(leaf)
        where = f"({location})" if location else "(default)"
        lines.append(f"{dotted(leaf)} = {show(leaf, leaf_value)}  {where}")
        why = explanation(config.document, config.merged, leaf)
        if why is not None:
            used = not why.startswith("not used")
            effective = effective_address(config.document, leaf) if used else "none"
            lines.append(f"  effective: {effective}  ({why})")
    return lines


def effective_address(doc: dict[str, Any], path: KeyPath) -> str:
    """What the executors connect to for the service address key *path* (runtime.py's)."""
    tls = tls_services(doc)
    if path == ("redis", "host"):
        endpoint = redis_endpoint(doc)
        address = f"{endpoint['host']}:{endpoint['port']}"
        if sentinel.enabled(doc):  # the master is whichever server the sentinels name
            fields = sentinel.client_fields(doc)
            return (
                f"the master the sentinels {fields['sentinels']} name "
                f"{fields['sentinel_master']!r} (initially {address})"
            )
        return address
    if path[1] == "host":
        database = database_config({**doc, "executor": {**doc["executor"], "db_type": path[0]}})
        return str(database["host"])
    engine = "elasticsearch" if path[0] == "es" else "opensearch"
    store = doc_store_config({**doc, "executor": {**doc["executor"], "doc_engine": engine}}, tls)
    return ",".join(store["hosts"])


def _lookup(tree: Any, path: KeyPath) -> Any:
    node = tree
    for depth, part in enumerate(path):
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            raise KeyError(f"{dotted(path[: depth + 1])} is not set") from None
    return node


def _leaves(value: Any, path: KeyPath) -> Iterator[tuple[KeyPath, Any]]:
    if isinstance(value, dict) and value:
        for key, child in value.items():
            yield from _leaves(child, (*path, key))
    elif isinstance(value, list) and value and not is_secret(path):
        for index, child in enumerate(value):
            yield from _leaves(child, (*path, index))
    else:
        yield path, value
