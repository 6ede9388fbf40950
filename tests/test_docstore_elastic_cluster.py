"""The Elasticsearch / OpenSearch document store against a REAL cluster, when one is given.

Elasticsearch and OpenSearch cannot run on the development machines, so these tests skip
unless pointed at a cluster (the one skip the project allows):

    ES_URL=http://es-host:9200 [ES_USERNAME=elastic ES_PASSWORD=... | ES_API_KEY=...]
    [ES_CA_CERTS=/path/ca.pem] .venv/bin/pytest tests/test_docstore_elastic_cluster.py
    OS_URL=https://os-host:9200 [OS_USERNAME=admin OS_PASSWORD=...] [OS_CA_CERTS=...]

Unlike the emulator tests (tests/test_docstore_elastic.py) they also run hybrid (knn) search.
Each test works in its own ``ragflow_rftest_<random>`` index and deletes it afterwards.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from ragflow_queries import QUESTIONS, dealer_search_body
from test_ragflow_interop import ingest_all

from executor.ingest.docstore import open_doc_store
from executor.ingest.docstore.elastic import ElasticDocStore
from executor.ingest.docstore.mapping import ragflow_index_body
from executor.ingest.ragtokens import shared_tokenizer
from executor.ingest.types import Chunk

CLUSTERS = {
    "elasticsearch": ("ES", "set ES_URL to run against a real Elasticsearch"),
    "opensearch": ("OS", "set OS_URL to run against a real OpenSearch"),
}


def _config(engine: str) -> dict[str, Any] | None:
    prefix, _ = CLUSTERS[engine]
    url = os.environ.get(f"{prefix}_URL")
    if not url:
        return None
    config: dict[str, Any] = {"engine": engine, "hosts": [url]}
    for key in ("username", "password", "api_key", "ca_certs"):
        value = os.environ.get(f"{prefix}_{key.upper()}")
        if value:
            config[key] = value
    return config


@pytest.fixture(params=list(CLUSTERS))
def store(request: pytest.FixtureRequest) -> Iterator[ElasticDocStore]:
    config = _config(request.param)
    if config is None:
        pytest.skip(CLUSTERS[request.param][1])
    s = open_doc_store(config)
    assert isinstance(s, ElasticDocStore)
    with s:
        yield s


@pytest.fixture
def index(store: ElasticDocStore) -> Iterator[str]:
    name = f"ragflow_rftest_{secrets.token_hex(4)}"
    yield name
    with contextlib.suppress(Exception):
        store.client.indices.delete(index=name)


def chunk(
    chunk_id: str,
    text: str,
    vector: list[float] | None = None,
    *,
    kb_id: str = "kb1",
    doc_id: str = "doc1",
) -> Chunk:
    ltks, sm_ltks = shared_tokenizer().content_fields(text)
    return Chunk(
        id=chunk_id,
        doc_id=doc_id,
        kb_id=kb_id,
        doc_name=f"{doc_id}.txt",
        content=text,
        tokens=text.lower().split(),
        pages=[1],
        vector=vector,
        content_ltks=ltks,
        content_sm_ltks=sm_ltks,
    )


CHUNKS = [
    chunk("orchard", "apple orchard apple harvest", [1.0, 0.0, 0.0]),
    chunk("pie", "apple pie recipe", [0.0, 1.0, 0.0]),
    chunk("banana", "banana bread", [0.0, 0.9, 0.1], doc_id="doc2"),
    chunk("elsewhere", "apple pie recipe", [0.0, 1.0, 0.0], kb_id="kb2"),
]


def test_cluster_create_index_is_idempotent_and_adds_vector_fields(
    store: ElasticDocStore, index: str
) -> None:
    store.create_index(index, 3)
    store.create_index(index, 3)
    store.create_index(index, 8)
    mappings = store.client.indices.get_mapping(index=index)[index]["mappings"]
    assert {"q_3_vec", "q_8_vec"} <= set(mappings["properties"])
    assert (
        mappings["dynamic_templates"]
        == ragflow_index_body(store.flavor)["mappings"]["dynamic_templates"]
    )


def test_cluster_upsert_search_delete(store: ElasticDocStore, index: str) -> None:
    store.create_index(index, 3)
    store.upsert(index, CHUNKS)
    store.upsert(index, CHUNKS)
    assert store.count(index) == 4
    assert [h.chunk_id for h in store.search(index, "banana", kb_ids=["kb1"])] == ["banana"]
    apple = {h.chunk_id for h in store.search(index, "apple", kb_ids=["kb1"])}
    assert apple == {"orchard", "pie"}
    assert store.delete(index, ["orchard", "missing"]) == 1
    assert store.delete_doc(index, "doc2") == 1
    assert store.count(index) == 2


def test_cluster_hybrid_search(store: ElasticDocStore, index: str) -> None:
    store.create_index(index, 3)
    store.upsert(index, CHUNKS)
    hits = store.search(index, "apple", kb_ids=["kb1"], vector=[0.0, 1.0, 0.0])
    ids = [h.chunk_id for h in hits]
    assert ids[0] == "pie"
    assert "banana" in ids  # found by the vector alone
    assert "elsewhere" not in ids  # the kb filter holds for the knn leg too


@pytest.mark.parametrize(("question", "query", "first", "absent"), QUESTIONS)
def test_cluster_ragflow_query_finds_ragfleet_chunks(
    store: ElasticDocStore, index: str, question: str, query: str, first: str, absent: set[str]
) -> None:
    """RAGFlow's Dealer.search body (tests/ragflow_queries.py) on chunks the pipeline built."""
    store.create_index(index, None)
    store.upsert(index, ingest_all())
    response = store.client.search(index=index, body=dealer_search_body(query, ["kb1"]))
    found = [hit["_source"]["docnm_kwd"] for hit in response["hits"]["hits"]]
    assert found[0] == first, question
    assert not absent & set(found), question
