"""The Python client end to end, against a running server (``make run``):

    .venv/bin/python examples/client_quickstart.py [--url URL] [--key KEY]

It deploys ``examples/orders`` (zipped by the client), activates it, triggers
``checkout``, follows its ``progress`` stream live, approves the order through the
hook the run waits on, and prints the run's output. The URL defaults to
``COMPUTE_WORKER_URL`` or http://127.0.0.1:8080; the key to
``COMPUTE_WORKER_API_KEY`` or the development key ``make run`` wrote to
``data/dev-api-key``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path

from compute_worker.client import Client, ComputeClientError, Hook

HERE = Path(__file__).resolve().parent


def api_key(given: str | None) -> str | None:
    if given:
        return given
    if os.environ.get("COMPUTE_WORKER_API_KEY"):
        return os.environ["COMPUTE_WORKER_API_KEY"]
    dev_key = Path("data/dev-api-key")
    return dev_key.read_text().strip() if dev_key.is_file() else None


def wait_for_hook(cw: Client, run_id: str, within: float = 30.0) -> Hook:
    deadline = time.monotonic() + within
    while True:
        hooks = cw.runs.hooks(run_id)
        if hooks:
            return hooks[0]
        if time.monotonic() > deadline:
            raise SystemExit(f"run {run_id} created no hook within {within} s")
        time.sleep(0.1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="server URL (default: COMPUTE_WORKER_URL or :8080)")
    parser.add_argument("--key", help="API key (default: COMPUTE_WORKER_API_KEY or the dev key)")
    args = parser.parse_args()

    with Client(args.url, api_key(args.key), timeout=30) as cw:
        print(f"server {cw.url}: {cw.health().status}")
        deployment = cw.deployments.create(HERE / "orders", activate=True)
        names = ", ".join(deployment.workflow_names())
        print(f"deployed {deployment.deployment_id} ({names}), active: {deployment.active}")

        order = f"order-{uuid.uuid4().hex[:8]}"
        run = cw.runs.trigger("checkout", order)
        print(f"triggered {run.run_id} (idempotency key {run.idempotency_key})")

        with cw.runs.stream(run.run_id, "progress") as progress:
            for chunk in progress:  # live, as the run writes it
                print("  progress:", chunk.decode().rstrip())
                if b"waiting for approval" in chunk:
                    break
        hook = wait_for_hook(cw, run.run_id)  # the run creates it right after saying so
        print(f"the run waits on hook {hook.hook_id} (token {hook.token})")
        cw.hooks.resume(hook.token or f"approve:{order}", {"approved": True, "by": "quickstart"})

        done = cw.runs.wait(run.run_id, timeout=60)
        for chunk in cw.runs.stream(run.run_id, "progress", start_index=2):
            print("  progress:", chunk.decode().rstrip())
        print(f"run {done.run_id} {done.status}: {done.output}")
        steps = ", ".join(f"{s.step_name} ({s.status})" for s in cw.runs.steps(run.run_id))
        print(f"steps: {steps}")
        return 0 if done.status == "completed" else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ComputeClientError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(3)
