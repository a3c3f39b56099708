#!/usr/bin/env bash
# Starts the stable-line WDK app with world-compute as its World.
# Usage: interop/app/start.sh WORKER_URL API_KEY [PORT]   (PORT 0 or absent: any free port)
# Prints "wdk-app listening on http://127.0.0.1:<port>" once it accepts requests.
# Env passed through: WORKFLOW_COMPUTE_DEPLOYMENT_ID, WORKFLOW_COMPUTE_DELIVERY_SECRET,
# WORKFLOW_COMPUTE_APP_URL, WORKFLOW_COMPUTE_LOG.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export WORKFLOW_COMPUTE_URL="${1:?worker URL}" WORKFLOW_COMPUTE_API_KEY="${2:?API key with world:proxy}"
export PORT="${3:-0}"
export WORKFLOW_TARGET_WORLD=world-compute WORKFLOW_COMPUTE_SPEC_VERSION=3
node_bin="$("$here/../scripts/node-bin.sh")"
[ -f "$here/../world-compute/dist/index.js" ] || (cd "$here/../world-compute" && npm run build >&2)
[ -d "$here/node_modules/workflow" ] || (cd "$here" && npm ci --ignore-scripts --no-audit --no-fund >&2)
[ -f "$here/.well-known/workflow/v1/flow.js" ] || (cd "$here" && PATH="$(dirname "$node_bin"):$PATH" npx workflow build >&2)
cd "$here"
exec "$node_bin" --disable-warning=MODULE_TYPELESS_PACKAGE_JSON server.mjs
