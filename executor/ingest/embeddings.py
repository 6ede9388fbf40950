"""Embedding models: an OpenAI-compatible HTTP endpoint, or a local sentence-transformers model.

The model comes from the compiled config's ``models.embedding_model`` (``model`` is upstream's
``name@factory``; ``factory``, ``api_key``, ``base_url`` as resolved by configc).

* **HTTP** (every factory but the local ones): ``POST <endpoint>`` with
  ``{"model": <name without @factory>, "input": [...]}`` and ``Authorization: Bearer <api_key>``
  when a key is set, in batches of ``batch_size`` texts (upstream's EMBEDDING_BATCH_SIZE = 16).
  The endpoint is derived from ``base_url`` by ``embeddings_url`` (embeddings_http.py).
* **Local** (factory ``local`` / ``sentence-transformers``, or the model all-MiniLM-L6-v2 without
  an HTTP base_url): sentence-transformers, loaded offline from a directory
  (embeddings_local.py). Nothing is ever downloaded at run time.

``open_embedder`` (embedders.py) makes the one a config names; this module holds what both
share: the resolved model (:class:`ModelSpec`) and the errors.

Errors: :class:`EmbeddingUnavailable` when the endpoint cannot be reached or keeps answering
5xx/429 (an infrastructure problem: retry the task later); :class:`EmbeddingError` for
everything retrying cannot fix (a 4xx, a malformed response, a bad model config). Because
EmbeddingUnavailable is a subclass of both EmbeddingError and ConnectionError, catch it first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

EMBEDDING_BATCH_SIZE = 16
"""Texts per request, upstream's EMBEDDING_BATCH_SIZE."""

LOCAL_FACTORIES = frozenset({"local", "sentence-transformers"})
BUNDLED_MODEL = "all-MiniLM-L6-v2"


def vector_field(dim: int) -> str:
    """The doc-store field holding vectors of ``dim`` dimensions (upstream's naming)."""
    return f"q_{dim}_vec"


# -- model config ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    """A resolved embedding model: ``model`` as configured, ``name`` without ``@factory``."""

    model: str
    name: str
    factory: str
    api_key: str
    base_url: str

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ModelSpec:
        model = str(config.get("model") or "").strip()
        name, at, suffix = model.rpartition("@")
        if not at:
            name, suffix = model, ""
        return cls(
            model=model,
            name=name,
            factory=str(config.get("factory") or suffix or ""),
            api_key=str(config.get("api_key") or ""),
            base_url=str(config.get("base_url") or "").strip(),
        )

    @property
    def is_local(self) -> bool:
        """Local when the factory says so, or for the bundled model without an HTTP endpoint
        (a server may well serve all-MiniLM-L6-v2 over HTTP; then base_url is a URL)."""
        if self.factory.lower() in LOCAL_FACTORIES:
            return True
        return is_bundled(self.name) and not _is_url(self.base_url)


def _is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def is_bundled(name: str) -> bool:
    return name.rpartition("/")[2].lower() == BUNDLED_MODEL.lower()


def embedding_config(models: Mapping[str, Any], embd_id: str) -> dict[str, Any]:
    """The endpoint config of a knowledge base's embedding model ``name@factory``.

    The compiled config resolves one default embedding model (``models.embedding_model``)
    with its endpoint; a knowledge base naming another model of the same deployment reuses
    that endpoint and key with its own name and factory.
    """
    config = dict(models.get("embedding_model") or {})
    if embd_id != config.get("model"):
        factory = embd_id.partition("@")[2]
        config.update(model=embd_id, factory=factory or config.get("factory", ""))
    return config
