"""Shared helpers for the HTTP integration tests: keys, ids, envelopes, assertions."""

from __future__ import annotations

import base64
import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

WORLD_KEY = "it-world-proxy-key-7f3c9a1e5b"
READ_KEY = "it-runs-read-only-key-2d8e4b6a"
CORRELATION_HEADER = "x-workflow-correlation-id"
DEPLOYMENT = "dpl_integration"
WORKFLOW = "workflow//./src/workflows/order//processOrder"

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def ulid(at_ms: int | None = None) -> str:
    """A ULID (Crockford base32, 48-bit ms time + 80 random bits), independent of src/."""
    stamp = time.time_ns() // 1_000_000 if at_ms is None else at_ms
    value = (stamp << 80) | int.from_bytes(os.urandom(10), "big")
    return "".join(_CROCKFORD[(value >> (5 * i)) & 31] for i in reversed(range(26)))


def new_id(prefix: str, age: timedelta = timedelta(0)) -> str:
    moment = datetime.now(UTC) - age
    return prefix + ulid(int(moment.timestamp() * 1000))


def env(data: bytes) -> dict[str, str]:
    """The wire envelope of a byte string (world.md D3)."""
    return {"__type": "Uint8Array", "data": base64.b64encode(data).decode()}


def unenv(value: Any) -> bytes:
    assert isinstance(value, dict), value
    assert value.get("__type") == "Uint8Array", value
    return base64.b64decode(value["data"], validate=True)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def assert_ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers.get(CORRELATION_HEADER), "missing correlation id header"
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def assert_error(
    response: httpx.Response, status: int, code: str, name: str | None = None
) -> dict[str, Any]:
    """A non-2xx answer in the error envelope, with the correlation header."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers.get(CORRELATION_HEADER), "missing correlation id header"
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert isinstance(body, dict), body
    assert body.get("code") == code, body
    assert isinstance(body.get("message"), str) and body["message"], body
    assert "Traceback" not in response.text
    if name is not None:
        assert body.get("name") == name, body
    return body


def is_uuid4(text: str) -> bool:
    try:
        return uuid.UUID(text).version == 4 and str(uuid.UUID(text)) == text.lower()
    except ValueError:
        return False


async def create_event(
    client: httpx.AsyncClient,
    run_id: str | None,
    event_type: str,
    correlation_id: str | None = None,
    event_data: dict[str, Any] | None = None,
    *,
    spec_version: int | None = None,
    params: dict[str, Any] | None = None,
) -> httpx.Response:
    data: dict[str, Any] = {"eventType": event_type}
    if correlation_id is not None:
        data["correlationId"] = correlation_id
    if event_data is not None:
        data["eventData"] = event_data
    if spec_version is not None:
        data["specVersion"] = spec_version
    body: dict[str, Any] = {"runId": run_id, "data": data}
    if params is not None:
        body["params"] = params
    return await client.post("/v1/world/events/create", json=body)


async def new_run(
    client: httpx.AsyncClient,
    run_id: str | None = None,
    *,
    workflow_name: str = WORKFLOW,
    input: Any = None,
    **extra: Any,
) -> dict[str, Any]:
    data = {
        "deploymentId": DEPLOYMENT,
        "workflowName": workflow_name,
        "input": env(b"devl[1,2]") if input is None else input,
        **extra,
    }
    body = assert_ok(await create_event(client, run_id, "run_created", event_data=data))
    return body["run"]


async def ok_event(
    client: httpx.AsyncClient,
    run_id: str | None,
    event_type: str,
    correlation_id: str | None = None,
    event_data: dict[str, Any] | None = None,
    **kw: Any,
) -> dict[str, Any]:
    response = await create_event(client, run_id, event_type, correlation_id, event_data, **kw)
    return assert_ok(response)


async def list_all(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], limit: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Follow cursors to the end; returns (items, pages)."""
    items: list[dict[str, Any]] = []
    pages: list[dict[str, Any]] = []
    cursor = None
    for _ in range(100):
        pagination = {**body.get("pagination", {}), "limit": limit}
        if cursor is not None:
            pagination["cursor"] = cursor
        page = assert_ok(await client.post(path, json={**body, "pagination": pagination}))
        pages.append(page)
        items.extend(page["data"])
        cursor = page["cursor"]
        if not page["hasMore"]:
            return items, pages
    raise AssertionError("pagination did not end")


async def run_ids(client: httpx.AsyncClient) -> list[str]:
    """Every run id in the world (small worlds only)."""
    page = assert_ok(await client.post("/v1/world/runs/list", json={"pagination": {"limit": 1000}}))
    assert page["hasMore"] is False
    return [run["runId"] for run in page["data"]]


async def run_events(client: httpx.AsyncClient, run_id: str) -> list[dict[str, Any]]:
    page = assert_ok(
        await client.post(
            "/v1/world/events/list", json={"runId": run_id, "pagination": {"limit": 1000}}
        )
    )
    return page["data"]
