"""The Elasticsearch / OpenSearch document store: golden request bodies, and emulator tests.

Elasticsearch and OpenSearch cannot run on these machines (../shared/notes/doc-stores.md), so:

* the request bodies are checked exactly, as literal dicts (``test_golden_*``);
* ``test_emulator_*`` run the adapter through BOTH official clients against a real
  ``osmem-server`` process, an in-memory ES/OpenSearch API EMULATOR. They prove behaviour
  against that emulator, not against Elasticsearch or OpenSearch. The emulator:
    - answers with OpenSearch's API; elasticsearch-py 8 sends
      ``application/vnd.elasticsearch+json; compatible-with=8`` content types, which it
      rejects with 406, so the ES client here goes through ``PlainJsonNode`` (below), which
      sends plain ``application/json``. A real Elasticsearch 8 takes the compatible types;
    - rejects ``dense_vector`` mappings (ES vectors) and every ``knn`` query (ES and OS), so
      the hybrid search bodies are verified by the golden tests ONLY, and the ES emulator
      tests create indexes without a vector field;
  index creation (with OpenSearch's ``knn_vector``), bulk, match + bool/terms filter, counts,
  bulk deletes and delete_by_query work there and are exercised.
* tests/test_docstore_elastic_cluster.py runs the same adapter against a real cluster when
  ES_URL / OS_URL is set.
"""

from __future__ import annotations

import http.server
import itertools
import json
import socket
import threading
from typing import Any

import pytest
from servers import EmulatorServer

from executor.ingest.docstore import open_doc_store
from executor.ingest.docstore.elastic import ElasticDocStore
from executor.ingest.docstore.elastic_bodies import (
    bulk_actions,
    delete_actions,
    delete_doc_body,
    index_body,
    search_body,
)
from executor.ingest.docstore.mapping import ragflow_index_body
from executor.ingest.errors import DocStoreError, DocStoreUnavailable
from executor.ingest.ragtokens import shared_tokenizer
from executor.ingest.types import Chunk

# --- golden bodies -----------------------------------------------------------------------------

SOURCE = ["id", "doc_id", "kb_id", "docnm_kwd", "content_with_weight", "page_num_int"]


def golden_chunk(**overrides: Any) -> Chunk:
    fields: dict[str, Any] = {
        "id": "c1",
        "doc_id": "d1",
        "kb_id": "kb1",
        "doc_name": "a.pdf",
        "content": "Hello, World",
        "tokens": ["hello", "world"],
        "pages": [1, 2],
        "vector": [0.5, 0.25, 0.0],
        "create_time": 1700000000.5,
        "content_ltks": "hello world",
        "content_sm_ltks": "hello world",
        "title_tks": "a",
        "title_sm_tks": "a",
    }
    fields.update(overrides)
    return Chunk(**fields)


def test_golden_index_body_elasticsearch() -> None:
    # RAGFlow's mapping.json has templates for 512/768/1024/1536 only: 384 gets a property
    body = ragflow_index_body("elasticsearch")
    body["mappings"]["properties"]["q_384_vec"] = {
        "type": "dense_vector",
        "dims": 384,
        "index": True,
        "similarity": "cosine",
    }
    assert index_body(384, "elasticsearch") == body


def test_golden_index_body_opensearch() -> None:
    # 1024 has a template in os_mapping.json: the index is exactly RAGFlow's
    assert index_body(1024, "opensearch") == ragflow_index_body("opensearch")
    body = ragflow_index_body("opensearch")
    body["mappings"]["properties"]["q_8_vec"] = {
        "type": "knn_vector",
        "dimension": 8,
        "method": {"name": "hnsw", "space_type": "cosinesimil", "engine": "lucene"},
    }
    assert index_body(8, "opensearch") == body


def test_golden_index_body_without_vectors() -> None:
    assert index_body(None) == ragflow_index_body("elasticsearch")


