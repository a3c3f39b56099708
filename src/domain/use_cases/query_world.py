"""QueryWorld: the World's reads (world.md §3) — not-found rules, pagination
defaults (D7) and ``resolveData`` for events. One class, since every read is the
same decision: fetch, fail with the right not-found error, page."""

from __future__ import annotations

from dataclasses import dataclass, replace

from compute_worker.domain import errors
from compute_worker.domain.children import START_STEP
from compute_worker.domain.execution import ExecutionRecord
from compute_worker.domain.pagination import Page, PageRequest
from compute_worker.domain.ports.world import RunQuery, WorldReader
from compute_worker.domain.stuck import StuckRun
from compute_worker.domain.views import strip_event_refs
from compute_worker.domain.world import RUN_STATUSES, Event, Hook, ResolveData, Run, Step

RUNS_PAGE = 20
STEPS_PAGE = 20
EVENTS_PAGE = 100
HOOKS_PAGE = 100


@dataclass(frozen=True, slots=True)
class Paging:
    limit: int | None = None
    cursor: str | None = None
    sort_order: str | None = None


@dataclass(frozen=True, slots=True)
class RunView:
    run: Run
    execution: ExecutionRecord | None
    stuck: StuckRun | None
    # (run id, workflow name) of each child the run started (``domain/children.py``), from
    # its ``start_workflow:<name>`` steps, in start order
    children: list[tuple[str, str]]


class QueryWorld:
    def __init__(self, reader: WorldReader) -> None:
        self._reader = reader

    async def get_run(self, run_id: str) -> Run:
        run = await self._reader.get_run(run_id)
        if run is None:
            raise errors.RunNotFound(f'Workflow run "{run_id}" not found', {"runId": run_id})
        return run

    async def list_runs(
        self, paging: Paging, workflow_name: str | None = None, status: str | None = None
    ) -> Page[Run]:
        if status is not None and status not in RUN_STATUSES:
            raise errors.InvalidRequest(
                f"status must be one of {', '.join(RUN_STATUSES)}", {"field": "status"}
            )
        page = PageRequest.of(
            paging.limit, paging.cursor, paging.sort_order,
            default_limit=RUNS_PAGE, default_order="desc",
        )  # fmt: skip
        query = RunQuery(statuses=() if status is None else (status,), workflow_name=workflow_name)
        return await self._reader.list_runs(page, query)

    async def get_run_view(self, run_id: str) -> RunView:
        """The run with its trouble count and stuck record while live, and its children."""
        details = await self._reader.run_details(run_id, START_STEP)
        if details is None:
            raise errors.RunNotFound(f'Workflow run "{run_id}" not found', {"runId": run_id})
        children = []
        for step in details.named_steps:
            output = step.output if isinstance(step.output, dict) else {}
            if isinstance(output.get("runId"), str):
                children.append((output["runId"], step.step_name[len(START_STEP) :]))
        return RunView(details.run, details.execution, details.stuck, children)

    async def get_step(self, run_id: str | None, step_id: str) -> Step:
        step = await self._reader.get_step(run_id, step_id)
        if step is None:
            raise errors.StepNotFound(f'Step "{step_id}" not found', {"stepId": step_id})
        return step

    async def list_steps(self, run_id: str, paging: Paging) -> Page[Step]:
        page = PageRequest.of(
            paging.limit, paging.cursor, paging.sort_order,
            default_limit=STEPS_PAGE, default_order="desc",
        )  # fmt: skip
        return await self._reader.list_steps(run_id, page)

    async def get_event(self, run_id: str | None, event_id: str, resolve: ResolveData) -> Event:
        event = await self._reader.get_event(run_id, event_id)
        if event is None:
            raise errors.EventNotFound(f'Event "{event_id}" not found', {"eventId": event_id})
        return strip_event_refs(event) if resolve == "none" else event

    async def list_events(self, run_id: str, paging: Paging, resolve: ResolveData) -> Page[Event]:
        page = PageRequest.of(
            paging.limit, paging.cursor, paging.sort_order,
            default_limit=EVENTS_PAGE, default_order="asc",
        )  # fmt: skip
        return _resolved(await self._reader.list_events(run_id, page), resolve)

    async def list_events_by_correlation(
        self,
        correlation_id: str,
        paging: Paging,
        resolve: ResolveData,
        run_id: str | None = None,
    ) -> Page[Event]:
        """The events of one correlation id, across runs or (``run_id``) in one run."""
        page = PageRequest.of(
            paging.limit, paging.cursor, paging.sort_order,
            default_limit=EVENTS_PAGE, default_order="asc",
        )  # fmt: skip
        found = await self._reader.list_events_by_correlation(correlation_id, page, run_id)
        return _resolved(found, resolve)

    async def get_hook(self, hook_id: str) -> Hook:
        hook = await self._reader.get_hook(hook_id)
        if hook is None:
            raise errors.HookNotFound("Hook not found", {"hookId": hook_id})
        return hook

    async def get_hook_by_token(self, token: str) -> Hook:
        hook = await self._reader.get_hook_by_token(token)
        if hook is None:
            raise errors.HookNotFound("Hook not found", {"token": token})
        return hook

    async def list_hooks(self, run_id: str | None, paging: Paging) -> Page[Hook]:
        page = PageRequest.of(
            paging.limit, paging.cursor, paging.sort_order,
            default_limit=HOOKS_PAGE, default_order="asc",
        )  # fmt: skip
        return await self._reader.list_hooks(run_id, page)


def _resolved(page: Page[Event], resolve: ResolveData) -> Page[Event]:
    if resolve == "all":
        return page
    return replace(page, data=tuple(strip_event_refs(event) for event in page.data))
