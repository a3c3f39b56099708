"""Bad input on the world-proxy lane, over HTTP: status, ``code`` and that nothing
changed (http-api.md Conventions, Headers, Authentication; world.md D4)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from ._helpers import (
    CORRELATION_HEADER,
    DEPLOYMENT,
    WORKFLOW,
    WORLD_KEY,
    assert_error,
    assert_ok,
    env,
    is_uuid4,
    new_id,
    new_run,
    ok_event,
    run_events,
    run_ids,
)
from .conftest import RunningServer, StartServer, make_client
from .public_fixtures import PublicServer, row_counts

RUN_CREATED = {
    "eventType": "run_created",
    "eventData": {"deploymentId": DEPLOYMENT, "workflowName": WORKFLOW, "input": env(b"i")},
}
CREATE = "/v1/world/events/create"


async def world_state(client: httpx.AsyncClient, run_id: str | None = None) -> dict[str, Any]:
    """What a refused request must leave untouched."""
    state: dict[str, Any] = {"runs": await run_ids(client)}
    if run_id is not None:
        state["events"] = await run_events(client, run_id)
        state["run"] = assert_ok(await client.get(f"/v1/world/runs/{run_id}"))
    return state


# -- authentication and scopes --------------------------------------------------------------


async def test_missing_authorization_is_401(
    client: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    for method, path, body in (
        ("POST", CREATE, {"runId": None, "data": RUN_CREATED}),
        ("POST", "/v1/queue/publish", {"queueName": "__wkf_workflow_x", "message": {}}),
        ("GET", "/v1/world/deployment-id", None),
        ("GET", "/v1/world/streams/read?name=s", None),
        ("POST", "/v1/world/runs/list", {}),
    ):
        response = await anon.request(method, path, json=body)
        error = assert_error(response, 401, "unauthorized")
        assert "details" not in error or "requiredScope" not in error["details"]
    for header in ("Basic d29ybGQ6cHJveHk=", "Bearer", "Token abc", WORLD_KEY):
        response = await anon.post(
            CREATE, json={"runId": None, "data": RUN_CREATED}, headers={"Authorization": header}
        )
        assert_error(response, 401, "unauthorized")
    assert await world_state(client) == {"runs": []}


async def test_unknown_key_gets_the_same_401_as_no_key(
    server: RunningServer, client: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    body = {"runId": None, "data": RUN_CREATED}
    missing = assert_error(await anon.post(CREATE, json=body), 401, "unauthorized")
    async with make_client(server.url, key="it-unknown-key-0000000000000000") as stranger:
        unknown = assert_error(await stranger.post(CREATE, json=body), 401, "unauthorized")
    async with make_client(server.url, key="it-world-proxy-key-7f3c9a1e5") as almost:
        near_miss = assert_error(await almost.post(CREATE, json=body), 401, "unauthorized")
    assert unknown == missing == near_miss
    assert await world_state(client) == {"runs": []}


async def test_key_without_world_scope_is_403(
    client: httpx.AsyncClient, reader_client: httpx.AsyncClient
) -> None:
    run_id = (await new_run(client))["runId"]
    before = await world_state(client, run_id)
    for method, path, body in (
        ("POST", CREATE, {"runId": run_id, "data": {"eventType": "run_started"}}),
        ("POST", CREATE, {"runId": None, "data": RUN_CREATED}),
        ("GET", f"/v1/world/runs/{run_id}", None),
        ("POST", "/v1/queue/publish", {"queueName": "__wkf_workflow_x", "message": {}}),
        ("POST", "/v1/world/streams/write", {"name": "s", "runId": run_id, "chunk": "x"}),
        ("GET", "/v1/world/streams/read?name=s", None),
    ):
        error = assert_error(await reader_client.request(method, path, json=body), 403, "forbidden")
        assert error["details"]["requiredScope"] == "world:proxy"
    assert await world_state(client, run_id) == before
    info = assert_ok(await client.get("/v1/world/streams/info", params={"name": "s"}))
    assert info["tailIndex"] == -1


# -- malformed bodies and wrong types -------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b'{"runId": null, "data": {',
        b"not json at all",
        b'{"runId": null, "data": {"eventType": "run_created"}} trailing',
        b"",
        b'{"runId": null, "data": {"eventType": "run_created", "eventData": '
        b'{"input": {"__type": "Uint8Array", "data": "***"}}}}',
    ],
    ids=["truncated", "text", "trailing", "empty", "bad-base64-envelope"],
)
async def test_malformed_json_is_400(client: httpx.AsyncClient, raw: bytes) -> None:
    response = await client.post(CREATE, content=raw, headers={"content-type": "application/json"})
    assert_error(response, 400, "invalid_request")
    assert await world_state(client) == {"runs": []}


@pytest.mark.parametrize(
    "path",
    [CREATE, "/v1/world/events/list", "/v1/world/runs/list", "/v1/queue/publish"],
)
@pytest.mark.parametrize("body", [[], [{"runId": None, "data": RUN_CREATED}], "text", 7, None])
async def test_json_that_is_not_an_object_is_400(
    client: httpx.AsyncClient, path: str, body: Any
) -> None:
    response = await client.post(path, content=json.dumps(body).encode())
    error = assert_error(response, 400, "invalid_request")
    assert error["details"]["field"] == "body"
    assert await world_state(client) == {"runs": []}


def _create(run: str | None, data: Any = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"runId": run, **extra}
    if data is not None:
        body["data"] = data
    return body


RUN = "<run>"  # replaced by an existing run's id
WRONG_TYPES: list[tuple[str, str, Any, str]] = [
    ("runId-number", CREATE, _create(None, RUN_CREATED, runId=123), "runId"),
    ("data-missing", CREATE, _create(RUN), "data"),
    ("data-string", CREATE, _create(RUN, "run_started"), "data"),
    ("eventType-unknown", CREATE, _create(RUN, {"eventType": "run_exploded"}), "data.eventType"),
    ("eventType-missing", CREATE, _create(RUN, {"eventData": {}}), "data.eventType"),
    (
        "eventData-not-object",
        CREATE,
        _create(RUN, {"eventType": "run_completed", "eventData": "done"}),
        "data.eventData",
    ),
    (
        "eventData-list",
        CREATE,
        _create(RUN, {"eventType": "run_completed", "eventData": [1]}),
        "data.eventData",
    ),
    (
        "correlationId-number",
        CREATE,
        _create(RUN, {"eventType": "step_started", "correlationId": 5}),
        "data.correlationId",
    ),
    (
        "correlationId-missing",
        CREATE,
        _create(RUN, {"eventType": "step_created", "eventData": {"stepName": "s", "input": 1}}),
        "data.correlationId",
    ),
    (
        "specVersion-string",
        CREATE,
        _create(RUN, {"eventType": "run_started", "specVersion": "3"}),
        "data.specVersion",
    ),
    (
        "eventData-required-field",
        CREATE,
        _create(None, {"eventType": "run_created", "eventData": {"deploymentId": "d", "input": 1}}),
        "data.eventData.workflowName",
    ),
    (
        "resumeAt-not-a-date",
        CREATE,
        _create(
            RUN,
            {
                "eventType": "wait_created",
                "correlationId": "wait_x",
                "eventData": {"resumeAt": "soon"},
            },
        ),
        "data.eventData.resumeAt",
    ),
    (
        "params-resolveData-some",
        CREATE,
        _create(RUN, {"eventType": "run_started"}, params={"resolveData": "some"}),
        "params.resolveData",
    ),
    (
        "list-limit-string",
        "/v1/world/events/list",
        {"runId": RUN, "pagination": {"limit": "10"}},
        "pagination.limit",
    ),
    (
        "list-limit-bool",
        "/v1/world/events/list",
        {"runId": RUN, "pagination": {"limit": True}},
        "pagination.limit",
    ),
    (
        "list-sortOrder",
        "/v1/world/events/list",
        {"runId": RUN, "pagination": {"sortOrder": "up"}},
        "pagination.sortOrder",
    ),
    *(
        (
            f"{path.removeprefix('/v1/world/').replace('/', '-')}-sortOrder-empty",
            path,
            {**body, "pagination": {"sortOrder": ""}},
            "pagination.sortOrder",
        )
        for path, body in (
            ("/v1/world/events/list", {"runId": RUN}),
            ("/v1/world/events/list-by-correlation", {"correlationId": "x"}),
            ("/v1/world/runs/list", {}),
            ("/v1/world/steps/list", {"runId": RUN}),
            ("/v1/world/hooks/list", {"runId": RUN}),
        )
    ),  # in a body "" is a value, not the member left out (null is)
    (
        "list-resolveData-some",
        "/v1/world/events/list",
        {"runId": RUN, "resolveData": "some"},
        "resolveData",
    ),
    ("list-runId-missing", "/v1/world/events/list", {}, "runId"),
    ("runs-status", "/v1/world/runs/list", {"status": "done"}, "status"),
    ("runs-pagination-string", "/v1/world/runs/list", {"pagination": "all"}, "pagination"),
    ("runs-resolveData-some", "/v1/world/runs/list", {"resolveData": "some"}, "resolveData"),
    ("steps-runId-number", "/v1/world/steps/list", {"runId": 5}, "runId"),
    (
        "publish-delay-string",
        "/v1/queue/publish",
        {"queueName": "__wkf_step_x", "message": {}, "opts": {"delaySeconds": "5"}},
        "opts.delaySeconds",
    ),
    (
        "publish-headers",
        "/v1/queue/publish",
        {"queueName": "__wkf_step_x", "message": {}, "opts": {"headers": {"a": 1}}},
        "opts.headers",
    ),
    ("encryption-key-runId-missing", "/v1/world/encryption-key", {}, "runId"),
]


def _fill(value: Any, run_id: str) -> Any:
    if value == RUN:
        return run_id
    if isinstance(value, dict):
        return {key: _fill(item, run_id) for key, item in value.items()}
    return value


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [case[1:] for case in WRONG_TYPES],
    ids=[case[0] for case in WRONG_TYPES],
)
async def test_wrong_types_are_400_naming_the_field(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], field: str
) -> None:
    run_id = (await new_run(client))["runId"]
    before = await world_state(client, run_id)
    response = await client.post(path, json=_fill(body, run_id))
    error = assert_error(response, 400, "invalid_request")
    assert error["details"]["field"] == field, error
    assert await world_state(client, run_id) == before


QUEUE_TABLES = ("queue_messages", "queue_keys")


@pytest.mark.parametrize(
    "headers",
    [{"a": 1}, {"a": None}, {"": {"b": "c"}}, {"a": []}, {"a": "ok", "b": True}],
    ids=["number", "null", "object", "list", "one-bool"],
)
async def test_publish_headers_that_are_not_strings_are_400_as_the_document_says(
    api_server: PublicServer, api: httpx.AsyncClient, headers: dict[str, Any]
) -> None:
    """``opts.headers`` is a string map (LANE.md §3): the document declares it so, and
    a value of another type is refused before anything is queued or its key kept."""
    document = assert_ok(await api.get("/v1/openapi.json"))
    body_schema = document["paths"]["/v1/queue/publish"]["post"]["requestBody"]["content"]
    opts = body_schema["application/json"]["schema"]["properties"]["opts"]
    assert opts["properties"]["headers"]["additionalProperties"] == {"type": "string"}
    before = await row_counts(api_server, QUEUE_TABLES)
    body = {"queueName": "__wkf_workflow_w", "message": {"runId": "wrun_x"},
            "opts": {"idempotencyKey": "publish-headers", "headers": headers}}  # fmt: skip
    error = assert_error(await api.post("/v1/queue/publish", json=body), 400, "invalid_request")
    assert error["details"] == {"field": "opts.headers"}, error
    assert "must be strings" in error["message"]
    assert await row_counts(api_server, QUEUE_TABLES) == before


async def test_wrong_query_parameters_are_400(client: httpx.AsyncClient) -> None:
    run_id = (await new_run(client))["runId"]
    step_id = new_id("step_")
    await ok_event(client, run_id, "step_created", step_id, {"stepName": "s", "input": 1})
    for path, params, field in (
        (f"/v1/world/steps/{step_id}", {"resolveData": "some"}, "resolveData"),
        (f"/v1/world/runs/{run_id}", {"resolveData": "partial"}, "resolveData"),
        ("/v1/world/streams/list", {}, "runId"),
        ("/v1/world/streams/chunks", {"name": "s", "limit": "many"}, "limit"),
    ):
        error = assert_error(await client.get(path, params=params), 400, "invalid_request")
        assert error["details"]["field"] == field


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/world/events/list", {"runId": "<run>"}),
        ("/v1/world/events/list-by-correlation", {"correlationId": "x"}),
        ("/v1/world/runs/list", {"workflowName": WORKFLOW}),
        ("/v1/world/steps/list", {"runId": "<run>"}),
        ("/v1/world/hooks/list", {"runId": "<run>"}),
    ],
)
@pytest.mark.parametrize("cursor", ["garbage!!", "%%%", "YWJjfHdydW5feA", "bm8tYmFyLWhlcmU", ""])
async def test_bad_cursor_is_400(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], cursor: str
) -> None:
    run_id = (await new_run(client))["runId"]
    request = {**_fill(body, run_id), "pagination": {"cursor": cursor}}
    error = assert_error(await client.post(path, json=request), 400, "invalid_request")
    assert error["details"]["field"] == "pagination.cursor"


async def test_the_document_refuses_an_empty_cursor_or_sortOrder_in_a_body(
    client: httpx.AsyncClient,
) -> None:
    """As the server does (above): in a JSON body ``""`` is a value, not the member left
    out (``null`` is)."""
    document = assert_ok(await client.get("/v1/openapi.json"))
    for path in (
        "/v1/world/events/list",
        "/v1/world/events/list-by-correlation",
        "/v1/world/runs/list",
        "/v1/world/steps/list",
        "/v1/world/hooks/list",
    ):
        content = document["paths"][path]["post"]["requestBody"]["content"]
        pagination = content["application/json"]["schema"]["properties"]["pagination"]
        for member in ("cursor", "sortOrder"):
            admits = Draft202012Validator(pagination["properties"][member]).is_valid
            assert not admits("") and admits(None), (path, member)


# -- size, routes, methods ------------------------------------------------------------------


async def _chunked(data: bytes, size: int = 256) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_oversize_body_is_413(start_server: StartServer) -> None:
    small = await start_server(max_body_bytes=1024)
    async with make_client(small.url) as http:
        event_data = {**RUN_CREATED["eventData"], "input": env(b"x" * 2000)}
        big = {"runId": None, "data": {**RUN_CREATED, "eventData": event_data}}
        raw = json.dumps(big).encode()
        assert len(raw) > 1024
        error = assert_error(await http.post(CREATE, content=raw), 413, "payload_too_large")
        assert "1024" in error["message"] or error.get("details", {}).get("limit") == 1024
        # no Content-Length: the limit holds while the body streams in
        streamed = await http.post(
            CREATE, content=_chunked(raw), headers={"content-type": "application/json"}
        )
        assert "content-length" not in streamed.request.headers
        assert_error(streamed, 413, "payload_too_large")
        assert await world_state(http) == {"runs": []}

        fits = {"runId": None, "data": RUN_CREATED}
        assert len(json.dumps(fits)) < 1024
        assert_ok(await http.post(CREATE, json=fits))
        assert len((await world_state(http))["runs"]) == 1


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/world/nope"),
        ("POST", "/v1/world/events/nope/more"),
        ("GET", "/v1/nothing-here"),
        ("POST", "/v2/runs/null/events"),
    ],
)
async def test_unknown_route_is_404(client: httpx.AsyncClient, method: str, path: str) -> None:
    response = await client.request(method, path, json={})
    assert_error(response, 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", CREATE, "POST"),
        ("PUT", "/v1/queue/publish", "POST"),
        ("DELETE", "/v1/world/runs/wrun_01ARZ3NDEKTSV4RRFFQ69G5FAV", "GET"),
        ("POST", "/v1/world/streams/read", "GET"),
        ("POST", "/v1/world/deployment-id", "GET"),
    ],
)
async def test_wrong_method_is_405(
    client: httpx.AsyncClient, method: str, path: str, allowed: str
) -> None:
    response = await client.request(method, path, json={"runId": None, "data": RUN_CREATED})
    assert_error(response, 405, "method_not_allowed")
    assert allowed in response.headers.get("allow", ""), response.headers
    assert await world_state(client) == {"runs": []}


# -- correlation ids ------------------------------------------------------------------------


async def test_correlation_id_is_echoed_when_sent(
    start_server: StartServer, client: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    sent = "trace-4b1d-it"
    headers = {CORRELATION_HEADER: sent}
    small = await start_server(max_body_bytes=64)
    async with make_client(small.url) as tight:
        too_big = await tight.post(CREATE, content=b"{" + b" " * 100 + b"}", headers=headers)
    responses = [
        await client.post(CREATE, json={"runId": None, "data": RUN_CREATED}, headers=headers),
        await client.post("/v1/world/runs/list", json={"status": "running"}, headers=headers),
        await client.get(f"/v1/world/runs/{new_id('wrun_')}", headers=headers),  # 404
        await client.post(CREATE, content=b"{", headers=headers),  # 400
        await anon.post(CREATE, json={}, headers=headers),  # 401
        await client.get(CREATE, headers=headers),  # 405
        await client.get("/v1/world/nope", headers=headers),  # 404 route
        too_big,  # 413
    ]
    assert [r.status_code for r in responses] == [200, 200, 404, 400, 401, 405, 404, 413]
    for response in responses:
        assert response.headers.get(CORRELATION_HEADER) == sent, (response, response.headers)


async def test_correlation_id_is_generated_when_absent(
    client: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    responses = [
        await client.post(CREATE, json={"runId": None, "data": RUN_CREATED}),
        await client.get(f"/v1/world/runs/{new_id('wrun_')}"),
        await client.post(CREATE, content=b"[]"),
        await anon.get("/v1/world/deployment-id"),
        await client.put(CREATE),
        await client.get("/v1/world/nope"),
    ]
    assert [r.status_code for r in responses] == [200, 404, 400, 401, 405, 404]
    generated = [r.headers.get(CORRELATION_HEADER, "") for r in responses]
    assert all(is_uuid4(value) for value in generated), generated
    assert len(set(generated)) == len(generated)


async def test_internal_error_keeps_the_envelope_and_the_correlation_id(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from compute_worker.domain.use_cases.query_world import QueryWorld

    async def broken(self: Any, run_id: str) -> Any:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(QueryWorld, "get_run", broken)
    response = await client.get(
        f"/v1/world/runs/{new_id('wrun_')}", headers={CORRELATION_HEADER: "trace-500"}
    )
    assert response.status_code == 500
    assert response.json()["code"] == "internal_error"
    assert "secret internal detail" not in response.text
    assert response.headers.get(CORRELATION_HEADER) == "trace-500"


# -- HTTP/2 ---------------------------------------------------------------------------------


async def test_world_route_over_http2_prior_knowledge(server: RunningServer) -> None:
    async with make_client(server.url, http2=True, http1=False) as h2:
        created = await h2.post(CREATE, json={"runId": None, "data": RUN_CREATED})
        assert created.http_version == "HTTP/2"
        run = assert_ok(created)["run"]
        fetched = await h2.get(f"/v1/world/runs/{run['runId']}")
        assert fetched.http_version == "HTTP/2"
        assert assert_ok(fetched)["runId"] == run["runId"]
        missing = await h2.get(f"/v1/world/runs/{new_id('wrun_')}")
        assert missing.http_version == "HTTP/2"
        assert_error(missing, 404, "run_not_found", "WorkflowRunNotFoundError")
