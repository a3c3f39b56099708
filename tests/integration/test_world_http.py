"""The world-proxy lane over real HTTP: a representative subset of the conformance
cases (world.md §9) and the decisions for this server (D1-D11)."""

from __future__ import annotations

import asyncio
import base64
import gzip
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from ._helpers import (
    DEPLOYMENT,
    WORKFLOW,
    assert_error,
    assert_ok,
    create_event,
    env,
    iso,
    list_all,
    new_id,
    new_run,
    ok_event,
    parse_iso,
    run_events,
    run_ids,
    unenv,
)

ULID_RE = r"[0-9A-HJKMNP-TV-Z]{26}"


def _types(events: list[dict[str, Any]]) -> list[str]:
    return [event["eventType"] for event in events]


# -- runs -----------------------------------------------------------------------------------


async def test_run_created_with_null_run_id_gets_a_server_id(client: httpx.AsyncClient) -> None:
    event_data = {
        "deploymentId": DEPLOYMENT,
        "workflowName": WORKFLOW,
        "input": env(b'devl["order-1"]'),
        "executionContext": {"traceparent": "00-abc-def-01"},
    }
    body = assert_ok(
        await create_event(client, None, "run_created", event_data=event_data, spec_version=2)
    )
    run, event = body["run"], body["event"]
    assert re.fullmatch(f"wrun_{ULID_RE}", run["runId"]), run["runId"]
    assert run["status"] == "pending"
    assert run["deploymentId"] == DEPLOYMENT
    assert run["workflowName"] == WORKFLOW
    assert run["executionContext"] == {"traceparent": "00-abc-def-01"}
    assert run["input"] == event_data["input"]
    assert run["specVersion"] == event["specVersion"] == 2
    assert "output" not in run and "startedAt" not in run and "completedAt" not in run
    assert event["eventType"] == "run_created"
    assert event["runId"] == run["runId"]
    assert re.fullmatch(f"evnt_{ULID_RE}", event["eventId"])
    assert event["eventData"] == event_data
    assert "correlationId" not in event
    assert "events" not in body  # only run_started carries the log

    fetched = assert_ok(await client.get(f"/v1/world/runs/{run['runId']}"))
    assert fetched == run
    assert await run_ids(client) == [run["runId"]]


async def test_client_run_id_must_be_a_recent_ulid(client: httpx.AsyncClient) -> None:
    stale = new_id("wrun_", age=timedelta(days=2))
    data = {"deploymentId": DEPLOYMENT, "workflowName": WORKFLOW, "input": env(b"x")}
    for bad in (stale, "wrun_not-a-ulid", "wrun_" + "U" * 26, new_id("step_")):
        body = assert_error(
            await create_event(client, bad, "run_created", event_data=data), 400, "invalid_request"
        )
        assert "runId" in body["message"]
        assert_error(await client.get(f"/v1/world/runs/{bad}"), 404, "run_not_found")
    future = new_id("wrun_", age=timedelta(minutes=-30))
    assert_error(
        await create_event(client, future, "run_created", event_data=data), 400, "invalid_request"
    )
    assert await run_ids(client) == []

    recent = new_id("wrun_", age=timedelta(hours=20))
    run = await new_run(client, recent)
    assert run["runId"] == recent
    assert await run_ids(client) == [recent]


async def test_duplicate_run_created_conflicts_and_stores_nothing(
    client: httpx.AsyncClient,
) -> None:
    run_id = new_id("wrun_")
    await new_run(client, run_id)
    again = await create_event(
        client,
        run_id,
        "run_created",
        event_data={"deploymentId": "dpl_other", "workflowName": "other", "input": env(b"y")},
    )
    assert_error(again, 409, "entity_conflict", "EntityConflictError")
    assert _types(await run_events(client, run_id)) == ["run_created"]
    run = assert_ok(await client.get(f"/v1/world/runs/{run_id}"))
    assert run["deploymentId"] == DEPLOYMENT and run["workflowName"] == WORKFLOW


async def test_run_started_returns_the_whole_log(client: httpx.AsyncClient) -> None:
    run = await new_run(client)
    run_id = run["runId"]
    body = await ok_event(client, run_id, "run_started")
    assert body["run"]["status"] == "running"
    started_at = parse_iso(body["run"]["startedAt"])
    assert abs(datetime.now(UTC) - started_at) < timedelta(minutes=1)
    assert _types(body["events"]) == ["run_created", "run_started"]
    assert body["events"][-1] == body["event"]
    assert body["event"]["eventType"] == "run_started"
    assert "eventData" not in body["event"]
    ids = [event["eventId"] for event in body["events"]]
    assert ids == sorted(ids) and len(set(ids)) == 2
    assert _types(await run_events(client, run_id)) == ["run_created", "run_started"]
    # the events.list cursor past the log, as WDK's EventResult has it
    assert body["hasMore"] is False and body["maxEvents"] == 25_000
    await ok_event(
        client, run_id, "wait_created", new_id("wait_"), {"resumeAt": iso(datetime.now(UTC))}
    )
    after = await client.post(
        "/v1/world/events/list", json={"runId": run_id, "pagination": {"cursor": body["cursor"]}}
    )
    assert _types(assert_ok(after)["data"]) == ["wait_created"]


