"""``/ui``: the operator's dashboard, plain HTML, CSS and JavaScript modules shipped in
the package (``adapters/http/ui/``, no build step) and served from memory.

The page calls the public API with the API key the operator enters (kept in the tab's
session storage, sent as ``Authorization: Bearer``), so it can do exactly what that key
may. Served with a strict Content-Security-Policy: scripts, styles and requests only from
the worker itself, nothing inline, no frames, no forms posting elsewhere. The assets are
public (they hold no data); every datum comes through the API. Outside the OpenAPI
document, like ``/metrics``.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
    "Cross-Origin-Opener-Policy": "same-origin",
}
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}


@cache
def assets() -> dict[str, tuple[bytes, str]]:
    """Every asset by file name, read once on first use."""
    folder = resources.files("compute_worker.adapters.http").joinpath("ui")
    found: dict[str, tuple[bytes, str]] = {}
    for entry in folder.iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if entry.is_file() and suffix in TYPES:
            found[entry.name] = (entry.read_bytes(), TYPES[suffix])
    return found


def _asset(name: str) -> Response:
    found = assets().get(name)
    if found is None:
        return Response("not found", 404, headers=HEADERS, media_type="text/plain")
    body, content_type = found
    return Response(body, headers=HEADERS, media_type=content_type)


async def index(request: Request) -> Response:
    return _asset("index.html")


async def asset(request: Request) -> Response:
    return _asset(request.path_params["name"])


async def to_index(request: Request) -> Response:
    return RedirectResponse("/ui/", 308)


ROUTES = [
    Route("/ui", to_index, methods=["GET"], name="ui_redirect"),
    Route("/ui/", index, methods=["GET"], name="ui"),
    Route("/ui/{name}", asset, methods=["GET"], name="ui_asset"),
]
