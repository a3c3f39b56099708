#!/usr/bin/env bash
# @workflow/world-testing (all 12 tests) with world-compute's queue half only:
# storage from @workflow/world-local, queue + createQueueHandler from world-compute,
# deliveries by reference/delivery-shim.mjs (signed). Needs no worker: it checks the
# delivery contract (LANE.md §3-4) and the package's queue code against the 5.0 runtime.
# Usage: interop/world-testing/queue-check.sh [vitest args]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
node_bin="$("$here/../scripts/node-bin.sh")"
export PATH="$(dirname "$node_bin"):$PATH"
[ -f "$here/../world-compute/dist/index.js" ] || (cd "$here/../world-compute" && npm run build >&2)
[ -d "$here/node_modules/@workflow/world-testing" ] || (cd "$here" && npm ci --ignore-scripts --no-audit --no-fund >&2)
scratch="$(mktemp -d /tmp/wt-queue-check.XXXXXX)"
secret="queue-check-$RANDOM$RANDOM"
# The shim forwards what it does not answer to --worker; nothing is forwarded here.
"$node_bin" "$here/../reference/delivery-shim.mjs" --worker http://127.0.0.1:9 --secret "$secret" >"$scratch/shim.log" 2>&1 &
shim=$!
trap 'kill $shim 2>/dev/null; rm -rf "$scratch"' EXIT
for _ in $(seq 1 100); do
  url="$(grep -o 'http://[0-9.]*:[0-9]*' "$scratch/shim.log" || true)"
  [ -n "$url" ] && break
  sleep 0.1
done
[ -n "$url" ] || { cat "$scratch/shim.log" >&2; exit 1; }
cd "$here"
WT_WORLD="$here/hybrid-world.mjs" WORKFLOW_COMPUTE_URL="$url" WORKFLOW_COMPUTE_DELIVERY_SECRET="$secret" \
  WORKFLOW_LOCAL_DATA_DIR="$scratch/data" "$node_bin" node_modules/vitest/vitest.mjs run "$@"
