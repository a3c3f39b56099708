"""``POST /v1/world/events/create-batch`` over HTTP, on both databases: several events of
one run in one transaction (all or nothing), as the process backend's children write
them; a batch that ends the run closes its streams; bad batches are 400 and change
nothing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from ._helpers import assert_error, assert_ok, new_run, run_events, run_ids

BATCH = "/v1/world/events/create-batch"


async def _state(client: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    return {
        "runs": await run_ids(client),
        "events": await run_events(client, run_id),
        "run": assert_ok(await client.get(f"/v1/world/runs/{run_id}")),
    }


def _step(kind: str, step_id: str, **data: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"eventType": kind, "correlationId": step_id}
    if data:
        item["eventData"] = data
    return item


async def test_a_batch_appends_every_event_in_order(client: httpx.AsyncClient) -> None:
    run_id = (await new_run(client))["runId"]
    events = [
        {"eventType": "run_started"},
        _step("step_created", "step_1", stepName="charge", input=[1]),
        _step("step_started", "step_1"),
        _step("step_completed", "step_1", result={"ok": True}),
    ]
    body = assert_ok(await client.post(BATCH, json={"runId": run_id, "events": events}))
    results = body["results"]
    assert len(results) == 4
    assert results[0]["run"]["status"] == "running"
    assert [r["event"]["eventType"] for r in results[1:]] == [e["eventType"] for e in events[1:]]
    assert results[3]["step"]["status"] == "completed"
    assert results[3]["step"]["attempt"] == 1
    logged = [e["eventType"] for e in await run_events(client, run_id)]
    assert logged == ["run_created", "run_started", "step_created", "step_started",
                      "step_completed"]  # fmt: skip


async def test_a_refused_event_refuses_the_whole_batch(client: httpx.AsyncClient) -> None:
    run_id = (await new_run(client))["runId"]
    before = await _state(client, run_id)
    events = [{"eventType": "run_started"}, _step("step_completed", "step_unknown", result=1)]
    response = await client.post(BATCH, json={"runId": run_id, "events": events})
    assert_error(response, 404, "step_not_found")
    assert await _state(client, run_id) == before  # run_started was rolled back too


async def test_a_batch_ending_the_run_closes_its_open_streams(client: httpx.AsyncClient) -> None:
    run_id = (await new_run(client))["runId"]
    name = f"strm_{run_id.removeprefix('wrun_')}_log"
    written = {"name": name, "runId": run_id, "chunk": "line"}
    assert_ok(await client.post("/v1/world/streams/write", json=written))
    info = assert_ok(await client.get("/v1/world/streams/info", params={"name": name}))
    assert info == {"tailIndex": 0, "done": False}
    events = [{"eventType": "run_started"}, {"eventType": "run_completed", "eventData": {}}]
    results = assert_ok(await client.post(BATCH, json={"runId": run_id, "events": events}))
    assert results["results"][1]["run"]["status"] == "completed"
    info = assert_ok(await client.get("/v1/world/streams/info", params={"name": name}))
    assert info == {"tailIndex": 0, "done": True}


RUN_CREATED = {
    "eventType": "run_created",
    "eventData": {"deploymentId": "dpl_x", "workflowName": "w", "input": []},
}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"events": [{"eventType": "run_started"}]}, "runId"),
        ({"runId": "RUN", "events": {"eventType": "run_started"}}, "events"),
        ({"runId": "RUN", "events": []}, "events"),
        ({"runId": "RUN", "events": [{"eventType": "run_started"}] * 1001}, "events"),
        ({"runId": "RUN", "events": [{"eventType": "run_started"}, "x"]}, "events[1]"),
        ({"runId": "RUN", "events": [{"eventType": "run_begun"}]}, "events[0].eventType"),
        ({"runId": "RUN", "events": [{"eventType": 7}]}, "events[0].eventType"),
        ({"runId": "RUN", "events": [RUN_CREATED]}, "events[0].eventType"),
        (
            {
                "runId": "RUN",
                "events": [{"eventType": "run_started"}, {"eventType": "step_started"}],
            },
            "data.correlationId",
        ),
        (
            {"runId": "RUN", "events": [_step("step_created", "step_1", input=[])]},
            "data.eventData.stepName",
        ),
    ],
    ids=[
        "no-run-id",
        "not-a-list",
        "empty",
        "too-many",
        "not-an-object",
        "unknown-type",
        "type-not-a-string",
        "run-created",
        "no-correlation-id",
        "missing-field",
    ],
)
async def test_a_bad_batch_is_400_naming_the_field_and_changes_nothing(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    run_id = (await new_run(client))["runId"]
    before = await _state(client, run_id)
    if body.get("runId") == "RUN":
        body = {**body, "runId": run_id}
    error = assert_error(await client.post(BATCH, json=body), 400, "invalid_request")
    assert error["details"]["field"] == field, error
    assert await _state(client, run_id) == before
