"""The public lane's listings over a real socket, on SQLite and PostgreSQL: runs with
filters and cursors, a run's steps, events, hooks and streams (live reads over SSE and
chunked bytes), deployments with their pinned runs — and every bad filter as a 400."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import uuid
import zipfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from ._helpers import assert_error, assert_ok, parse_iso
from .public_fixtures import (
    ONLY_KEYS,
    PublicServer,
    deploy,
    started_run,
    wait_for_hook,
    wait_for_run,
)

STREAMING = """\
from compute_worker import create_hook, get_writable, step, workflow


@step
async def emit(text, close=False):
    out = get_writable("log")
    await out.write(text)
    if close:
        await out.close()
    return text


@step
async def add(a, b):
    return a + b


@workflow
async def talk(token):
    await emit("one\\n")
    await create_hook(token=token)
    await emit("two\\n")
    await emit("three\\n", close=True)
    return "said"


@workflow
async def unclosed(count):
    for i in range(count):
        await emit(f"line {i}\\n")
    return count


@workflow
async def adder(a, b):
    return await add(a, b)


@workflow
async def waiter(token):
    return await create_hook(token=token, metadata={"why": "approval"})
"""


@pytest.fixture
async def streaming(api: httpx.AsyncClient) -> dict[str, Any]:
    return await deploy(api, STREAMING)


async def _pages(
    api: httpx.AsyncClient, path: str, params: dict[str, Any] | None = None
) -> list[list[dict[str, Any]]]:
    """Follow the cursor until ``hasMore`` is false."""
    pages, cursor = [], None
    while True:
        query = {**(params or {}), **({"cursor": cursor} if cursor else {})}
        page = assert_ok(await api.get(path, params=query))
        pages.append(page["data"])
        if not page["hasMore"]:
            return pages
        cursor = page["cursor"]
        assert cursor


# -- GET /v1/runs ----------------------------------------------------------------------------


async def _runs(api: httpx.AsyncClient, **params: Any) -> list[str]:
    return [run["runId"] for page in await _pages(api, "/v1/runs", params) for run in page]


async def test_runs_are_listed_newest_first_with_filters(
    api: httpx.AsyncClient, streaming: dict[str, Any]
) -> None:
    first = await deploy(api, STREAMING, activate=False)
    done_ids = []
    for i in range(3):
        run_id = await started_run(api, "adder", i, 1)
        await wait_for_run(api, run_id)
        done_ids.append(run_id)
        await asyncio.sleep(0.01)
    token = f"tok-{uuid.uuid4()}"
    waiting = await started_run(api, "waiter", token)
    await wait_for_hook(api, token)
    other = assert_ok(
        await api.post(
            "/v1/runs",
            json={"workflowName": "adder", "input": [5, 5], "deploymentId": first["deploymentId"]},
            headers={"Idempotency-Key": f"k-{uuid.uuid4()}"},
        ),
        202,
    )["runId"]
    await wait_for_run(api, other)

    everything = await _runs(api)
    assert everything == [other, waiting, *reversed(done_ids)]
    page = assert_ok(await api.get("/v1/runs"))
    assert page["hasMore"] is False and isinstance(page["cursor"], str)
    run = page["data"][0]
    assert run["runId"] == other and run["output"] == 10 and run["input"] == [5, 5]
    assert "specVersion" not in run

    assert await _runs(api, status="running") == [waiting]
    assert await _runs(api, status="completed") == [other, *reversed(done_ids)]
    assert await _runs(api, status="running,completed") == everything
    both = assert_ok(await api.get("/v1/runs?status=running&status=completed"))
    assert [r["runId"] for r in both["data"]] == everything
    assert await _runs(api, status="failed") == []
    assert await _runs(api, workflowName="waiter") == [waiting]
    assert await _runs(api, deploymentId=first["deploymentId"]) == [other]
    assert await _runs(
        api, deploymentId=streaming["deploymentId"], workflowName="adder", status="completed"
    ) == list(reversed(done_ids))

    runs = {r["runId"]: r for r in page["data"]}
    middle = parse_iso(runs[done_ids[1]]["createdAt"])
    assert await _runs(api, createdAfter=middle.isoformat()) == [other, waiting, done_ids[2]]
    assert await _runs(api, createdBefore=middle.isoformat()) == [done_ids[0]]
    naive = middle.replace(tzinfo=None).isoformat()  # no offset: UTC
    assert await _runs(api, createdBefore=naive) == [done_ids[0]]
    assert await _runs(
        api,
        createdAfter=(middle - timedelta(milliseconds=1)).isoformat(),
        createdBefore=(middle + timedelta(milliseconds=1)).isoformat(),
    ) == [done_ids[1]]
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    assert await _runs(api, createdAfter=tomorrow) == []

    lean = assert_ok(await api.get("/v1/runs", params={"resolveData": "none"}))["data"]
    assert all("input" not in r and "output" not in r for r in lean)


async def test_run_pages_hold_every_run_once(
    api: httpx.AsyncClient, streaming: dict[str, Any]
) -> None:
    created = [await started_run(api, "adder", i, i) for i in range(7)]
    pages = await _pages(api, "/v1/runs", {"limit": 3})
    assert [len(page) for page in pages] == [3, 3, 1]
    listed = [run["runId"] for page in pages for run in page]
    assert listed == list(reversed(created))

    last = assert_ok(await api.get("/v1/runs", params={"limit": 3}))
    for _ in range(2):
        last = assert_ok(await api.get("/v1/runs", params={"limit": 3, "cursor": last["cursor"]}))
    assert last["hasMore"] is False and last["cursor"]
    drained = assert_ok(await api.get("/v1/runs", params={"cursor": last["cursor"]}))
    assert drained["data"] == [] and drained["cursor"] == last["cursor"]

    clamped = assert_ok(await api.get("/v1/runs", params={"limit": 0}))
    assert len(clamped["data"]) == 1  # clamped to 1, as on the world lane
    assert len(assert_ok(await api.get("/v1/runs", params={"limit": 5000}))["data"]) == 7


# -- a run's steps, events and hooks ---------------------------------------------------------


async def test_steps_and_events_of_a_run(api: httpx.AsyncClient, streaming: dict[str, Any]) -> None:
    run_id = await started_run(api, "adder", 20, 22)
    await wait_for_run(api, run_id)

    steps = assert_ok(await api.get(f"/v1/runs/{run_id}/steps"))
    assert steps["hasMore"] is False
    (step,) = steps["data"]
    assert step["runId"] == run_id and step["stepName"].endswith("add")
    assert (step["status"], step["attempt"], step["output"]) == ("completed", 1, 42)
    assert step["input"] == [20, 22]
    assert {"stepId", "createdAt", "updatedAt", "startedAt", "completedAt"} <= step.keys()
    assert "specVersion" not in step
    lean = assert_ok(await api.get(f"/v1/runs/{run_id}/steps", params={"resolveData": "none"}))
    assert "input" not in lean["data"][0] and "output" not in lean["data"][0]

    events = assert_ok(await api.get(f"/v1/runs/{run_id}/events"))["data"]
    kinds = [event["eventType"] for event in events]
    assert kinds[0] == "run_created" and kinds[-1] == "run_completed"
    assert {"step_created", "step_started", "step_completed"} <= set(kinds)
    assert all("specVersion" not in event for event in events)
    assert all(e["eventId"] for e in events) and all(e["runId"] == run_id for e in events)
    created = next(e for e in events if e["eventType"] == "step_created")
    assert created["correlationId"] == step["stepId"]
    assert created["eventData"]["input"] == [20, 22]

    newest = assert_ok(
        await api.get(f"/v1/runs/{run_id}/events", params={"sortOrder": "desc", "limit": 2})
    )
    assert [e["eventId"] for e in newest["data"]] == [e["eventId"] for e in events[::-1][:2]]
    assert newest["hasMore"] is True
    paged = await _pages(api, f"/v1/runs/{run_id}/events", {"limit": 2})
    assert [e["eventId"] for page in paged for e in page] == [e["eventId"] for e in events]
    stripped = assert_ok(
        await api.get(f"/v1/runs/{run_id}/events", params={"resolveData": "none"})
    )["data"]
    assert (
        next(e for e in stripped if e["eventType"] == "step_created")
        .get("eventData", {})
        .get("input")
        is None
    )


async def test_hook_tokens_are_shown_only_to_keys_that_may_resume(
    api_server: PublicServer, api: httpx.AsyncClient, streaming: dict[str, Any]
) -> None:
    token = f"tok-{uuid.uuid4()}"
    run_id = await started_run(api, "waiter", token)
    await wait_for_hook(api, token)

    (hook,) = assert_ok(await api.get(f"/v1/runs/{run_id}/hooks"))["data"]
    assert hook["token"] == token and hook["runId"] == run_id
    assert hook["metadata"] == {"why": "approval"} and hook["isWebhook"] is False
    async with api_server.client(ONLY_KEYS["runs:read"]) as reader:
        (hidden,) = assert_ok(await reader.get(f"/v1/runs/{run_id}/hooks"))["data"]
    assert "token" not in hidden and token not in json.dumps(hidden)
    assert {k: v for k, v in hook.items() if k != "token"} == hidden

    # nor in the run's events: hook_created carries the token for those who may resume
    events = assert_ok(await api.get(f"/v1/runs/{run_id}/events"))["data"]
    (created,) = [e for e in events if e["eventType"] == "hook_created"]
    assert created["eventData"]["token"] == token
    async with api_server.client(ONLY_KEYS["runs:read"]) as reader:
        for params in ({}, {"resolveData": "none"}):
            seen = assert_ok(await reader.get(f"/v1/runs/{run_id}/events", params=params))["data"]
            (created,) = [e for e in seen if e["eventType"] == "hook_created"]
            assert "token" not in created.get("eventData", {}), created  # (the input holds it)
            assert [e["eventId"] for e in seen] == [e["eventId"] for e in events]

    assert_ok(await api.post("/v1/runs/resume", json={"token": token, "payload": 1}), 202)
    await wait_for_run(api, run_id)
    assert assert_ok(await api.get(f"/v1/runs/{run_id}/hooks"))["data"] == []


async def test_an_unknown_run_is_404_on_every_history_route(api: httpx.AsyncClient) -> None:
    for tail in ("steps", "events", "hooks", "streams", "streams/log"):
        assert_error(await api.get(f"/v1/runs/wrun_nope/{tail}"), 404, "run_not_found")


# -- streams ---------------------------------------------------------------------------------


async def _sse(response: httpx.Response) -> AsyncIterator[dict[str, str]]:
    """The events of an SSE body, comments skipped."""
    event: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line == "":
            if event:
                yield event
            event = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(":")
            event[key] = value.removeprefix(" ")


async def _hooked_talk(api: httpx.AsyncClient) -> tuple[str, str]:
    token = f"tok-{uuid.uuid4()}"
    run_id = await started_run(api, "talk", token)
    await wait_for_hook(api, token)
    return run_id, token


async def test_a_stream_is_read_live_over_sse_until_it_closes(
    api: httpx.AsyncClient, streaming: dict[str, Any]
) -> None:
    run_id, token = await _hooked_talk(api)
    listed = assert_ok(await api.get(f"/v1/runs/{run_id}/streams"))
    assert listed == {"data": [{"name": "log", "chunks": 1, "done": False}]}

    path = f"/v1/runs/{run_id}/streams/log"
    async with api.stream("GET", path, headers={"Accept": "text/event-stream"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = _sse(response)
        first = await anext(events)
        assert first == {"id": "0", "data": base64.b64encode(b"one\n").decode()}
        assert_ok(await api.post("/v1/runs/resume", json={"token": token, "payload": 1}), 202)
        rest = [event async for event in events]
    assert [base64.b64decode(e["data"]) for e in rest[:-1]] == [b"two\n", b"three\n"]
    assert [e["id"] for e in rest[:-1]] == ["1", "2"]
    assert rest[-1] == {"event": "end", "data": '{"nextIndex": 3}'}
    await wait_for_run(api, run_id)
    listed = assert_ok(await api.get(f"/v1/runs/{run_id}/streams"))
    assert listed == {"data": [{"name": "log", "chunks": 3, "done": True}]}

    # from an index, from the end, by the stored name, resuming after Last-Event-ID
    async def read_sse(path: str, **kwargs: Any) -> list[dict[str, str]]:
        async with api.stream("GET", path, **kwargs) as response:
            assert response.status_code == 200, await response.aread()
            return [event async for event in _sse(response)]

    tail = await read_sse(f"{path}?format=sse&startIndex=-1")
    assert [e.get("id") for e in tail] == ["2", None]
    stored = f"strm_{run_id.removeprefix('wrun_')}_log"
    whole = await read_sse(f"/v1/runs/{run_id}/streams/{stored}?format=sse&startIndex=1")
    assert [e.get("id") for e in whole] == ["1", "2", None]
    resumed = await read_sse(f"{path}?format=sse", headers={"Last-Event-ID": "0"})
    assert [e.get("id") for e in resumed] == ["1", "2", None]


async def test_a_stream_is_read_live_as_chunked_bytes(
    api: httpx.AsyncClient, streaming: dict[str, Any]
) -> None:
    run_id, token = await _hooked_talk(api)
    received = bytearray()
    async with api.stream("GET", f"/v1/runs/{run_id}/streams/log") as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/octet-stream"
        pieces = response.aiter_bytes()
        received += await anext(pieces)
        assert bytes(received) == b"one\n"
        assert_ok(await api.post("/v1/runs/resume", json={"token": token, "payload": 1}), 202)
        async for piece in pieces:
            received += piece
    assert bytes(received) == b"one\ntwo\nthree\n"
    async with api.stream(
        "GET", f"/v1/runs/{run_id}/streams/log", params={"startIndex": 2, "format": "bytes"}
    ) as response:
        assert await response.aread() == b"three\n"


async def test_a_stream_the_workflow_left_open_ends_with_its_run(
    api: httpx.AsyncClient, streaming: dict[str, Any]
) -> None:
    run_id = await started_run(api, "unclosed", 3)
    await wait_for_run(api, run_id)
    (listed,) = assert_ok(await api.get(f"/v1/runs/{run_id}/streams"))["data"]
    assert (listed["name"], listed["chunks"]) == ("log", 3)  # the engine may close it too
    async with api.stream("GET", f"/v1/runs/{run_id}/streams/log") as response:
        body = await asyncio.wait_for(response.aread(), 10)
    assert body == b"line 0\nline 1\nline 2\n"


async def test_stream_refusals(api: httpx.AsyncClient, streaming: dict[str, Any]) -> None:
    run_id, _ = await _hooked_talk(api)
    assert_error(await api.get(f"/v1/runs/{run_id}/streams/nope"), 404, "stream_not_found")
    other = await started_run(api, "adder", 1, 2)
    stored = f"strm_{run_id.removeprefix('wrun_')}_log"  # another run's stream
    assert_error(await api.get(f"/v1/runs/{other}/streams/{stored}"), 404, "stream_not_found")
    for params, name in (
        ({"format": "xml"}, "format"),
        ({"startIndex": "x"}, "startIndex"),
        ({"from": "1"}, "from"),
    ):
        response = await api.get(f"/v1/runs/{run_id}/streams/log", params=params)
        assert assert_error(response, 400, "invalid_request")["details"]["field"] == name
    long_name = "n" * 600
    response = await api.get(f"/v1/runs/{run_id}/streams/{long_name}")
    assert assert_error(response, 400, "invalid_request")["details"]["field"] == "name"


# -- GET /v1/deployments ---------------------------------------------------------------------


async def test_deployments_are_listed_with_their_pinned_runs(api: httpx.AsyncClient) -> None:
    older = await deploy(api, STREAMING)
    token = f"tok-{uuid.uuid4()}"
    pinned = await started_run(api, "waiter", token)
    await wait_for_hook(api, token)
    await started_run(api, "adder", 1, 1)  # completes: not pinned for long
    newer = await deploy(api, STREAMING, metadata={"release": "2"})
    inactive = await deploy(api, STREAMING, activate=False)

    listing = assert_ok(await api.get("/v1/deployments"))
    assert listing["hasMore"] is False
    ids = [d["deploymentId"] for d in listing["data"]]
    assert ids == [inactive["deploymentId"], newer["deploymentId"], older["deploymentId"]]
    by_id = {d["deploymentId"]: d for d in listing["data"]}
    assert [by_id[i]["active"] for i in ids] == [False, True, False]
    assert by_id[newer["deploymentId"]]["metadata"] == {"release": "2"}
    assert by_id[older["deploymentId"]]["kind"] == "python"
    assert {w["name"] for w in by_id[older["deploymentId"]]["workflows"]} >= {"talk", "waiter"}
    assert by_id[inactive["deploymentId"]]["pinnedRuns"] == 0
    assert by_id[newer["deploymentId"]]["pinnedRuns"] == 0
    for _ in range(100):
        if by_id[older["deploymentId"]]["pinnedRuns"] == 1:
            break
        await asyncio.sleep(0.05)  # the adder run may still be finishing
        listing = assert_ok(await api.get("/v1/deployments"))
        by_id = {d["deploymentId"]: d for d in listing["data"]}
    assert by_id[older["deploymentId"]]["pinnedRuns"] == 1

    paged = await _pages(api, "/v1/deployments", {"limit": 2})
    assert [len(p) for p in paged] == [2, 1]
    assert [d["deploymentId"] for p in paged for d in p] == ids

    assert_ok(await api.post(f"/v1/runs/{pinned}/cancel"))
    listing = assert_ok(await api.get("/v1/deployments"))
    assert {d["deploymentId"]: d["pinnedRuns"] for d in listing["data"]}[older["deploymentId"]] == 0


async def test_no_deployments_is_an_empty_page(api: httpx.AsyncClient) -> None:
    assert assert_ok(await api.get("/v1/deployments")) == {
        "data": [], "cursor": None, "hasMore": False,
    }  # fmt: skip


# -- bad filters -----------------------------------------------------------------------------

BAD_QUERIES = [
    ("/v1/runs", {"status": "done"}, "status"),
    ("/v1/runs", {"status": "running,nope"}, "status"),
    ("/v1/runs", {"createdAfter": "yesterday"}, "createdAfter"),
    ("/v1/runs", {"createdBefore": "2026-13-01"}, "createdBefore"),
    ("/v1/runs", {"createdAfter": "2026-02-01", "createdBefore": "2026-01-01"}, "createdBefore"),
    ("/v1/runs", {"limit": "ten"}, "limit"),
    ("/v1/runs", {"limit": "9" * 5000}, "limit"),
    ("/v1/runs", {"cursor": "not-a-cursor"}, "cursor"),
    ("/v1/runs", {"cursor": base64.urlsafe_b64encode(b"-5|x").decode()}, "cursor"),
    ("/v1/runs", {"resolveData": "some"}, "resolveData"),
    ("/v1/runs", {"workflowName": "w" * 513}, "workflowName"),
    ("/v1/runs", {"workflowName": "a\x00b"}, "workflowName"),
    ("/v1/runs", {"deploymentId": "d" * 256}, "deploymentId"),
    ("/v1/runs", {"stauts": "running"}, "stauts"),
    ("/v1/runs/{run}/steps", {"sortOrder": "up"}, "sortOrder"),
    ("/v1/runs/{run}/steps", {"cursor": "%%%"}, "cursor"),
    ("/v1/runs/{run}/events", {"limit": "1.5"}, "limit"),
    ("/v1/runs/{run}/events", {"resolveData": "yes"}, "resolveData"),
    ("/v1/runs/{run}/hooks", {"cursor": "x"}, "cursor"),
    ("/v1/runs/{run}/hooks", {"resolveData": "none"}, "resolveData"),
    ("/v1/runs/{run}/streams", {"limit": "1"}, "limit"),
    ("/v1/deployments", {"limit": "-"}, "limit"),
    ("/v1/deployments", {"cursor": "zz"}, "cursor"),
    ("/v1/deployments", {"kind": "python"}, "kind"),
]


async def test_every_bad_filter_is_400_naming_its_field(
    api: httpx.AsyncClient, streaming: dict[str, Any]
) -> None:
    run_id = await started_run(api, "adder", 1, 2)
    problems = []
    for path, params, name in BAD_QUERIES:
        response = await api.get(path.format(run=run_id), params=params)
        if response.status_code != 400:
            problems.append((path, params, response.status_code, response.text))
            continue
        body = assert_error(response, 400, "invalid_request")
        if body.get("details", {}).get("field") != name:
            problems.append((path, params, body))
    assert not problems, problems


@pytest.mark.parametrize(("name", "longest"), [("workflowName", 512), ("deploymentId", 255)])
async def test_the_document_refuses_the_text_filters_the_server_refuses(
    api: httpx.AsyncClient, name: str, longest: int
) -> None:
    """A NUL or an over-long ``workflowName``/``deploymentId`` is a 400 naming it, and
    the OpenAPI document's schema refuses it too; the longest and the empty are fine."""
    document = assert_ok(await api.get("/v1/openapi.json"))
    params = document["paths"]["/v1/runs"]["get"]["parameters"]
    (declared,) = [p["schema"] for p in params if p["name"] == name]
    admits = Draft202012Validator(declared).is_valid
    for bad in ("a\x00b", "\x00", "x" * (longest + 1)):
        error = assert_error(await api.get("/v1/runs", params={name: bad}), 400, "invalid_request")
        assert error["details"] == {"field": name} and not admits(bad), (bad[:20], error)
    for fine in ("x" * longest, "", "ça va ✓"):
        assert_ok(await api.get("/v1/runs", params={name: fine}))
        assert admits(fine), fine


