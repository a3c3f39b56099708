"""The few places where SQLite and PostgreSQL differ: insert-if-absent, row locks.

SQLite serializes writers with ``BEGIN IMMEDIATE`` (one writer at a time for the
whole file), so it needs no row locks; PostgreSQL locks the rows it decides on.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Insert, Select, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection


def is_postgres(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def insert_ignoring_conflicts(dialect: str, table: Table) -> Insert:
    """``INSERT … ON CONFLICT DO NOTHING``: rowcount 0 means the key was taken."""
    module: Any = postgresql if dialect == "postgresql" else sqlite
    statement: Insert = module.insert(table).on_conflict_do_nothing()
    return statement


def upsert(dialect: str, table: Table) -> Insert:
    """``INSERT … ON CONFLICT (primary key) DO UPDATE`` every other column."""
    module: Any = postgresql if dialect == "postgresql" else sqlite
    statement = module.insert(table)
    keys = [column.name for column in table.primary_key.columns]
    changed = {c.name: statement.excluded[c.name] for c in table.columns if c.name not in keys}
    result: Insert = statement.on_conflict_do_update(index_elements=keys, set_=changed)
    return result


def insert_if_absent(conn: Connection, table: Table, values: dict[str, Any]) -> bool:
    """Insert one row unless its key (or a unique column) exists; True when inserted."""
    statement = insert_ignoring_conflicts(conn.dialect.name, table)
    return conn.execute(statement, values).rowcount == 1


def locked(
    dialect: str, query: Select[Any], skip_locked: bool = False, of: Table | None = None
) -> Select[Any]:
    """``FOR UPDATE`` on PostgreSQL (optionally ``SKIP LOCKED``; ``of``: the table whose
    rows are locked, in a join); as is on SQLite."""
    if dialect == "postgresql":
        return query.with_for_update(skip_locked=skip_locked, of=of)
    return query