def test_golden_bulk_actions() -> None:
    chunks = [
        golden_chunk(),
        golden_chunk(id="c2", vector=None, pages=[], create_time=0.0, position=3),
    ]
    assert bulk_actions("ragflow_t1", chunks, now=1600000000.0) == [
        {"index": {"_index": "ragflow_t1", "_id": "c1"}},
        {
            "id": "c1",
            "doc_id": "d1",
            "kb_id": "kb1",
            "docnm_kwd": "a.pdf",
            "title_tks": "a",
            "title_sm_tks": "a",
            "content_with_weight": "Hello, World",
            "content_ltks": "hello world",
            "content_sm_ltks": "hello world",
            "page_num_int": [1, 2],
            "top_int": [0, 0],
            "img_id": "",
            "create_time": "2023-11-14 22:13:20",
            "create_timestamp_flt": 1700000000.5,
            "available_int": 1,
            "q_3_vec": [0.5, 0.25, 0.0],
        },
        {"index": {"_index": "ragflow_t1", "_id": "c2"}},
        {
            "id": "c2",
            "doc_id": "d1",
            "kb_id": "kb1",
            "docnm_kwd": "a.pdf",
            "title_tks": "a",
            "title_sm_tks": "a",
            "content_with_weight": "Hello, World",
            "content_ltks": "hello world",
            "content_sm_ltks": "hello world",
            "page_num_int": [4],
            "position_int": [[4, 3, 3, 3, 3]],
            "top_int": [3],
            "img_id": "",
            "create_time": "2020-09-13 12:26:40",
            "create_timestamp_flt": 1600000000.0,
            "available_int": 1,
        },
    ]


def test_golden_delete_bodies() -> None:
    assert delete_actions("ragflow_t1", ["a", "b", "a"]) == [
        {"delete": {"_index": "ragflow_t1", "_id": "a"}},
        {"delete": {"_index": "ragflow_t1", "_id": "b"}},
    ]
    assert delete_doc_body("d1") == {"query": {"term": {"doc_id": "d1"}}}


@pytest.mark.parametrize("flavor", ["elasticsearch", "opensearch"])
def test_golden_search_body_bm25(flavor: Any) -> None:
    assert search_body(["hello", "world", "hello"], ["kb1", "kb2"], 10, None, flavor) == {
        "size": 10,
        "_source": SOURCE,
        "query": {
            "bool": {
                "must": [{"match": {"content_ltks": {"query": "hello world"}}}],
                "filter": [{"terms": {"kb_id": ["kb1", "kb2"]}}],
            }
        },
    }


def test_golden_search_body_hybrid_elasticsearch() -> None:
    """Not run against the emulator: it rejects knn. Upstream's ES fusion: text boost 0.05."""
    assert search_body(["hello"], ["kb1"], 10, [1, 0.5], "elasticsearch") == {
        "size": 10,
        "_source": SOURCE,
        "query": {
            "bool": {
                "must": [{"match": {"content_ltks": {"query": "hello"}}}],
                "filter": [{"terms": {"kb_id": ["kb1"]}}],
                "boost": 0.05,
            }
        },
        "knn": {
            "field": "q_2_vec",
            "query_vector": [1.0, 0.5],
            "k": 10,
            "num_candidates": 100,
            "filter": {"bool": {"filter": [{"terms": {"kb_id": ["kb1"]}}]}},
        },
    }
    assert search_body(["x"], ["kb1"], 64, [1.0], "elasticsearch")["knn"]["num_candidates"] == 128


def test_golden_search_body_hybrid_opensearch() -> None:
    """Not run against the emulator: it rejects knn queries."""
    assert search_body(["hello"], ["kb1"], 5, [1, 0.5], "opensearch") == {
        "size": 5,
        "_source": SOURCE,
        "query": {
            "bool": {
                "filter": [{"terms": {"kb_id": ["kb1"]}}],
                "should": [
                    {"match": {"content_ltks": {"query": "hello", "boost": 0.05}}},
                    {
                        "knn": {
                            "q_2_vec": {
                                "vector": [1.0, 0.5],
                                "k": 5,
                                "filter": {"bool": {"filter": [{"terms": {"kb_id": ["kb1"]}}]}},
                            }
                        }
                    },
                ],
                "minimum_should_match": 1,
            }
        },
    }


# --- configuration -------------------------------------------------------------------------


def test_open_doc_store_elasticsearch_client_from_config() -> None:
    store = open_doc_store(
        {
            "engine": "elasticsearch",
            "hosts": ["http://10.0.0.5:9200", "http://10.0.0.6:9200"],
            "username": "elastic",
            "password": "secret",
        }
    )
    assert isinstance(store, ElasticDocStore)
    assert store.flavor == "elasticsearch"
    nodes = sorted(node.base_url for node in store.client.transport.node_pool.all())
    assert nodes == ["http://10.0.0.5:9200", "http://10.0.0.6:9200"]
    assert store.client._headers["authorization"].startswith("Basic ")
    store.close()


