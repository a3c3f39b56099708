"""Public lane routes that need no key: health."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from adapters.http.wire import JSONResponse


async def health(request: Request) -> Response:
    container = request.state.container
    checks = {"database": "ok"}
    try:
        await container.database().ping()
    except Exception:
        checks["database"] = "unavailable"
    healthy = all(value == "ok" for value in checks.values())
    active = None
    if checks["database"] == "ok":
        active = await container.deployments().active_deployment_id()
    return JSONResponse(
        {
            "status": "ok" if healthy else "degraded",
            "version": request.state.settings.version,
            "world": request.state.settings.target_world,
            "activeDeploymentId": active,
            "checks": checks,
        },
        status_code=200 if healthy else 503,
    )


ROUTES = [Route("/v1/health", health, methods=["GET"])]
