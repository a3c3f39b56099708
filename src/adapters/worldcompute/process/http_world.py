"""``HttpRunWorld``: the World of a run over the world-proxy lane (``/v1/world/*``),
as a child process of the ``process`` backend sees it. Its decoders read back every
field ``adapters.http.wire`` writes of a run, step and event
(``tests/integration/test_entity_shapes.py`` holds them to it)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from compute_worker.adapters import codec
from compute_worker.adapters.system import LocalSignal
from compute_worker.domain import errors
from compute_worker.domain.ids import ulid_datetime
from compute_worker.domain.pagination import Position, encode_cursor
from compute_worker.domain.ports.engine import RunWorld
from compute_worker.domain.ports.streams import Subscription
from compute_worker.domain.reducer import structured_error
from compute_worker.domain.validation import parse_date
from compute_worker.domain.world import (
    Event,
    EventRequest,
    EventResult,
    EventType,
    Run,
    Step,
    run_topic,
)

PAGE = 1000
_ERRORS: dict[str, type[errors.DomainError]] = {
    cls.code: cls
    for cls in (errors.InvalidRequest, errors.RunNotFound, errors.StepNotFound,
                errors.HookNotFound, errors.WaitNotFound, errors.EntityConflict,
                errors.RunExpired, errors.RunNotSupported, errors.StorageUnavailable,
                errors.StreamClosed, errors.Unauthorized, errors.Forbidden,
                errors.WorkflowNotFound, errors.RunAlreadyTerminal)
}  # fmt: skip


class HttpRunWorld(RunWorld):
    def __init__(self, client: httpx.AsyncClient, signal: LocalSignal) -> None:
        self._client = client
        self.signal = signal  # the parent forwards wake-ups for our runs into it

    async def _post(self, path: str, body: dict[str, Any]) -> Any:
        headers = {"content-type": "application/json"}
        response = await self._client.post(path, content=codec.dumps(body), headers=headers)
        return _answer(response)

    async def record(self, run_id: str, requests: Sequence[EventRequest]) -> list[EventResult]:
        body = {"runId": run_id, "events": [_request_wire(r) for r in requests]}
        answer = await self._post("/v1/world/events/create-batch", body)
        return [_result(item) for item in answer["results"]]

    async def run(self, run_id: str) -> Run | None:
        response = await self._client.get(f"/v1/world/runs/{run_id}")
        if response.status_code == 404:
            return None
        return _run(_answer(response))

    async def events(self, run_id: str, after_event_id: str | None = None) -> list[Event]:
        cursor = None
        if after_event_id is not None:
            moment = ulid_datetime(after_event_id)
            cursor = encode_cursor(Position(int(moment.timestamp() * 1000), after_event_id))
        found: list[Event] = []
        while True:
            pagination: dict[str, Any] = {"limit": PAGE, "sortOrder": "asc"}
            if cursor is not None:
                pagination["cursor"] = cursor
            page = await self._post("/v1/world/events/list",
                                    {"runId": run_id, "pagination": pagination})  # fmt: skip
            found.extend(_event(item) for item in page["data"])
            if not page["hasMore"] or not page["data"]:
                return found
            cursor = page["cursor"]

    def subscribe(self, run_id: str) -> Subscription:
        return self.signal.subscribe(run_topic(run_id))

    async def write_stream(self, name: str, run_id: str, chunks: Sequence[bytes]) -> None:
        await self._post("/v1/world/streams/write",
                         {"name": name, "runId": run_id, "chunks": list(chunks)})  # fmt: skip

    async def close_stream(self, name: str, run_id: str) -> None:
        await self._post("/v1/world/streams/close", {"name": name, "runId": run_id})

    async def start_child(self, parent_run_id: str, workflow_name: str, run_input: list[Any],
                          token: str) -> str:  # fmt: skip
        body = {"parentRunId": parent_run_id, "workflowName": workflow_name,
                "input": run_input, "token": token}  # fmt: skip
        return str((await self._post("/v1/world/runs/start-child", body))["runId"])


def _answer(response: httpx.Response) -> Any:
    body = codec.loads(response.content, codec.STORED_MAX_DEPTH) if response.content else None
    if response.status_code < 400:
        return body
    code = body.get("code") if isinstance(body, dict) else None
    message = body.get("message", response.text) if isinstance(body, dict) else response.text
    raise _ERRORS.get(code or "", errors.StorageUnavailable)(message)


def _request_wire(request: EventRequest) -> dict[str, Any]:
    out: dict[str, Any] = {"eventType": request.event_type.value}
    if request.correlation_id is not None:
        out["correlationId"] = request.correlation_id
    if request.spec_version is not None:
        out["specVersion"] = request.spec_version
    if request.event_data is not None:
        out["eventData"] = request.event_data
    return out


def _date(value: Any) -> Any:
    return None if value is None else parse_date(value, "date")


def _event(data: dict[str, Any]) -> Event:
    return Event(
        event_id=data["eventId"],
        run_id=data["runId"],
        event_type=EventType(data["eventType"]),
        correlation_id=data.get("correlationId"),
        event_data=data.get("eventData"),
        spec_version=data.get("specVersion"),
        created_at=parse_date(data["createdAt"], "createdAt"),
        occurred_at=_date(data.get("occurredAt")),
    )


def _run(data: dict[str, Any]) -> Run:
    error = data.get("error")
    return Run(
        run_id=data["runId"],
        status=data["status"],
        deployment_id=data["deploymentId"],
        workflow_name=data["workflowName"],
        input=data.get("input"),
        output=data.get("output"),
        error=None if error is None else structured_error(error),
        spec_version=data.get("specVersion"),
        execution_context=data.get("executionContext"),
        attributes=data.get("attributes") or {},
        created_at=parse_date(data["createdAt"], "createdAt"),
        updated_at=parse_date(data["updatedAt"], "updatedAt"),
        started_at=_date(data.get("startedAt")),
        completed_at=_date(data.get("completedAt")),
        expired_at=_date(data.get("expiredAt")),
    )


def _step(data: dict[str, Any]) -> Step:
    error = data.get("error")
    return Step(
        run_id=data["runId"],
        step_id=data["stepId"],
        step_name=data["stepName"],
        status=data["status"],
        input=data.get("input"),
        output=data.get("output"),
        error=None if error is None else structured_error(error),
        attempt=data.get("attempt", 0),
        spec_version=data.get("specVersion"),
        created_at=parse_date(data["createdAt"], "createdAt"),
        updated_at=parse_date(data["updatedAt"], "updatedAt"),
        started_at=_date(data.get("startedAt")),
        completed_at=_date(data.get("completedAt")),
        retry_after=_date(data.get("retryAfter")),
    )


def _result(data: dict[str, Any]) -> EventResult:
    return EventResult(
        event=_event(data["event"]) if "event" in data else None,
        run=_run(data["run"]) if "run" in data else None,
        step=_step(data["step"]) if "step" in data else None,
        events=tuple(_event(e) for e in data["events"]) if "events" in data else None,
        cursor=data.get("cursor"),
        has_more=data.get("hasMore"),
        max_events=data.get("maxEvents"),
    )
