"""Outbound requests on someone's behalf: ``app_delivery`` (queue deliveries to WDK apps)
over the guarded client, which lives in ``adapters.guarded_http`` so that graph
``http_request`` nodes (``adapters.worldcompute``) use the same one."""

from __future__ import annotations

from compute_worker.adapters.guarded_http import (
    DEFAULT_TIMEOUT,
    GuardedTransport,
    guarded_client,
    read_limited,
)

__all__ = ["DEFAULT_TIMEOUT", "GuardedTransport", "guarded_client", "read_limited"]
