"""ListRuns: ``GET /v1/runs`` — runs matching filters, newest first, a page at a time."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from compute_worker.domain import errors
from compute_worker.domain.pagination import Page, PageRequest
from compute_worker.domain.ports.world import RunQuery, WorldReader
from compute_worker.domain.stuck import StuckRun
from compute_worker.domain.world import MAX_DEPLOYMENT_ID, MAX_NAME, RUN_STATUSES, Run

RUNS_PAGE = 20


@dataclass(frozen=True, slots=True)
class RunFilter:
    statuses: tuple[str, ...] = ()
    workflow_name: str | None = None
    deployment_id: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    stuck: bool | None = None
    limit: int | None = None
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class RunListing:
    page: Page[Run]
    stuck: Mapping[str, StuckRun]  # what the detector found of the page's runs


class ListRuns:
    def __init__(self, reader: WorldReader) -> None:
        self._reader = reader

    async def execute(self, cmd: RunFilter) -> RunListing:
        unknown = [status for status in cmd.statuses if status not in RUN_STATUSES]
        if unknown:
            raise errors.InvalidRequest(
                f"status {unknown[0]!r} is not one of {', '.join(RUN_STATUSES)}",
                {"field": "status"},
            )
        check_text(cmd.workflow_name, MAX_NAME, "workflowName")
        check_text(cmd.deployment_id, MAX_DEPLOYMENT_ID, "deploymentId")
        after, before = cmd.created_after, cmd.created_before
        if after is not None and before is not None and after >= before:
            raise errors.InvalidRequest(
                "createdBefore must be later than createdAfter", {"field": "createdBefore"}
            )
        page = PageRequest.of(
            cmd.limit, cmd.cursor, None, default_limit=RUNS_PAGE, default_order="desc",
            field_prefix="",
        )  # fmt: skip
        query = RunQuery(tuple(dict.fromkeys(cmd.statuses)), cmd.workflow_name,
                         cmd.deployment_id, after, before, cmd.stuck)  # fmt: skip
        found = await self._reader.list_runs(page, query)
        stuck = await self._reader.stuck_runs([run.run_id for run in found.data])
        return RunListing(found, stuck)


def check_text(value: str | None, limit: int, field: str) -> None:
    """A filter value the database can compare: at most ``limit`` characters, no NUL."""
    if value is None:
        return
    if not value or len(value) > limit or "\x00" in value:
        raise errors.InvalidRequest(
            f"{field} must be 1 to {limit} characters without NUL", {"field": field}
        )
