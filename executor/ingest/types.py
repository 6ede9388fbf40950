"""The shapes the ingestion pipeline's pieces exchange, and the interfaces between them.

Everything here is synchronous: the executor runs each call in a worker thread.

    stored bytes --parser--> [Section] --chunker--> [Piece] --embedder--> vectors
        --> [Chunk] --doc store--> index ``ragflow_<tenant_id>``
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Section:
    """A unit of parsed text in reading order: a paragraph, a heading, a table row batch."""

    text: str
    page: int | None = None  # 1-based page of paged formats (PDF); None otherwise
    kind: str = "text"  # "text" | "title" | "table"


@dataclass(frozen=True)
class Piece:
    """A chunk's text before it gets an id and a vector."""

    text: str
    tokens: int
    pages: tuple[int, ...] = ()
    # tokenize(text), kept from chunking so the pipeline does not tokenize the text again
    terms: list[str] = field(default_factory=list, compare=False, repr=False)


@dataclass
class Chunk:
    """One indexed chunk. ``id`` is xxh64(content + doc_id), so re-indexing never duplicates."""

    id: str
    doc_id: str
    kb_id: str
    doc_name: str
    content: str
    tokens: list[str]  # the chunker's tokens of the content (what chunk_token_num counts)
    pages: list[int] = field(default_factory=list)
    vector: list[float] | None = None
    create_time: float = 0.0
    # RAGFlow's tokens (executor.ingest.ragtokens), space-separated as upstream stores them;
    # empty when the chunk was built without that tokenizer: see ``ltks``
    content_ltks: str = ""
    content_sm_ltks: str = ""
    title_tks: str = ""
    title_sm_tks: str = ""
    position: int = 0  # the chunk's ordinal in its task (upstream's add_positions [[i]*5])

    @property
    def ltks(self) -> str:
        """What the doc stores index: RAGFlow's tokens, or the chunker's without them."""
        return self.content_ltks or " ".join(self.tokens)


@dataclass(frozen=True)
class Hit:
    chunk_id: str
    doc_id: str
    kb_id: str
    doc_name: str
    content: str
    score: float
    pages: tuple[int, ...] = ()


class Parser(Protocol):
    """``parse(data, filename=..., from_page=..., to_page=...)`` -> sections.

    Pages are 0-based and ``to_page`` is exclusive, as upstream's task rows; formats without
    pages ignore them. Raises DocumentError for anything wrong with the document itself.
    """

    def __call__(
        self, data: bytes, *, filename: str, from_page: int = 0, to_page: int = 100_000_000
    ) -> list[Section]: ...


class Embedder(Protocol):
    """Turns texts into vectors of one fixed dimension (``dim``, known after the first call)."""

    name: str

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


class DocStore(Protocol):
    """Where chunks are indexed and searched. Index names are ``ragflow_<tenant_id>``."""

    def create_index(self, index: str, vector_dim: int | None) -> None:
        """Create the index if missing (idempotent); ``vector_dim`` adds a q_<dim>_vec field."""

    def upsert(self, index: str, chunks: Sequence[Chunk]) -> None:
        """Insert or replace chunks by id (bulk)."""

    def delete(self, index: str, chunk_ids: Sequence[str]) -> int:
        """Delete chunks by id; returns how many existed."""

    def delete_doc(self, index: str, doc_id: str) -> int:
        """Delete every chunk of a document."""

    def search(
        self,
        index: str,
        query: str,
        *,
        kb_ids: Sequence[str],
        top_k: int = 10,
        vector: Sequence[float] | None = None,
    ) -> list[Hit]:
        """BM25 over content (and hybrid with the vector when given), best first."""

    def close(self) -> None: ...


class BlobStorage(Protocol):
    """Where uploaded documents are kept (upstream's MinIO), by (bucket=kb_id, name=location)."""

    def put(self, bucket: str, name: str, data: bytes) -> None: ...

    def get(self, bucket: str, name: str) -> bytes:
        """Raises DocumentError if the object does not exist."""

    def delete(self, bucket: str, name: str) -> None: ...
