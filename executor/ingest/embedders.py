"""The embedder a model config names: HTTP (embeddings_http.py) or local
(embeddings_local.py), chosen as embeddings.py describes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .embeddings import EMBEDDING_BATCH_SIZE, ModelSpec
from .embeddings_http import HTTPEmbedder
from .embeddings_local import LocalEmbedder
from .types import Embedder


def open_embedder(
    model_config: Mapping[str, Any],
    *,
    batch_size: int = EMBEDDING_BATCH_SIZE,
    timeout: float = 30,
    retries: int = 3,
    backoff: float = 0.5,
) -> Embedder | None:
    """The embedder for ``models.embedding_model``; None when no model is configured.

    A local model is loaded here (seconds), so a missing extra fails at once, not mid-task.
    """
    spec = ModelSpec.from_config(model_config)
    if not spec.model:
        return None
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    if spec.is_local:
        return LocalEmbedder.load(spec, batch_size=batch_size)
    return HTTPEmbedder(
        spec, batch_size=batch_size, timeout=timeout, retries=retries, backoff=backoff
    )
