#!/usr/bin/env bash
# Runs @workflow/world-testing against a running compute-worker through world-compute.
# Usage: interop/world-testing/run.sh WORKER_URL API_KEY [vitest args, e.g. -t addition]
# Env: WORKFLOW_COMPUTE_DEPLOYMENT_ID (else a wdk deployment is registered when the worker
#      supports it), WORKFLOW_COMPUTE_DELIVERY_SECRET (optional, passed to the registration).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
url="${1:?worker URL, e.g. http://127.0.0.1:8080}"; key="${2:?API key with world:proxy}"; shift 2
node_bin="$("$here/../scripts/node-bin.sh")"
export PATH="$(dirname "$node_bin"):$PATH"   # the suite spawns `node`: it must be >= 22
[ -f "$here/../world-compute/dist/index.js" ] || (cd "$here/../world-compute" && npm run build >&2)
[ -d "$here/node_modules/@workflow/world-testing" ] || (cd "$here" && npm ci --ignore-scripts --no-audit --no-fund >&2)
export WORKFLOW_COMPUTE_URL="$url" WORKFLOW_COMPUTE_API_KEY="$key" WORKFLOW_COMPUTE_SPEC_VERSION=5
if [ -z "${WORKFLOW_COMPUTE_DEPLOYMENT_ID:-}" ]; then
  # The suite's app servers listen on random ports and announce them (x-compute-app-url);
  # the registered URL is a placeholder until the first announcement.
  if id="$("$here/../scripts/register-app.sh" "$url" "$key" http://localhost "${WORKFLOW_COMPUTE_DELIVERY_SECRET:-}")"; then
    export WORKFLOW_COMPUTE_DEPLOYMENT_ID="$id"
    echo "world-testing: registered wdk deployment $id" >&2
  else
    echo "world-testing: going on without a registered deployment" >&2
  fi
fi
cd "$here"
exec "$node_bin" node_modules/vitest/vitest.mjs run "$@"
