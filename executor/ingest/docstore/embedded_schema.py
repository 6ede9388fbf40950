"""The embedded document store's on-disk format: one SQLite file (see embedded.py).

* ``chunks``: one row per chunk. ``rid`` is the rowid FTS5 needs; the chunk's identity is
  ``(idx, id)`` (index name, chunk id), UNIQUE, so re-indexing a chunk id replaces it.
  ``tokens`` is the chunk's ``content_ltks`` (RAGFlow's tokens, space-separated); ``pages``
  is JSON; ``vector`` is little-endian float32 bytes (or NULL).
* ``chunks_fts``: an external-content FTS5 table over ``chunks.tokens``, kept in step by
  triggers, so the token text is stored once. FTS5's own tokenizer (unicode61) then splits
  and case-folds those tokens; queries go through exactly the same two steps
  (embedded_query.py), so indexing and querying always agree.
* ``indexes``: the ``(index, vector_dim)`` pairs ``create_index`` was called with.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Sequence
from contextlib import closing
from typing import Any

import numpy as np

from ..types import Chunk, Hit

SCHEMA_VERSION = 1

SCHEMA = (
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

# Insert-or-replace many rows in one statement: UPSERT + one ROW_VALUES per row (see chunk_row).
# The row an id already has is deleted first (UNIQUE (idx, id)), and with recursive_triggers
# on (see EmbeddedDocStore._open) its delete trigger takes the old FTS entry out.
COLUMNS = (
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
UPSERT = f"INSERT OR REPLACE INTO chunks ({', '.join(COLUMNS)}) VALUES "
ROW_VALUES = "(" + ", ".join("?" * len(COLUMNS)) + ")"


def vector_blob(vector: Sequence[float] | None) -> bytes | None:
    """A vector as little-endian float32 bytes (4 bytes per dimension)."""
    if vector is None:
        return None
    array = np.asarray(vector, dtype="<f4")
    if array.ndim != 1:
        raise ValueError(f"a chunk vector must be one-dimensional, not of shape {array.shape}")
    return array.tobytes()


@functools.cache
def max_rows_per_statement() -> int:
    """How many rows one statement can insert: this SQLite's limit on bound values (a
    compile-time setting: 250,000 on Debian 12, 32,766 by default, 999 before 3.32)."""
    with closing(sqlite3.connect(":memory:")) as conn:
        return conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // len(COLUMNS)


def chunk_row(index: str, chunk: Chunk, now: float) -> tuple[Any, ...]:
    """The values of *chunk*'s row, in COLUMNS order."""
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


def found_hit(found: tuple[Any, ...], score: float) -> Hit:
    """A row of the search query (embedded_query.candidates_sql) as a Hit."""
    return Hit(
        chunk_id=found[0],
        doc_id=found[1],
        kb_id=found[2],
        doc_name=found[3],
        content=found[4],
        score=score,
        pages=tuple(json.loads(found[5])),
    )
