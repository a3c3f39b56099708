"""``SqlDeployments``: the active deployment pointer."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.sql.reads import run_read
from adapters.sql.schema import active_deployment
from domain.ports.deployments import ActiveDeployment

ACTIVE_SLOT = 1


class SqlDeployments(ActiveDeployment):
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def active_deployment_id(self) -> str | None:
        query = select(active_deployment.c.deployment_id).where(
            active_deployment.c.slot == ACTIVE_SLOT
        )
        return await run_read(self._engine, lambda conn: conn.execute(query).scalar())
