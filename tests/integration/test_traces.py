"""OpenTelemetry traces, collected with the SDK's in-memory exporter (the ``trace_exporter``
option): one trigger is one trace — the HTTP request continued from the caller's
``traceparent`` and answered with one, the run's execution and each step attempt with
its attributes — on both backends (whose World calls never leave the server: no
world-lane request is made for the run); tracing off without the OTEL variables."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from compute_worker import start_compute_worker_server
from compute_worker.adapters.observability.otel import TracingUnavailable, build_tracer, wanted

from .engine_fixtures import ENGINE_SEED_KEYS, EngineApi

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
WORKFLOWS = """
from compute_worker import RetryableError, run_metadata, step, workflow

@step
async def add(a, b):
    if run_metadata()["attempt"] == 1:
        raise RetryableError("not yet", retry_after=0.1)
    return a + b

@workflow
async def adder(a, b):
    return await add(a, b)
"""


def hex_id(value: int, width: int) -> str:
    return format(value, f"0{width}x")


def in_trace(spans: Sequence[ReadableSpan]) -> list[ReadableSpan]:
    return [s for s in spans if hex_id(s.context.trace_id, 32) == TRACE_ID]


def parent_of(span: ReadableSpan) -> str | None:
    return None if span.parent is None else hex_id(span.parent.span_id, 16)


def span_id(span: ReadableSpan) -> str:
    return hex_id(span.context.span_id, 16)


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


@pytest.mark.parametrize("worldcompute", ["local", "process"])
async def test_one_trigger_is_one_trace(tmp_path: Path, worldcompute: str) -> None:
    exporter = InMemorySpanExporter()
    handle = await start_compute_worker_server(
        port=0, data_dir=tmp_path / "data", seed_api_keys=ENGINE_SEED_KEYS,
        worldcompute=worldcompute, trace_exporter=exporter,
    )  # fmt: skip
    try:
        async with EngineApi(handle.url) as api:
            deployment = await api.deploy(WORKFLOWS)
            response = await api.http.post(
                "/v1/runs",
                json={"workflowName": "adder", "input": [2, 3]},
                headers={"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01",
                         "Idempotency-Key": uuid.uuid4().hex,
                         "x-workflow-correlation-id": "trace-test-1"},
            )  # fmt: skip
            assert response.status_code == 202, response.text
            answered = response.headers["traceparent"]
            run_id = response.json()["runId"]
            assert response.json()["executionContext"]["traceparent"] == answered
            finished = await api.finished(run_id)
            assert finished.get("output") == 5, finished
    finally:
        await handle.close()  # flushes the spans

    spans = in_trace(exporter.get_finished_spans())
    (trigger,) = [s for s in spans if s.name == "POST /v1/runs"]
    assert trigger.kind is SpanKind.SERVER
    assert parent_of(trigger) == CALLER_SPAN
    assert answered == f"00-{TRACE_ID}-{span_id(trigger)}-01"
    assert attrs(trigger)["workflow.correlation_id"] == "trace-test-1"
    assert attrs(trigger)["http.response.status_code"] == 202

    runs = [s for s in spans if s.name == "run adder"]
    assert runs and all(parent_of(s) == span_id(trigger) for s in runs)
    assert attrs(runs[0])["workflow.run_id"] == run_id
    assert attrs(runs[0])["workflow.deployment_id"] == deployment
    run_spans = {span_id(s) for s in runs}

    steps = sorted((s for s in spans if s.name.startswith("step ")),
                   key=lambda s: attrs(s)["workflow.step.attempt"])  # fmt: skip
    assert [attrs(s)["workflow.step.attempt"] for s in steps] == [1, 2]
    for step in steps:
        assert parent_of(step) in run_spans
        assert attrs(step)["workflow.run_id"] == run_id
        assert attrs(step)["workflow.deployment_id"] == deployment
        assert "add" in attrs(step)["workflow.step.name"]
        assert attrs(step)["workflow.correlation_id"].startswith("step_")
    assert steps[0].status.status_code is StatusCode.ERROR
    assert "not yet" in (steps[0].status.description or "")
    assert steps[1].status.status_code is not StatusCode.ERROR

    # a process child's World calls go over its pipe to the server, not the world lane
    assert not [s for s in spans if "/v1/world/" in s.name], [s.name for s in spans]


async def test_tracing_is_off_without_the_otel_variables(tmp_path: Path) -> None:
    assert not wanted({})
    assert not wanted({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "x"})
    assert wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert not build_tracer(environ={}).enabled
    with pytest.raises(TracingUnavailable, match="not supported"):
        build_tracer(environ={"OTEL_TRACES_EXPORTER": "zipkin"})
    handle = await start_compute_worker_server(port=0, data_dir=tmp_path / "data")
    try:
        async with EngineApi(handle.url) as api:
            response = await api.http.get("/v1/health")
        assert "traceparent" not in response.headers
    finally:
        await handle.close()
