"""Alembic environment. The caller passes an open connection in
``config.attributes["connection"]`` (see ``adapters.sql.database.migrate``)."""

from __future__ import annotations

from alembic import context

from compute_worker.adapters.sql.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