def test_open_doc_store_rejects_bad_elastic_configs() -> None:
    with pytest.raises(ValueError, match="needs 'hosts'"):
        open_doc_store({"engine": "elasticsearch", "hosts": []})
    with pytest.raises(ValueError, match="not an api_key"):
        open_doc_store({"engine": "opensearch", "hosts": ["http://h:9200"], "api_key": "k"})


# --- outages: a refused port and a real HTTP server that says "not now" --------------------


class StatusServer:
    """A real HTTP server on loopback answering every request with one status and an
    Elasticsearch-style error body (the product header included, as ES sends it)."""

    def __init__(self, status: int) -> None:
        body = json.dumps({"error": {"type": "x", "reason": f"status {status}"}, "status": status})

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("X-Elastic-Product", "Elasticsearch")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize("flavor", ["elasticsearch", "opensearch"])
def test_an_unreachable_cluster_is_an_outage_not_a_task_error(flavor: Any) -> None:
    store = open_doc_store({"engine": flavor, "hosts": [closed_port_url()]})
    for call in (
        lambda: store.create_index("ragflow_t", None),
        lambda: store.upsert("ragflow_t", [golden_chunk()]),
        lambda: store.search("ragflow_t", "hello", kb_ids=["kb1"]),
    ):
        with pytest.raises(DocStoreUnavailable, match=f"{flavor} unreachable"):
            call()
    assert issubclass(DocStoreUnavailable, ConnectionError)  # what the pipeline retries
    store.close()


@pytest.mark.parametrize("flavor", ["elasticsearch", "opensearch"])
@pytest.mark.parametrize(("status", "outage"), [(503, True), (429, True), (400, False)])
def test_not_now_statuses_are_outages_and_other_errors_are_not(
    flavor: Any, status: int, outage: bool
) -> None:
    server = StatusServer(status)
    store = open_doc_store({"engine": flavor, "hosts": [server.url]})
    try:
        with pytest.raises(Exception) as caught:
            store.upsert("ragflow_t", [golden_chunk()])
        assert isinstance(caught.value, DocStoreUnavailable) is outage
        if outage:
            assert f"{flavor} answered {status}" in str(caught.value)
    finally:
        store.close()
        server.close()


# --- the emulator ----------------------------------------------------------------------------


_names = itertools.count()


@pytest.fixture
def index() -> str:
    return f"ragflow_tenant{next(_names)}"


@pytest.fixture
def store(emulator_store: ElasticDocStore) -> ElasticDocStore:
    """The adapter on the emulator, through elasticsearch-py and opensearch-py (conftest)."""
    return emulator_store


def chunk(chunk_id: str, text: str, *, kb_id: str = "kb1", doc_id: str = "doc1") -> Chunk:
    """A chunk with RAGFlow's tokens, as the pipeline builds it."""
    ltks, sm_ltks = shared_tokenizer().content_fields(text)
    return Chunk(
        id=chunk_id,
        doc_id=doc_id,
        kb_id=kb_id,
        doc_name=f"{doc_id}.txt",
        content=text.capitalize(),
        tokens=text.lower().split(),
        pages=[1],
        content_ltks=ltks,
        content_sm_ltks=sm_ltks,
    )


def test_emulator_create_index_is_idempotent(store: ElasticDocStore, index: str) -> None:
    store.create_index(index, None)
    store.create_index(index, None)
    store.upsert(index, [chunk("c1", "typed by the templates")])
    mappings = store.client.indices.get_mapping(index=index)[index]["mappings"]
    assert (
        mappings["dynamic_templates"]
        == ragflow_index_body(store.flavor)["mappings"]["dynamic_templates"]
    )
    fields = mappings["properties"]  # typed by RAGFlow's templates on the first write
    assert fields["content_ltks"]["type"] == fields["title_tks"]["type"] == "text"
    assert fields["content_ltks"]["analyzer"] == "whitespace"
    assert fields["title_tks"]["similarity"] == "scripted_sim"
    assert fields["kb_id"]["type"] == fields["docnm_kwd"]["type"] == "keyword"
    assert fields["page_num_int"]["type"] == fields["top_int"]["type"] == "integer"
    assert fields["create_time"]["type"] == "date"