async def test_run_started_again_answers_the_run_without_an_event(
    client: httpx.AsyncClient,
) -> None:
    run_id = (await new_run(client))["runId"]
    body = await ok_event(client, run_id, "run_started")
    again = await ok_event(client, run_id, "run_started")
    assert "event" not in again and "events" not in again
    assert again["run"]["status"] == "running"
    assert again["run"]["startedAt"] == body["run"]["startedAt"]
    assert _types(await run_events(client, run_id)) == ["run_created", "run_started"]


async def test_resilient_start_creates_the_missing_run(client: httpx.AsyncClient) -> None:
    run_id = new_id("wrun_")
    data = {"deploymentId": DEPLOYMENT, "workflowName": WORKFLOW, "input": env(b"in")}
    body = await ok_event(client, run_id, "run_started", event_data=data)
    assert body["run"]["runId"] == run_id
    assert body["run"]["status"] == "running"
    assert body["run"]["input"] == data["input"]
    assert _types(body["events"]) == ["run_created", "run_started"]
    assert body["events"][0]["eventData"] == data


async def test_event_for_an_unknown_run_is_not_found(client: httpx.AsyncClient) -> None:
    run_id = new_id("wrun_")
    assert_error(
        await create_event(client, run_id, "run_started"),
        404,
        "run_not_found",
        "WorkflowRunNotFoundError",
    )
    assert_error(
        await create_event(
            client, run_id, "step_created", new_id("step_"), {"stepName": "s", "input": 1}
        ),
        404,
        "run_not_found",
    )
    assert await run_ids(client) == []
    assert await run_events(client, run_id) == []


async def test_completed_run_refuses_restart_and_other_endings(client: httpx.AsyncClient) -> None:
    run_id = (await new_run(client))["runId"]
    await ok_event(client, run_id, "run_started")
    output = {"nested": [env(b"result-bytes")]}
    done = await ok_event(client, run_id, "run_completed", event_data={"output": output})
    assert done["run"]["status"] == "completed"
    assert done["run"]["output"] == output
    assert "completedAt" in done["run"]

    assert_error(
        await create_event(client, run_id, "run_started"), 410, "run_expired", "RunExpiredError"
    )
    for ending, data in (
        ("run_failed", {"error": "late"}),
        ("run_completed", {"output": env(b"other")}),
        ("run_cancelled", None),
    ):
        assert_error(
            await create_event(client, run_id, ending, event_data=data),
            409,
            "entity_conflict",
            "EntityConflictError",
        )
    assert_error(
        await create_event(
            client, run_id, "step_created", new_id("step_"), {"stepName": "s", "input": env(b"")}
        ),
        409,
        "entity_conflict",
    )
    run = assert_ok(await client.get(f"/v1/world/runs/{run_id}"))
    assert run["status"] == "completed" and run["output"] == output
    assert _types(await run_events(client, run_id)) == [
        "run_created",
        "run_started",
        "run_completed",
    ]


async def test_run_failed_keeps_a_structured_error(client: httpx.AsyncClient) -> None:
    run_id = (await new_run(client))["runId"]
    body = await ok_event(
        client, run_id, "run_failed", event_data={"error": "boom", "errorCode": "USER_ERROR"}
    )
    assert body["run"]["status"] == "failed"
    assert body["run"]["error"] == {"message": "boom", "code": "USER_ERROR"}

    other = (await new_run(client))["runId"]
    body = await ok_event(
        client, other, "run_failed", event_data={"error": {"message": "m", "stack": "at f()"}}
    )
    assert body["run"]["error"]["message"] == "m"
    assert body["run"]["error"]["stack"] == "at f()"


async def test_run_cancelled_twice_is_idempotent(client: httpx.AsyncClient) -> None:
    run_id = (await new_run(client))["runId"]
    first = await ok_event(client, run_id, "run_cancelled")
    second = await ok_event(client, run_id, "run_cancelled")
    assert first["run"]["status"] == second["run"]["status"] == "cancelled"
    assert first["event"]["eventId"] != second["event"]["eventId"]
    assert _types(await run_events(client, run_id)) == [
        "run_created",
        "run_cancelled",
        "run_cancelled",
    ]


# -- steps ----------------------------------------------------------------------------------


