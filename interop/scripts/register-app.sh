#!/usr/bin/env bash
# Registers a Workflow DevKit app as a deployment of kind "wdk" on a compute-worker
# (LANE.md "Registering an app") and prints its deployment id.
# Usage: register-app.sh WORKER_URL API_KEY APP_URL [DELIVERY_SECRET]
# Exit 2 when the worker has no such deployment kind yet (the caller may go on without).
set -euo pipefail
url="${1:?worker URL}"; key="${2:?API key}"; app="${3:?app base URL}"; secret="${4:-}"
body=$(python3 -c 'import json,sys; e={"url": sys.argv[1]}
if sys.argv[2]: e["deliverySecret"]=sys.argv[2]
print(json.dumps({"kind": "wdk", "endpoint": e}))' "$app" "$secret")
out=$(curl -sS -X POST "$url/v1/deployments" -H "Authorization: Bearer $key" \
      -H 'content-type: application/json' -d "$body" -w '\n%{http_code}')
code=$(tail -n1 <<<"$out"); json=$(sed '$d' <<<"$out")
if [ "$code" != 201 ] && [ "$code" != 200 ]; then
  echo "register-app.sh: the worker refused a wdk deployment ($code): $json" >&2
  exit 2
fi
id=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["deploymentId"])' <<<"$json")
curl -sS -f -X POST "$url/v1/deployments/$id/activate" -H "Authorization: Bearer $key" >/dev/null || true
echo "$id"
