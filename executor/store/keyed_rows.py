"""Reads and writes of single rows by primary key, in SQL compiled once.

peewee compiles a query's SQL anew on every call: about 150-300 us of Python here for a
one-row read or update, while the database itself needs 10 us (SQLite) or one round trip
(MariaDB). An ingestion task runs a dozen such statements, so compiling was a tenth of its
CPU. :class:`KeyedRows` sends the same SQL, built once per model and set of columns, with
values converted by the model's own fields (``db_value`` / ``python_value``), as peewee does.

A batch's rows (:meth:`KeyedRows.update_many`) go to MySQL/MariaDB as one ``UPDATE ...
CASE`` statement: its driver's ``executemany`` sends an UPDATE per row, a round trip each,
and at 32 slots round trips were most of a batch's time there (docs/benchmarks.md,
"MariaDB's full path, and a run on a quiet machine"). SQLite runs ``executemany``
in-process; PostgreSQL keeps it too (its CASE would need a type for every parameter).

It runs inside the caller's connection and transaction handling (``TaskStore.session`` /
``writing``, ``database.atomic``); it never opens or commits anything itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import peewee as pw

ROWS_PER_STATEMENT = 100
"""Rows in one UPDATE ... CASE statement: bounds its size and the shapes compiled."""


class KeyedRows:
    """One model's rows, addressed by primary key."""

    def __init__(self, model: type[pw.Model]) -> None:
        meta = model._meta
        self._database: pw.Database = meta.database
        self._fields: dict[str, pw.Field] = dict(meta.fields)
        self._table = self._quote(meta.table_name)
        self._key = self._quote(meta.primary_key.column_name)
        self._key_field: str = meta.primary_key.name
        self._param = self._database.param
        self._compiled: dict[tuple[Any, ...], str] = {}
        self._locks = not isinstance(self._database, pw.SqliteDatabase)
        self._one_statement = isinstance(self._database, pw.MySQLDatabase)

    def get(
        self, key: Any, columns: Iterable[str] | None = None, *, for_update: bool = False
    ) -> dict[str, Any] | None:
        """The row as a dict of *columns* (all by default), or None. *for_update* locks it
        until the transaction ends where the database locks rows (not SQLite, whose writers
        are serialised anyway)."""
        names = tuple(columns or self._fields)
        rows = self._select(names, self._key, key, for_update=for_update and self._locks)
        return rows[0] if rows else None

    def get_many(self, keys: list[Any]) -> dict[Any, dict[str, Any]]:
        """The rows of *keys* (every column), by key, in one ``IN (...)`` statement; a key
        with no row is absent. The caller keeps *keys* to a few hundred."""
        unique = list(dict.fromkeys(keys))
        if not unique:
            return {}
        names = tuple(self._fields)
        shape = ("select-in", len(unique))
        sql = self._compiled.get(shape)
        if sql is None:
            columns = ", ".join(self._column(n) for n in names)
            marks = ", ".join([self._param] * len(unique))
            sql = f"SELECT {columns} FROM {self._table} WHERE {self._key} IN ({marks})"
            self._compiled[shape] = sql
        rows = self._rows(names, self._database.execute_sql(sql, unique))
        key_name = self._key_field
        return {row[key_name]: row for row in rows}

    def where_equal(self, column: str, value: Any, columns: Iterable[str]) -> list[dict[str, Any]]:
        """Every row whose *column* equals *value*, as dicts of *columns*."""
        return self._select(tuple(columns), self._column(column), value, for_update=False)

    def update(
        self, key: Any, values: dict[str, Any], increments: dict[str, int] | None = None
    ) -> int:
        """Set *values* and add *increments* (``col = col + n``, atomic in the database) on
        the row *key*; returns the number of rows changed."""
        added = increments or {}
        sql = self._update_sql(tuple(values), tuple(added))
        params = [self._fields[n].db_value(v) for n, v in values.items()]
        params += [int(n) for n in added.values()]
        cursor = self._database.execute_sql(sql, [*params, key])
        return cursor.rowcount

    def update_many(self, rows: Iterable[tuple[Any, dict[str, Any]]]) -> None:
        """:meth:`update` of each (key, values) in *rows*, in order, without increments:
        one statement (MySQL) or ``executemany`` per run of rows with the same columns (a
        batch's rows share theirs), so a batch of tasks costs one statement's Python and
        round trip, not one per task."""
        names: tuple[str, ...] = ()
        run: list[list[Any]] = []
        for key, values in rows:
            if tuple(values) != names and run:
                self._execute_many(names, run)
                run = []
            names = tuple(values)
            run.append([*(self._fields[n].db_value(v) for n, v in values.items()), key])
        if run:
            self._execute_many(names, run)

    def _execute_many(self, names: tuple[str, ...], params: list[list[Any]]) -> None:
        if self._one_statement:
            for start in range(0, len(params), ROWS_PER_STATEMENT):
                self._update_in_one(names, params[start : start + ROWS_PER_STATEMENT])
            return
        with pw.__exception_wrapper__:  # errors as peewee's own, as execute_sql raises them
            self._database.cursor().executemany(self._update_sql(names, ()), params)

    def _update_in_one(self, names: tuple[str, ...], params: list[list[Any]]) -> None:
        """The rows *params* (values of *names*, then the key) in one statement: each column
        set to ``CASE key WHEN k1 THEN v1 ... END``. A key given twice keeps its last
        values, as two updates one after the other would."""
        last = {row[-1]: row for row in params}  # dicts keep the first place, last value
        rows = list(last.values())
        shape = ("update-in-one", names, len(rows))
        sql = self._compiled.get(shape)
        if sql is None:
            p = self._param
            whens = " ".join([f"WHEN {p} THEN {p}"] * len(rows))
            sets = ", ".join(f"{self._column(n)} = CASE {self._key} {whens} END" for n in names)
            keys = ", ".join([p] * len(rows))
            sql = f"UPDATE {self._table} SET {sets} WHERE {self._key} IN ({keys})"
            self._compiled[shape] = sql
        values = [v for i in range(len(names)) for row in rows for v in (row[-1], row[i])]
        self._database.execute_sql(sql, [*values, *(row[-1] for row in rows)])

    def _update_sql(self, names: tuple[str, ...], added: tuple[str, ...]) -> str:
        shape = ("update", names, added)
        sql = self._compiled.get(shape)
        if sql is None:
            sets = [f"{self._column(n)} = {self._param}" for n in names]
            sets += [f"{self._column(n)} = {self._column(n)} + {self._param}" for n in added]
            sql = f"UPDATE {self._table} SET {', '.join(sets)} WHERE {self._key} = {self._param}"
            self._compiled[shape] = sql
        return sql

    def _select(
        self, names: tuple[str, ...], where: str, value: Any, *, for_update: bool
    ) -> list[dict[str, Any]]:
        shape = ("select", names, where, for_update)
        sql = self._compiled.get(shape)
        if sql is None:
            columns = ", ".join(self._column(n) for n in names)
            sql = f"SELECT {columns} FROM {self._table} WHERE {where} = {self._param}"
            sql += " FOR UPDATE" if for_update else ""
            self._compiled[shape] = sql
        return self._rows(names, self._database.execute_sql(sql, [value]))

    def _rows(self, names: tuple[str, ...], cursor: Any) -> list[dict[str, Any]]:
        fields = [self._fields[n] for n in names]
        return [
            {f.name: f.python_value(v) for f, v in zip(fields, row, strict=True)}
            for row in cursor.fetchall()
        ]

    def _column(self, field_name: str) -> str:
        return self._quote(self._fields[field_name].column_name)

    def _quote(self, name: str) -> str:
        start, end = self._database.quote
        return f"{start}{name}{end}"
