"""Reading deployments and the active pointer (world.md §7, http-api.md deployments)."""

from __future__ import annotations

from typing import Protocol

from domain.deployments import Deployment


class ActiveDeployment(Protocol):
    async def active_deployment_id(self) -> str | None: ...


class DeploymentReader(ActiveDeployment, Protocol):
    async def get(self, deployment_id: str) -> Deployment | None:
        """The deployment with ``active`` telling whether the pointer names it."""
        ...
