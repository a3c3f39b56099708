"""CheckHealth: is the database reachable, is the artifact store writable, which
deployment is active. Answers are reused for a second, so that probes hitting
``/v1/health`` often cost one check, not one per request."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from compute_worker.domain.ports.deployments import ActiveDeployment

Probe = Callable[[], Awaitable[None]]
CACHE_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Health:
    checks: dict[str, str]
    active_deployment_id: str | None

    @property
    def healthy(self) -> bool:
        return all(state == "ok" for state in self.checks.values())


class CheckHealth:
    def __init__(self, probes: Mapping[str, Probe], deployments: ActiveDeployment) -> None:
        self._probes = probes
        self._deployments = deployments
        self._last: tuple[float, Health] | None = None

    async def execute(self) -> Health:
        now = time.monotonic()
        if self._last is not None and now - self._last[0] < CACHE_SECONDS:
            return self._last[1]
        checks = {}
        for name, probe in self._probes.items():
            try:
                await probe()
                checks[name] = "ok"
            except Exception:
                checks[name] = "unavailable"
        active = None
        if checks.get("database") == "ok":
            try:
                active = await self._deployments.active_deployment_id()
            except Exception:
                checks["database"] = "unavailable"
        health = Health(checks, active)
        self._last = (now, health)
        return health
