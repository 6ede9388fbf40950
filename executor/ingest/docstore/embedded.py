"""The single-host document store: SQLite FTS5 in one database file.

Why SQLite: it ships with Python, needs no server, and in WAL mode with a busy timeout and
short write transactions it takes several writer *processes* on one host
(measured in ../shared/notes/doc-stores.md: 4 processes x 5k rows, no errors; kill -9 kept
every committed batch). That is what several executor processes on one host need.

The file's layout is in :mod:`.embedded_schema`; how a query is tokenized, matched and
(with a vector) re-scored is in :mod:`.embedded_query`; this module opens, writes and
searches the file.

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
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ...sqlite import codes as sqlite_codes
from ...sqlite.turns import WriteTurns
from ..errors import DocStoreError, DocStoreUnavailable
from ..types import Chunk, Hit
from .embedded_query import (
    CANDIDATES,
    VECTOR_SIMILARITY_WEIGHT,
    candidates_sql,
    cosine_to_blobs,
    default_tokenizer,
    fts_query,
    hybrid_scores,
)
from .embedded_schema import (
    ROW_VALUES,
    SCHEMA,
    SCHEMA_VERSION,
    UPSERT,
    chunk_row,
    found_hit,
    max_rows_per_statement,
)
from .group_commit import Batch, GroupCommit

T = TypeVar("T")

DEFAULT_BATCH_SIZE = 200
DEFAULT_BUSY_TIMEOUT = 5.0  # seconds SQLite itself waits for a lock
DEFAULT_LOCK_TIMEOUT = 120.0  # seconds we keep retrying after that


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    code = sqlite_codes.primary_code(exc)
    if code is not None:
        return code in (sqlite_codes.BUSY, sqlite_codes.LOCKED)
    text = str(exc)
    return "locked" in text or "busy" in text


def _batches(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


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
        # without it the old row's FTS entry would stay behind (embedded_schema.UPSERT).
        conn.execute("PRAGMA recursive_triggers = ON")
        return conn

    def _ensure_schema(self, conn: sqlite3.Connection) -> None:
        if conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
            return

        def create(c: sqlite3.Connection) -> None:
            for statement in SCHEMA:
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
        rows = [chunk_row(index, chunk, now) for chunk in latest.values()]
        for batch in _batches(rows, self.batch_size):
            self._group_commit.submit(Batch(index, [values[1] for values in batch], batch))

    def _write_group(self, group: Sequence[Batch]) -> None:
        """The batches of a group commit in one statement, which is its own transaction: the
        write lock is held for one call into SQLite, with no hand-over of Python's GIL
        between BEGIN, the writes and COMMIT, each of which can wait for another thread's
        turn on the GIL (up to 5 ms) while the file stays locked. The values are bound as
        they are (text, and vectors as blobs), so nothing is encoded or parsed on the way."""
        rows = [values for batch in group for values in batch.rows]
        sql = UPSERT + ",".join([ROW_VALUES] * len(rows))
        params = [value for values in rows for value in values]
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
        return [found_hit(rows[i], float(scores[i])) for i in order]

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
        sql = candidates_sql(len(kbs), with_vectors=with_vectors)
        params = [match, index, *kbs, limit]
        conn = self._conn()
        return self._retrying(lambda: conn.execute(sql, params).fetchall())
