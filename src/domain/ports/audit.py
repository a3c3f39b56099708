"""Reading and appending the audit log outside a use case's own transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from compute_worker.domain.audit import AuditEntry


@dataclass(frozen=True, slots=True)
class AuditQuery:
    correlation_id: str | None = None
    run_id: str | None = None
    since: datetime | None = None
    limit: int = 1000


class AuditLog(Protocol):
    async def append(self, entry: AuditEntry) -> None: ...
    async def find(self, query: AuditQuery) -> list[AuditEntry]: ...