async def test_step_lifecycle_with_retry_after(client: httpx.AsyncClient) -> None:
    run_id = (await new_run(client))["runId"]
    await ok_event(client, run_id, "run_started")
    step_id = new_id("step_")
    step_input = env(b'devl["card"]')
    created = await ok_event(
        client, run_id, "step_created", step_id, {"stepName": "step//pay", "input": step_input}
    )
    step = created["step"]
    assert step["status"] == "pending" and step["attempt"] == 0
    assert step["stepId"] == step_id and step["runId"] == run_id
    assert step["input"] == step_input
    assert created["event"]["correlationId"] == step_id
    assert_error(
        await create_event(
            client, run_id, "step_created", step_id, {"stepName": "step//pay", "input": step_input}
        ),
        409,
        "entity_conflict",
        "EntityConflictError",
    )

    started = (await ok_event(client, run_id, "step_started", step_id))["step"]
    assert started["status"] == "running" and started["attempt"] == 1
    first_start = started["startedAt"]

    retry_at = datetime.now(UTC) + timedelta(seconds=60)
    retrying = await ok_event(
        client,
        run_id,
        "step_retrying",
        step_id,
        {"error": {"message": "declined", "stack": "at pay()"}, "retryAfter": iso(retry_at)},
    )
    step = retrying["step"]
    assert step["status"] == "pending"
    assert step["error"] == {"message": "declined", "stack": "at pay()"}
    assert abs(parse_iso(step["retryAfter"]) - retry_at) < timedelta(seconds=1)

    early = await create_event(client, run_id, "step_started", step_id)
    body = assert_error(early, 425, "too_early", "TooEarlyError")
    header = int(early.headers["retry-after"])
    assert 55 <= header <= 60, header
    assert body["retryAfter"] == header
    still = assert_ok(await client.get(f"/v1/world/steps/{step_id}", params={"runId": run_id}))
    assert still["status"] == "pending" and still["attempt"] == 1

    # a second retry that is due almost at once, then the step may start again
    soon = datetime.now(UTC) + timedelta(milliseconds=700)
    await ok_event(
        client, run_id, "step_retrying", step_id, {"error": "again", "retryAfter": iso(soon)}
    )
    await asyncio.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 0.3)
    restarted = (await ok_event(client, run_id, "step_started", step_id))["step"]
    assert restarted["status"] == "running"
    assert restarted["attempt"] == 2
    assert restarted["startedAt"] == first_start
    assert "retryAfter" not in restarted

    result = {"receipt": env(bytes(range(16)))}
    completed = (await ok_event(client, run_id, "step_completed", step_id, {"result": result}))[
        "step"
    ]
    assert completed["status"] == "completed"
    assert completed["output"] == result
    assert "completedAt" in completed

    for kind, data in (
        ("step_completed", {"result": 1}),
        ("step_failed", {"error": "x"}),
        ("step_started", None),
        ("step_retrying", {"error": "x"}),
    ):
        assert_error(
            await create_event(client, run_id, kind, step_id, data), 409, "entity_conflict"
        )
    assert _types(await run_events(client, run_id)) == [
        "run_created",
        "run_started",
        "step_created",
        "step_started",
        "step_retrying",
        "step_retrying",
        "step_started",
        "step_completed",
    ]


async def test_step_events_for_an_unknown_step_are_not_found(client: httpx.AsyncClient) -> None:
    run_id = (await new_run(client))["runId"]
    before = await run_events(client, run_id)
    for kind, data in (
        ("step_started", None),
        ("step_completed", {"result": 1}),
        ("step_failed", {"error": "x"}),
        ("step_retrying", {"error": "x"}),
    ):
        assert_error(
            await create_event(client, run_id, kind, new_id("step_"), data), 404, "step_not_found"
        )
    assert await run_events(client, run_id) == before


async def test_steps_get_with_and_without_run_id_and_list(client: httpx.AsyncClient) -> None:
    run_id = (await new_run(client))["runId"]
    other_run = (await new_run(client))["runId"]
    step_ids = []
    for index in range(3):
        step_id = new_id("step_")
        step_ids.append(step_id)
        await ok_event(
            client, run_id, "step_created", step_id, {"stepName": f"s{index}", "input": env(b"i")}
        )
    await ok_event(
        client, other_run, "step_created", new_id("step_"), {"stepName": "o", "input": env(b"o")}
    )

    with_run = assert_ok(
        await client.get(f"/v1/world/steps/{step_ids[1]}", params={"runId": run_id})
    )
    without = assert_ok(await client.get(f"/v1/world/steps/{step_ids[1]}"))
    assert with_run == without
    assert with_run["stepName"] == "s1" and with_run["input"] == env(b"i")
    stripped = assert_ok(
        await client.get(f"/v1/world/steps/{step_ids[1]}", params={"resolveData": "none"})
    )
    assert "input" not in stripped and stripped["stepName"] == "s1"
    assert_error(
        await client.get(f"/v1/world/steps/{step_ids[1]}", params={"runId": other_run}),
        404,
        "step_not_found",
    )
    assert_error(await client.get(f"/v1/world/steps/{new_id('step_')}"), 404, "step_not_found")

    items, pages = await list_all(client, "/v1/world/steps/list", {"runId": run_id}, limit=2)
    assert [item["stepId"] for item in items] == list(reversed(step_ids))  # default desc
    assert len(pages) == 2
    none = assert_ok(
        await client.post("/v1/world/steps/list", json={"runId": run_id, "resolveData": "none"})
    )
    assert len(none["data"]) == 3
    assert all("input" not in step and "output" not in step for step in none["data"])


# -- hooks ----------------------------------------------------------------------------------


