"""Deep-merge configuration layers, remembering which file set each value.

Rules (documented in docs/configuration.md):
- mappings merge key by key, recursively;
- scalars, lists and null from a later layer replace the earlier value whole;
- a mapping tagged ``!replace`` in a later layer replaces the earlier mapping whole
  (upstream's shallow ``dict.update``, when that is what you want).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .errors import Location
from .loader import KeyPath, Layer


@dataclass
class Merged:
    """The merged configuration and, for every key path, the layer location that set it."""

    data: dict[str, Any]
    origins: dict[KeyPath, Location]
    sources: list[str]

    def origin(self, path: KeyPath) -> Location | None:
        """The location of *path*, or of its nearest ancestor that has one."""
        while path:
            if path in self.origins:
                return self.origins[path]
            path = path[:-1]
        return None


def merge_layers(layers: Iterable[Layer]) -> Merged:
    data: dict[str, Any] = {}
    origins: dict[KeyPath, Location] = {}
    sources: list[str] = []
    for layer in layers:
        sources.append(layer.source)
        _merge_mapping(data, layer.data, (), layer, origins)
    return Merged(data, origins, sources)


def _merge_mapping(
    base: dict[str, Any],
    over: dict[str, Any],
    path: KeyPath,
    layer: Layer,
    origins: dict[KeyPath, Location],
) -> None:
    for key, value in over.items():
        child = (*path, key)
        merge_into = (
            isinstance(value, dict)
            and isinstance(base.get(key), dict)
            and child not in layer.replace
        )
        if merge_into:
            origins[child] = layer.origins[child]
            _merge_mapping(base[key], value, child, layer, origins)
            continue
        if key in base:
            _forget(origins, child)
        base[key] = copy.deepcopy(value)
        for sub, location in layer.origins.items():
            if sub[: len(child)] == child:
                origins[sub] = location


def _forget(origins: dict[KeyPath, Location], prefix: KeyPath) -> None:
    for path in [p for p in origins if p[: len(prefix)] == prefix]:
        del origins[path]
