"""Elasticsearch (elasticsearch-py 8) and OpenSearch (opensearch-py) document stores.

The request bodies are pure functions (``index_body``, ``bulk_actions``, ``search_body``,
...), shared by both adapters and checked as golden dicts by the tests: Elasticsearch cannot
run on the development machines, so the bodies are what is verified exactly. The one class,
:class:`ElasticDocStore`, sends them through whichever client its ``flavor`` names.

Compatibility with upstream RAGFlow (conf/mapping.json, conf/os_mapping.json,
rag/utils/es_conn.py, rag/utils/opensearch_conn.py):

* index ``ragflow_<tenant_id>`` (the caller's name) created with RAGFlow's own settings and
  dynamic templates (:mod:`.mapping`); an index RAGFlow created is used as it is. A vector
  dimension RAGFlow has no template for gets an explicit ``q_<dim>_vec`` property (ES
  ``dense_vector`` / OS ``knn_vector`` with the ``lucene`` HNSW engine, which supports the
  knn ``filter``, cosine).
* chunk documents carry the fields RAGFlow's standard path writes (:func:`chunk_source`,
  docs/compatibility.md, "Chunks in the document store"), with ``create_time`` in UTC.
* BM25: a ``match`` on ``content_ltks`` with a ``terms`` filter on ``kb_id``.
* Hybrid: ES sends a top-level ``knn`` clause next to the BM25 query, whose ``boost`` is 0.05,
  as upstream's ``FusionExpr("weighted_sum", ..., {"weights": "0.05,0.95"})`` sets it;
  OpenSearch has no top-level knn, so the BM25 ``match`` (boost 0.05) and a ``knn`` query are
  two ``should`` clauses of one bool query. Either way the engine adds the two scores; unlike
  upstream there is no Python re-rank afterwards, so ``Hit.score`` is the engine's ``_score``.

A cluster that gives no answer (refused, reset, timed out) or says "not now" (429, 502, 503,
504) raises :class:`DocStoreUnavailable`: the executor waits the outage out and runs the task
again, where upstream fails it.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from ..types import Chunk, Hit
from . import DocStoreError, DocStoreUnavailable
from .embedded_query import default_tokenizer
from .mapping import has_vector_template, ragflow_index_body

T = TypeVar("T")
Flavor = Literal["elasticsearch", "opensearch"]
FLAVORS: tuple[Flavor, ...] = ("elasticsearch", "opensearch")

HYBRID_TEXT_BOOST = 0.05  # upstream's fusion weights "0.05,0.95": text boost = 1 - 0.95
MIN_NUM_CANDIDATES = 100  # ES knn candidates per shard: at least this, else 2 x k (upstream)
BULK_SIZE = 500  # chunks per bulk request
SOURCE_FIELDS = ["id", "doc_id", "kb_id", "docnm_kwd", "content_with_weight", "page_num_int"]


# --- request bodies (pure) -------------------------------------------------------------------


def vector_field(dim: int) -> str:
    """Upstream's name of the vector field of a dimension."""
    return f"q_{dim}_vec"


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


# --- clients ---------------------------------------------------------------------------------


def _hosts(config: Mapping[str, Any]) -> list[str]:
    hosts = config.get("hosts") or []
    if isinstance(hosts, str):
        hosts = hosts.split(",")
    urls = [str(h).strip() for h in hosts if str(h).strip()]
    if not urls:
        raise ValueError(f"doc_store engine {config.get('engine')!r} needs 'hosts' (URLs)")
    return urls


def make_client(flavor: Flavor, config: Mapping[str, Any]) -> Any:
    """The official client for ``flavor`` from a ``doc_store`` config section.

    Optional keys beyond configc's: ``request_timeout`` (seconds, default 60), ``ca_certs``
    and ``verify_certs`` (TLS), passed to the client as they are.
    """
    hosts = _hosts(config)
    user, password = config.get("username"), config.get("password")
    timeout = float(config.get("request_timeout", 60))
    tls = {k: config[k] for k in ("ca_certs", "verify_certs") if k in config}
    if flavor == "elasticsearch":
        from elasticsearch import Elasticsearch

        es_auth: dict[str, Any] = {}
        if config.get("api_key"):
            es_auth["api_key"] = config["api_key"]
        elif user:
            es_auth["basic_auth"] = (user, password or "")
        return Elasticsearch(
            hosts, request_timeout=timeout, max_retries=3, retry_on_timeout=True, **es_auth, **tls
        )
    if config.get("api_key"):
        raise ValueError("OpenSearch takes username/password, not an api_key (doc_store.api_key)")
    from opensearchpy import OpenSearch

    os_auth = {"http_auth": (user, password or "")} if user else {}
    return OpenSearch(
        hosts, timeout=timeout, max_retries=3, retry_on_timeout=True, **os_auth, **tls
    )