async def test_hook_created_lookup_and_conflict(client: httpx.AsyncClient) -> None:
    run_id = (await new_run(client))["runId"]
    hook_id = new_id("hook_")
    token = f"tok-{hook_id}"
    metadata = {"note": env(b"\x00meta\xff")}
    body = await ok_event(
        client,
        run_id,
        "hook_created",
        hook_id,
        {"token": token, "metadata": metadata, "isWebhook": True},
    )
    hook = body["hook"]
    assert hook["hookId"] == hook_id and hook["runId"] == run_id
    assert hook["token"] == token
    assert hook["metadata"] == metadata
    assert hook["isWebhook"] is True
    assert body["event"]["eventType"] == "hook_created"

    assert assert_ok(await client.get(f"/v1/world/hooks/{hook_id}")) == hook
    assert assert_ok(await client.get(f"/v1/world/hooks/by-token/{token}")) == hook
    stripped = assert_ok(
        await client.get(f"/v1/world/hooks/{hook_id}", params={"resolveData": "none"})
    )
    assert "metadata" not in stripped and stripped["token"] == token
    by_token = await client.get(f"/v1/world/hooks/by-token/{token}?resolveData=none")
    assert assert_ok(by_token) == stripped

    plain_id = new_id("hook_")
    plain = await ok_event(client, run_id, "hook_created", plain_id, {"token": f"t-{plain_id}"})
    assert plain["hook"]["isWebhook"] is False  # D6 default
    assert "metadata" not in plain["hook"]  # unset optional fields are absent, not null

    other_run = (await new_run(client))["runId"]
    other_hook = new_id("hook_")
    conflict = await ok_event(client, other_run, "hook_created", other_hook, {"token": token})
    assert "hook" not in conflict
    assert conflict["event"]["eventType"] == "hook_conflict"
    assert conflict["event"]["correlationId"] == other_hook
    assert conflict["event"]["eventData"] == {"token": token, "conflictingRunId": run_id}
    assert _types(await run_events(client, other_run)) == ["run_created", "hook_conflict"]
    assert_error(await client.get(f"/v1/world/hooks/{other_hook}"), 404, "hook_not_found")
    missing = await client.get("/v1/world/hooks/by-token/no-such-token")
    assert assert_error(missing, 404, "hook_not_found")["details"] == {"token": "no-such-token"}
    owner = assert_ok(await client.get(f"/v1/world/hooks/by-token/{token}"))
    assert owner["hookId"] == hook_id

    # clients may not write hook_conflict themselves
    assert_error(
        await create_event(client, run_id, "hook_conflict", new_id("hook_"), {"token": "z"}),
        400,
        "invalid_request",
    )


async def test_repeated_hook_created_returns_the_existing_hook(client: httpx.AsyncClient) -> None:
    run_id = (await new_run(client))["runId"]
    hook_id = new_id("hook_")
    data = {"token": f"tok-{hook_id}", "metadata": {"n": 1}}
    first = await ok_event(client, run_id, "hook_created", hook_id, data)
    again = await ok_event(client, run_id, "hook_created", hook_id, data)
    assert again["hook"] == first["hook"]
    assert _types(await run_events(client, run_id)) == ["run_created", "hook_created"]


async def test_hook_id_reused_with_another_token_conflicts(client: httpx.AsyncClient) -> None:
    run_id = (await new_run(client))["runId"]
    hook_id = new_id("hook_")
    await ok_event(client, run_id, "hook_created", hook_id, {"token": f"a-{hook_id}"})
    assert_error(
        await create_event(client, run_id, "hook_created", hook_id, {"token": f"b-{hook_id}"}),
        409,
        "entity_conflict",
    )
    assert _types(await run_events(client, run_id)) == ["run_created", "hook_created"]


async def test_hook_received_and_disposed(client: httpx.AsyncClient) -> None:
    run_id = (await new_run(client))["runId"]
    hook_id = new_id("hook_")
    token = f"tok-{hook_id}"
    await ok_event(client, run_id, "hook_created", hook_id, {"token": token})
    payload = {"body": env(b"webhook-body")}
    received = await ok_event(client, run_id, "hook_received", hook_id, {"payload": payload})
    assert received["event"]["eventType"] == "hook_received"
    assert received["event"]["eventData"]["payload"] == payload
    assert "hook" not in received

    await ok_event(client, run_id, "hook_disposed", hook_id)
    assert_error(
        await client.get(f"/v1/world/hooks/{hook_id}"), 404, "hook_not_found", "HookNotFoundError"
    )
    assert_error(
        await client.get(f"/v1/world/hooks/by-token/{token}"),
        404,
        "hook_not_found",
        "HookNotFoundError",
    )
    assert_error(
        await create_event(client, run_id, "hook_disposed", hook_id), 404, "hook_not_found"
    )
    assert_error(
        await create_event(client, run_id, "hook_received", hook_id, {"payload": 1}),
        404,
        "hook_not_found",
    )
    # the token is free again
    reuse = await ok_event(client, run_id, "hook_created", new_id("hook_"), {"token": token})
    assert reuse["hook"]["token"] == token


async def test_terminal_run_frees_its_hooks(client: httpx.AsyncClient) -> None:
    run_id = (await new_run(client))["runId"]
    hook_id = new_id("hook_")
    token = f"tok-{hook_id}"
    await ok_event(client, run_id, "hook_created", hook_id, {"token": token})
    await ok_event(client, run_id, "run_completed", event_data={"output": env(b"")})
    assert_error(await client.get(f"/v1/world/hooks/{hook_id}"), 404, "hook_not_found")
    assert_error(
        await create_event(client, run_id, "hook_created", new_id("hook_"), {"token": "n"}),
        409,
        "entity_conflict",
    )
    other = (await new_run(client))["runId"]
    reused = await ok_event(client, other, "hook_created", new_id("hook_"), {"token": token})
    assert reused["hook"]["runId"] == other


async def test_hooks_list_by_run_ascending_and_paginated(client: httpx.AsyncClient) -> None:
    run_id = (await new_run(client))["runId"]
    other = (await new_run(client))["runId"]
    mine = []
    for _ in range(5):
        hook_id = new_id("hook_")
        mine.append(hook_id)
        await ok_event(client, run_id, "hook_created", hook_id, {"token": f"t-{hook_id}"})
    foreign = new_id("hook_")
    await ok_event(client, other, "hook_created", foreign, {"token": f"t-{foreign}"})

    items, pages = await list_all(client, "/v1/world/hooks/list", {"runId": run_id}, limit=2)
    assert [hook["hookId"] for hook in items] == mine
    assert len(pages) == 3
    everything = assert_ok(await client.post("/v1/world/hooks/list", json={}))
    assert {hook["hookId"] for hook in everything["data"]} == {*mine, foreign}
    none = assert_ok(
        await client.post(
            "/v1/world/hooks/list",
            json={"runId": run_id, "resolveData": "none", "pagination": {"sortOrder": "desc"}},
        )
    )
    assert [hook["hookId"] for hook in none["data"]] == list(reversed(mine))


