"""The single-host document store: SQLite FTS5 in one database file.

Why SQLite: it ships with Python, needs no server, and in WAL mode with a busy timeout and
short write transactions it takes several writer *processes* on one host
(measured in ../shared/notes/doc-stores.md: 4 processes x 5k rows, no errors; kill -9 kept
every committed batch). That is what several executor processes on one host need.

Layout (one file, the configured ``path``):

* ``chunks``: one row per chunk. ``rid`` is the rowid FTS5 needs; the chunk's identity is
  ``(idx, id)`` (index name, chunk id), UNIQUE, so re-indexing a chunk id replaces it.
  ``tokens`` is the chunk's ``content_ltks`` (RAGFlow's tokens, space-separated); ``pages``
  is JSON; ``vector`` is little-endian float32 bytes (or NULL).
* ``chunks_fts``: an external-content FTS5 table over ``chunks.tokens``, kept in step by
  triggers, so the token text is stored once. FTS5's own tokenizer (unicode61) then splits
  and case-folds those tokens; queries go through exactly the same two steps (see below), so
  indexing and querying always agree.
* ``indexes``: the ``(index, vector_dim)`` pairs ``create_index`` was called with.

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

Concurrency: one connection per thread (the executor calls from a thread pool) and per
process (a connection is never used across ``fork``). Writes are transactions of at most
``batch_size`` chunks, each after its turn to write (:mod:`executor.sqlite.turns`:
``<path>.lock`` sits next to the file); SQLITE_BUSY beyond ``busy_timeout`` is retried with
jittered exponential back-off until ``lock_timeout``, then raised as
:class:`DocStoreUnavailable` (an outage: the task is retried, not failed). An ``upsert`` of
many chunks is therefore several transactions: a crash keeps the batches already committed.
Batches that a process's threads queue at the same time share one transaction, still of at
most ``batch_size`` rows (:mod:`.group_commit`): a single ``INSERT OR REPLACE`` with one
``VALUES`` row per chunk.
"""

from __future__ import annotations

import functools
import json
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ...sqlite import codes as sqlite_codes
from ...sqlite.turns import WriteTurns
from ..ragtokens import query_tokens
from ..types import Chunk, Hit
from . import DocStoreError, DocStoreUnavailable
from .group_commit import Batch, GroupCommit

T = TypeVar("T")

