"""Deployments, as far as the World needs them: the active pointer (world.md §7)."""

from __future__ import annotations

from typing import Protocol


class ActiveDeployment(Protocol):
    async def active_deployment_id(self) -> str | None: ...