# -- waits ----------------------------------------------------------------------------------


async def test_wait_lifecycle(client: httpx.AsyncClient) -> None:
    run_id = (await new_run(client))["runId"]
    wait_corr = new_id("wait_")
    resume_at = datetime.now(UTC) + timedelta(minutes=5)
    created = await ok_event(
        client, run_id, "wait_created", wait_corr, {"resumeAt": iso(resume_at)}
    )
    wait = created["wait"]
    assert wait["waitId"] == f"{run_id}-{wait_corr}"
    assert wait["status"] == "waiting"
    assert abs(parse_iso(wait["resumeAt"]) - resume_at) < timedelta(milliseconds=2)
    assert_error(
        await create_event(client, run_id, "wait_created", wait_corr, {"resumeAt": iso(resume_at)}),
        409,
        "entity_conflict",
    )
    done = await ok_event(client, run_id, "wait_completed", wait_corr)
    assert done["wait"]["status"] == "completed"
    assert "completedAt" in done["wait"]
    assert_error(
        await create_event(client, run_id, "wait_completed", wait_corr), 409, "entity_conflict"
    )
    assert_error(
        await create_event(client, run_id, "wait_completed", new_id("wait_")),
        404,
        "wait_not_found",
    )
    assert _types(await run_events(client, run_id)) == [
        "run_created",
        "wait_created",
        "wait_completed",
    ]


# -- events ---------------------------------------------------------------------------------


async def test_events_list_pagination_and_sort_order(client: httpx.AsyncClient) -> None:
    run_id = (await new_run(client))["runId"]
    await ok_event(client, run_id, "run_started")
    for index in range(5):
        await ok_event(
            client, run_id, "step_created", new_id("step_"), {"stepName": f"s{index}", "input": 1}
        )
    full = await run_events(client, run_id)
    assert len(full) == 7
    ids = [event["eventId"] for event in full]
    assert ids == sorted(ids) and len(set(ids)) == 7

    items, pages = await list_all(client, "/v1/world/events/list", {"runId": run_id}, limit=3)
    assert [event["eventId"] for event in items] == ids
    assert [len(page["data"]) for page in pages] == [3, 3, 1]
    assert pages[-1]["cursor"], "the last page keeps its cursor (D7)"

    desc, _ = await list_all(
        client,
        "/v1/world/events/list",
        {"runId": run_id, "pagination": {"sortOrder": "desc"}},
        limit=4,
    )
    assert [event["eventId"] for event in desc] == list(reversed(ids))

    # resuming from the last cursor after more writes returns only the new events
    await ok_event(client, run_id, "run_completed", event_data={"output": env(b"done")})
    resumed = assert_ok(
        await client.post(
            "/v1/world/events/list",
            json={"runId": run_id, "pagination": {"cursor": pages[-1]["cursor"]}},
        )
    )
    assert _types(resumed["data"]) == ["run_completed"]
    assert resumed["hasMore"] is False

    stripped = assert_ok(
        await client.post("/v1/world/events/list", json={"runId": run_id, "resolveData": "none"})
    )
    step_event = next(e for e in stripped["data"] if e["eventType"] == "step_created")
    assert "input" not in step_event.get("eventData", {})
    assert step_event["eventData"]["stepName"] == "s0"


async def test_events_list_by_correlation_spans_runs(client: httpx.AsyncClient) -> None:
    first = (await new_run(client))["runId"]
    second = (await new_run(client))["runId"]
    corr = new_id("wait_")
    resume_at = iso(datetime.now(UTC) + timedelta(hours=1))
    await ok_event(client, first, "wait_created", corr, {"resumeAt": resume_at})
    await ok_event(client, second, "wait_created", corr, {"resumeAt": resume_at})
    await ok_event(client, first, "wait_completed", corr)
    await ok_event(client, first, "wait_created", new_id("wait_"), {"resumeAt": resume_at})

    page = assert_ok(
        await client.post("/v1/world/events/list-by-correlation", json={"correlationId": corr})
    )
    assert [(e["runId"], e["eventType"]) for e in page["data"]] == [
        (first, "wait_created"),
        (second, "wait_created"),
        (first, "wait_completed"),
    ]
    assert all(e["correlationId"] == corr for e in page["data"])
    items, pages = await list_all(
        client,
        "/v1/world/events/list-by-correlation",
        {"correlationId": corr, "pagination": {"sortOrder": "desc"}},
        limit=2,
    )
    assert [e["eventId"] for e in items] == [e["eventId"] for e in reversed(page["data"])]
    assert len(pages) == 2
    empty = assert_ok(
        await client.post(
            "/v1/world/events/list-by-correlation", json={"correlationId": new_id("wait_")}
        )
    )
    assert empty["data"] == [] and empty["hasMore"] is False
    scoped = assert_ok(
        await client.post(
            "/v1/world/events/list-by-correlation", json={"correlationId": corr, "runId": second}
        )
    )
    assert [(e["runId"], e["eventType"]) for e in scoped["data"]] == [(second, "wait_created")]
    assert_error(
        await client.post(
            "/v1/world/events/list-by-correlation", json={"correlationId": corr, "runId": 7}
        ),
        400,
        "invalid_request",
    )


