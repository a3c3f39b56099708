"""The child process that loads an untrusted bundle and lists its workflows.

``python -m compute_worker.adapters.worldcompute.bundles.describe <dir> <entrypoint>``,
started by ``SubprocessBundleLoader``. It caps its own memory, CPU time and file sizes first
(limits named by the environment), then imports the entrypoint from the bundle folder and
prints ``{"workflows": [{"name", "steps", "schedule"?}]}`` on the original stdout. Anything the
bundle prints goes to stderr so it cannot corrupt that answer. An import that fails
is answered ``{"error", "stack"}`` (``load_bundle``'s words, as a run would report
it) with exit status 1; a child killed by a limit answers nothing, and the parent
reports its exit and the tail of its stderr.
"""

from __future__ import annotations

import json
import os
import resource
import sys
from pathlib import Path
from typing import Any

from compute_worker.adapters.worldcompute.bundles.importer import BundleContents, load_bundle
from compute_worker.adapters.worldcompute.bundles.isolation import limit_resource
from compute_worker.adapters.worldcompute.runtime.failures import StartFailed

MEMORY_ENV = "COMPUTE_WORKER_LOADER_MEMORY_BYTES"
CPU_ENV = "COMPUTE_WORKER_LOADER_CPU_SECONDS"
FILE_SIZE_ENV = "COMPUTE_WORKER_LOADER_FILE_BYTES"


def describe(found: BundleContents) -> dict[str, Any]:
    steps = list(found.steps)
    workflows: list[dict[str, Any]] = []
    for spec in found.specs:
        workflow: dict[str, Any] = {"name": spec.name, "steps": steps}
        if spec.schedule is not None:
            workflow["schedule"] = {"cron": spec.schedule, "timezone": spec.timezone,
                                    "catchUp": spec.catch_up}  # fmt: skip
        workflows.append(workflow)
    return {"workflows": workflows}


def main(argv: list[str]) -> int:
    for kind, name in ((resource.RLIMIT_AS, MEMORY_ENV), (resource.RLIMIT_CPU, CPU_ENV),
                       (resource.RLIMIT_FSIZE, FILE_SIZE_ENV)):  # fmt: skip
        limit_resource(kind, int(os.environ.get(name) or 0))
    answer = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # the bundle's prints go to stderr
    sys.stdout = sys.stderr
    directory, entrypoint = argv
    folder = Path(directory)
    try:
        found = load_bundle(folder, entrypoint, keep_path=True)
    except StartFailed as failure:
        sys.stderr.write(failure.stack or failure.message)
        answer.write(json.dumps({"error": failure.message, "stack": failure.stack}))
        answer.close()
        return 1
    answer.write(json.dumps(describe(found)))
    answer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
