"""QueryWorld: the World's reads (world.md §3) — not-found rules, pagination
defaults (D7) and ``resolveData`` for events, and the public run read that waits for
the run's end (http-api.md ``?wait``). One class, since every read is the same
decision: fetch, fail with the right not-found error, page."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from compute_worker.domain import errors
from compute_worker.domain.children import START_STEP
from compute_worker.domain.execution import ExecutionRecord
from compute_worker.domain.pagination import Page, PageRequest
from compute_worker.domain.ports.streams import Signal
from compute_worker.domain.ports.world import RunQuery, WorldReader
from compute_worker.domain.stuck import StuckRun
from compute_worker.domain.views import strip_event_refs
from compute_worker.domain.world import (
    RUN_STATUSES,
    Event,
    Hook,
    ResolveData,
    Run,
    Step,
    run_topic,
)

MAX_RUN_WAIT = 60.0  # seconds a run read may wait for the run's end
# while waiting, the run is read again at least this often: a run ended by a worker whose
# notification does not reach this one (SQLite shares none; PostgreSQL's NOTIFY is best
# effort) is still seen within about a second
RUN_RECHECK_SECONDS = 1.0
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
    def __init__(
        self, reader: WorldReader, signal: Signal, recheck_seconds: float = RUN_RECHECK_SECONDS
    ) -> None:
        self._reader = reader
        self._signal = signal
        self._recheck = recheck_seconds

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

    async def get_run_view(self, run_id: str, wait: float | None = None) -> RunView:
        """The run with its trouble count and stuck record while live, and its children.

        With ``wait`` (seconds, 0 < wait <= ``MAX_RUN_WAIT``): the view as soon as the run
        is terminal, or as it is once ``wait`` seconds have passed, whichever comes first;
        an unknown run fails at once. The run's topic is subscribed to before the first
        read, so an end committed in between wakes the wait instead of being missed."""
        if wait is None:
            return await self._run_view(run_id)
        if not 0 < wait <= MAX_RUN_WAIT:  # NaN fails this too
            raise errors.InvalidRequest(
                f"wait must be a number of seconds above 0 and at most {MAX_RUN_WAIT:g}",
                {"field": "wait"},
            )
        deadline = time.monotonic() + wait
        subscription = self._signal.subscribe(run_topic(run_id))
        try:  # closed however the wait ends: answered, failed or cancelled
            while True:
                view = await self._run_view(run_id)
                left = deadline - time.monotonic()
                if view.run.is_terminal or left <= 0:
                    return view
                await subscription.wait(min(left, self._recheck))
        finally:
            subscription.close()

    async def _run_view(self, run_id: str) -> RunView:
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
