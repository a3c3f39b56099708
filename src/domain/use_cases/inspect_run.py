"""InspectRun: a run's steps, events and live hooks for the public lane
(``GET /v1/runs/:id/steps|events|hooks``). An unknown run is 404 ``run_not_found``
rather than an empty page, and hook tokens — capabilities to resume the run — are
shown only to keys that may resume it — in the hook listing and in the events that
carry them (``hook_created``, ``hook_conflict``) alike."""

from __future__ import annotations

from dataclasses import dataclass, replace

from compute_worker.domain import errors
from compute_worker.domain.pagination import Page, PageRequest, SortOrder
from compute_worker.domain.ports.security import ApiKey
from compute_worker.domain.ports.world import WorldReader
from compute_worker.domain.views import strip_event_refs
from compute_worker.domain.world import Event, EventType, Hook, ResolveData, Run, Step

RESUME_SCOPE = "runs:write"
STEPS_PAGE = 100
EVENTS_PAGE = 100
HOOKS_PAGE = 100
TOKEN_EVENTS = frozenset({EventType.HOOK_CREATED, EventType.HOOK_CONFLICT})


@dataclass(frozen=True, slots=True)
class HistoryPage:
    limit: int | None = None
    cursor: str | None = None
    sort_order: str | None = None

    def request(self, default_limit: int, default_order: SortOrder = "asc") -> PageRequest:
        return PageRequest.of(
            self.limit, self.cursor, self.sort_order,
            default_limit=default_limit, default_order=default_order, field_prefix="",
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class RunHooks:
    page: Page[Hook]
    tokens_visible: bool


class InspectRun:
    def __init__(self, reader: WorldReader) -> None:
        self._reader = reader

    async def run(self, run_id: str) -> Run:
        run = await self._reader.get_run(run_id)
        if run is None:
            raise errors.RunNotFound(f'Workflow run "{run_id}" not found', {"runId": run_id})
        return run

    async def steps(self, run_id: str, paging: HistoryPage) -> Page[Step]:
        page = paging.request(STEPS_PAGE)
        await self.run(run_id)
        return await self._reader.list_steps(run_id, page)

    async def events(
        self, run_id: str, paging: HistoryPage, resolve: ResolveData, viewer: ApiKey
    ) -> Page[Event]:
        page = paging.request(EVENTS_PAGE)
        await self.run(run_id)
        found = await self._reader.list_events(run_id, page)
        tokens_visible = RESUME_SCOPE in viewer.scopes
        if resolve == "all" and tokens_visible:
            return found
        shown = (strip_event_refs(event) if resolve == "none" else event for event in found.data)
        if not tokens_visible:
            shown = (_without_token(event) for event in shown)
        return replace(found, data=tuple(shown))

    async def hooks(self, run_id: str, paging: HistoryPage, viewer: ApiKey) -> RunHooks:
        page = paging.request(HOOKS_PAGE)
        await self.run(run_id)
        found = await self._reader.list_hooks(run_id, page)
        return RunHooks(found, tokens_visible=RESUME_SCOPE in viewer.scopes)


def _without_token(event: Event) -> Event:
    """A hook event without its token (a capability to resume the run)."""
    data = event.event_data
    if event.event_type not in TOKEN_EVENTS or not isinstance(data, dict) or "token" not in data:
        return event
    kept = {name: value for name, value in data.items() if name != "token"}
    return replace(event, event_data=kept or None)
