"""The HTTP embedder: an OpenAI-compatible ``/embeddings`` endpoint, with retries.

``POST <endpoint>`` with ``{"model": <name without @factory>, "input": [...]}`` and
``Authorization: Bearer <api_key>`` when a key is set, in batches of ``batch_size`` texts,
up to ``concurrency`` requests at once (an endpoint serves requests side by side, and one
call may carry the chunks of a whole group of tasks: embed_together.py).
Connection errors, timeouts, 429 and 5xx are retried with jittered backoff (or the server's
Retry-After); when every attempt failed that is :class:`EmbeddingUnavailable`. Any other
answer that is not a success, or a malformed response, is :class:`EmbeddingError`.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np

from .embeddings import EMBEDDING_BATCH_SIZE, ModelSpec
from .errors import EmbeddingError, EmbeddingUnavailable

log = logging.getLogger(__name__)

OPENAI_BASE_URL = "https://api.openai.com/v1"
MAX_RETRY_DELAY = 30.0
"""Upper bound (seconds) of one wait between attempts, Retry-After included."""
CONCURRENCY = 4
"""Requests of one embed() call in flight at once."""


class _Retry(Exception):
    """One failed attempt that another attempt may fix (internal to HTTPEmbedder)."""

    def __init__(self, why: str, response: httpx.Response | None = None) -> None:
        super().__init__(why)
        self.response = response


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
        concurrency: int = CONCURRENCY,
    ) -> None:
        self.name = spec.model
        self.model = spec.name
        self.dim: int | None = None
        self.endpoint = embeddings_url(_base_url(spec))
        self.batch_size = batch_size
        self.retries = retries
        self.backoff = backoff
        self.concurrency = max(1, concurrency)
        headers = {"Authorization": f"Bearer {spec.api_key}"} if spec.api_key else {}
        limits = httpx.Limits(max_keepalive_connections=max(20, self.concurrency))
        self._client = httpx.Client(timeout=httpx.Timeout(timeout), headers=headers, limits=limits)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """The vectors of *texts*, in order; batches sent side by side. The first batch
        (in order) that failed raises its error, after every request has ended."""
        batches = [
            list(texts[start : start + self.batch_size])
            for start in range(0, len(texts), self.batch_size)
        ]
        if len(batches) <= 1 or self.concurrency == 1:
            return [v for batch in batches for v in self._embed_batch(batch)]
        futures = [self._executor().submit(self._embed_batch, batch) for batch in batches]
        return [v for future in futures for v in future.result()]

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="embed-http")
            return self._pool

    def close(self) -> None:
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
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
