"""Reading deployments and the active pointer (world.md §7, http-api.md deployments)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from compute_worker.domain.deployments import Deployment
from compute_worker.domain.pagination import Page, PageRequest


class ActiveDeployment(Protocol):
    async def active_deployment_id(self) -> str | None: ...


class DeploymentReader(ActiveDeployment, Protocol):
    async def get(self, deployment_id: str) -> Deployment | None:
        """The deployment with ``active`` telling whether the pointer names it."""
        ...

    async def list_deployments(self, page: PageRequest) -> Page[Deployment]:
        """Deployments in ``(createdAt, id)`` order, each with ``active`` set."""
        ...

    async def pinned_runs(self, deployment_ids: Sequence[str]) -> dict[str, int]:
        """How many runs not yet terminal each deployment holds (absent: none)."""
        ...
