"""app deliveries: wdk deployments' endpoints, queue messages' run and failure count

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deployments") as batch:
        batch.add_column(sa.Column("endpoint", sa.Text()))
    with op.batch_alter_table("queue_messages") as batch:
        batch.add_column(sa.Column("run_id", sa.String(64)))
        batch.add_column(sa.Column("failures", sa.Integer(), nullable=False, server_default="0"))
    op.create_index("ix_queue_run", "queue_messages", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_queue_run", table_name="queue_messages")
    with op.batch_alter_table("queue_messages") as batch:
        batch.drop_column("failures")
        batch.drop_column("run_id")
    with op.batch_alter_table("deployments") as batch:
        batch.drop_column("endpoint")
