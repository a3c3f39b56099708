#!/usr/bin/env bash
# The interop proof (issue 10 §4), against fresh compute-workers started here:
#   sqlite    one worker on an embedded SQLite file
#   postgres  two worker processes on one fresh PostgreSQL database (127.0.0.1:5432, user postgres)
# plus, on each database, a worker started with --no-encryption that world-testing talks to
# and on each: @workflow/world-testing (12 tests), the stable-line app's scenarios, the
# @workflow/web headless-Chromium check. Prints one line per suite and "N passed, M failed".
# Usage: interop/run-all.sh [sqlite|postgres|all]     (default all; `make interop` runs all)
# Env: INTEROP_KEEP=1 keeps the scratch directory (worker logs) for inspection.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
legs="${1:-all}"
cw="$root/.venv/bin/compute-worker"
[ -x "$cw" ] || { echo "run-all.sh: $cw missing (make .venv/.installed)" >&2; exit 2; }
command -v "${CHROMIUM:-chromium}" >/dev/null || { echo "run-all.sh: chromium missing (make interop-setup)" >&2; exit 2; }
node_bin="$("$here/scripts/node-bin.sh")"
scratch="$(mktemp -d /tmp/cw-interop.XXXXXX)"
key="cwk_interop_$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
secret="$(head -c 32 /dev/urandom | base64)"
seed="[{\"key\":\"$key\",\"scopes\":[\"world:proxy\",\"runs:read\",\"runs:write\",\"trigger:write\",\"deploy:read\",\"deploy:write\"],\"name\":\"interop\"}]"
pids=()
database=""
passed=0
failed=0

cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
  if [ -n "$database" ]; then
    psql -h 127.0.0.1 -U postgres -d postgres -qc "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null 2>&1
  fi
  if [ "${INTEROP_KEEP:-}" = 1 ]; then echo "run-all.sh: logs kept in $scratch" >&2; else rm -rf "$scratch"; fi
}
trap cleanup EXIT

# start_worker NAME ARGS... -> sets $url
start_worker() {
  local name="$1"; shift
  mkdir -p "$scratch/$name"
  COMPUTE_WORKER_ENCRYPTION_SECRET="$secret" "$cw" serve --port 0 --data-dir "$scratch/$name" \
    --seed-api-keys "$seed" --delivery-allow localhost "$@" >"$scratch/$name.out" 2>"$scratch/$name.err" &
  pids+=("$!")
  for _ in $(seq 1 150); do
    url="$(grep -o 'http://[0-9.]*:[0-9]*' "$scratch/$name.out" | head -1)"
    [ -n "$url" ] && return 0
    kill -0 "${pids[-1]}" 2>/dev/null || break
    sleep 0.2
  done
  echo "run-all.sh: worker $name did not start; stderr:" >&2
  tail -20 "$scratch/$name.err" >&2
  return 1
}

suite() {  # suite LABEL COMMAND...
  local label="$1"; shift
  if "$@" >"$scratch/$label.log" 2>&1; then
    passed=$((passed + 1)); echo "ok   $label"
  else
    failed=$((failed + 1)); echo "FAIL $label (log: $scratch/$label.log)"; tail -15 "$scratch/$label.log" | sed 's/^/     /'
  fi
}

web_check() {  # web_check WORKER_URL
  local worker="$1" web_out="$scratch/web-$RANDOM.out" web_url="" run_id
  "$here/web/start.sh" "$worker" "$key" 0 >"$web_out" 2>&1 &
  pids+=("$!")
  for _ in $(seq 1 150); do
    web_url="$(grep -o 'workflow-web listening on http://[0-9.]*:[0-9]*' "$web_out" | grep -o 'http://.*')"
    [ -n "$web_url" ] && break
    sleep 0.2
  done
  [ -n "$web_url" ] || { cat "$web_out"; return 1; }
  run_id="$(curl -sS -X POST "$worker/v1/world/runs/list" -H "Authorization: Bearer $key" \
            -d '{"pagination":{"limit":1}}' | "$node_bin" -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).data[0]?.runId??""))')"
  [ -n "$run_id" ] || { echo "no run on the worker to look for"; return 1; }
  "$node_bin" "$here/web/check-ui.mjs" "$web_url" "$run_id" "$scratch/web.png"
}

run_suites() {  # run_suites LEG WORKER_URL PLAIN_WORKER_URL
  # PLAIN_WORKER: one more worker on the same database started with --no-encryption, for
  # @workflow/world-testing (it reads run outputs without a key, as world-local has none)
  local leg="$1" worker="$2" plain="$3" id
  # One wdk deployment per leg, signed deliveries; its URL is announced by each app.
  unset WORKFLOW_COMPUTE_DEPLOYMENT_ID
  export WORKFLOW_COMPUTE_DELIVERY_SECRET="interop-$key"
  if id="$("$here/scripts/register-app.sh" "$worker" "$key" http://localhost "$WORKFLOW_COMPUTE_DELIVERY_SECRET" 2>"$scratch/$leg-register.err")"; then
    export WORKFLOW_COMPUTE_DEPLOYMENT_ID="$id"
    echo "     $leg: wdk deployment $id"
  else
    echo "     $leg: no wdk deployment ($(cat "$scratch/$leg-register.err"))"
  fi
  suite "$leg-world-testing" "$here/world-testing/run.sh" "$plain" "$key"
  suite "$leg-app-scenarios" "$node_bin" "$here/app/scenarios.mjs" --worker "$worker" --key "$key"
  suite "$leg-web-ui" web_check "$worker"
}

if [ "$legs" = all ] || [ "$legs" = sqlite ]; then
  if start_worker sqlite && first="$url" \
     && start_worker sqlite-plain --sqlite-path "$scratch/sqlite/compute-worker.db" --no-encryption; then
    run_suites sqlite "$first" "$url"
  else
    failed=$((failed + 1))
  fi
fi
if [ "$legs" = all ] || [ "$legs" = postgres ]; then
  database="cw_interop_$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
  if psql -h 127.0.0.1 -U postgres -d postgres -qc "CREATE DATABASE $database" >/dev/null; then
    dsn="postgresql+asyncpg://postgres@127.0.0.1:5432/$database"
    if start_worker pg1 --database-url "$dsn" --artifact-dir "$scratch/artifacts" && first="$url" \
       && start_worker pg2 --database-url "$dsn" --artifact-dir "$scratch/artifacts" \
       && start_worker pg-plain --database-url "$dsn" --artifact-dir "$scratch/artifacts" --no-encryption; then
      run_suites postgres "$first" "$url"
    else
      failed=$((failed + 1))
    fi
  else
    echo "FAIL postgres: cannot create database $database"; failed=$((failed + 1))
  fi
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
