"""Task storage: upstream's ``task`` and ``document`` tables, on SQLite, MariaDB or PostgreSQL.

The columns and their meaning are upstream RAGFlow's, so its status pages can read what we
write: ``progress`` is 0..1, -1 means failed; ``progress_msg`` is a log of ``HH:MM:SS``
lines. The tables are in :mod:`executor.store.tables`; ragfleet adds ``task.payload`` (JSON
parameters for task types that need them) and ``task.token_num``.

Every method is synchronous (peewee): the worker calls them through ``trio.to_thread``.
A lost or refused connection, or a refusal that a retry resolves (a deadlock, a lock wait
timeout, a read-only server, a Galera node without quorum, a full disk), raises
:class:`DatabaseUnavailable`, never a task failure.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import peewee as pw
from playhouse.migrate import SchemaMigrator, migrate

from ..errors import DatabaseConnectionFailed, DatabaseUnavailable, NoTurnToWrite
from ..sqlite.turns import WriteTurns
from .classify import failed_commit, is_connection_error, is_passing_refusal, raise_if_damaged
from .connections import ClosingConnections
from .keyed_rows import KeyedRows
from .tables import RAGFLEET_COLUMNS, Document, Knowledgebase, Task


def new_id() -> str:
    return uuid.uuid4().hex


_IDS_PER_QUERY = 500
"""Ids bound into one IN (...) list: well under every engine's limit on parameters."""


def stamp_fields(prefix: str) -> dict[str, Any]:
    return {f"{prefix}_time": int(time.time() * 1000), f"{prefix}_date": datetime.now()}


TASK_STATES = ("queued", "running", "done", "failed", "cancelled")
CANCELLED_MESSAGE = "Task has been canceled."
WRITE_TURN_TIMEOUT = 60.0
"""Seconds a write waits for its turn on a SQLite task database before it counts as an
outage (the task is retried, never failed)."""


def task_state(row: dict[str, Any]) -> str:
    """queued | running | done | failed | cancelled, derived from upstream's columns."""
    progress = row.get("progress") or 0
    if progress >= 1:
        return "done"
    if progress < 0:
        return "cancelled" if CANCELLED_MESSAGE in (row.get("progress_msg") or "") else "failed"
    # RAGFlow stamps begin_at when it queues a task; an executor's begin adds its first line.
    return "running" if row.get("begin_at") and row.get("progress_msg") else "queued"


@dataclass(frozen=True)
class Migration:
    action: str

    def __str__(self) -> str:
        return self.action


