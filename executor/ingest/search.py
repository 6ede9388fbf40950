"""Searching a knowledge base from the command line: what ``ragfleet search`` does."""

from __future__ import annotations

from ..settings import Settings
from ..store.database import TaskStore
from .catalog import Catalog
from .docstore import open_configured_doc_store
from .embedders import open_embedder
from .embeddings import embedding_config
from .types import Hit


def search_kb(
    settings: Settings, store: TaskStore, kb_name: str, query: str, top_k: int
) -> list[Hit]:
    """BM25 over the knowledge base's chunks; hybrid when it has an embedding model."""
    kb = Catalog(store).knowledge_base_named(kb_name)
    if kb is None:
        raise LookupError(f"no knowledge base named {kb_name!r}")
    vector = None
    if kb.embd_id:
        embedder = open_embedder(embedding_config(settings.models, kb.embd_id))
        vector = embedder.embed([query])[0] if embedder else None
    doc_store = open_configured_doc_store(settings.doc_store)
    try:
        return doc_store.search(kb.index, query, kb_ids=[kb.id], top_k=top_k, vector=vector)
    finally:
        doc_store.close()
