"""What ragfleet indexes, read the way RAGFlow v0.21.1 reads it.

* the index: RAGFlow's own mapping (held against upstream's conf/ files where the upstream
  mirror is on this machine; skipped elsewhere);
* the tokens: chunks built by the pipeline from real documents carry ``content_ltks``,
  ``content_sm_ltks`` and ``title_tks`` equal to upstream's tokenizer's output (infinity-sdk's
  rag_tokenizer.py, loaded on its own here), and to literal expectations;
* retrieval: the body RAGFlow's Dealer.search builds for a question (tests/ragflow_queries.py)
  finds the right chunks in an index ragfleet wrote, on the ``osmem-server`` EMULATOR (both
  clients; a real cluster: tests/test_docstore_elastic_cluster.py), and the embedded store
  ranks the same documents first.
"""

from __future__ import annotations

import itertools
import json
import random
import re
import string
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ragflow_queries import DOCUMENTS, QUESTIONS, dealer_search_body

from executor.ingest import ragtokens
from executor.ingest.catalog import KnowledgeBase
from executor.ingest.chunking import DEFAULT_DELIMITER
from executor.ingest.docstore.elastic import ElasticDocStore
from executor.ingest.docstore.embedded import EmbeddedDocStore
from executor.ingest.docstore.mapping import Flavor, ragflow_index_body
from executor.ingest.errors import TokenizerUnavailable
from executor.ingest.pipeline import build_chunks_of
from executor.ingest.ragtokens import (
    RagTokenizer,
    check_installed,
    load_upstream_module,
    shared_tokenizer,
)
from executor.ingest.types import Chunk

UPSTREAM = Path("/work/.mirror/infiniflow+ragflow/repo")
KB = KnowledgeBase(
    id="kb1",
    tenant_id="t1",
    name="interop",
    embd_id="",
    parser_config={"chunk_token_num": 128, "delimiter": DEFAULT_DELIMITER, "overlap_percent": 0},
)

# --- the index ---------------------------------------------------------------------------------


