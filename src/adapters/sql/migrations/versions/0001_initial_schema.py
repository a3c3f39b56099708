"""initial schema

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "active_deployment",
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("deployment_id", sa.String(length=64), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("slot"),
    )
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("secret_hash", sa.String(length=128), nullable=False),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("revoked_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("key_id"),
        sa.UniqueConstraint("secret_hash"),
    )
    op.create_table(
        "deployments",
        sa.Column("deployment_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("digest", sa.String(length=128), nullable=False),
        sa.Column("entrypoint", sa.String(length=512), nullable=True),
        sa.Column("workflows", sa.Text(), nullable=False),
        sa.Column("metadata", sa.Text(), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("deployment_id"),
    )
    op.create_table(
        "events",
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("event_type", sa.String(length=32), nullable=False),
        sa.Column("correlation_id", sa.String(length=128), nullable=True),
        sa.Column("event_data", sa.Text(), nullable=True),
        sa.Column("spec_version", sa.Integer(), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("event_id"),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_events_correlation", ["correlation_id", "created_ms", "event_id"], unique=False
        )
        batch_op.create_index("ix_events_run", ["run_id", "created_ms", "event_id"], unique=False)

    op.create_table(
        "hooks",
        sa.Column("hook_id", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("token", sa.String(length=1024), nullable=False),
        sa.Column("metadata", sa.Text(), nullable=True),
        sa.Column("is_webhook", sa.Boolean(), nullable=False),
        sa.Column("spec_version", sa.Integer(), nullable=True),
        sa.Column("owner_id", sa.String(length=255), nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.Column("environment", sa.String(length=255), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("hook_id"),
        sa.UniqueConstraint("token"),
    )
    with op.batch_alter_table("hooks", schema=None) as batch_op:
        batch_op.create_index("ix_hooks_created", ["created_ms", "hook_id"], unique=False)
        batch_op.create_index(
            "ix_hooks_run_created", ["run_id", "created_ms", "hook_id"], unique=False
        )

    op.create_table(
        "queue_keys",
        sa.Column("idempotency_key", sa.String(length=512), nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("expires_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("idempotency_key"),
    )
    op.create_table(
        "queue_messages",
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("queue_name", sa.String(length=512), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("deployment_id", sa.String(length=255), nullable=True),
        sa.Column("idempotency_key", sa.String(length=512), nullable=True),
        sa.Column("headers", sa.Text(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("available_ms", sa.BigInteger(), nullable=False),
        sa.Column("lease_owner", sa.String(length=128), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("message_id"),
    )
    with op.batch_alter_table("queue_messages", schema=None) as batch_op:
        batch_op.create_index("ix_queue_available", ["available_ms", "message_id"], unique=False)

    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("deployment_id", sa.String(length=255), nullable=False),
        sa.Column("workflow_name", sa.String(length=512), nullable=False),
        sa.Column("spec_version", sa.Integer(), nullable=True),
        sa.Column("execution_context", sa.Text(), nullable=True),
        sa.Column("input", sa.Text(), nullable=True),
        sa.Column("output", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.Column("started_ms", sa.BigInteger(), nullable=True),
        sa.Column("completed_ms", sa.BigInteger(), nullable=True),
        sa.Column("expired_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("run_id"),
    )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index("ix_runs_created", ["created_ms", "run_id"], unique=False)
        batch_op.create_index("ix_runs_status", ["status", "created_ms", "run_id"], unique=False)
        batch_op.create_index(
            "ix_runs_workflow", ["workflow_name", "created_ms", "run_id"], unique=False
        )

    op.create_table(
        "steps",
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("step_id", sa.String(length=64), nullable=False),
        sa.Column("step_name", sa.String(length=512), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("input", sa.Text(), nullable=True),
        sa.Column("output", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("spec_version", sa.Integer(), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.Column("started_ms", sa.BigInteger(), nullable=True),
        sa.Column("completed_ms", sa.BigInteger(), nullable=True),
        sa.Column("retry_after_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("run_id", "step_id"),
    )
    with op.batch_alter_table("steps", schema=None) as batch_op:
        batch_op.create_index(
            "ix_steps_run_created", ["run_id", "created_ms", "step_id"], unique=False
        )
        batch_op.create_index("ix_steps_step_id", ["step_id"], unique=False)

    op.create_table(
        "stream_chunks",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("name", sa.String(length=512), nullable=False),
        sa.Column("chunk_id", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("eof", sa.Boolean(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    with op.batch_alter_table("stream_chunks", schema=None) as batch_op:
        batch_op.create_index("ix_stream_chunks_eof", ["name", "eof"], unique=False)
        batch_op.create_index("ix_stream_chunks_name", ["name", "seq"], unique=False)

    op.create_table(
        "stream_runs",
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=512), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "name"),
    )
    op.create_table(
        "waits",
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("correlation_id", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("spec_version", sa.Integer(), nullable=True),
        sa.Column("resume_ms", sa.BigInteger(), nullable=True),
        sa.Column("completed_ms", sa.BigInteger(), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "correlation_id"),
    )


def downgrade() -> None:
    op.drop_table("waits")
    op.drop_table("stream_runs")
    with op.batch_alter_table("stream_chunks", schema=None) as batch_op:
        batch_op.drop_index("ix_stream_chunks_name")
        batch_op.drop_index("ix_stream_chunks_eof")

    op.drop_table("stream_chunks")
    with op.batch_alter_table("steps", schema=None) as batch_op:
        batch_op.drop_index("ix_steps_step_id")
        batch_op.drop_index("ix_steps_run_created")

    op.drop_table("steps")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_workflow")
        batch_op.drop_index("ix_runs_status")
        batch_op.drop_index("ix_runs_created")

    op.drop_table("runs")
    with op.batch_alter_table("queue_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_queue_available")

    op.drop_table("queue_messages")
    op.drop_table("queue_keys")
    with op.batch_alter_table("hooks", schema=None) as batch_op:
        batch_op.drop_index("ix_hooks_run_created")
        batch_op.drop_index("ix_hooks_created")

    op.drop_table("hooks")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_run")
        batch_op.drop_index("ix_events_correlation")

    op.drop_table("events")
    op.drop_table("deployments")
    op.drop_table("api_keys")
    op.drop_table("active_deployment")
