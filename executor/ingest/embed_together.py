"""Embedding the chunks of several tasks in one embedder call, each task's failure its own.

An embedding model pays per call and per batch, not per task: a sentence-transformers
model sorts a call's texts by length before it cuts them into batches (less padding in
a longer list), and every call is a thread hop (and, for an HTTP endpoint, requests of
``batch_size`` texts). A small document has a few chunks, so embedded on its own it
makes short calls of part-filled batches; the chunks of the tasks of a group go to the
embedder together instead, at most EMBED_SLICE per call (docs/benchmarks.md,
"embeddings across tasks").

Failure isolation: an answer another attempt cannot fix (an endpoint's 4xx, a malformed
response: :class:`EmbeddingError`) may come from one task's text; the call is then made
again for each task alone, so the error fails only the task(s) whose own call fails. An
endpoint out of reach (:class:`EmbeddingUnavailable`) is every task's: it is raised.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from .errors import EmbeddingError, EmbeddingUnavailable
from .types import Chunk, Embedder

T = TypeVar("T")

EMBED_SLICE = 128
"""Chunks per embedder call (one thread hop): long enough for full batches, short enough
that a cancel or a stop, checked between calls, waits seconds at most."""


def embed_parts(embedder: Embedder, parts: Sequence[list[Chunk]]) -> list[EmbeddingError | None]:
    """In a thread: give every chunk of *parts* (one part per task) its vector, all in one
    embedder call; per part, None or the EmbeddingError that failed it (its chunks then
    keep no vector). EmbeddingUnavailable is raised, as it is every part's."""
    try:
        _embed(embedder, [c for part in parts for c in part])
    except EmbeddingUnavailable:
        raise
    except EmbeddingError as exc:
        if len(parts) == 1:
            return [exc]
        return [_embed_alone(embedder, part) for part in parts]
    return [None] * len(parts)


def _embed_alone(embedder: Embedder, part: list[Chunk]) -> EmbeddingError | None:
    try:
        _embed(embedder, part)
    except EmbeddingUnavailable:
        raise
    except EmbeddingError as exc:
        for item in part:
            item.vector = None
        return exc
    return None


def _embed(embedder: Embedder, chunks: list[Chunk]) -> None:
    if not chunks:
        return
    vectors = embedder.embed([c.content for c in chunks])
    if len(vectors) != len(chunks):  # an embedder's bug; never a half-embedded task
        raise EmbeddingError(f"{len(vectors)} vectors for {len(chunks)} texts")
    for item, vector in zip(chunks, vectors, strict=True):
        item.vector = vector


def slices(items: list[T], size: int = EMBED_SLICE) -> list[list[T]]:
    """*items* cut into consecutive slices of at most *size*."""
    return [items[start : start + size] for start in range(0, len(items), size)]
