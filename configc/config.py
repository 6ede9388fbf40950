"""Find, load, merge and validate a configuration directory: the one entry point for commands."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError, Location, Problem
from .loader import KeyPath, Layer, dotted, load_layer
from .merge import Merged, merge_layers
from .pki import TlsError, prepare_tls
from .render import OutputFile, TreeRenderer, UnsafeValues
from .safe_values import BARE_WORD, UnsafeValue
from .secrets import SecretStore, apply_secrets
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
    files: list[OutputFile]
    """The compiled files (without the manifest): rendered here, so that a value that
    cannot be written safely is refused by ``check`` as by ``build``."""
    store: SecretStore
    """The generated passwords (conf/.secrets.yaml); ``build`` saves it."""


def layer_paths(conf_dir: Path, overlays: Sequence[Path] = ()) -> list[Path]:
    """The files that make up a configuration, lowest precedence first."""
    paths = [conf_dir / BASE_FILE]
    if (conf_dir / LOCAL_FILE).exists():
        paths.append(conf_dir / LOCAL_FILE)
    return [*paths, *overlays]


def load_config(
    conf_dir: Path,
    overlays: Sequence[Path] = (),
    environ: Mapping[str, str] | None = None,
    store: SecretStore | None = None,
    vault: bool = False,
    keep_tls: bool = False,
) -> Config:
    """Load and validate; raise ConfigError listing every problem in every file.

    *store* holds the generated passwords (default: conf_dir's, read only); with *vault* the
    secret-holding host files are compiled as Ansible templates (templated.py). *keep_tls*:
    a CA or certificate that TLS needs and conf_dir/tls lacks is made there (``build``);
    False: made in memory only, for a command that must write nothing (``check``, ``diff``).
    """
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
    store = store or SecretStore(conf_dir)
    document = validate(
        merged, lambda doc: apply_secrets(doc, merged, store, conf_dir / LOCAL_FILE)
    )
    try:
        # The store's vault password (vault mode) also opens the TLS private keys.
        tls = prepare_tls(conf_dir, document, persist=keep_tls, vault=store.vault)
    except TlsError as exc:
        location = merged.origin(exc.path) if exc.path else _first(merged)
        raise ConfigError([Problem(str(exc), dotted(exc.path), location)]) from None
    renderer = TreeRenderer(document, tls, vault=vault)
    try:
        files = renderer.files()
    except UnsafeValues as exc:
        problems = list({_unsafe_problem(unsafe, merged) for unsafe in exc.refused})
        raise ConfigError(problems) from None
    if renderer.problems:
        raise ConfigError(renderer.problems)
    return Config(merged, document, layers, paths, files, store)


def _unsafe_problem(unsafe: UnsafeValue, merged: Merged) -> Problem:
    """*unsafe* at the key that set it: templates write values, not key paths, so the key is
    the one whose string is the value, or holds it (a path the unit cuts), or is held in it
    (a path the unit extends)."""
    value = unsafe.value
    offending = set(BARE_WORD.sub("", value))
    # Only a key holding a character the format refused can have brought it in.
    leaves = [(p, leaf) for p, leaf in _string_leaves(merged.data, ()) if offending & set(leaf)]
    for matches in (
        lambda leaf: leaf == value,
        lambda leaf: value in leaf,
        lambda leaf: leaf in value,
    ):
        path = next((p for p, leaf in leaves if leaf and value and matches(leaf)), None)
        if path is not None:
            return Problem(str(unsafe), dotted(path), merged.origin(path) or _first(merged))
    return Problem(f"a value {value!r} {unsafe}", location=_first(merged))


def _first(merged: Merged) -> Location:
    return Location(merged.sources[-1], 1, 1)


def _string_leaves(data: Any, path: KeyPath):
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _string_leaves(value, (*path, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _string_leaves(value, (*path, index))
    elif isinstance(data, str):
        yield path, data
