"""``GET /metrics``: the Prometheus text exposition (``adapters.observability``).

Who may scrape is the ``metrics_access`` setting: ``loopback`` (the default) serves
clients on the loopback interface without a key and asks others for a key holding
``runs:read``; ``key`` asks every client for one; ``open`` asks no one. Outside the
OpenAPI document: it is not JSON and not part of the versioned API.
"""

from __future__ import annotations

import ipaddress

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from compute_worker.adapters.http.auth import with_access
from compute_worker.adapters.http.services import services

METRICS_SCOPE = "runs:read"


async def _exposition(request: Request) -> Response:
    body, content_type = await services(request).metrics.exposition()
    return Response(body, media_type=content_type)


_open = with_access(_exposition, None, None)
_keyed = with_access(_exposition, METRICS_SCOPE, None)


def _loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    return (mapped or address).is_loopback


async def metrics(request: Request) -> Response:
    access = services(request).metrics_access
    if access == "open" or (access == "loopback" and _loopback(request)):
        return await _open(request)
    return await _keyed(request)


ROUTES = [Route("/metrics", metrics, methods=["GET"], name="metrics")]
