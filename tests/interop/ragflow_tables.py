"""RAGFlow v0.21.1's ``knowledgebase``, ``document`` and ``task`` tables, written out as data.

Source: api/db/db_models.py at v0.21.1 (BaseModel lines 140-144, Knowledgebase 736-771,
Document 773-800, Task 826-842; LongTextField and JSONField lines 55-64: LONGTEXT on MySQL,
TEXT on PostgreSQL). RAGFlow creates its tables with peewee's ``create_table`` from these
definitions (``init_database_tables``, same file), so building peewee models from this data
gives the DDL RAGFlow's own code runs, on each engine: no DEFAULT clauses, NOT NULL where
``null`` is False. Nothing here comes from ragfleet's code.

Each column: (name, kind, options); kind is the peewee field class RAGFlow uses, or
"longtext" for its LongTextField/JSONField.
"""

from __future__ import annotations

import json
from typing import Any

import peewee as pw

PAGES = {"pages": [[1, 1000000]]}  # the JSONField default of parser_config

BASE = [
    ("create_time", "BigIntegerField", {"null": True, "index": True}),
    ("create_date", "DateTimeField", {"null": True, "index": True}),
    ("update_time", "BigIntegerField", {"null": True, "index": True}),
    ("update_date", "DateTimeField", {"null": True, "index": True}),
]

KNOWLEDGEBASE = [
    ("id", "CharField", {"max_length": 32, "primary_key": True}),
    ("avatar", "TextField", {"null": True}),
    ("tenant_id", "CharField", {"max_length": 32, "null": False, "index": True}),
    ("name", "CharField", {"max_length": 128, "null": False, "index": True}),
    ("language", "CharField", {"max_length": 32, "null": True, "default": "English"}),
    ("description", "TextField", {"null": True}),
    ("embd_id", "CharField", {"max_length": 128, "null": False, "index": True}),
    ("permission", "CharField", {"max_length": 16, "null": False, "default": "me"}),
    ("created_by", "CharField", {"max_length": 32, "null": False, "index": True}),
    ("doc_num", "IntegerField", {"default": 0, "index": True}),
    ("token_num", "IntegerField", {"default": 0, "index": True}),
    ("chunk_num", "IntegerField", {"default": 0, "index": True}),
    ("similarity_threshold", "FloatField", {"default": 0.2, "index": True}),
    ("vector_similarity_weight", "FloatField", {"default": 0.3, "index": True}),
    ("parser_id", "CharField", {"max_length": 32, "null": False, "default": "naive"}),
    ("pipeline_id", "CharField", {"max_length": 32, "null": True, "index": True}),
    ("parser_config", "longtext", {"null": False, "default": json.dumps(PAGES)}),
    ("pagerank", "IntegerField", {"default": 0}),
    ("graphrag_task_id", "CharField", {"max_length": 32, "null": True, "index": True}),
    ("graphrag_task_finish_at", "DateTimeField", {"null": True}),
    ("raptor_task_id", "CharField", {"max_length": 32, "null": True, "index": True}),
    ("raptor_task_finish_at", "DateTimeField", {"null": True}),
    ("mindmap_task_id", "CharField", {"max_length": 32, "null": True, "index": True}),
    ("mindmap_task_finish_at", "DateTimeField", {"null": True}),
    ("status", "CharField", {"max_length": 1, "null": True, "default": "1", "index": True}),
]

DOCUMENT = [
    ("id", "CharField", {"max_length": 32, "primary_key": True}),
    ("thumbnail", "TextField", {"null": True}),
    ("kb_id", "CharField", {"max_length": 256, "null": False, "index": True}),
    ("parser_id", "CharField", {"max_length": 32, "null": False, "index": True}),
    ("pipeline_id", "CharField", {"max_length": 32, "null": True, "index": True}),
    ("parser_config", "longtext", {"null": False, "default": json.dumps(PAGES)}),
    ("source_type", "CharField", {"max_length": 128, "null": False, "default": "local"}),
    ("type", "CharField", {"max_length": 32, "null": False, "index": True}),
    ("created_by", "CharField", {"max_length": 32, "null": False, "index": True}),
    ("name", "CharField", {"max_length": 255, "null": True, "index": True}),
    ("location", "CharField", {"max_length": 255, "null": True, "index": True}),
    ("size", "IntegerField", {"default": 0, "index": True}),
    ("token_num", "IntegerField", {"default": 0, "index": True}),
    ("chunk_num", "IntegerField", {"default": 0, "index": True}),
    ("progress", "FloatField", {"default": 0, "index": True}),
    ("progress_msg", "TextField", {"null": True, "default": ""}),
    ("process_begin_at", "DateTimeField", {"null": True, "index": True}),
    ("process_duration", "FloatField", {"default": 0}),
    ("meta_fields", "longtext", {"null": True, "default": "{}"}),
    ("suffix", "CharField", {"max_length": 32, "null": False, "index": True}),
    ("run", "CharField", {"max_length": 1, "null": True, "default": "0", "index": True}),
    ("status", "CharField", {"max_length": 1, "null": True, "default": "1", "index": True}),
]

TASK = [
    ("id", "CharField", {"max_length": 32, "primary_key": True}),
    ("doc_id", "CharField", {"max_length": 32, "null": False, "index": True}),
    ("from_page", "IntegerField", {"default": 0}),
    ("to_page", "IntegerField", {"default": 100000000}),
    ("task_type", "CharField", {"max_length": 32, "null": False, "default": ""}),
    ("priority", "IntegerField", {"default": 0}),
    ("begin_at", "DateTimeField", {"null": True, "index": True}),
    ("process_duration", "FloatField", {"default": 0}),
    ("progress", "FloatField", {"default": 0, "index": True}),
    ("progress_msg", "TextField", {"null": True, "default": ""}),
    ("retry_count", "IntegerField", {"default": 0}),
    ("digest", "TextField", {"null": True, "default": ""}),
    ("chunk_ids", "longtext", {"null": True, "default": ""}),
]

TABLES = {"knowledgebase": KNOWLEDGEBASE, "document": DOCUMENT, "task": TASK}

# RAGFlow's TaskStatus (api/db/__init__.py, v0.21.1 lines 76-82).
UNSTART, RUNNING, CANCEL, DONE, FAIL, SCHEDULE = "0", "1", "2", "3", "4", "5"


def models(database: pw.Database) -> dict[str, type[pw.Model]]:
    """RAGFlow's three models bound to *database*, by table name."""
    longtext = "LONGTEXT" if isinstance(database, pw.MySQLDatabase) else "TEXT"
    long_text_field = type("LongTextField", (pw.TextField,), {"field_type": longtext})
    built = {}
    for table, columns in TABLES.items():
        fields: dict[str, Any] = {
            name: (long_text_field if kind == "longtext" else getattr(pw, kind))(**options)
            for name, kind, options in [*columns, *BASE]
        }
        meta = type("Meta", (), {"database": database, "table_name": table})
        built[table] = type(table.title(), (pw.Model,), {**fields, "Meta": meta})
    return built


def columns(table: str) -> list[str]:
    return [name for name, _, _ in [*TABLES[table], *BASE]]
