"""Document stores: where chunks are indexed and searched (the DocStore protocol in ../types.py).

``open_doc_store(config)`` takes the compiled runtime config's ``doc_store`` section:

* ``{"engine": "embedded", "path": "/var/lib/ragfleet/docstore.db"}``: SQLite FTS5 in one
  file, safe for several executor processes on one host (see embedded.py);
* ``{"engine": "elasticsearch" | "opensearch", "hosts": [url, ...], "username"?,
  "password"?, "api_key"?}``: the official clients (see elastic.py);
* ``{"engine": "infinity", ...}``: not supported yet (a clear error, not a silent fallback).

The engine modules are imported on demand, so an embedded-only host never imports the
Elasticsearch or OpenSearch clients.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...settings import opening
from ...settings_spec import DOC_ENGINES as ENGINES
from ..errors import DocStoreError, DocStoreUnavailable
from ..types import DocStore


def open_doc_store(config: Mapping[str, Any]) -> DocStore:
    """Open the store a ``doc_store`` config section names.

    Raises NotImplementedError for ``infinity`` and ValueError for anything malformed, with
    a message an operator can act on.
    """
    engine = config.get("engine", "embedded")
    if engine == "embedded":
        return _open_embedded(config)
    if engine in ("elasticsearch", "opensearch"):
        from .elastic import ElasticDocStore

        return ElasticDocStore.from_config(config)
    if engine == "infinity":
        raise NotImplementedError(
            "doc_store engine 'infinity' is not supported yet: set executor.doc_engine to "
            f"one of {', '.join(ENGINES)}"
        )
    raise ValueError(f"unknown doc_store engine {engine!r}: expected one of {', '.join(ENGINES)}")


def open_configured_doc_store(config: Mapping[str, Any]) -> DocStore:
    """:func:`open_doc_store` for the runtime config's section: what is wrong with it (an
    unknown engine, a path that cannot be opened) is a SettingsError that says so."""
    where = config.get("path") or config.get("hosts") or config.get("engine")
    with opening("the document store", where):
        return open_doc_store(config)


def _open_embedded(config: Mapping[str, Any]) -> DocStore:
    from .embedded import EmbeddedDocStore

    path = config.get("path")
    if not path:
        raise ValueError("doc_store engine 'embedded' needs a 'path' (the SQLite database file)")
    return EmbeddedDocStore(path)


__all__ = [
    "ENGINES",
    "DocStoreError",
    "DocStoreUnavailable",
    "open_configured_doc_store",
    "open_doc_store",
]
