"""Prepared statements on the raw DBAPI cursor, for the write path.

SQLAlchemy Core builds and compiles each statement once per dialect and set of
columns; executing then goes straight to the driver's cursor with positional
parameters. Per statement that saves the ~50 µs of SQLAlchemy's execution
machinery, which was 85 % of a write's time on SQLite. Only plain column types
are used (text, integers, booleans, bytes), so no type processing is lost.
Driver errors are re-raised as SQLAlchemy's exception classes.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Sequence
from typing import Any

from sqlalchemy import exc
from sqlalchemy.engine import Connection
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.expression import Executable

_cache: dict[tuple[int, str, tuple[str, ...] | None], _Prepared] = {}


class _Prepared:
    __slots__ = ("defaults", "names", "row_type", "sql", "statement")

    def __init__(self, statement: Any, conn: Connection, keys: tuple[str, ...] | None) -> None:
        compiled = statement.compile(dialect=conn.dialect, column_keys=keys)
        self.statement = statement  # keeps id(statement) valid as a cache key
        self.sql = compiled.string
        self.names: tuple[str, ...] = tuple(compiled.positiontup or ())
        self.defaults = {
            name: bind.effective_value
            for name, bind in compiled.binds.items()
            if not bind.required and bind.value is not None
        }
        columns = getattr(statement, "selected_columns", None)
        self.row_type = (
            namedtuple("Row", [c.key for c in columns], rename=True)
            if columns is not None and getattr(statement, "is_select", False)
            else None
        )

    def args(self, params: dict[str, Any]) -> tuple[Any, ...]:
        defaults = self.defaults
        return tuple(params[n] if n in params else defaults[n] for n in self.names)


def _prepared(conn: Connection, statement: Any, keys: tuple[str, ...] | None) -> _Prepared:
    cache_key = (id(statement), conn.dialect.name, keys)
    found = _cache.get(cache_key)
    if found is None:
        found = _cache[cache_key] = _Prepared(statement, conn, keys)
    return found


class Cursor:
    """Executes prepared statements on one transaction's raw connection."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        self._errors = conn.dialect.loaded_dbapi.Error

    def execute(self, statement: Executable | ClauseElement, params: dict[str, Any]) -> int:
        """Run a DML statement; returns the row count. Data keys pick the columns."""
        keys = _column_keys(statement, params)
        prepared = _prepared(self._conn, statement, keys)
        self._run(prepared.sql, prepared.args(params))
        return int(self._cursor.rowcount)

    def execute_many(self, statement: Executable, rows: Sequence[dict[str, Any]]) -> None:
        prepared = _prepared(self._conn, statement, tuple(rows[0]))
        try:
            self._cursor.executemany(prepared.sql, [prepared.args(row) for row in rows])
        except self._errors as error:
            raise _wrapped(prepared.sql, error) from error

    def first(self, statement: Executable, params: dict[str, Any]) -> Any:
        prepared = _prepared(self._conn, statement, None)
        self._run(prepared.sql, prepared.args(params))
        row = self._cursor.fetchone()
        return None if row is None or prepared.row_type is None else prepared.row_type(*row)

    def all(self, statement: Executable, params: dict[str, Any]) -> list[Any]:
        prepared = _prepared(self._conn, statement, None)
        self._run(prepared.sql, prepared.args(params))
        row_type = prepared.row_type
        assert row_type is not None
        return [row_type(*row) for row in self._cursor.fetchall()]

    def raw(self, sql: str) -> None:
        self._run(sql, ())

    def _run(self, sql: str, args: tuple[Any, ...]) -> None:
        try:
            self._cursor.execute(sql, args)
        except self._errors as error:
            raise _wrapped(sql, error) from error


def _column_keys(statement: Any, params: dict[str, Any]) -> tuple[str, ...] | None:
    if getattr(statement, "is_insert", False) or getattr(statement, "is_update", False):
        return tuple(key for key in params if not key.startswith("b_"))
    return None


def _wrapped(sql: str, error: Exception) -> Exception:
    wrapped: Exception = exc.DBAPIError.instance(sql, None, error, Exception)
    return wrapped
