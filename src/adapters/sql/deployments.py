"""``SqlDeployments``: deployments and the active pointer, read side."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.sql import rows
from adapters.sql.reads import run_read
from adapters.sql.schema import active_deployment, deployments
from domain.deployments import Deployment
from domain.ports.deployments import DeploymentReader

ACTIVE_SLOT = 1
_ACTIVE = select(active_deployment.c.deployment_id).where(active_deployment.c.slot == ACTIVE_SLOT)


class SqlDeployments(DeploymentReader):
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def active_deployment_id(self) -> str | None:
        return await run_read(self._engine, lambda conn: conn.execute(_ACTIVE).scalar())

    async def get(self, deployment_id: str) -> Deployment | None:
        query = select(deployments).where(deployments.c.deployment_id == deployment_id)

        def fetch(conn: Connection) -> Deployment | None:
            row = conn.execute(query).first()
            active = conn.execute(_ACTIVE).scalar()
            return None if row is None else rows.deployment_from(row, active)

        return await run_read(self._engine, fetch)