async def test_stale_state_updated_at_is_412_and_occurred_at_is_kept(
    client: httpx.AsyncClient,
) -> None:
    run_id = (await new_run(client))["runId"]
    await ok_event(client, run_id, "run_started")
    hook_id = new_id("hook_")
    hooked = await ok_event(client, run_id, "hook_created", hook_id, {"token": f"t-{hook_id}"})
    loaded = int(parse_iso(hooked["event"]["createdAt"]).timestamp() * 1000)
    await asyncio.sleep(0.01)
    received = await ok_event(client, run_id, "hook_received", hook_id, {"payload": env(b"p")})
    marker = int(parse_iso(received["event"]["createdAt"]).timestamp() * 1000)
    wait = {"resumeAt": iso(datetime.now(UTC))}
    stale = await create_event(
        client, run_id, "wait_created", new_id("wait_"), wait, params={"stateUpdatedAt": loaded}
    )
    body = assert_error(stale, 412, "precondition_failed", "PreconditionFailedError")
    assert body["details"]["latestExternalEventAt"] == marker
    occurred = "2026-01-02T03:04:05.678Z"
    params = {"stateUpdatedAt": marker, "occurredAt": occurred, "requestId": "req-1",
              "v1Compat": False, "skipPreload": True}  # fmt: skip
    fresh = await ok_event(client, run_id, "wait_created", new_id("wait_"), wait, params=params)
    assert fresh["event"]["occurredAt"] == occurred
    assert (await run_events(client, run_id))[-1]["occurredAt"] == occurred
    assert "occurredAt" not in (await run_events(client, run_id))[0]
    for bad in (
        {"stateUpdatedAt": "soon"},
        {"stateUpdatedAt": -1},
        {"occurredAt": "yesterday"},
        {"occurredAt": True},
        {"requestId": 5},
        {"requestId": "r" * 256},
        {"sinceCursor": "not a cursor"},
        {"sinceCursor": 3},
    ):
        refused = await create_event(client, run_id, "wait_created", new_id("wait_"), wait,
                                     params=bad)  # fmt: skip
        field = assert_error(refused, 400, "invalid_request")["details"]["field"]
        assert field == f"params.{next(iter(bad))}", (bad, field)


async def test_events_get_by_id(client: httpx.AsyncClient) -> None:
    run_id = (await new_run(client))["runId"]
    step_id = new_id("step_")
    created = await ok_event(
        client, run_id, "step_created", step_id, {"stepName": "s", "input": env(b"\x00in")}
    )
    event = created["event"]
    path = f"/v1/world/events/{event['eventId']}"
    assert assert_ok(await client.get(path, params={"runId": run_id})) == event
    assert assert_ok(await client.get(path)) == event
    stripped = assert_ok(await client.get(path, params={"runId": run_id, "resolveData": "none"}))
    assert stripped["eventData"] == {"stepName": "s"}
    other = (await new_run(client))["runId"]
    assert_error(await client.get(path, params={"runId": other}), 404, "event_not_found")
    unknown = await client.get(f"/v1/world/events/{new_id('evnt_')}", params={"runId": run_id})
    assert_error(unknown, 404, "event_not_found")
    bad = await client.get(path, params={"resolveData": "some"})
    assert_error(bad, 400, "invalid_request")


# -- runs/list ------------------------------------------------------------------------------


async def test_runs_list_filters_pagination_and_resolve_data(client: httpx.AsyncClient) -> None:
    alpha = [(await new_run(client, workflow_name="alpha"))["runId"] for _ in range(3)]
    beta = [(await new_run(client, workflow_name="beta"))["runId"] for _ in range(2)]
    await ok_event(client, alpha[0], "run_started")
    await ok_event(client, beta[1], "run_failed", event_data={"error": "bad", "errorCode": "E1"})

    items, pages = await list_all(client, "/v1/world/runs/list", {}, limit=2)
    assert [run["runId"] for run in items] == list(reversed(alpha + beta))  # default desc
    assert len(pages) == 3 and len({run["runId"] for run in items}) == 5

    by_name = assert_ok(await client.post("/v1/world/runs/list", json={"workflowName": "alpha"}))
    assert [run["runId"] for run in by_name["data"]] == list(reversed(alpha))
    running = assert_ok(await client.post("/v1/world/runs/list", json={"status": "running"}))
    assert [run["runId"] for run in running["data"]] == [alpha[0]]
    both = assert_ok(
        await client.post("/v1/world/runs/list", json={"workflowName": "beta", "status": "failed"})
    )
    assert [run["runId"] for run in both["data"]] == [beta[1]]
    asc = assert_ok(
        await client.post("/v1/world/runs/list", json={"pagination": {"sortOrder": "asc"}})
    )
    assert [run["runId"] for run in asc["data"]] == alpha + beta

    none = assert_ok(await client.post("/v1/world/runs/list", json={"resolveData": "none"}))
    assert len(none["data"]) == 5
    assert all("input" not in run and "output" not in run for run in none["data"])
    failed = next(run for run in none["data"] if run["runId"] == beta[1])
    assert failed["error"] == {"message": "bad", "code": "E1"}

    # the cursor of the last page, reused after more runs, returns only the new ones
    asc_items, asc_pages = await list_all(
        client, "/v1/world/runs/list", {"pagination": {"sortOrder": "asc"}}, limit=2
    )
    assert len(asc_items) == 5
    newer = (await new_run(client))["runId"]
    resumed = assert_ok(
        await client.post(
            "/v1/world/runs/list",
            json={"pagination": {"sortOrder": "asc", "cursor": asc_pages[-1]["cursor"]}},
        )
    )
    assert [run["runId"] for run in resumed["data"]] == [newer]


