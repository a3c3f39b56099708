"""The audit log: one append-only entry per state change and per auth failure."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class RequestContext:
    """Who asked, and how: what an audit entry records about a request."""

    method: str
    path: str
    correlation_id: str
    key_id: str | None = None
    run_id_header: str | None = None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    created_at: datetime
    action: str
    method: str
    path: str
    status: int
    correlation_id: str
    key_id: str | None = None
    run_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    entry_id: int | None = None


def audit_entry(
    context: RequestContext,
    action: str,
    status: int,
    at: datetime,
    run_id: str | None = None,
    **extra: Any,
) -> AuditEntry:
    """The entry for ``context``; ``runId`` is the header's, else the run touched."""
    touched = context.run_id_header or run_id
    metadata: dict[str, Any] = {"correlationId": context.correlation_id, **extra}
    if touched is not None:
        metadata["runId"] = touched
    return AuditEntry(
        created_at=at,
        action=action,
        method=context.method,
        path=context.path,
        status=status,
        correlation_id=context.correlation_id,
        key_id=context.key_id,
        run_id=touched,
        metadata=metadata,
    )
