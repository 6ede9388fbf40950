"""Query evaluation of the embedded document store: raw text to an FTS5 query, and the
hybrid re-scoring of its BM25 candidates.

Searching: ``search(query=...)`` takes RAW text and tokenizes it with RAGFlow's tokenizer
(:mod:`executor.ingest.ragtokens`), which made the chunks' ``content_ltks``: its coarse tokens
and their fine-grained split, as RAGFlow's query side does (a store can be given another
tokenizer with ``tokenizer=``; it must match the chunks'). Each token becomes an FTS5 string
(``"token"``) and the strings are OR-ed, ranked by FTS5's ``bm25()``. A chunk built without
RAGFlow's tokenizer is indexed with the chunker's tokens (``Chunk.ltks``).

Hybrid: with a query vector, the BM25 candidates (up to ``candidates``, default 1024 like
upstream's ``topk``) are re-scored in numpy::

    score = (1 - w) * bm25 / max(bm25) + w * cosine(query_vector, chunk_vector)

with ``w = vector_similarity_weight = 0.3``: upstream's default. RAGFlow's
``rag/nlp/search.py`` ``Dealer.retrieval(..., vector_similarity_weight=0.3, ...)`` calls
``self.rerank(sres, question, 1 - vector_similarity_weight, vector_similarity_weight)``,
i.e. ``tkweight=0.7`` for the keyword side and ``vtweight=0.3`` for the vector side
(``rerank``'s own defaults, 0.3/0.7, are overridden by that call). Upstream's keyword side
is a token-overlap similarity, ours is BM25 normalised to the best candidate. Chunks without
a vector of the query's dimension get cosine 0 (upstream uses a zero vector). A chunk that
shares no token with the query is not a candidate: there is no vector-only recall here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np

from ..ragtokens import query_tokens

VECTOR_SIMILARITY_WEIGHT = 0.3  # upstream Dealer.retrieval's default (see module docstring)
CANDIDATES = 1024  # BM25 candidates re-scored in hybrid search (upstream's topk default)


def default_tokenizer() -> Callable[[str], Sequence[str] | str]:
    """RAGFlow's tokenizer, which made the indexed ``content_ltks``: a query is split the
    same way (its coarse and its fine-grained tokens, as RAGFlow's own query side)."""
    return query_tokens  # loads the tokenizer on its first query, not when a store opens


def fts_query(tokens: Iterable[str]) -> str:
    """An FTS5 MATCH expression: each distinct token as a quoted string, OR-ed.

    Quoting makes every token a literal (no FTS5 operators from user text) and lets FTS5
    split it with the same tokenizer that indexed the chunks. Tokens with no letter or digit
    would become empty phrases, so they are dropped.
    """
    kept = dict.fromkeys(t for t in tokens if any(ch.isalnum() for ch in t))
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in kept)


def candidates_sql(kb_count: int, *, with_vectors: bool) -> str:
    """The BM25 candidates of a MATCH in one index and ``kb_count`` knowledge bases, best
    first; parameters: the MATCH expression, the index, the kb ids, the limit."""
    return f"""SELECT c.id, c.doc_id, c.kb_id, c.doc_name, c.content, c.pages,
                -bm25(chunks_fts) AS score{", c.vector" if with_vectors else ""}
            FROM chunks_fts JOIN chunks AS c ON c.rid = chunks_fts.rowid
            WHERE chunks_fts MATCH ? AND c.idx = ? AND c.kb_id IN ({", ".join("?" * kb_count)})
            ORDER BY bm25(chunks_fts) LIMIT ?"""


def cosine_to_blobs(query: Sequence[float], blobs: Sequence[bytes | None]) -> np.ndarray:
    """Cosine similarity of ``query`` with each stored vector; 0 where there is none of the
    query's dimension (or either vector is all zeros)."""
    q = np.asarray(query, dtype=np.float32)
    out = np.zeros(len(blobs), dtype=np.float64)
    width = q.size * 4
    rows = [i for i, blob in enumerate(blobs) if blob is not None and len(blob) == width]
    q_norm = float(np.linalg.norm(q))
    if not rows or q_norm == 0.0:
        return out
    matrix = np.frombuffer(b"".join(blobs[i] for i in rows), dtype="<f4").reshape(len(rows), -1)
    norms = np.linalg.norm(matrix, axis=1) * q_norm
    dots = matrix @ q
    out[rows] = np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)
    return out


def hybrid_scores(bm25: np.ndarray, cosine: np.ndarray, weight: float) -> np.ndarray:
    """``(1 - weight) * bm25 / max(bm25) + weight * cosine`` (see the module docstring)."""
    top = float(bm25.max()) if bm25.size else 0.0
    keyword = bm25 / top if top > 0 else np.zeros_like(bm25)
    return (1.0 - weight) * keyword + weight * cosine
