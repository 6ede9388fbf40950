"""The request bodies of the Elasticsearch/OpenSearch document store: pure functions from
chunks and queries to the dicts the clients send, shared by both flavors and checked as golden
dicts by the tests (what they mean for RAGFlow: elastic.py)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from ..embeddings import vector_field
from ..types import Chunk, Hit
from .mapping import has_vector_template, ragflow_index_body

Flavor = Literal["elasticsearch", "opensearch"]
FLAVORS: tuple[Flavor, ...] = ("elasticsearch", "opensearch")

HYBRID_TEXT_BOOST = 0.05  # upstream's fusion weights "0.05,0.95": text boost = 1 - 0.95
MIN_NUM_CANDIDATES = 100  # ES knn candidates per shard: at least this, else 2 x k (upstream)
SOURCE_FIELDS = ["id", "doc_id", "kb_id", "docnm_kwd", "content_with_weight", "page_num_int"]


def vector_mapping(dim: int, flavor: Flavor = "elasticsearch") -> dict[str, Any]:
    """The mapping of ``q_<dim>_vec``: cosine similarity, indexed for knn."""
    if flavor == "opensearch":
        return {
            "type": "knn_vector",
            "dimension": dim,
            "method": {"name": "hnsw", "space_type": "cosinesimil", "engine": "lucene"},
        }
    return {"type": "dense_vector", "dims": dim, "index": True, "similarity": "cosine"}


def index_body(vector_dim: int | None, flavor: Flavor = "elasticsearch") -> dict[str, Any]:
    """Settings and mappings of a ``ragflow_<tenant_id>`` index: RAGFlow's, plus an explicit
    vector property for a dimension its templates do not cover."""
    body = ragflow_index_body(flavor)
    if vector_dim and not has_vector_template(vector_dim, flavor):
        properties = body["mappings"]["properties"]
        properties[vector_field(vector_dim)] = vector_mapping(vector_dim, flavor)
    return body


def chunk_source(chunk: Chunk, now: float) -> dict[str, Any]:
    """A chunk as an indexed document, with the fields of RAGFlow's standard path (naive
    parser + build_chunks); ``now`` stands in for a create_time of 0."""
    created = chunk.create_time or now
    source: dict[str, Any] = {
        "id": chunk.id,
        "doc_id": chunk.doc_id,
        "kb_id": chunk.kb_id,
        "docnm_kwd": chunk.doc_name,
        "title_tks": chunk.title_tks,
        "title_sm_tks": chunk.title_sm_tks,
        "content_with_weight": chunk.content,
        "content_ltks": chunk.ltks,
        "content_sm_ltks": chunk.content_sm_ltks or chunk.ltks,
        **position_fields(chunk),
        "img_id": "",
        "create_time": datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%d %H:%M:%S"),
        "create_timestamp_flt": created,
        "available_int": 1,
    }
    if chunk.vector is not None:
        source[vector_field(len(chunk.vector))] = [float(x) for x in chunk.vector]
    return source


def position_fields(chunk: Chunk) -> dict[str, Any]:
    """``page_num_int``, ``top_int`` and ``position_int`` as upstream's ``add_positions``.

    Without a PDF layout upstream gives the i-th chunk the position ``[i]*5``: page i+1,
    top i. Paged chunks keep their real pages (1-based) and have no box (pypdf gives none),
    so ``top_int`` is the ordinal, which keeps RAGFlow's page/top ordering, and there is no
    ``position_int`` for its PDF viewer to draw."""
    n = chunk.position
    if not chunk.pages:
        return {"page_num_int": [n + 1], "position_int": [[n + 1, n, n, n, n]], "top_int": [n]}
    return {"page_num_int": list(chunk.pages), "top_int": [n] * len(chunk.pages)}


def bulk_actions(
    index: str, chunks: Sequence[Chunk], now: float | None = None
) -> list[dict[str, Any]]:
    """Bulk ``index`` operations (insert or replace by ``_id`` = chunk id)."""
    stamp = time.time() if now is None else now
    actions: list[dict[str, Any]] = []
    for chunk in chunks:
        actions.append({"index": {"_index": index, "_id": chunk.id}})
        actions.append(chunk_source(chunk, stamp))
    return actions


def delete_actions(index: str, chunk_ids: Sequence[str]) -> list[dict[str, Any]]:
    """Bulk ``delete`` operations, one per distinct id."""
    return [{"delete": {"_index": index, "_id": chunk_id}} for chunk_id in dict.fromkeys(chunk_ids)]


def delete_doc_body(doc_id: str) -> dict[str, Any]:
    """The delete_by_query body removing one document's chunks."""
    return {"query": {"term": {"doc_id": doc_id}}}


def search_body(
    query_tokens: Sequence[str],
    kb_ids: Sequence[str],
    top_k: int,
    vector: Sequence[float] | None = None,
    flavor: Flavor = "elasticsearch",
) -> dict[str, Any]:
    """BM25 over ``content_ltks`` within ``kb_ids``; hybrid with ``vector`` (module docstring)."""
    kb_filter = {"terms": {"kb_id": list(dict.fromkeys(kb_ids))}}
    text = " ".join(dict.fromkeys(query_tokens))
    body: dict[str, Any] = {"size": top_k, "_source": list(SOURCE_FIELDS)}
    if not vector:
        body["query"] = {
            "bool": {"must": [{"match": {"content_ltks": {"query": text}}}], "filter": [kb_filter]}
        }
        return body
    query_vector = [float(x) for x in vector]
    field = vector_field(len(query_vector))
    structural = {"bool": {"filter": [kb_filter]}}
    if flavor == "opensearch":
        body["query"] = {
            "bool": {
                "filter": [kb_filter],
                "should": [
                    {"match": {"content_ltks": {"query": text, "boost": HYBRID_TEXT_BOOST}}},
                    {"knn": {field: {"vector": query_vector, "k": top_k, "filter": structural}}},
                ],
                "minimum_should_match": 1,
            }
        }
        return body
    body["query"] = {
        "bool": {
            "must": [{"match": {"content_ltks": {"query": text}}}],
            "filter": [kb_filter],
            "boost": HYBRID_TEXT_BOOST,
        }
    }
    body["knn"] = {
        "field": field,
        "query_vector": query_vector,
        "k": top_k,
        "num_candidates": max(2 * top_k, MIN_NUM_CANDIDATES),
        "filter": structural,
    }
    return body


def hit_from(raw: Mapping[str, Any]) -> Hit:
    """A search response hit as a :class:`Hit`."""
    source = raw.get("_source") or {}
    pages = source.get("page_num_int") or []
    return Hit(
        chunk_id=str(raw["_id"]),
        doc_id=source.get("doc_id", ""),
        kb_id=source.get("kb_id", ""),
        doc_name=source.get("docnm_kwd", ""),
        content=source.get("content_with_weight", ""),
        score=float(raw.get("_score") or 0.0),
        pages=tuple(pages) if isinstance(pages, list) else (pages,),
    )