def test_emulator_opensearch_vector_field_is_created_and_added(
    emulator: EmulatorServer, index: str
) -> None:
    store = open_doc_store({"engine": "opensearch", "hosts": [emulator.url]})
    try:
        store.create_index(index, 3)
        store.create_index(index, 3)
        store.create_index(index, 8)  # exists: adds q_8_vec
        client = store.client  # type: ignore[attr-defined]
        mapping = client.indices.get_mapping(index=index)[index]["mappings"]["properties"]
        assert mapping["q_3_vec"]["type"] == mapping["q_8_vec"]["type"] == "knn_vector"
        assert (mapping["q_3_vec"]["dimension"], mapping["q_8_vec"]["dimension"]) == (3, 8)
        store.upsert(index, [Chunk("v", "d", "kb1", "d", "C", ["x"], vector=[1.0, 0.0, 0.0])])
        assert [h.chunk_id for h in store.search(index, "x", kb_ids=["kb1"])] == ["v"]
    finally:
        store.close()


def test_emulator_upsert_is_idempotent(store: ElasticDocStore, index: str) -> None:
    store.create_index(index, None)
    chunks = [chunk(f"c{i}", f"chunk {i} about apples") for i in range(1200)]  # 3 bulk requests
    store.upsert(index, chunks)
    store.upsert(index, chunks)
    assert store.count(index) == 1200
    store.upsert(index, [chunk("c7", "now about pears")])
    assert store.count(index) == 1200
    assert [h.chunk_id for h in store.search(index, "pears", kb_ids=["kb1"])] == ["c7"]


def test_emulator_bm25_ranking_and_kb_filter(store: ElasticDocStore, index: str) -> None:
    store.create_index(index, None)
    store.upsert(
        index,
        [
            chunk("kernel", "the linux kernel scheduler balances tasks"),
            chunk("weather", "the weather today is sunny"),
            chunk("other-kb", "the linux kernel scheduler again", kb_id="kb2"),
        ],
    )
    hits = store.search(index, "Linux kernel scheduler", kb_ids=["kb1"])
    assert [h.chunk_id for h in hits] == ["kernel"]
    assert (hits[0].doc_id, hits[0].kb_id, hits[0].doc_name, hits[0].pages) == (
        "doc1",
        "kb1",
        "doc1.txt",
        (1,),
    )
    assert hits[0].content == "The linux kernel scheduler balances tasks"
    assert hits[0].score > 0
    both = store.search(index, "kernel", kb_ids=["kb1", "kb2"])
    assert {h.chunk_id for h in both} == {"kernel", "other-kb"}
    assert store.search(index, "kernel", kb_ids=[]) == []


def test_emulator_delete_and_delete_doc(store: ElasticDocStore, index: str) -> None:
    store.create_index(index, None)
    store.upsert(index, [chunk(f"a{i}", f"alpha {i}", doc_id="docA") for i in range(5)])
    store.upsert(index, [chunk("b0", "beta", doc_id="docB")])
    assert store.delete(index, ["a0", "a0", "missing"]) == 1
    assert store.count(index, doc_id="docA") == 4
    assert store.delete_doc(index, "docA") == 4
    assert store.delete_doc(index, "docA") == 0
    assert store.count(index) == 1
    assert [h.chunk_id for h in store.search(index, "beta", kb_ids=["kb1"])] == ["b0"]


def test_emulator_missing_index_is_empty(store: ElasticDocStore) -> None:
    assert store.search("ragflow_missing", "x", kb_ids=["kb1"]) == []
    assert store.delete("ragflow_missing", ["a"]) == 0
    assert store.delete_doc("ragflow_missing", "d") == 0
    assert store.count("ragflow_missing") == 0


def test_emulator_item_errors_raise(store: ElasticDocStore, index: str) -> None:
    store.client.indices.create(
        index=index, body={"mappings": {"properties": {"doc_id": {"type": "integer"}}}}
    )
    with pytest.raises(DocStoreError, match=r"1 of 1 chunks were not indexed: index c: .*doc_id"):
        store.upsert(index, [chunk("c", "text", doc_id="not-a-number")])


def test_emulator_rejects_knn_so_hybrid_is_golden_only(store: ElasticDocStore, index: str) -> None:
    """Documents the limit: if this starts failing, the emulator learned knn; test hybrid."""
    store.create_index(index, None)
    store.upsert(index, [chunk("c", "text")])
    with pytest.raises(store._api_error, match="knn"):
        store.search(index, "text", kb_ids=["kb1"], vector=[1.0, 0.0])
