"""Values a database cannot hold (too deep, too long, too large) are bad input:
400 ``invalid_request`` and nothing stored, never a 500 — on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from compute_worker.adapters.codec import MAX_DEPTH

RUN_CREATED = {
    "eventType": "run_created",
    "eventData": {"deploymentId": "dpl_x", "workflowName": "w", "input": []},
}


async def _run_id(client: httpx.AsyncClient) -> str:
    created = await client.post(
        "/v1/world/events/create", json={"runId": None, "data": RUN_CREATED}
    )
    run_id: str = created.json()["run"]["runId"]
    return run_id


async def _events(client: httpx.AsyncClient, run_id: str) -> int:
    listed = await client.post("/v1/world/events/list", json={"runId": run_id})
    return len(listed.json()["data"])


def _assert_invalid(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid_request"


async def test_a_too_deeply_nested_event_is_invalid_request(client: httpx.AsyncClient) -> None:
    deep = "[" * (MAX_DEPTH + 50) + "]" * (MAX_DEPTH + 50)
    body = (
        '{"runId": null, "data": {"eventType": "run_created", "eventData": '
        '{"deploymentId": "dpl_x", "workflowName": "w", "input": ' + deep + "}}}"
    )
    response = await client.post(
        "/v1/world/events/create", content=body, headers={"content-type": "application/json"}
    )
    _assert_invalid(response)
    listed = await client.post("/v1/world/runs/list", json={})
    assert listed.json()["data"] == []


@pytest.mark.parametrize(
    "data",
    [
        {"eventType": "step_created", "correlationId": "step_" + "s" * 300,
         "eventData": {"stepName": "x", "input": []}},
        {"eventType": "step_created", "correlationId": "step_1", "specVersion": 2**40,
         "eventData": {"stepName": "x", "input": []}},
        {"eventType": "hook_created", "correlationId": "hook_1",
         "eventData": {"token": "t" * 5000}},
    ],
    ids=["long-correlation-id", "huge-spec-version", "long-token"],
)  # fmt: skip
async def test_an_event_with_a_value_too_large_changes_nothing(
    client: httpx.AsyncClient, data: dict[str, Any]
) -> None:
    run_id = await _run_id(client)
    response = await client.post("/v1/world/events/create", json={"runId": run_id, "data": data})
    _assert_invalid(response)
    assert await _events(client, run_id) == 1  # run_created only


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/world/events/list",
         {"pagination": {"cursor": base64.urlsafe_b64encode(b"9" * 30 + b"|x").decode()}}),
        ("/v1/world/runs/list",
         {"pagination": {"cursor": base64.urlsafe_b64encode(b"-5|x").decode()}}),
    ],
)  # fmt: skip
async def test_cursors_out_of_range_are_refused(
    client: httpx.AsyncClient, path: str, body: dict[str, Any]
) -> None:
    run_id = await _run_id(client)
    _assert_invalid(await client.post(path, json={"runId": run_id, **body}))


async def test_a_stream_cursor_out_of_range_is_refused(client: httpx.AsyncClient) -> None:
    cursor = base64.b64encode(b'{"i": ' + b"9" * 30 + b"}").decode()
    response = await client.get("/v1/world/streams/chunks", params={"name": "n", "cursor": cursor})
    _assert_invalid(response)


async def test_a_queue_key_too_long_to_store_is_refused(client: httpx.AsyncClient) -> None:
    body = {"queueName": "__wkf_workflow_w", "message": {},
            "opts": {"idempotencyKey": "k" * 5000}}  # fmt: skip
    _assert_invalid(await client.post("/v1/queue/publish", json=body))


async def test_a_long_run_id_header_does_not_break_the_audited_write(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/v1/world/events/create",
        json={"runId": None, "data": RUN_CREATED},
        headers={"x-workflow-run-id": "r" * 500},
    )
    assert response.status_code == 200, response.text