def upstream_file(path: str) -> dict[str, Any]:
    if not UPSTREAM.is_dir():
        pytest.skip(f"no upstream RAGFlow mirror at {UPSTREAM}")
    shown = subprocess.run(
        ["git", "-C", str(UPSTREAM), "show", f"v0.21.1:{path}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(shown.stdout))


@pytest.mark.parametrize(
    ("flavor", "path"),
    [("elasticsearch", "conf/mapping.json"), ("opensearch", "conf/os_mapping.json")],
)
def test_index_body_is_upstreams_mapping_file(flavor: Flavor, path: str) -> None:
    assert ragflow_index_body(flavor) == upstream_file(path)


def test_templates_type_the_fields_ragflow_adds_later() -> None:
    templates = {
        next(iter(t)): next(iter(t.values()))
        for t in ragflow_index_body("elasticsearch")["mappings"]["dynamic_templates"]
    }
    assert templates["kwd"]["mapping"] == {
        "type": "keyword",
        "similarity": "boolean",
        "store": True,
    }
    assert re.match(templates["kwd"]["match"], "important_kwd")
    assert templates["tks"]["mapping"]["similarity"] == "scripted_sim"
    assert templates["rank_feature"]["match"] == "*_fea"


# --- the tokens --------------------------------------------------------------------------------

TEXTS = {
    "english": "The geese were running quickly through the churches' gardens.",
    "chinese": "多校划片就是一个小区对应多个小学初中，让买了学区房的家庭也不确定到底能上哪个学校。",  # noqa: RUF001
    "mixed": "Unity3D开发经验 测试开发工程师 c++双11双11 985 211",
}
# What upstream's tokenizer (v0.21.1: Porter stems, WordNet lemmas, huqie dictionary) makes
EXPECTED = {
    "english": (
        "the goos were run quickli through the church garden",
        "the goos were run quickli through the church garden",
    ),
    "chinese": (
        "多 校 划片 就是 一个 小区 对应 多个 小学 初中 让 买 了 学区 房 的 家庭 也 不 确定 到底 "
        "能 上 哪个 学校",
        "多 校 划片 就是 一个 小区 对应 多个 小学 初中 让 买 了 学区 房 的 家庭 也 不 确定 到底 "
        "能 上 哪个 学校",
    ),
    "mixed": (
        "unity3d 开发 经验 测试 开发 工程师 c 双 11 双 11 985 211",
        "unity3d 开发 经验 测试 开发 工程 师 c 双 11 双 11 985 211",
    ),
}


def reference_tokenizer() -> Any:
    """Upstream's RagTokenizer from its own file, fresh, with v0.21.1's stemmer and
    ragfleet's offline WordNet, but none of ragfleet's memoization."""
    from functools import partial

    from nltk import word_tokenize
    from nltk.stem import PorterStemmer

    reference = RagTokenizer()  # for its WordNet lemmatizer only
    module = load_upstream_module("reference_rag_tokenizer")
    module.word_tokenize = partial(word_tokenize, preserve_line=True)
    upstream = module.RagTokenizer()
    upstream.stemmer = PorterStemmer()
    upstream.lemmatizer = reference._upstream.lemmatizer
    return upstream


@pytest.fixture(scope="module")
def reference() -> Any:
    return reference_tokenizer()


def build(name: str, text: str) -> list[Chunk]:
    task = {"from_page": 0, "to_page": 100_000_000}
    doc = {"id": f"doc-{name}", "name": name, "parser_id": "naive"}
    return build_chunks_of(task, doc, KB, text.encode()).chunks


@pytest.mark.parametrize("language", list(TEXTS))
def test_chunk_tokens_equal_upstreams(language: str, reference: Any) -> None:
    name = f"{language} notes.txt"
    (chunk,) = build(name, TEXTS[language])
    coarse = reference.tokenize(chunk.content)
    assert chunk.content_ltks == coarse
    assert chunk.content_sm_ltks == reference.fine_grained_tokenize(coarse)
    assert (chunk.content_ltks, chunk.content_sm_ltks) == EXPECTED[language]
    title = reference.tokenize(f"{language} notes")
    assert (chunk.title_tks, chunk.title_sm_tks) == (title, reference.fine_grained_tokenize(title))


def test_tokens_of_a_long_mixed_document_equal_upstreams(reference: Any) -> None:
    text = "\n".join(
        f"{TEXTS['english']} {TEXTS['chinese']} 第{n}章 {TEXTS['mixed']}" for n in range(40)
    )
    chunks = build("long.txt", text)
    assert len(chunks) > 3
    for chunk in chunks:
        assert chunk.content_ltks == reference.tokenize(chunk.content)
        assert chunk.content_sm_ltks == reference.fine_grained_tokenize(chunk.content_ltks)
    assert [c.position for c in chunks] == list(range(len(chunks)))


def test_shortcuts_change_no_token(reference: Any) -> None:
    """ragfleet's caches and ASCII shortcuts around upstream's code (ragtokens.py) against
    upstream's code without them, on random ASCII and on mixed text."""
    rng = random.Random(24)
    texts = ["".join(rng.choices(string.printable, k=rng.randint(0, 80))) for _ in range(400)]
    texts += [f"{TEXTS['mixed']} {rng.randint(0, 99)}{text}" for text in texts[:50]]
    ours = shared_tokenizer()
    for text in texts:
        coarse = reference.tokenize(text)
        assert ours.tokenize(text) == coarse, text
        assert ours.fine_grained_tokenize(coarse) == reference.fine_grained_tokenize(coarse)


def test_table_tags_are_not_tokens() -> None:
    ltks, _ = shared_tokenizer().content_fields("<table><tr><td>apples</td></tr></table>")
    assert ltks == "appl"


def nltk_data_installed() -> bool:
    import nltk

    try:
        nltk.data.find("tokenizers/punkt_tab/english/")
        nltk.data.find("corpora/wordnet")
    except LookupError:
        return False
    return True


@pytest.mark.skipif(
    not nltk_data_installed(), reason="NLTK's punkt_tab and wordnet data are not installed"
)
@pytest.mark.parametrize("language", list(TEXTS))
def test_upstream_tokenizer_unmodified_agrees(language: str) -> None:
    """Upstream's module as shipped (its Snowball stemmer, NLTK's own data): ragfleet's
    offline WordNet and skipped sentence split change nothing."""
    upstream = load_upstream_module("unmodified_rag_tokenizer").RagTokenizer()
    ours = RagTokenizer(stemmer="snowball")
    for text in (TEXTS[language], *[t for _, t in DOCUMENTS]):
        assert ours.tokenize(text) == upstream.tokenize(text)


# --- retrieval ---------------------------------------------------------------------------------


def ingest_all() -> list[Chunk]:
    return [chunk for name, text in DOCUMENTS for chunk in build(name, text)]


_names = itertools.count()


@pytest.fixture
def store(emulator_store: ElasticDocStore) -> ElasticDocStore:
    return emulator_store


def ranked_documents(response: dict[str, Any]) -> list[str]:
    return [hit["_source"]["docnm_kwd"] for hit in response["hits"]["hits"]]


@pytest.mark.parametrize(("question", "query", "first", "absent"), QUESTIONS)
def test_emulator_ragflow_query_finds_ragfleet_chunks(
    store: ElasticDocStore, question: str, query: str, first: str, absent: set[str]
) -> None:
    index = f"ragflow_interop{next(_names)}"
    store.create_index(index, None)
    store.upsert(index, ingest_all())
    found = ranked_documents(
        store.client.search(index=index, body=dealer_search_body(query, ["kb1"]))
    )
    assert found[0] == first, question
    assert not absent & set(found), question
    other_kb = store.client.search(index=index, body=dealer_search_body(query, ["kb2"]))
    assert ranked_documents(other_kb) == []


@pytest.mark.parametrize(("question", "query", "first", "absent"), QUESTIONS)
def test_embedded_store_ranks_the_same_document_first(
    tmp_path: Path, question: str, query: str, first: str, absent: set[str]
) -> None:
    with EmbeddedDocStore(tmp_path / "chunks.db") as store:
        store.create_index("ragflow_t1", None)
        store.upsert("ragflow_t1", ingest_all())
        hits = store.search("ragflow_t1", question, kb_ids=["kb1"])
    assert hits[0].doc_name == first, question


def test_emulator_an_index_ragflow_created_is_used_as_it_is(store: ElasticDocStore) -> None:
    index = f"ragflow_interop{next(_names)}"
    store.client.indices.create(index=index, body=ragflow_index_body(store.flavor))  # RAGFlow's
    before = store.client.indices.get_mapping(index=index)[index]["mappings"]
    store.create_index(index, None)
    if store.flavor == "opensearch":  # the emulator takes OpenSearch's vectors only
        store.create_index(index, 1024)  # RAGFlow's template covers it: nothing added
        assert store.client.indices.get_mapping(index=index)[index]["mappings"] == before
        store.create_index(index, 8)  # no template: an explicit property, nothing else
        after = store.client.indices.get_mapping(index=index)[index]["mappings"]
        assert set(after["properties"]) == {*before["properties"], "q_8_vec"}
    assert (
        store.client.indices.get_mapping(index=index)[index]["mappings"]["dynamic_templates"]
        == (before["dynamic_templates"])
    )
    store.upsert(index, ingest_all())
    assert store.search(index, "apple orchards", kb_ids=["kb1"])[0].doc_name == "apple-orchards.txt"


def test_a_missing_install_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    check_installed()  # here everything is installed
    monkeypatch.setattr(ragtokens, "WORDNET_DIR", tmp_path)
    with pytest.raises(TokenizerUnavailable, match=r"run scripts/setup\.sh.* has no WordNet"):
        check_installed()