# -- bytes ----------------------------------------------------------------------------------


async def test_bytes_round_trip_at_nested_depth(client: httpx.AsyncClient) -> None:
    every_byte = bytes(range(256))
    payload = {
        "top": env(every_byte),
        "list": [1, "two", env(b""), {"deeper": [[env(b"\x00\x00\xff")]]}],
        "plain": {"__type": "NotBytes", "data": "stays JSON"},
        "unicode": "żółw \u2603",
    }
    run = await new_run(client, input=payload)
    assert run["input"] == payload
    assert unenv(run["input"]["top"]) == every_byte
    fetched = assert_ok(await client.get(f"/v1/world/runs/{run['runId']}"))
    assert fetched["input"] == payload
    events = await run_events(client, run["runId"])
    assert events[0]["eventData"]["input"] == payload

    step_id = new_id("step_")
    await ok_event(
        client, run["runId"], "step_created", step_id, {"stepName": "s", "input": payload}
    )
    await ok_event(client, run["runId"], "step_started", step_id)
    done = await ok_event(client, run["runId"], "step_completed", step_id, {"result": payload})
    assert done["step"]["output"] == payload
    step = assert_ok(await client.get(f"/v1/world/steps/{step_id}"))
    assert step["input"] == payload and step["output"] == payload


# -- encryption key, deployment id, queue ---------------------------------------------------


async def test_encryption_key_is_stable_per_run(client: httpx.AsyncClient) -> None:
    run_id = (await new_run(client))["runId"]
    other = (await new_run(client))["runId"]
    first = assert_ok(await client.post("/v1/world/encryption-key", json={"runId": run_id}))
    second = assert_ok(await client.post("/v1/world/encryption-key", json={"runId": run_id}))
    assert first == second
    key = base64.b64decode(first["key"], validate=True)
    assert len(key) == 32
    explicit = assert_ok(
        await client.post(
            "/v1/world/encryption-key", json={"runId": run_id, "deploymentId": DEPLOYMENT}
        )
    )
    assert explicit["key"] == first["key"]
    different = assert_ok(await client.post("/v1/world/encryption-key", json={"runId": other}))
    assert different["key"] != first["key"]
    assert len(base64.b64decode(different["key"])) == 32


async def test_encryption_key_survives_a_restart(start_server: Any, tmp_path: Any) -> None:
    from .conftest import make_client

    server = await start_server(encryption_secret=base64.b64encode(b"s" * 32).decode())
    async with make_client(server.url) as http:
        run_id = (await new_run(http))["runId"]
        key = assert_ok(await http.post("/v1/world/encryption-key", json={"runId": run_id}))
    again = await start_server(encryption_secret=base64.b64encode(b"s" * 32).decode())
    async with make_client(again.url) as http:
        same = assert_ok(await http.post("/v1/world/encryption-key", json={"runId": run_id}))
    assert same == key


