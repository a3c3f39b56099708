"""The strict remote guard: in production the server refuses to start unless
``WORKFLOW_TARGET_WORLD`` names the world it was configured to be."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from compute_worker.app.errors import StartupError
from compute_worker.app.settings import Settings

log = logging.getLogger(__name__)


class StartupRefused(StartupError):
    """The configuration is unsafe to serve with; the message says what to fix (exit 2:
    a setting or the environment's WORKFLOW_TARGET_WORLD must change)."""

    exit_code = 2


def in_production(env: Mapping[str, str]) -> bool:
    return "production" in (env.get("NODE_ENV", ""), env.get("COMPUTE_WORKER_ENV", ""))


def check_target_world(settings: Settings, env: Mapping[str, str] | None = None) -> None:
    env = os.environ if env is None else env
    target = env.get("WORKFLOW_TARGET_WORLD")
    expected = settings.expected_target_world
    if expected is not None and target == expected:
        return
    problem = (
        f"WORKFLOW_TARGET_WORLD is {target!r} but this server expects {expected!r} "
        "(option expected_target_world / COMPUTE_WORKER_EXPECTED_TARGET_WORLD)"
        if expected is not None
        else "expected_target_world is not configured, so WORKFLOW_TARGET_WORLD cannot be checked"
    )
    if in_production(env):
        raise StartupRefused(f"refusing to start in production: {problem}")
    if expected is not None or target is not None:
        log.warning("target world check: %s", problem)
