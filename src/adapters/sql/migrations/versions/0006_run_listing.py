"""listings: runs by deployment (GET /v1/runs?deploymentId=), deployments newest first

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_runs_deployment", "runs", ["deployment_id", "created_ms", "run_id"])
    op.create_index("ix_deployments_created", "deployments", ["created_ms", "deployment_id"])


def downgrade() -> None:
    op.drop_index("ix_deployments_created", table_name="deployments")
    op.drop_index("ix_runs_deployment", table_name="runs")