def _api_error(flavor: Flavor) -> type[Exception]:
    """The exception a client raises for an error response (status, error type, reason)."""
    if flavor == "elasticsearch":
        from elasticsearch import ApiError

        return ApiError
    from opensearchpy import TransportError

    return TransportError


def _unreachable(flavor: Flavor) -> tuple[type[Exception], ...]:
    """What a client raises when no response came: refused, reset, timed out, TLS failed."""
    if flavor == "elasticsearch":
        from elastic_transport import ConnectionError, ConnectionTimeout

        return (ConnectionError, ConnectionTimeout)
    from opensearchpy import ConnectionError

    return (ConnectionError,)  # its ConnectionTimeout and SSLError are ConnectionErrors


RETRY_LATER = frozenset({429, 502, 503, 504})
"""Statuses that say "not now" (rejected for load, no master, a proxy without a backend)."""


def _outage_aware(method: Callable[..., T]) -> Callable[..., T]:
    """Raise DocStoreUnavailable where the cluster gave no answer or said "not now", so the
    executor waits the outage out instead of failing the task."""

    @functools.wraps(method)
    def call(self: ElasticDocStore, *args: Any, **kwargs: Any) -> T:
        try:
            return method(self, *args, **kwargs)
        except self._unreachable as exc:
            raise DocStoreUnavailable(f"{self.flavor} unreachable: {exc}") from exc
        except self._api_error as exc:
            if (status := _status(exc)) in RETRY_LATER:
                raise DocStoreUnavailable(f"{self.flavor} answered {status}: {exc}") from exc
            raise

    return call


def _status(exc: BaseException) -> int | None:
    status = getattr(getattr(exc, "meta", None), "status", None)  # elasticsearch-py 8
    if not isinstance(status, int):
        status = getattr(exc, "status_code", None)  # opensearch-py
    return status if isinstance(status, int) else None


def _item_errors(response: Mapping[str, Any], ignore_status: int | None = None) -> list[str]:
    errors = []
    for item in response.get("items", []):
        (op, result), *_ = item.items()
        if "error" in result and result.get("status") != ignore_status:
            error = result["error"]
            reason = error.get("reason", error) if isinstance(error, dict) else error
            errors.append(f"{op} {result.get('_id')}: {reason}")
    return errors


