"""@workflow/world 4.5: the run's stateUpdatedAt marker, an event's occurredAt

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch_op:
        batch_op.add_column(sa.Column("state_marker_ms", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("events") as batch_op:
        batch_op.add_column(sa.Column("occurred_ms", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("events") as batch_op:
        batch_op.drop_column("occurred_ms")
    with op.batch_alter_table("runs") as batch_op:
        batch_op.drop_column("state_marker_ms")