async def test_deployment_id_without_an_active_deployment(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/v1/world/deployment-id"), 404, "no_active_deployment")


async def test_queue_publish_ids_and_idempotency(client: httpx.AsyncClient) -> None:
    message = {"runId": new_id("wrun_"), "blob": env(b"\x01\x02")}
    first = assert_ok(
        await client.post(
            "/v1/queue/publish",
            json={"queueName": "__wkf_workflow_order", "message": message},
        )
    )
    assert re.fullmatch(f"msg_{ULID_RE}", first["messageId"]), first
    keyed = {
        "queueName": "__wkf_step_order",
        "message": message,
        "opts": {"idempotencyKey": "step-1-attempt-1", "delaySeconds": 30},
    }
    one = assert_ok(await client.post("/v1/queue/publish", json=keyed))
    two = assert_ok(await client.post("/v1/queue/publish", json=keyed))
    assert one["messageId"] == two["messageId"] != first["messageId"]
    three = assert_ok(
        await client.post(
            "/v1/queue/publish",
            json={**keyed, "opts": {"idempotencyKey": "step-1-attempt-2"}},
        )
    )
    assert three["messageId"] not in (one["messageId"], first["messageId"])

    for name in ("orders", "__wkf_other_x", "__wkf_workflow_bad name", ""):
        body = assert_error(
            await client.post("/v1/queue/publish", json={"queueName": name, "message": {}}),
            400,
            "invalid_request",
        )
        assert body["details"]["field"] == "queueName"
    body = assert_error(
        await client.post("/v1/queue/publish", json={"queueName": "__wkf_workflow_x"}),
        400,
        "invalid_request",
    )
    assert body["details"]["field"] == "message"


async def test_unfiltered_lists(client: httpx.AsyncClient) -> None:
    await new_run(client)
    assert len(assert_ok(await client.post("/v1/world/runs/list", json={}))["data"]) == 1
    assert assert_ok(await client.post("/v1/world/hooks/list", json={}))["data"] == []


async def test_steps_on_a_terminal_run(client: httpx.AsyncClient) -> None:
    run_id = (await new_run(client))["runId"]
    running, pending, failing = new_id("step_"), new_id("step_"), new_id("step_")
    for step_id in (running, pending, failing):
        await ok_event(client, run_id, "step_created", step_id, {"stepName": "s", "input": 1})
    await ok_event(client, run_id, "step_started", running)
    await ok_event(client, run_id, "step_started", failing)
    await ok_event(client, run_id, "run_cancelled")

    done = await ok_event(client, run_id, "step_completed", running, {"result": env(b"late")})
    assert done["step"]["status"] == "completed"
    assert_error(
        await create_event(client, run_id, "step_started", pending),
        410,
        "run_expired",
        "RunExpiredError",
    )
    failed = await ok_event(client, run_id, "step_failed", failing, {"error": "late"})
    assert failed["step"]["status"] == "failed"
    assert failed["step"]["error"]["message"] == "late"


# -- @workflow/world 5.0 (spec 4-5) ---------------------------------------------------------


async def test_a_spec_5_run_over_the_wire(client: httpx.AsyncClient) -> None:
    gzipped = env(gzip.compress(b'devl["result"]'))
    lineage = {"$rootRunId": "wrun_root", "team": "payments"}
    created = await ok_event(
        client, None, "run_created", event_data={
            "deploymentId": DEPLOYMENT, "workflowName": WORKFLOW, "input": gzipped,
            "attributes": lineage, "allowReservedAttributes": True,
        }, spec_version=5,
    )  # fmt: skip
    run = created["run"]
    run_id = run["runId"]
    assert (run["specVersion"], run["attributes"], run["input"]) == (5, lineage, gzipped)
    assert created["maxEvents"] == 25_000
    await ok_event(client, run_id, "run_started", spec_version=5)

    step_id = new_id("step_")
    lazy = {"stepName": "s", "input": gzipped, "workflowName": WORKFLOW}
    started = await ok_event(client, run_id, "step_started", step_id, lazy, spec_version=5)
    assert started["stepCreated"] is True
    assert (started["step"]["status"], started["step"]["attempt"]) == ("running", 1)
    assert started["event"]["eventData"] == {"stepName": "s", "workflowName": WORKFLOW}
    again = await create_event(client, run_id, "step_started", step_id, lazy, spec_version=5)
    assert_error(again, 409, "entity_conflict", "EntityConflictError")
    assert _types(await run_events(client, run_id))[-2:] == ["step_created", "step_started"]
    before = assert_ok(await client.post("/v1/world/events/list", json={"runId": run_id}))
    step_two = new_id("step_")
    await ok_event(client, run_id, "step_started", step_two, lazy, spec_version=5)
    since = {"sinceCursor": before["cursor"]}
    delta = await ok_event(client, run_id, "step_completed", step_two, {"result": gzipped},
                           params=since)  # fmt: skip
    assert _types(delta["events"]) == ["step_created", "step_started", "step_completed"]
    assert delta["hasMore"] is False and isinstance(delta["cursor"], str)
    done = await ok_event(client, run_id, "step_completed", step_id, {"result": gzipped})
    assert "stepCreated" not in done and done["step"]["output"] == gzipped
    assert "events" not in done and "cursor" not in done

    changes = [{"key": "team", "value": None}, {"key": "stage", "value": "2"}]
    attr_data = {"changes": changes, "writer": {"type": "workflow"}}
    attr = await ok_event(client, run_id, "attr_set", None, attr_data, spec_version=5)
    assert attr["run"]["attributes"] == {"$rootRunId": "wrun_root", "stage": "2"}
    assert attr["event"]["eventType"] == "attr_set"
    path = f"/v1/world/runs/{run_id}/attributes"
    merged = assert_ok(await client.post(path, json={"changes": [{"key": "x", "value": "y"}]}))
    assert merged == {"attributes": {"$rootRunId": "wrun_root", "stage": "2", "x": "y"}}
    refused = await client.post(path, json={"changes": [{"key": "$p", "value": "y"}]})
    assert assert_error(refused, 400, "invalid_request")["details"]["field"] == "changes"
    assert_error(await client.post(path, json={}), 400, "invalid_request")
    unknown = await client.post(f"/v1/world/runs/{new_id('wrun_')}/attributes",
                                json={"changes": []})  # fmt: skip
    assert_error(unknown, 404, "run_not_found", "WorkflowRunNotFoundError")
    fetched = assert_ok(await client.get(f"/v1/world/runs/{run_id}"))
    assert fetched["attributes"] == merged["attributes"]

    thrown = env(b"encr" + bytes(range(30)))
    failure = {"error": thrown, "errorCode": "USER_ERROR"}
    failed = await ok_event(client, run_id, "run_failed", None, failure, spec_version=5)
    assert (failed["run"]["error"], failed["run"]["errorCode"]) == (thrown, "USER_ERROR")
    ended = await create_event(client, run_id, "attr_set", None,
                               {"changes": [], "writer": {"type": "workflow"}})  # fmt: skip
    assert_error(ended, 409, "entity_conflict")
    too_new = await create_event(
        client, None, "run_created",
        event_data={"deploymentId": DEPLOYMENT, "workflowName": WORKFLOW, "input": gzipped},
        spec_version=6,
    )  # fmt: skip
    body = assert_error(too_new, 422, "run_not_supported", "RunNotSupportedError")
    assert body["details"] == {"runSpecVersion": 6, "supportedSpecVersion": 5}