SCHEMA_VERSION = 1
DEFAULT_BATCH_SIZE = 200
DEFAULT_BUSY_TIMEOUT = 5.0  # seconds SQLite itself waits for a lock
DEFAULT_LOCK_TIMEOUT = 120.0  # seconds we keep retrying after that
VECTOR_SIMILARITY_WEIGHT = 0.3  # upstream Dealer.retrieval's default (see module docstring)
CANDIDATES = 1024  # BM25 candidates re-scored in hybrid search (upstream's topk default)

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS indexes (
        name TEXT NOT NULL,
        vector_dim INTEGER NOT NULL DEFAULT 0,
        created REAL NOT NULL,
        PRIMARY KEY (name, vector_dim))""",
    """CREATE TABLE IF NOT EXISTS chunks (
        rid INTEGER PRIMARY KEY,
        idx TEXT NOT NULL,
        id TEXT NOT NULL,
        kb_id TEXT NOT NULL,
        doc_id TEXT NOT NULL,
        doc_name TEXT NOT NULL,
        content TEXT NOT NULL,
        tokens TEXT NOT NULL,
        pages TEXT NOT NULL,
        vector BLOB,
        create_time REAL NOT NULL,
        UNIQUE (idx, id))""",
    "CREATE INDEX IF NOT EXISTS chunks_by_doc ON chunks (idx, doc_id)",
    """CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts
        USING fts5(tokens, content='chunks', content_rowid='rid')""",
    """CREATE TRIGGER IF NOT EXISTS chunks_ai AFTER INSERT ON chunks BEGIN
        INSERT INTO chunks_fts (rowid, tokens) VALUES (new.rid, new.tokens);
    END""",
    """CREATE TRIGGER IF NOT EXISTS chunks_ad AFTER DELETE ON chunks BEGIN
        INSERT INTO chunks_fts (chunks_fts, rowid, tokens) VALUES ('delete', old.rid, old.tokens);
    END""",
    """CREATE TRIGGER IF NOT EXISTS chunks_au AFTER UPDATE ON chunks BEGIN
        INSERT INTO chunks_fts (chunks_fts, rowid, tokens) VALUES ('delete', old.rid, old.tokens);
        INSERT INTO chunks_fts (rowid, tokens) VALUES (new.rid, new.tokens);
    END""",
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)

# Insert-or-replace many rows in one statement: _UPSERT + one _ROW_VALUES per row (see _row).
# The row an id already has is deleted first (UNIQUE (idx, id)), and with recursive_triggers
# on (see _open) its delete trigger takes the old FTS entry out.
_COLUMNS = (
    "idx",
    "id",
    "kb_id",
    "doc_id",
    "doc_name",
    "content",
    "tokens",
    "pages",
    "vector",
    "create_time",
)
_UPSERT = f"INSERT OR REPLACE INTO chunks ({', '.join(_COLUMNS)}) VALUES "
_ROW_VALUES = "(" + ", ".join("?" * len(_COLUMNS)) + ")"


# --- tokens and queries --------------------------------------------------------------------


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


# --- vectors and scores ----------------------------------------------------------------------


def vector_blob(vector: Sequence[float] | None) -> bytes | None:
    """A vector as little-endian float32 bytes (4 bytes per dimension)."""
    if vector is None:
        return None
    array = np.asarray(vector, dtype="<f4")
    if array.ndim != 1:
        raise ValueError(f"a chunk vector must be one-dimensional, not of shape {array.shape}")
    return array.tobytes()


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


# --- errors and retries ----------------------------------------------------------------------


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    code = sqlite_codes.primary_code(exc)
    if code is not None:
        return code in (sqlite_codes.BUSY, sqlite_codes.LOCKED)
    text = str(exc)
    return "locked" in text or "busy" in text


def _batches(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@functools.cache
def max_rows_per_statement() -> int:
    """How many rows one statement can insert: this SQLite's limit on bound values (a
    compile-time setting: 250,000 on Debian 12, 32,766 by default, 999 before 3.32)."""
    with closing(sqlite3.connect(":memory:")) as conn:
        return conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // len(_COLUMNS)


def _row(index: str, chunk: Chunk, now: float) -> tuple[Any, ...]:
    """The values of *chunk*'s row, in _COLUMNS order."""
    return (
        index,
        chunk.id,
        chunk.kb_id,
        chunk.doc_id,
        chunk.doc_name,
        chunk.content,
        chunk.ltks,
        json.dumps(list(chunk.pages)),
        vector_blob(chunk.vector),
        chunk.create_time or now,
    )


# --- the store -------------------------------------------------------------------------------


