"""The public lane (http-api.md): health, runs, deployments, webhooks.
Handlers parse, call one use case, render."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from adapters import bundles
from adapters.http import openapi, wire
from adapters.http.auth import public, request_context, requires
from adapters.http.wire import JSONResponse, field, read_object, resolve_data
from domain import errors
from domain.deployments import MAX_BUNDLE_BYTES, Deployment
from domain.use_cases.deployments import NewDeployment
from domain.use_cases.trigger_run import Trigger

ZIP_TYPES = ("application/zip", "application/x-zip-compressed")
# read as JSON like every other route: curl -d sends form-urlencoded unless told otherwise
JSON_TYPES = ("application/json", "", "application/x-www-form-urlencoded", "text/plain")
GZIP_TYPES = ("application/gzip", "application/x-gzip", "application/x-tar+gzip")


@public
async def health(request: Request) -> Response:
    found = await request.state.container.check_health().execute()
    settings = request.state.settings
    body = {
        "status": "ok" if found.healthy else "degraded",
        "version": settings.version,
        "world": settings.target_world,
        "activeDeploymentId": found.active_deployment_id,
        "checks": found.checks,
    }
    return JSONResponse(body, status_code=200 if found.healthy else 503)


async def _body(request: Request) -> dict[str, Any]:
    return await read_object(request, request.state.settings.max_body_bytes)


def _run_response(run: Any, status: int = 200, **headers: str) -> Response:
    return JSONResponse(wire.public_run_wire(run), status_code=status, headers=headers)


@requires("trigger:write", action="runs.trigger")
async def trigger_run(request: Request) -> Response:
    body = await _body(request)
    run_input = body.get("input", [])
    if not isinstance(run_input, list):
        raise errors.InvalidRequest("input must be an array", {"field": "input"})
    command = Trigger(
        workflow_name=field(body, "workflowName", str, required=True),
        idempotency_key=request.headers.get("idempotency-key"),
        scope=request.state.api_key.key_id,
        input=run_input,
        deployment_id=field(body, "deploymentId", str),
        execution_context=field(body, "executionContext", dict),
    )
    result = await request.state.container.trigger_run().execute(command, request_context(request))
    headers = {"Location": f"/v1/runs/{result.run.run_id}"}
    if result.replayed:
        headers["Idempotency-Replayed"] = "true"
    return _run_response(result.run, 202, **headers)


@requires("runs:read")
async def get_run(request: Request) -> Response:
    resolve = resolve_data(request.query_params.get("resolveData"))
    container = request.state.container
    run_id = request.path_params["run_id"]
    run = await container.query_world().get_run(run_id)
    execution = None if run.is_terminal else await container.query_world().get_execution(run_id)
    return JSONResponse(wire.public_run_wire(run, resolve, execution, container.retry_policy()))


@requires("runs:write", action="runs.cancel")
async def cancel_run(request: Request) -> Response:
    run = await request.state.container.cancel_run().execute(
        request.path_params["run_id"], request_context(request)
    )
    return _run_response(run)


@requires("runs:write", action="runs.resume")
async def resume_run(request: Request) -> Response:
    body = await _body(request)
    token = field(body, "token", str, required=True)
    resumed = await request.state.container.resume_hook().execute(
        token, body.get("payload"), request_context(request)
    )
    return JSONResponse(
        {"runId": resumed.run_id, "hookId": resumed.hook_id, "token": resumed.token},
        status_code=202,
    )


async def _new_deployment(request: Request) -> NewDeployment:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in ZIP_TYPES or content_type in GZIP_TYPES:
        raw = await wire.read_bytes(request, MAX_BUNDLE_BYTES)
        files = (
            bundles.files_from_zip(raw) if content_type in ZIP_TYPES
            else bundles.files_from_targz(raw)
        )  # fmt: skip
        manifest = bundles.read_manifest(files)
        metadata = manifest.get("metadata")
        return NewDeployment(
            kind=request.query_params.get("kind") or manifest.get("kind") or "python",
            files=files,
            entrypoint=request.query_params.get("entrypoint") or manifest.get("entrypoint"),
            metadata=metadata if isinstance(metadata, dict) else None,
        )
    if content_type not in JSON_TYPES and not content_type.endswith("+json"):
        raise errors.InvalidRequest(
            "Upload a bundle as application/json, application/zip or application/gzip",
            {"field": "content-type"},
        )
    body = await read_object(request, max(request.state.settings.max_body_bytes, MAX_BUNDLE_BYTES))
    return NewDeployment(
        kind=field(body, "kind", str) or "python",
        files=bundles.files_from_json(field(body, "files", dict, required=True)),
        entrypoint=field(body, "entrypoint", str),
        metadata=field(body, "metadata", dict),
    )


def _deployment_response(deployment: Deployment, status: int = 200) -> Response:
    return JSONResponse(wire.deployment_wire(deployment), status_code=status)


@requires("deploy:write", action="deployments.create")
async def create_deployment(request: Request) -> Response:
    command = await _new_deployment(request)
    deployment = await request.state.container.create_deployment().execute(
        command, request_context(request)
    )
    return _deployment_response(deployment, 201)


@requires("deploy:write", action="deployments.activate")
async def activate_deployment(request: Request) -> Response:
    deployment = await request.state.container.activate_deployment().execute(
        request.path_params["deployment_id"], request_context(request)
    )
    return _deployment_response(deployment)


@requires("deploy:read")
async def get_deployment(request: Request) -> Response:
    deployment = await request.state.container.get_deployment().execute(
        request.path_params["deployment_id"]
    )
    return _deployment_response(deployment)


@public
async def receive_webhook(request: Request) -> Response:
    body = await wire.read_bytes(request, request.state.settings.max_body_bytes)
    headers = {key.lower(): value for key, value in request.headers.items()}
    delivered = await request.state.container.receive_webhook().execute(
        request.path_params["provider"], headers, body, request_context(request)
    )
    if delivered.duplicate:
        return JSONResponse({"duplicate": True, "deliveryId": delivered.delivery_id})
    answer: dict[str, Any] = {"deliveryId": delivered.delivery_id}
    if delivered.run_id is not None:
        answer["runId"] = delivered.run_id
    return JSONResponse(answer, status_code=202)


ROUTES = [
    Route("/v1/health", health, methods=["GET"]),
    Route("/v1/openapi.json", public(openapi.openapi), methods=["GET"]),
    Route("/v1/runs", trigger_run, methods=["POST"]),
    Route("/v1/runs/resume", resume_run, methods=["POST"]),
    Route("/v1/runs/{run_id}", get_run, methods=["GET"]),
    Route("/v1/runs/{run_id}/cancel", cancel_run, methods=["POST"]),
    Route("/v1/deployments", create_deployment, methods=["POST"]),
    Route("/v1/deployments/{deployment_id}", get_deployment, methods=["GET"]),
    Route("/v1/deployments/{deployment_id}/activate", activate_deployment, methods=["POST"]),
    Route("/v1/webhooks/{provider}", receive_webhook, methods=["POST"]),
]
