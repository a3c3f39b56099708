"""``SqlDeployments``: deployments and the active pointer, read side."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from compute_worker.adapters.sql import rows
from compute_worker.adapters.sql.reads import SqlReads, paged
from compute_worker.adapters.sql.schema import active_deployment, deployments, runs
from compute_worker.domain.deployments import Deployment
from compute_worker.domain.pagination import Page, PageRequest
from compute_worker.domain.ports.deployments import DeploymentReader
from compute_worker.domain.world import RUN_STATUSES, TERMINAL_RUN_STATUSES

LIVE_STATUSES = tuple(s for s in RUN_STATUSES if s not in TERMINAL_RUN_STATUSES)

ACTIVE_SLOT = 1
_ACTIVE = select(active_deployment.c.deployment_id).where(active_deployment.c.slot == ACTIVE_SLOT)


class SqlDeployments(DeploymentReader):
    def __init__(self, reads: SqlReads) -> None:
        self._reads = reads

    async def active_deployment_id(self) -> str | None:
        return await self._reads.run(lambda conn: conn.execute(_ACTIVE).scalar())

    async def get(self, deployment_id: str) -> Deployment | None:
        query = select(deployments).where(deployments.c.deployment_id == deployment_id)

        def fetch(conn: Connection) -> Deployment | None:
            row = conn.execute(query).first()
            active = conn.execute(_ACTIVE).scalar()
            return None if row is None else rows.deployment_from(row, active)

        return await self._reads.run(fetch)

    async def list_deployments(self, page: PageRequest) -> Page[Deployment]:
        def fetch(conn: Connection) -> Page[Deployment]:
            active = conn.execute(_ACTIVE).scalar()

            def mapper(row: Any) -> Deployment:
                return rows.deployment_from(row, active)

            return paged(conn, deployments, "deployment_id", [], page, mapper)

        return await self._reads.run(fetch)

    async def pinned_runs(self, deployment_ids: Sequence[str]) -> dict[str, int]:
        if not deployment_ids:
            return {}
        query = (
            select(runs.c.deployment_id, func.count())
            .where(runs.c.status.in_(LIVE_STATUSES), runs.c.deployment_id.in_(deployment_ids))
            .group_by(runs.c.deployment_id)
        )

        def fetch(conn: Connection) -> dict[str, int]:
            return {deployment_id: int(count) for deployment_id, count in conn.execute(query)}

        return await self._reads.run(fetch)
