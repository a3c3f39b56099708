"""The tables the code writes (``adapters/sql/schema.py``) are the tables the migrations
build: a fresh database migrated by Alembic has, table by table and column by column,
the same columns (type, nullability), primary keys, indexes and unique constraints as
the SQLAlchemy metadata — on SQLite and on PostgreSQL. Alembic's own comparison of
the two (what ``alembic revision --autogenerate`` would write) is empty too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Table, inspect
from sqlalchemy.engine import Connection, Dialect

from compute_worker.adapters.sql.database import Database, DatabaseConfig
from compute_worker.adapters.sql.schema import metadata


@pytest.fixture(params=["sqlite", "postgres"])
def config(request: pytest.FixtureRequest, tmp_path: Path) -> DatabaseConfig:
    if request.param == "sqlite":
        return DatabaseConfig(sqlite_path=tmp_path / "migrated.db")
    url: str = request.getfixturevalue("postgres_url")
    return DatabaseConfig(sqlite_path=tmp_path / "unused.db", database_url=url)


async def _migrated(config: DatabaseConfig) -> tuple[dict[str, Any], dict[str, Any], list[Any]]:
    """(what the database holds, what the metadata declares, Alembic's differences)."""
    database = Database(config)
    try:
        await database.migrate()
        async with database.db_engine.connect() as conn:
            return await conn.run_sync(_compare)
    finally:
        await database.close()


def _compare(conn: Connection) -> tuple[dict[str, Any], dict[str, Any], list[Any]]:
    inspector = inspect(conn)
    tables = sorted(t for t in inspector.get_table_names() if t != "alembic_version")
    found = {name: _found(inspector, name, conn.dialect) for name in tables}
    declared = {name: _declared(table, conn.dialect) for name, table in metadata.tables.items()}
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return found, declared, compare_metadata(context, metadata)


def _type(kind: Any, dialect: Dialect) -> str:
    return str(kind.compile(dialect=dialect)).upper()


def _found(inspector: Any, name: str, dialect: Dialect) -> dict[str, Any]:
    return {
        "columns": {
            column["name"]: (_type(column["type"], dialect), column["nullable"])
            for column in inspector.get_columns(name)
        },
        "primary key": tuple(inspector.get_pk_constraint(name)["constrained_columns"]),
        "indexes": {
            index["name"]: (tuple(index["column_names"]), bool(index["unique"]))
            for index in inspector.get_indexes(name)
            # PostgreSQL lists a unique constraint's index among the indexes too
            if not index.get("duplicates_constraint")
        },
        "unique": sorted(tuple(u["column_names"]) for u in inspector.get_unique_constraints(name)),
    }


def _declared(table: Table, dialect: Dialect) -> dict[str, Any]:
    unique = [(c.name,) for c in table.columns if c.unique]
    return {
        "columns": {c.name: (_type(c.type, dialect), c.nullable) for c in table.columns},
        "primary key": tuple(c.name for c in table.primary_key.columns),
        "indexes": {
            str(index.name): (tuple(c.name for c in index.columns), bool(index.unique))
            for index in table.indexes
        },
        "unique": sorted(unique),
    }


async def test_the_migrated_database_has_the_declared_tables(config: DatabaseConfig) -> None:
    found, declared, differences = await _migrated(config)
    assert sorted(found) == sorted(declared)
    for name in sorted(declared):
        for part in ("columns", "primary key", "indexes", "unique"):
            assert found[name][part] == declared[name][part], (name, part)
    assert differences == []
