"""ListDeployments: ``GET /v1/deployments`` — newest first, each with how many runs
not yet terminal are still pinned to it (they finish on the code they started with)."""

from __future__ import annotations

from dataclasses import dataclass

from compute_worker.domain.deployments import Deployment
from compute_worker.domain.pagination import Page, PageRequest
from compute_worker.domain.ports.deployments import DeploymentReader

DEPLOYMENTS_PAGE = 20


@dataclass(frozen=True, slots=True)
class DeploymentListing:
    deployment: Deployment
    pinned_runs: int


class ListDeployments:
    def __init__(self, reader: DeploymentReader) -> None:
        self._reader = reader

    async def execute(
        self, limit: int | None = None, cursor: str | None = None
    ) -> Page[DeploymentListing]:
        page = PageRequest.of(
            limit, cursor, None, default_limit=DEPLOYMENTS_PAGE, default_order="desc",
            field_prefix="",
        )  # fmt: skip
        found = await self._reader.list_deployments(page)
        pinned = await self._reader.pinned_runs([d.deployment_id for d in found.data])
        listed = tuple(DeploymentListing(d, pinned.get(d.deployment_id, 0)) for d in found.data)
        return Page(listed, found.cursor, found.has_more)
