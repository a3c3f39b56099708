#!/usr/bin/env bash
# Starts WDK's observability UI (@workflow/web) with world-compute as its World,
# so it lists the runs of the compute-worker at WORKER_URL.
# Usage: interop/web/start.sh WORKER_URL API_KEY [PORT]   (PORT 0 or absent: any free port)
# Prints "workflow-web listening on http://127.0.0.1:<port>". Needs Node >= 22.5 (node:sqlite).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export WORKFLOW_COMPUTE_URL="${1:?worker URL}" WORKFLOW_COMPUTE_API_KEY="${2:?API key with world:proxy}"
export WORKFLOW_WEB_PORT="${3:-0}" WORKFLOW_COMPUTE_SPEC_VERSION=3
# The UI receives no deliveries: no PORT, so world-compute announces no app URL.
unset PORT WORKFLOW_COMPUTE_APP_URL
export WORKFLOW_TARGET_WORLD="$(cd "$here/../world-compute" && pwd)/dist/index.js"
node_bin="$("$here/../scripts/node-bin.sh")"
[ -f "$WORKFLOW_TARGET_WORLD" ] || (cd "$here/../world-compute" && npm run build >&2)
[ -d "$here/node_modules/@workflow/web" ] || (cd "$here" && npm ci --ignore-scripts --no-audit --no-fund >&2)
cd "$here"
exec "$node_bin" start.mjs