async def _path_values(api: httpx.AsyncClient, run_id: str) -> dict[str, str]:
    """A value for each path or required query parameter of the GET routes tried below."""
    step = assert_ok(await api.get(f"/v1/runs/{run_id}/steps"))["data"][0]
    event = assert_ok(await api.get(f"/v1/runs/{run_id}/events"))["data"][0]
    found = assert_ok(await api.get("/v1/world/streams/list", params={"runId": run_id}))
    (stream,) = found["streams"]  # its stored name, which the public lane takes too
    return {"runId": run_id, "stepId": step["stepId"], "eventId": event["eventId"],
            "name": stream}  # fmt: skip


async def test_an_empty_query_parameter_is_one_left_out_as_the_document_says(
    api: httpx.AsyncClient, streaming: dict[str, Any]
) -> None:
    """``?sortOrder=``, ``?resolveData=``, ``?limit=``, … answer as if left out, on every
    GET route of both lanes, and the OpenAPI document admits the empty value; ``wait``
    alone refuses it (http-api.md), and its schema says so."""
    run_id = await started_run(api, "unclosed", 2)
    await wait_for_run(api, run_id)
    values = await _path_values(api, run_id)
    document = assert_ok(await api.get("/v1/openapi.json"))
    problems: list[Any] = []
    tried = 0
    for path, methods in document["paths"].items():
        params = methods.get("get", {}).get("parameters", [])
        in_path = [p["name"] for p in params if p["in"] == "path"]
        optional = [p for p in params if p["in"] == "query" and not p["required"]]
        if not optional or not all(name in values for name in in_path):
            continue
        url = path.format(**values)
        required = {p["name"]: values[p["name"]] for p in params
                    if p["in"] == "query" and p["required"]}  # fmt: skip
        left_out = await api.get(url, params=required)
        if left_out.status_code != 200:
            problems.append((path, "left out", left_out.status_code, left_out.text))
            continue
        for param in optional:
            name, tried = param["name"], tried + 1
            admits_empty = Draft202012Validator(param["schema"]).is_valid("")
            empty = await api.get(url, params={**required, name: ""})
            if name == "wait":
                error = assert_error(empty, 400, "invalid_request")
                if admits_empty or error["details"] != {"field": "wait"}:
                    problems.append((path, name, admits_empty, error))
            elif not admits_empty or (empty.status_code, empty.content) != (200, left_out.content):
                problems.append((path, name, admits_empty, empty.status_code, empty.text))
    assert tried >= 20, tried  # both lanes' GET routes were reached
    assert not problems, problems
    # the empty page of a stream without chunks keeps the cursor it was asked from
    chunks = "/v1/world/streams/chunks"
    nothing = assert_ok(await api.get(chunks, params={"name": "strm_none"}))
    assert assert_ok(await api.get(chunks, params={"name": "strm_none", "cursor": ""})) == nothing


async def test_a_bundle_upload_takes_metadata_from_the_query(api: httpx.AsyncClient) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("workflows.py", STREAMING)
        archive.writestr("workflow.toml", '[metadata]\nfrom = "manifest"\n')
    headers = {"Content-Type": "application/zip"}
    url = "/v1/deployments?kind=python&metadata=" + json.dumps({"from": "query"})
    created = assert_ok(await api.post(url, content=buffer.getvalue(), headers=headers), 201)
    assert created["metadata"] == {"from": "query"}
    plain = assert_ok(
        await api.post("/v1/deployments", content=buffer.getvalue(), headers=headers), 201
    )
    assert plain["metadata"] == {"from": "manifest"}
    for bad in ("[1]", "{nope"):
        response = await api.post(
            "/v1/deployments", params={"metadata": bad}, content=buffer.getvalue(), headers=headers
        )
        assert assert_error(response, 400, "invalid_request")["details"]["field"] == "metadata"
