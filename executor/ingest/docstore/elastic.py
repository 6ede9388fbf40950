"""Elasticsearch (elasticsearch-py 8) and OpenSearch (opensearch-py) document stores.

The request bodies are pure functions (``index_body``, ``bulk_actions``, ``search_body``,
... in :mod:`.elastic_bodies`), shared by both adapters and checked as golden dicts by the
tests: Elasticsearch cannot run on the development machines, so the bodies are what is
verified exactly. The one class, :class:`ElasticDocStore`, sends them through whichever
client its ``flavor`` names (:mod:`.elastic_client`, which also maps the clients' errors).

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

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..embeddings import vector_field
from ..errors import DocStoreError
from ..types import Chunk, Hit
from .elastic_bodies import (
    FLAVORS,
    Flavor,
    bulk_actions,
    delete_actions,
    delete_doc_body,
    hit_from,
    index_body,
    search_body,
    vector_mapping,
)
from .elastic_client import (
    api_error,
    error_status,
    item_errors,
    make_client,
    outage_aware,
    unreachable,
)
from .embedded_query import default_tokenizer
from .mapping import has_vector_template

BULK_SIZE = 500  # chunks per bulk request


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
        self._api_error = api_error(flavor)
        self._unreachable = unreachable(flavor)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ElasticDocStore:
        """From a ``doc_store`` section: engine, hosts, username/password or api_key."""
        flavor = config.get("engine")
        if flavor not in FLAVORS:
            raise ValueError(f"doc_store engine must be one of {FLAVORS}, not {flavor!r}")
        refresh = config.get("refresh", "wait_for")
        return cls(make_client(flavor, config), flavor, refresh=refresh)

    # -- DocStore ---------------------------------------------------------------------------

    @outage_aware
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

    @outage_aware
    def upsert(self, index: str, chunks: Sequence[Chunk]) -> None:
        """Bulk index by id, ``bulk_size`` chunks per request; raises on any item error."""
        now = time.time()
        batches = [chunks[i : i + self.bulk_size] for i in range(0, len(chunks), self.bulk_size)]
        for number, batch in enumerate(batches, 1):
            refresh = self.refresh if number == len(batches) else False
            response = self.client.bulk(body=bulk_actions(index, batch, now), refresh=refresh)
            errors = item_errors(response)
            if errors:
                raise DocStoreError(
                    f"{index}: {len(errors)} of {len(batch)} chunks were not indexed: "
                    + "; ".join(errors[:3])
                )

    @outage_aware
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
            errors = item_errors(response, ignore_status=404)
            if errors:
                raise DocStoreError(f"{index}: deleting chunks failed: " + "; ".join(errors[:3]))
            deleted += sum(
                1 for item in response.get("items", []) if item["delete"].get("result") == "deleted"
            )
        return deleted

    @outage_aware
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
            if error_status(exc) == 404:
                return 0
            raise
        return int(response.get("deleted", 0))

    @outage_aware
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
            if error_status(exc) == 404:
                return []
            raise
        return [hit_from(raw) for raw in response["hits"]["hits"]]

    def close(self) -> None:
        self.client.close()

    # -- helpers beyond the protocol ----------------------------------------------------------

    @outage_aware
    def count(self, index: str, *, kb_id: str | None = None, doc_id: str | None = None) -> int:
        """How many chunks the index holds (of one knowledge base and/or document)."""
        filters = [{"term": {k: v}} for k, v in (("kb_id", kb_id), ("doc_id", doc_id)) if v]
        body = {"query": {"bool": {"filter": filters}}} if filters else None
        try:
            return int(self.client.count(index=index, body=body)["count"])
        except self._api_error as exc:
            if error_status(exc) == 404:
                return 0
            raise

    def __enter__(self) -> ElasticDocStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