class TaskStore:
    """The task and document tables of one database, bound to it for this store only."""

    def __init__(self, database: pw.Database) -> None:
        self.database = database
        # Subclassing binds the models to this database without touching the shared classes.
        self.Knowledgebase = _bound(Knowledgebase, database)
        self.Document = _bound(Document, database)
        self.Task = _bound(Task, database)
        self.models = (self.Knowledgebase, self.Document, self.Task)
        # The statements every task runs, compiled once (see executor.store.keyed_rows).
        self.task_rows = KeyedRows(self.Task)
        self.document_rows = KeyedRows(self.Document)
        self.knowledge_base_rows = KeyedRows(self.Knowledgebase)
        self._turns = _write_turns(database)

    @contextmanager
    def session(self) -> Iterator[None]:
        """Map connection-level failures to DatabaseUnavailable and drop the broken connection;
        map refusals that a retry resolves (a deadlock, a lock timeout, a read-only server, a
        full disk) to it as well."""
        # Connections are per thread (peewee's default) and kept open between calls.
        try:
            yield
        except (pw.OperationalError, pw.InterfaceError, pw.InternalError) as exc:
            error = failed_commit(exc) or exc
            if is_connection_error(error):
                # The driver may refuse to close what it closed already (PyMySQL's "Already
                # closed"); peewee forgets the connection either way.
                with suppress(Exception):
                    self.database.close()
                raise DatabaseConnectionFailed(str(error)) from error
            if is_passing_refusal(error):
                raise DatabaseUnavailable(str(error)) from error
            raise_if_damaged(self.database, error)
            raise
        except pw.DatabaseError as exc:  # SQLite's CORRUPT and NOTADB come as this
            raise_if_damaged(self.database, exc)
            raise

    @contextmanager
    def writing(self) -> Iterator[None]:
        """A :meth:`session` for writes: on SQLite, inside this file's turn to write
        (:mod:`executor.sqlite.turns`), so the executor's writers queue instead of polling."""
        if self._turns is None:
            with self.session():
                yield
            return
        try:
            with self.session(), self._turns():
                yield
        except NoTurnToWrite as exc:
            raise DatabaseUnavailable(str(exc)) from exc

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """:meth:`writing` in one transaction; nested, a savepoint (SQLite's turns are
        re-entrant, so a transaction may call the store's other writers)."""
        with self.writing(), self.database.atomic():
            yield

    def close_all(self) -> None:
        """At exit: close every thread's connection, so that a server is told goodbye
        (see executor.store.connections); SQLite's files close with the process."""
        if isinstance(self.database, ClosingConnections):
            self.database.close_all()

    def ping(self) -> None:
        """Raise DatabaseUnavailable unless the database answers."""
        with self.session():
            self.database.execute_sql("SELECT 1")

    # -- schema ------------------------------------------------------------------------------

    def init_schema(self) -> list[Migration]:
        """Create missing tables and add missing columns; returns what was done (idempotent)."""
        done: list[Migration] = []
        with self.session():
            existing = set(self.database.get_tables())
            migrator = SchemaMigrator.from_database(self.database)
            for model in self.models:
                table = model._meta.table_name
                if table not in existing:
                    self.database.create_tables([model])
                    done.append(Migration(f"created table {table}"))
                    continue
                have = {c.name: c for c in self.database.get_columns(table)}
                for name, fld in model._meta.fields.items():
                    if fld.column_name not in have:
                        migrate(migrator.add_column(table, fld.column_name, fld))
                        done.append(Migration(f"added column {table}.{name}"))
                done += _relax_own_columns(migrator, table, have)
        return done

    # -- producers ---------------------------------------------------------------------------

    def create_document(self, **fields: Any) -> dict[str, Any]:
        row = {"id": new_id(), **stamp_fields("create"), **stamp_fields("update"), **fields}
        with self.writing():
            self.Document.insert(**row).execute()
        return row

    def create_tasks(self, rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        stamped = [
            {"id": new_id(), **stamp_fields("create"), **stamp_fields("update"), **row}
            for row in rows
        ]
        with self.transaction():
            for start in range(0, len(stamped), 500):
                self.Task.insert_many(stamped[start : start + 500]).execute()
        return stamped

    # -- the worker's view -------------------------------------------------------------------

    def get_task(self, task_id: str) -> dict[str, Any] | None:
        with self.session():
            row = self.task_rows.get(task_id)
        return _decoded(row) if row else None

    def get_tasks(self, task_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The rows of *task_ids* by id, in one statement per _IDS_PER_QUERY ids (a batch of
        deliveries is looked up at once); an id with no row is absent."""
        rows: dict[str, dict[str, Any]] = {}
        with self.session():
            for start in range(0, len(task_ids), _IDS_PER_QUERY):
                rows.update(self.task_rows.get_many(task_ids[start : start + _IDS_PER_QUERY]))
        return {task_id: _decoded(row) for task_id, row in rows.items()}

    def begin_tasks(self, begun: list[tuple[str, int, str]]) -> None:
        """Mark each (task id, retry count, progress_msg) of *begun* started: begin_at,
        retry_count and its first progress line at once; a batch (looked up together) in
        one transaction and, where the database allows, one statement. One task is one
        statement, outside any transaction (no BEGIN and COMMIT round trips)."""
        if not begun:
            return
        now = {"begin_at": datetime.now(), **stamp_fields("update")}
        rows = [
            (task_id, {**now, "retry_count": retry_count, "progress_msg": progress_msg})
            for task_id, retry_count, progress_msg in begun
        ]
        with self.transaction() if len(rows) > 1 else self.writing():
            self.task_rows.update_many(rows)

    def lease_stamp(self, task_id: str) -> float | None:
        """When the unfinished task's row was last stamped (seconds since the epoch), or
        None if the task is missing or settled: an executor holding a task renews the
        stamp every heartbeat (see renew_leases)."""
        task = self.get_task(task_id)
        if task is None or not 0 <= task["progress"] < 1:
            return None
        return (task["update_time"] or 0) / 1000

    def renew_leases(self, task_ids: Collection[str]) -> None:
        """Stamp the unfinished tasks among *task_ids* as changed now, in one statement: an
        executor holding them says so where another one that takes over their entries
        can see it, even when it cannot reach Redis (see lease_stamp)."""
        if not task_ids:
            return
        task = self.Task
        unfinished = (task.progress >= 0) & (task.progress < 1)
        with self.writing():
            task.update(**stamp_fields("update")).where(
                task.id.in_(list(task_ids)) & unfinished
            ).execute()

    def set_progress(
        self, task_id: str, progress: float | None, progress_msg: str, **extra: Any
    ) -> None:
        fields = _progress_fields(progress, progress_msg, stamp_fields("update"), extra)
        with self.writing():
            self.task_rows.update(task_id, fields)

    def set_progress_many(self, rows: list[tuple[str, float | None, str, dict[str, Any]]]) -> None:
        """:meth:`set_progress` of each (task id, progress, progress_msg, extra fields) in
        *rows*, stamped with one time, in one statement per set of columns (a batch of
        tasks recorded done together, see Outcomes.finish)."""
        stamped = stamp_fields("update")
        updates = [
            (task_id, _progress_fields(progress, progress_msg, stamped, extra))
            for task_id, progress, progress_msg, extra in rows
        ]
        with self.writing():
            self.task_rows.update_many(updates)

    # -- operators ---------------------------------------------------------------------------

    def list_tasks(
        self, state: str | None = None, doc_id: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        query = self.Task.select().order_by(self.Task.create_time.desc())
        if doc_id:
            query = query.where(self.Task.doc_id == doc_id)
        query = _where_state(query, self.Task, state)
        with self.session():
            rows = list(query.dicts())
        rows = [r for r in rows if state is None or task_state(r) == state]
        return rows[:limit]

    def unfinished_tasks(self, among: Iterable[str]) -> list[dict[str, Any]]:
        """The tasks *among* these ids that a queue still owes work (progress in [0, 1)),
        oldest first."""
        ids = list(among)
        rows: list[dict[str, Any]] = []
        for start in range(0, len(ids), _IDS_PER_QUERY):
            batch = ids[start : start + _IDS_PER_QUERY]
            rows += self._unfinished(self.Task.select().where(self.Task.id.in_(batch)))
        return sorted(rows, key=lambda row: row["create_time"] or 0)

    def unfinished_task_stamps(
        self, *, created_before_ms: int | None = None, changed_before_ms: int | None = None
    ) -> list[dict[str, Any]]:
        """Id, priority, create_time and update_time of the unfinished tasks: what a sweep
        needs to pick candidates without loading every row's progress log. With
        *created_before_ms* / *changed_before_ms*, at least those created / last changed
        (update_time, else create_time) before then: the indexes leave the rest unread,
        so a pass that finds nothing lost reads next to nothing (the caller filters
        exactly; a missing or zero stamp counts as 0, as LostTaskFilter.keeps has it)."""
        task = self.Task
        stamps = (task.id, task.priority, task.create_time, task.update_time)
        query = task.select(*stamps)
        if created_before_ms is not None:
            query = query.where((task.create_time < created_before_ms) | _unset(task.create_time))
        if changed_before_ms is not None:
            query = query.where((task.update_time < changed_before_ms) | _unset(task.update_time))
        return self._unfinished(query)

    def unfinished_count(self) -> int:
        """How many tasks are unfinished (progress in [0, 1)), counted on the progress index."""
        task = self.Task
        with self.session():
            return int(task.select().where((task.progress >= 0) & (task.progress < 1)).count())

    def _unfinished(self, query: pw.ModelSelect) -> list[dict[str, Any]]:
        query = query.where((self.Task.progress >= 0) & (self.Task.progress < 1))
        with self.session():
            return list(query.order_by(self.Task.create_time).dicts())

    def task_ids_of_document(self, doc_id: str) -> list[str]:
        with self.session():
            query = self.Task.select(self.Task.id).where(self.Task.doc_id == doc_id)
            return [row.id for row in query]

    def reset_task(self, task_id: str, note: str) -> dict[str, Any] | None:
        """Make a failed task runnable again (dead-letter retry)."""
        with self.writing():
            self.Task.update(
                progress=0,
                retry_count=0,
                begin_at=None,
                progress_msg=note,
                **stamp_fields("update"),
            ).where(self.Task.id == task_id).execute()
        return self.get_task(task_id)


def _decoded(row: dict[str, Any]) -> dict[str, Any]:
    """*row* with its JSON payload parsed."""
    if row.get("payload"):
        row["payload"] = json.loads(row["payload"])
    return row


def _progress_fields(
    progress: float | None, progress_msg: str, stamped: dict[str, Any], extra: dict[str, Any]
) -> dict[str, Any]:
    """The columns a progress write sets (progress itself only when given)."""
    fields: dict[str, Any] = {"progress_msg": progress_msg, **stamped, **extra}
    if progress is not None:
        fields["progress"] = progress
    return fields


def _unset(column: pw.Field) -> pw.Expression:
    return column.is_null() | (column == 0)


def _relax_own_columns(
    migrator: SchemaMigrator, table: str, have: dict[str, pw.ColumnMetadata]
) -> list[Migration]:
    """Let NULL into the columns of ours that an older ragfleet created NOT NULL, so
    RAGFlow's INSERTs, which do not name them, go through."""
    relaxed = []
    for column in RAGFLEET_COLUMNS.get(table, ()):
        if column in have and not have[column].null:
            migrate(migrator.drop_not_null(table, column))
            relaxed.append(Migration(f"let NULL into column {table}.{column} (RAGFlow's rows)"))
    return relaxed


def _write_turns(database: pw.Database) -> WriteTurns | None:
    """Turns to write a SQLite file (a server database queues writers itself)."""
    if not isinstance(database, pw.SqliteDatabase) or database.database in ("", ":memory:"):
        return None
    return WriteTurns(database.database, WRITE_TURN_TIMEOUT)


def _bound(model: type[pw.Model], database: pw.Database) -> type[pw.Model]:
    meta = type("Meta", (), {"database": database, "table_name": model._meta.table_name})
    return type(model.__name__, (model,), {"Meta": meta, "__module__": __name__})


def _where_state(query: pw.ModelSelect, task: type[pw.Model], state: str | None):
    """Narrow in SQL what can be narrowed; task_state() decides the rest."""
    if state == "done":
        return query.where(task.progress >= 1)
    if state in ("failed", "cancelled"):
        return query.where(task.progress < 0)
    unfinished = (task.progress >= 0) & (task.progress < 1)
    if state in ("queued", "running"):
        return query.where(unfinished)
    return query
