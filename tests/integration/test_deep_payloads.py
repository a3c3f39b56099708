"""Payloads nested too deep to store are bad input (400), never a 500."""

from __future__ import annotations

import httpx

from adapters.codec import MAX_DEPTH


async def test_a_too_deeply_nested_event_is_invalid_request(client: httpx.AsyncClient) -> None:
    deep = "[" * (MAX_DEPTH + 50) + "]" * (MAX_DEPTH + 50)
    body = (
        '{"runId": null, "data": {"eventType": "run_created", "eventData": '
        '{"deploymentId": "dpl_x", "workflowName": "w", "input": ' + deep + "}}}"
    )
    response = await client.post(
        "/v1/world/events/create", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_request"
    listed = await client.post("/v1/world/runs/list", json={})
    assert listed.json()["data"] == []
