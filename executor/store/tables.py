"""Upstream RAGFlow's ``knowledgebase``, ``document`` and ``task`` tables, as peewee models.

Every column of RAGFlow v0.21.1 (api/db/db_models.py) is declared with RAGFlow's type,
nullability and default, so a table ragfleet creates is one RAGFlow's own code reads and
inserts into, and a table RAGFlow created is one ``ragfleet db init`` only adds to. The
defaults are peewee's (Python-side), as RAGFlow's are: its DDL has no DEFAULT clauses, so a
column that is NOT NULL must be named by every INSERT.

ragfleet adds two columns to ``task`` (``payload``, ``token_num``). RAGFlow's INSERTs do not
name them, so they are nullable and carry a database-side default: a NOT NULL column
without one fails RAGFlow's INSERT (SQLite's "NOT NULL constraint failed", MySQL strict
mode's error 1364). ``RAGFLEET_COLUMNS`` lists them for the migration that relaxes
columns an older ragfleet created NOT NULL.

RAGFlow's document ``run`` and the knowledge base's task states use its TaskStatus codes
(api/db/__init__.py): see :class:`RunStatus`.
"""

from __future__ import annotations

import json
from enum import StrEnum

import peewee as pw


class RunStatus(StrEnum):
    """``document.run``: upstream's TaskStatus codes."""

    UNSTART = "0"
    RUNNING = "1"
    CANCEL = "2"
    DONE = "3"
    FAIL = "4"
    SCHEDULE = "5"


DEFAULT_PAGES = json.dumps({"pages": [[1, 1000000]]})
"""RAGFlow's default ``parser_config`` of a knowledge base and a document."""


class LongTextField(pw.TextField):
    """RAGFlow's LongTextField and JSONField: LONGTEXT on MySQL, TEXT elsewhere (a peewee
    PostgreSQL database maps the name, see executor.store.opening.open_database)."""

    field_type = "LONGTEXT"


class _Base(pw.Model):
    create_time = pw.BigIntegerField(null=True, index=True)
    create_date = pw.DateTimeField(null=True, index=True)
    update_time = pw.BigIntegerField(null=True, index=True)
    update_date = pw.DateTimeField(null=True, index=True)


class Knowledgebase(_Base):
    id = pw.CharField(max_length=32, primary_key=True)
    avatar = pw.TextField(null=True)
    tenant_id = pw.CharField(max_length=32, index=True, default="")
    name = pw.CharField(max_length=128, index=True)
    language = pw.CharField(max_length=32, null=True, default="English")
    description = pw.TextField(null=True, default="")
    embd_id = pw.CharField(max_length=128, default="")  # embedding model, name@factory
    permission = pw.CharField(max_length=16, default="me")
    created_by = pw.CharField(max_length=32, default="")
    doc_num = pw.IntegerField(default=0)
    token_num = pw.IntegerField(default=0)
    chunk_num = pw.IntegerField(default=0)
    similarity_threshold = pw.FloatField(default=0.2)
    vector_similarity_weight = pw.FloatField(default=0.3)
    parser_id = pw.CharField(max_length=32, default="naive")
    pipeline_id = pw.CharField(max_length=32, null=True)
    parser_config = LongTextField(default=DEFAULT_PAGES)  # chunk_token_num, delimiter, ...
    pagerank = pw.IntegerField(default=0)
    graphrag_task_id = pw.CharField(max_length=32, null=True)
    graphrag_task_finish_at = pw.DateTimeField(null=True)
    raptor_task_id = pw.CharField(max_length=32, null=True)
    raptor_task_finish_at = pw.DateTimeField(null=True)
    mindmap_task_id = pw.CharField(max_length=32, null=True)
    mindmap_task_finish_at = pw.DateTimeField(null=True)
    status = pw.CharField(max_length=1, null=True, default="1")

    class Meta:
        table_name = "knowledgebase"


class Document(_Base):
    id = pw.CharField(max_length=32, primary_key=True)
    thumbnail = pw.TextField(null=True)
    kb_id = pw.CharField(max_length=256, index=True, default="")
    parser_id = pw.CharField(max_length=32, index=True, default="naive")
    pipeline_id = pw.CharField(max_length=32, null=True)
    parser_config = LongTextField(default=DEFAULT_PAGES)
    source_type = pw.CharField(max_length=128, default="local")
    type = pw.CharField(max_length=32, default="doc")
    created_by = pw.CharField(max_length=32, default="")
    name = pw.CharField(max_length=255, null=True, index=True)
    location = pw.CharField(max_length=255, null=True)
    size = pw.BigIntegerField(default=0)
    token_num = pw.IntegerField(default=0)
    chunk_num = pw.IntegerField(default=0)
    progress = pw.FloatField(default=0)
    progress_msg = pw.TextField(null=True, default="")
    process_begin_at = pw.DateTimeField(null=True)
    process_duration = pw.FloatField(default=0)
    meta_fields = LongTextField(null=True, default="{}")
    suffix = pw.CharField(max_length=32, default="")
    run = pw.CharField(max_length=1, null=True, default=RunStatus.UNSTART.value)
    status = pw.CharField(max_length=1, null=True, default="1")

    class Meta:
        table_name = "document"


class Task(_Base):
    id = pw.CharField(max_length=32, primary_key=True)
    doc_id = pw.CharField(max_length=32, index=True, default="")
    from_page = pw.IntegerField(default=0)
    to_page = pw.IntegerField(default=100000000)
    task_type = pw.CharField(max_length=32, default="")
    priority = pw.IntegerField(default=0)
    begin_at = pw.DateTimeField(null=True)
    process_duration = pw.FloatField(default=0)
    progress = pw.FloatField(default=0, index=True)
    progress_msg = pw.TextField(null=True, default="")
    retry_count = pw.IntegerField(default=0)
    digest = pw.TextField(null=True, default="")
    chunk_ids = LongTextField(null=True, default="")
    # ragfleet's own: nullable with a database default, as RAGFlow's INSERTs leave them out.
    payload = pw.TextField(null=True, default="")  # JSON parameters of the task type
    token_num = pw.IntegerField(null=True, default=0, constraints=[pw.SQL("DEFAULT 0")])

    class Meta:
        table_name = "task"


MODELS: tuple[type[pw.Model], ...] = (Knowledgebase, Document, Task)

RAGFLEET_COLUMNS = {"task": ("payload", "token_num")}
"""Columns ragfleet adds to upstream's tables: never NOT NULL (see the module's docstring)."""
