"""Find, load, merge and validate a configuration directory: the one entry point for commands."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError, Location, Problem
from .loader import Layer, load_layer
from .merge import Merged, merge_layers
from .validate import validate

BASE_FILE = "service_conf.yaml"
LOCAL_FILE = "local.service_conf.yaml"


@dataclass
class Config:
    """A validated configuration: the merged layers and the normalized document."""

    merged: Merged
    document: dict[str, Any]
    layers: list[Layer]
    input_files: list[Path]


def layer_paths(conf_dir: Path, overlays: Sequence[Path] = ()) -> list[Path]:
    """The files that make up a configuration, lowest precedence first."""
    paths = [conf_dir / BASE_FILE]
    if (conf_dir / LOCAL_FILE).exists():
        paths.append(conf_dir / LOCAL_FILE)
    return [*paths, *overlays]


def load_config(
    conf_dir: Path, overlays: Sequence[Path] = (), environ: Mapping[str, str] | None = None
) -> Config:
    """Load and validate; raise ConfigError listing every problem in every file."""
    environ = os.environ if environ is None else environ
    if not conf_dir.is_dir():
        location = Location(str(conf_dir), 0, 0)
        raise ConfigError([Problem("not a directory", location=location)])
    paths = layer_paths(conf_dir, overlays)
    layers: list[Layer] = []
    problems: list[Problem] = []
    for path in paths:
        try:
            layers.append(load_layer(path, environ))
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    merged = merge_layers(layers)
    return Config(merged, validate(merged), layers, paths)
