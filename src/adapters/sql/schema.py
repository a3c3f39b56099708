"""Tables, as the latest migration leaves them. Times are epoch milliseconds (BIGINT),
identical on SQLite and PostgreSQL; payloads are JSON text (see ``adapters.codec``)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL wants BIGINT identity.
Seq = BigInteger().with_variant(Integer(), "sqlite")

runs = Table(
    "runs",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("deployment_id", String(255), nullable=False),
    Column("workflow_name", String(512), nullable=False),
    Column("spec_version", Integer),
    Column("execution_context", Text),
    Column("input", Text),
    Column("output", Text),
    Column("error", Text),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    Column("started_ms", BigInteger),
    Column("completed_ms", BigInteger),
    Column("expired_ms", BigInteger),
    Column("state_marker_ms", BigInteger),
    Column("attributes", Text),
    Index("ix_runs_created", "created_ms", "run_id"),
    Index("ix_runs_workflow", "workflow_name", "created_ms", "run_id"),
    Index("ix_runs_status", "status", "created_ms", "run_id"),
    Index("ix_runs_deployment", "deployment_id", "created_ms", "run_id"),
)

steps = Table(
    "steps",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("step_id", String(64), primary_key=True),
    Column("step_name", String(512), nullable=False),
    Column("status", String(16), nullable=False),
    Column("input", Text),
    Column("output", Text),
    Column("error", Text),
    Column("attempt", Integer, nullable=False),
    Column("spec_version", Integer),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    Column("started_ms", BigInteger),
    Column("completed_ms", BigInteger),
    Column("retry_after_ms", BigInteger),
    Index("ix_steps_step_id", "step_id"),
    Index("ix_steps_run_created", "run_id", "created_ms", "step_id"),
)

hooks = Table(
    "hooks",
    metadata,
    Column("hook_id", String(64), primary_key=True),
    Column("run_id", String(64), nullable=False),
    Column("token", String(1024), nullable=False, unique=True),
    Column("metadata", Text),
    Column("is_webhook", Boolean, nullable=False),
    Column("is_system", Boolean),
    Column("spec_version", Integer),
    Column("owner_id", String(255), nullable=False),
    Column("project_id", String(255), nullable=False),
    Column("environment", String(255), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Index("ix_hooks_run_created", "run_id", "created_ms", "hook_id"),
    Index("ix_hooks_created", "created_ms", "hook_id"),
)

waits = Table(
    "waits",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("correlation_id", String(128), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("spec_version", Integer),
    Column("resume_ms", BigInteger),
    Column("completed_ms", BigInteger),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
)

events = Table(
    "events",
    metadata,
    Column("event_id", String(64), primary_key=True),
    Column("run_id", String(64), nullable=False),
    Column("event_type", String(32), nullable=False),
    Column("correlation_id", String(128)),
    Column("event_data", Text),
    Column("spec_version", Integer),
    Column("created_ms", BigInteger, nullable=False),
    Column("occurred_ms", BigInteger),
    Index("ix_events_run", "run_id", "created_ms", "event_id"),
    Index("ix_events_correlation", "correlation_id", "created_ms", "event_id"),
)

stream_chunks = Table(
    "stream_chunks",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("name", String(512), nullable=False),
    Column("chunk_id", String(64), nullable=False),
    Column("run_id", String(64), nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("eof", Boolean, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Index("ix_stream_chunks_name", "name", "seq"),
    Index("ix_stream_chunks_eof", "name", "eof"),
)

stream_runs = Table(
    "stream_runs",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("name", String(512), primary_key=True),
    Column("created_ms", BigInteger, nullable=False),
)

queue_messages = Table(
    "queue_messages",
    metadata,
    Column("message_id", String(64), primary_key=True),
    Column("queue_name", String(512), nullable=False),
    Column("payload", Text, nullable=False),
    Column("deployment_id", String(255)),
    Column("idempotency_key", String(512)),
    Column("headers", Text, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("available_ms", BigInteger, nullable=False),
    Column("lease_owner", String(128)),
    Column("created_ms", BigInteger, nullable=False),
    # app deliveries (kind wdk): the run a workflow message wakes (deliveries of one run's
    # workflow messages never overlap), failed deliveries in a row
    Column("run_id", String(64)),
    Column("failures", Integer, nullable=False, server_default="0"),
    Index("ix_queue_available", "available_ms", "message_id"),
    Index("ix_queue_run", "run_id"),
)

queue_keys = Table(
    "queue_keys",
    metadata,
    Column("idempotency_key", String(512), primary_key=True),
    Column("message_id", String(64), nullable=False),
    Column("expires_ms", BigInteger, nullable=False),
)

deployments = Table(
    "deployments",
    metadata,
    Column("deployment_id", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("digest", String(128), nullable=False),
    Column("entrypoint", String(512)),
    Column("workflows", Text, nullable=False),
    Column("metadata", Text),
    Column("created_ms", BigInteger, nullable=False),
    Column("endpoint", Text),  # kind wdk: the app's URL, headers and delivery secret
    Index("ix_deployments_created", "created_ms", "deployment_id"),
)

active_deployment = Table(
    "active_deployment",
    metadata,
    Column("slot", Integer, primary_key=True),
    Column("deployment_id", String(64), nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(64), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("secret_hash", String(128), nullable=False, unique=True),
    Column("scopes", Text, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("revoked_ms", BigInteger),
    Column("expires_ms", BigInteger),
    # written by earlier versions only (their workflow children's keys); kept for them,
    # should they share the database
    Column("deployment_id", String(255)),
)

idempotency_records = Table(
    "idempotency_records",
    metadata,
    Column("scope", String(64), primary_key=True),
    Column("idem_key", String(255), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("status", Integer),
    Column("response", Text),
    Column("created_ms", BigInteger, nullable=False),
    Column("expires_ms", BigInteger, nullable=False),
    Index("ix_idempotency_expires", "expires_ms"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("created_ms", BigInteger, nullable=False),
    Column("key_id", String(64)),
    Column("action", String(64), nullable=False),
    Column("method", String(16), nullable=False),
    Column("path", String(2048), nullable=False),
    Column("status", Integer, nullable=False),
    Column("correlation_id", String(255), nullable=False),
    Column("run_id", String(64)),
    Column("metadata_json", Text, nullable=False),
    Index("ix_audit_correlation", "correlation_id", "seq"),
    Index("ix_audit_run", "run_id", "seq"),
    Index("ix_audit_created", "created_ms"),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("provider", String(128), primary_key=True),
    Column("delivery_id", String(255), primary_key=True),
    Column("payload", Text, nullable=False),
    Column("received_ms", BigInteger, nullable=False),
)

run_leases = Table(
    "run_leases",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("owner", String(128), nullable=False),
    Column("expires_ms", BigInteger, nullable=False),
)

run_execution = Table(
    "run_execution",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("start_failures", Integer, nullable=False),
    Column("lost_executors", Integer, nullable=False),
    Column("last_error", Text),
    Column("last_error_ms", BigInteger),
    Column("next_attempt_ms", BigInteger),
    Column("progress_mark", String(64)),
)

# the active deployment's schedules (domain/schedules.py), rewritten on activation
schedules = Table(
    "schedules",
    metadata,
    Column("name", String(512), primary_key=True),
    Column("deployment_id", String(64), nullable=False),
    Column("cron", String(256), nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("catch_up", String(8)),
    Column("last_slot_ms", BigInteger, nullable=False),
    Column("paused", Boolean, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
)

run_stuck = Table(
    "run_stuck",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("reason", String(32), nullable=False),
    Column("message", Text, nullable=False),
    Column("since_ms", BigInteger, nullable=False),
    Column("detected_ms", BigInteger, nullable=False),
)
