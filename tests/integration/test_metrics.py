"""``GET /metrics`` on a real server: the Prometheus text exposition, scraped before and
after runs happen, and who may scrape it (the ``metrics_access`` setting)."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ._helpers import assert_error
from .public_fixtures import (
    ONLY_KEYS,
    SECOND_KEY,
    WITHOUT_KEYS,
    PublicServer,
    PublicServers,
    deploy,
    started_run,
    wait_for_hook,
    wait_for_run,
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every series of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in samples.items() if n == name and wanted <= have)


async def test_metrics_move_as_runs_happen(api_server: PublicServer) -> None:
    async with api_server.client() as api, api_server.client(key=None) as anon:
        await deploy(api)
        before = await scrape(anon)  # loopback: no key needed
        assert value(before, "compute_worker_runs_started_total", workflow="adder") == 0
        assert value(before, "compute_worker_hooks_pending") == 0

        run_id = await started_run(api, "adder", 2, 3)
        await wait_for_run(api, run_id)
        token = f"tok-{uuid.uuid4()}"
        hooked = await started_run(api, "wait_for_hook", token)
        await wait_for_hook(api, token)
        after = await scrape(anon)

    assert value(after, "compute_worker_runs_started_total", workflow="adder") == 1
    assert value(after, "compute_worker_runs_finished_total", workflow="adder",
                 status="completed") == 1  # fmt: skip
    assert value(after, "compute_worker_run_duration_seconds_count", workflow="adder",
                 status="completed") == 1  # fmt: skip
    assert value(after, "compute_worker_runs", workflow="adder", status="completed") == 1
    assert value(after, "compute_worker_runs", workflow="wait_for_hook", status="running") == 1
    assert value(after, "compute_worker_hooks_pending") == 1
    assert total(after, "compute_worker_step_attempts_total") >= 1
    assert total(after, "compute_worker_step_duration_seconds_count", status="completed") >= 1
    steps = {dict(labels)["step"] for name, labels in after
             if name == "compute_worker_step_duration_seconds_count"}  # fmt: skip
    assert any("add" in step for step in steps), steps
    # HTTP: by route template, never the raw path (run ids would make series without end)
    polled = total(after, "compute_worker_http_requests_total", method="GET",
                   route="/v1/runs/{run_id}", status="200")  # fmt: skip
    assert polled >= 1
    assert total(after, "compute_worker_http_requests_total", route="/v1/runs", status="202") == 2
    assert not any(run_id in dict(labels).get("route", "") for _, labels in after)
    latency = "compute_worker_http_request_duration_seconds_count"
    assert value(after, latency, method="POST", route="/v1/runs") == 2
    assert hooked


async def test_queue_backlog_and_its_age(api_server: PublicServer) -> None:
    """Messages on a queue no engine consumes: ready ones age, delayed ones wait."""
    queue = "__wkf_step_backlog"  # not a workflow queue: the engine claims none of it
    async with api_server.client() as api, api_server.client(key=None) as anon:
        for delay in (0, 0, 3600):
            body = {"queueName": queue, "message": {"n": delay}, "opts": {"delaySeconds": delay}}
            assert (await api.post("/v1/queue/publish", json=body)).status_code == 200
        await asyncio.sleep(0.3)
        samples = await scrape(anon)
    assert value(samples, "compute_worker_queue_messages", queue=queue, state="ready") == 2
    assert value(samples, "compute_worker_queue_messages", queue=queue, state="delayed") == 1
    assert value(samples, "compute_worker_queue_messages", queue=queue, state="leased") == 0
    age = value(samples, "compute_worker_queue_oldest_ready_age_seconds", queue=queue)
    assert 0.2 <= age < 60


async def test_unmatched_paths_share_one_route_label(api_server: PublicServer) -> None:
    async with api_server.client(key=None) as anon:
        for _ in range(3):
            assert (await anon.get(f"/no/such/{uuid.uuid4()}")).status_code == 404
        samples = await scrape(anon)
    assert value(samples, "compute_worker_http_requests_total", method="GET",
                 route="unmatched", status="404") == 3  # fmt: skip


@pytest.mark.parametrize("access", ["key", "open"])
async def test_metrics_access_setting(servers: PublicServers, access: str) -> None:
    server = await servers.start(metrics_access=access)
    async with server.client(key=None) as anon:
        response = await anon.get("/metrics")
    if access == "open":
        assert response.status_code == 200
        return
    assert_error(response, 401, "unauthorized")
    async with server.client(key=WITHOUT_KEYS["runs:read"]) as without:
        assert_error(await without.get("/metrics"), 403, "forbidden")
    for key in (SECOND_KEY, ONLY_KEYS["runs:read"]):
        async with server.client(key=key) as reader:
            samples = await scrape(reader)
        assert any(name == "compute_worker_hooks_pending" for name, _ in samples)


SPINS = """
from compute_worker import StepFailedError, step, workflow

@step(max_retries=0, timeout=0.5)
async def spin():
    while True:
        pass

@workflow
async def hangs():
    try:
        return await spin()
    except StepFailedError:
        return "killed"

@workflow
async def quick():
    return 1
"""


async def test_child_processes_and_commit_batches(servers: PublicServers) -> None:
    """The process backend's children (alive, started new or as a restart, killed by why)
    and the group-commit writer's batch sizes and latency."""
    server = await servers.start(worldcompute="process", process_children=1)
    async with server.client() as api, server.client(key=None) as anon:
        await deploy(api, SPINS)
        await wait_for_run(api, await started_run(api, "quick"))
        first = await scrape(anon)
        killed = await started_run(api, "hangs")
        assert (await wait_for_run(api, killed))["output"] == "killed"
        await wait_for_run(api, await started_run(api, "quick"))
        after = await scrape(anon)

    assert value(first, "compute_worker_child_processes") == 1
    assert value(first, "compute_worker_child_processes_started_total", why="new") == 1
    assert value(after, "compute_worker_child_processes_killed_total", why="step_timeout") == 1
    assert value(after, "compute_worker_child_processes_started_total", why="restart") == 1
    assert value(after, "compute_worker_child_processes") == 1  # the killed one is gone
    batches = value(after, "compute_worker_db_commit_batch_units_count")
    units = value(after, "compute_worker_db_commit_batch_units_sum")
    assert batches > value(first, "compute_worker_db_commit_batch_units_count") > 0
    assert units >= batches
    assert value(after, "compute_worker_db_commit_duration_seconds_count") == batches
    assert value(after, "compute_worker_db_commit_duration_seconds_sum") > 0