class ElasticDocStore:
    """The DocStore protocol on Elasticsearch or OpenSearch through the official client.

    ``refresh`` goes with the last bulk request of an upsert or delete (``"wait_for"``: a
    search right after sees the chunks; ``False``: rely on the 1 s refresh interval, as
    upstream does). Earlier bulk requests of the same call never wait for a refresh.
    """

    def __init__(
        self,
        client: Any,
        flavor: Flavor,
        *,
        refresh: bool | str = "wait_for",
        bulk_size: int = BULK_SIZE,
        tokenizer: Callable[[str], Sequence[str] | str] | None = None,
    ) -> None:
        if flavor not in FLAVORS:
            raise ValueError(f"flavor must be one of {FLAVORS}, not {flavor!r}")
        self.client = client
        self.flavor: Flavor = flavor
        self.refresh = refresh
        self.bulk_size = bulk_size
        self._tokenize = tokenizer or default_tokenizer()
        self._api_error = _api_error(flavor)
        self._unreachable = _unreachable(flavor)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ElasticDocStore:
        """From a ``doc_store`` section: engine, hosts, username/password or api_key."""
        flavor = config.get("engine")
        if flavor not in FLAVORS:
            raise ValueError(f"doc_store engine must be one of {FLAVORS}, not {flavor!r}")
        refresh = config.get("refresh", "wait_for")
        return cls(make_client(flavor, config), flavor, refresh=refresh)

    # -- DocStore ---------------------------------------------------------------------------

    @_outage_aware
    def create_index(self, index: str, vector_dim: int | None) -> None:
        """Create the index if missing; on an existing one (ours or RAGFlow's), add an explicit
        ``q_<dim>_vec`` if no template of RAGFlow's types it."""
        try:
            self.client.indices.create(index=index, body=index_body(vector_dim, self.flavor))
            return
        except self._api_error as exc:
            if "resource_already_exists_exception" not in str(exc):
                raise
        if vector_dim and not has_vector_template(vector_dim, self.flavor):
            mapping = {vector_field(vector_dim): vector_mapping(vector_dim, self.flavor)}
            self.client.indices.put_mapping(index=index, body={"properties": mapping})

    @_outage_aware
    def upsert(self, index: str, chunks: Sequence[Chunk]) -> None:
        """Bulk index by id, ``bulk_size`` chunks per request; raises on any item error."""
        now = time.time()
        batches = [chunks[i : i + self.bulk_size] for i in range(0, len(chunks), self.bulk_size)]
        for number, batch in enumerate(batches, 1):
            refresh = self.refresh if number == len(batches) else False
            response = self.client.bulk(body=bulk_actions(index, batch, now), refresh=refresh)
            errors = _item_errors(response)
            if errors:
                raise DocStoreError(
                    f"{index}: {len(errors)} of {len(batch)} chunks were not indexed: "
                    + "; ".join(errors[:3])
                )

    @_outage_aware
    def delete(self, index: str, chunk_ids: Sequence[str]) -> int:
        """Delete chunks by id; returns how many existed (missing ids and index count 0)."""
        actions = delete_actions(index, chunk_ids)
        deleted = 0
        for start in range(0, len(actions), self.bulk_size):
            last = start + self.bulk_size >= len(actions)
            response = self.client.bulk(
                body=actions[start : start + self.bulk_size],
                refresh=self.refresh if last else False,
            )
            errors = _item_errors(response, ignore_status=404)
            if errors:
                raise DocStoreError(f"{index}: deleting chunks failed: " + "; ".join(errors[:3]))
            deleted += sum(
                1 for item in response.get("items", []) if item["delete"].get("result") == "deleted"
            )
        return deleted

    @_outage_aware
    def delete_doc(self, index: str, doc_id: str) -> int:
        """delete_by_query on ``doc_id``; returns how many chunks went."""
        try:
            response = self.client.delete_by_query(
                index=index,
                body=delete_doc_body(doc_id),
                refresh=bool(self.refresh),
                conflicts="proceed",
            )
        except self._api_error as exc:
            if _status(exc) == 404:
                return 0
            raise
        return int(response.get("deleted", 0))

    @_outage_aware
    def search(
        self,
        index: str,
        query: str,
        *,
        kb_ids: Sequence[str],
        top_k: int = 10,
        vector: Sequence[float] | None = None,
    ) -> list[Hit]:
        """BM25 (hybrid with ``vector``) over raw ``query`` text, tokenized as the chunks were."""
        tokens = self._tokenize(query)
        tokens = tokens.split() if isinstance(tokens, str) else list(tokens)
        if not tokens or not kb_ids or top_k < 1:
            return []
        body = search_body(tokens, kb_ids, top_k, vector, self.flavor)
        try:
            response = self.client.search(index=index, body=body)
        except self._api_error as exc:
            if _status(exc) == 404:
                return []
            raise
        return [hit_from(raw) for raw in response["hits"]["hits"]]

    def close(self) -> None:
        self.client.close()

    # -- helpers beyond the protocol ----------------------------------------------------------

    @_outage_aware
    def count(self, index: str, *, kb_id: str | None = None, doc_id: str | None = None) -> int:
        """How many chunks the index holds (of one knowledge base and/or document)."""
        filters = [{"term": {k: v}} for k, v in (("kb_id", kb_id), ("doc_id", doc_id)) if v]
        body = {"query": {"bool": {"filter": filters}}} if filters else None
        try:
            return int(self.client.count(index=index, body=body)["count"])
        except self._api_error as exc:
            if _status(exc) == 404:
                return 0
            raise

    def __enter__(self) -> ElasticDocStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
