"""@workflow/world 5.0 (spec 4-5): run attributes, system hooks

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch_op:
        batch_op.add_column(sa.Column("attributes", sa.Text(), nullable=True))
    with op.batch_alter_table("hooks") as batch_op:
        batch_op.add_column(sa.Column("is_system", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("hooks") as batch_op:
        batch_op.drop_column("is_system")
    with op.batch_alter_table("runs") as batch_op:
        batch_op.drop_column("attributes")
