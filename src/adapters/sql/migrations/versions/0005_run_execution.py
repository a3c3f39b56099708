"""the engine's count of failed starts and lost executors per run

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_execution",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("start_failures", sa.Integer(), nullable=False),
        sa.Column("lost_executors", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text()),
        sa.Column("last_error_ms", sa.BigInteger()),
        sa.Column("next_attempt_ms", sa.BigInteger()),
        sa.Column("progress_mark", sa.String(64)),
    )


def downgrade() -> None:
    op.drop_table("run_execution")