class EmbeddedDocStore:
    """The DocStore protocol on one SQLite file; share one instance between threads freely.

    ``batch_size`` chunks per write transaction keeps the write lock short so other processes
    get their turn; ``busy_timeout`` is SQLite's own wait for the lock, ``lock_timeout`` how
    long we keep retrying after that before raising.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        vector_similarity_weight: float = VECTOR_SIMILARITY_WEIGHT,
        candidates: int = CANDIDATES,
        tokenizer: Callable[[str], Sequence[str] | str] | None = None,
    ) -> None:
        most = max_rows_per_statement()
        if not 1 <= batch_size <= most:
            raise ValueError(f"batch_size must be within [1, {most}] with this SQLite")
        if not 0.0 <= vector_similarity_weight <= 1.0:
            raise ValueError("vector_similarity_weight must be within [0, 1]")
        self.path = Path(path)
        self.batch_size = batch_size
        self.busy_timeout = busy_timeout
        self.lock_timeout = lock_timeout
        self.vector_similarity_weight = vector_similarity_weight
        self.candidates = candidates
        self._tokenize = tokenizer or default_tokenizer()
        self._local = threading.local()
        self._lock = threading.Lock()
        self.write_turns = WriteTurns(self.path, lock_timeout)
        self._group_commit = GroupCommit(self.write_turns, self._write_group, batch_size)
        self._conns: list[tuple[int, sqlite3.Connection]] = []
        self._schema_pid: int | None = None
        self._closed = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn()  # fail now, not on the first write, if the file cannot be used

    # -- connections ------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection in this process, opened (and the schema made) on first use."""
        if self._closed:
            raise DocStoreError(f"embedded doc store {self.path} is closed")
        pid = os.getpid()
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == pid:
            return conn
        conn = self._open()
        self._local.conn, self._local.pid = conn, pid
        with self._lock:
            self._conns.append((pid, conn))
            needs_schema = self._schema_pid != pid
        if needs_schema:
            self._ensure_schema(conn)
            self._schema_pid = pid
        return conn

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            timeout=self.busy_timeout,
            isolation_level=None,  # autocommit: we issue BEGIN IMMEDIATE / COMMIT ourselves
            check_same_thread=False,  # only so close() may close it from another thread
        )
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        mode = self._retrying(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        if str(mode).lower() != "wal":
            conn.close()
            raise DocStoreError(
                f"{self.path}: SQLite cannot use WAL mode here (journal_mode is {mode!r}); "
                "several writer processes need it: put the file on a local file system"
            )
        conn.execute("PRAGMA synchronous = NORMAL")  # durable at checkpoints; WAL stays valid
        # A row that INSERT OR REPLACE deletes fires its delete trigger only with this on;
        # without it the old row's FTS entry would stay behind (_UPSERT).
        conn.execute("PRAGMA recursive_triggers = ON")
        return conn

    def _ensure_schema(self, conn: sqlite3.Connection) -> None:
        if conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
            return

        def create(c: sqlite3.Connection) -> None:
            for statement in _SCHEMA:
                c.execute(statement)

        self._transaction(create, conn)

    # -- transactions -----------------------------------------------------------------------

    def _retrying(self, op: Callable[[], T]) -> T:
        """Run ``op``; while SQLite says busy/locked, retry with jittered back-off. A full disk
        raises DocStoreUnavailable at once: an outage, which the executor waits out."""
        deadline = time.monotonic() + self.lock_timeout
        delay = 0.005
        while True:
            try:
                return op()
            except sqlite3.DatabaseError as exc:
                code = sqlite_codes.primary_code(exc)
                if code == sqlite_codes.FULL:
                    # SQLite wrote nothing; the write succeeds once space is freed.
                    raise DocStoreUnavailable(f"embedded doc store {self.path}: {exc}") from exc
                if code in sqlite_codes.DAMAGED:  # every task would meet it: wait, fail none
                    raise DocStoreUnavailable(
                        f"embedded doc store {self.path}: {exc} (the file or its disk is "
                        "failing: restore it from a backup or rebuild it)"
                    ) from exc
                if not (isinstance(exc, sqlite3.OperationalError) and _is_busy(exc)):
                    raise
                if time.monotonic() >= deadline:
                    raise DocStoreUnavailable(
                        f"embedded doc store {self.path}: still locked after "
                        f"{self.lock_timeout:g} s ({exc})"
                    ) from exc
            time.sleep(random.uniform(delay / 2, delay))
            delay = min(delay * 2, 0.5)

    def _transaction(
        self, work: Callable[[sqlite3.Connection], T], conn: sqlite3.Connection | None = None
    ) -> T:
        """``work`` inside BEGIN IMMEDIATE ... COMMIT, rolled back on error, retried if busy."""
        connection = conn or self._conn()
        with self.write_turns():
            return self._retrying(functools.partial(self._attempt, work, connection))

    @staticmethod
    def _attempt(work: Callable[[sqlite3.Connection], T], connection: sqlite3.Connection) -> T:
        connection.execute("BEGIN IMMEDIATE")
        try:
            result = work(connection)
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        return result

    # -- DocStore ---------------------------------------------------------------------------

    def create_index(self, index: str, vector_dim: int | None) -> None:
        """Record the index (and its vector dimension). Idempotent.

        An index may hold vectors of several dimensions, as upstream's ``q_<dim>_vec``
        fields allow; chunks can be upserted into an index that was never created.
        """
        key = (index, vector_dim or 0)
        # Every task calls this: a read, not a write transaction, when the index is known.
        known = "SELECT 1 FROM indexes WHERE name = ? AND vector_dim = ?"
        if self._retrying(lambda: self._conn().execute(known, key).fetchone()):
            return
        now = time.time()
        self._transaction(
            lambda c: c.execute(
                "INSERT OR IGNORE INTO indexes (name, vector_dim, created) VALUES (?, ?, ?)",
                (*key, now),
            )
        )

    def upsert(self, index: str, chunks: Sequence[Chunk]) -> None:
        """Insert or replace chunks by id, ``batch_size`` per transaction.

        Within one call the last chunk of a given id wins (as in a bulk request).
        """
        self._conn()  # open it (and check the schema) before queueing for a group commit
        now = time.time()
        latest = {chunk.id: chunk for chunk in chunks}
        rows = [_row(index, chunk, now) for chunk in latest.values()]
        for batch in _batches(rows, self.batch_size):
            self._group_commit.submit(Batch(index, [row[1] for row in batch], batch))

    def _write_group(self, group: Sequence[Batch]) -> None:
        """The batches of a group commit in one statement, which is its own transaction: the
        write lock is held for one call into SQLite, with no hand-over of Python's GIL
        between BEGIN, the writes and COMMIT, each of which can wait for another thread's
        turn on the GIL (up to 5 ms) while the file stays locked. The values are bound as
        they are (text, and vectors as blobs), so nothing is encoded or parsed on the way."""
        rows = [row for batch in group for row in batch.rows]
        sql = _UPSERT + ",".join([_ROW_VALUES] * len(rows))
        params = [value for row in rows for value in row]
        conn = self._conn()
        self._retrying(lambda: conn.execute(sql, params))

    def delete(self, index: str, chunk_ids: Sequence[str]) -> int:
        """Delete chunks by id; returns how many existed."""
        ids = list(dict.fromkeys(chunk_ids))
        deleted = 0
        for batch in _batches(ids, self.batch_size):
            params = [(index, chunk_id) for chunk_id in batch]
            deleted += self._transaction(
                lambda c, p=params: (
                    c.executemany("DELETE FROM chunks WHERE idx = ? AND id = ?", p).rowcount
                )
            )
        return deleted

    def delete_doc(self, index: str, doc_id: str) -> int:
        """Delete every chunk of a document, ``batch_size`` rows per transaction."""
        sql = """DELETE FROM chunks WHERE rid IN (
            SELECT rid FROM chunks WHERE idx = ? AND doc_id = ? LIMIT ?)"""
        deleted = 0
        while True:
            count = self._transaction(
                lambda c: c.execute(sql, (index, doc_id, self.batch_size)).rowcount
            )
            deleted += count
            if count < self.batch_size:
                return deleted

    def search(
        self,
        index: str,
        query: str,
        *,
        kb_ids: Sequence[str],
        top_k: int = 10,
        vector: Sequence[float] | None = None,
    ) -> list[Hit]:
        """BM25 over the tokenized content, hybrid with ``vector`` when given; best first.

        ``query`` is raw text (tokenized here, see the module docstring). No ``kb_ids``, no
        usable query token or ``top_k < 1`` gives no hits.
        """
        match = fts_query(self._query_tokens(query))
        if not match or not kb_ids or top_k < 1:
            return []
        hybrid = vector is not None and len(vector) > 0
        limit = max(top_k, self.candidates) if hybrid else top_k
        rows = self._candidates(index, match, kb_ids, limit, with_vectors=hybrid)
        if not rows:
            return []
        bm25 = np.array([row[6] for row in rows], dtype=np.float64)
        scores = bm25
        if hybrid:
            assert vector is not None
            cosine = cosine_to_blobs(vector, [row[7] for row in rows])
            if cosine.any():
                scores = hybrid_scores(bm25, cosine, self.vector_similarity_weight)
        order = np.argsort(-scores, kind="stable")[:top_k]
        return [_hit(rows[i], float(scores[i])) for i in order]

    def close(self) -> None:
        """Close every connection this process opened (in any thread). Idempotent."""
        pid = os.getpid()
        with self._lock:
            self._closed = True
            mine = [conn for owner, conn in self._conns if owner == pid]
            self._conns.clear()
        for conn in mine:
            conn.close()
        self.write_turns.close()

    # -- helpers beyond the protocol ----------------------------------------------------------

    def count(self, index: str, *, kb_id: str | None = None, doc_id: str | None = None) -> int:
        """How many chunks the index holds (of one knowledge base and/or document)."""
        sql, params = "SELECT count(*) FROM chunks WHERE idx = ?", [index]
        for column, value in (("kb_id", kb_id), ("doc_id", doc_id)):
            if value is not None:
                sql += f" AND {column} = ?"
                params.append(value)
        conn = self._conn()
        return int(self._retrying(lambda: conn.execute(sql, params).fetchone()[0]))

    def integrity_check(self) -> list[str]:
        """Problems SQLite finds in the file and FTS5 in its index; empty when all is well."""
        conn = self._conn()
        problems = [row[0] for row in conn.execute("PRAGMA integrity_check").fetchall()]
        problems = [p for p in problems if p != "ok"]
        try:
            conn.execute("INSERT INTO chunks_fts (chunks_fts) VALUES ('integrity-check')")
        except sqlite3.DatabaseError as exc:
            problems.append(f"chunks_fts: {exc}")
        # FTS5's check does not see index entries whose chunk row is gone (an external
        # content table); they would skew BM25, and match a chunk that reuses the rowid.
        conn.execute(
            "CREATE VIRTUAL TABLE IF NOT EXISTS temp.chunks_fts_terms "
            "USING fts5vocab(main, chunks_fts, instance)"
        )
        (orphans,) = conn.execute(
            "SELECT count(DISTINCT doc) FROM temp.chunks_fts_terms "
            "WHERE doc NOT IN (SELECT rid FROM chunks)"
        ).fetchone()
        if orphans:
            problems.append(f"chunks_fts: {orphans} indexed rows have no chunk")
        return problems

    def __enter__(self) -> EmbeddedDocStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _query_tokens(self, query: str) -> list[str]:
        tokens = self._tokenize(query)
        return tokens.split() if isinstance(tokens, str) else list(tokens)

    def _candidates(
        self, index: str, match: str, kb_ids: Sequence[str], limit: int, *, with_vectors: bool
    ) -> list[tuple[Any, ...]]:
        kbs = list(dict.fromkeys(kb_ids))
        sql = f"""SELECT c.id, c.doc_id, c.kb_id, c.doc_name, c.content, c.pages,
                -bm25(chunks_fts) AS score{", c.vector" if with_vectors else ""}
            FROM chunks_fts JOIN chunks AS c ON c.rid = chunks_fts.rowid
            WHERE chunks_fts MATCH ? AND c.idx = ? AND c.kb_id IN ({", ".join("?" * len(kbs))})
            ORDER BY bm25(chunks_fts) LIMIT ?"""
        params = [match, index, *kbs, limit]
        conn = self._conn()
        return self._retrying(lambda: conn.execute(sql, params).fetchall())


def _hit(row: tuple[Any, ...], score: float) -> Hit:
    return Hit(
        chunk_id=row[0],
        doc_id=row[1],
        kb_id=row[2],
        doc_name=row[3],
        content=row[4],
        score=score,
        pages=tuple(json.loads(row[5])),
    )
