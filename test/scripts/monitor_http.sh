#!/usr/bin/env bash
# test/scripts/monitor_http.sh: examples/monitor, rungate's operations
# surfaces over HTTP, tested with real requests.
#
# Sets up a database with the shared fixture and runs in several states
# (blocked after a revocation, failed, succeeded, a system run, queued runs
# on a tenant only some viewers reach, a run of another workspace), starts
# the service as a role that may only execute rungate.operations and
# rungate.operation, and runs examples/monitor/test/*.test.js (node:test):
#   http.test.js     every row of the 404/403 table on both surfaces, JSON
#                    shapes, filters, the status mapping, blocked vs failed;
#                    /metrics (rungate.metrics_text() as a monitoring role,
#                    500 for a role without the grant), the samples' JSON
#   browser.test.js  headless Chromium (playwright-core): the blocked badge,
#                    screenshots in results/screenshots/
#   metrics.browser.test.js  the /admin/metrics charts in headless Chromium:
#                    queue depth and blocked runs by reason follow runs
#                    queued and blocked while the page is open
# Run by test/run-tests.sh with the cluster's PG* environment (superuser);
# installs chromium (Debian) and the example's npm packages when missing.
# About 15 s once the packages are there.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
APP=examples/monitor
DB=monitor_http
VIEWER=monitor_http_viewer       # USAGE + EXECUTE on the two functions, nothing else
NOGRANTS=monitor_http_nogrants   # may connect, may not execute: the 500 path
METRICS=monitor_http_metrics     # USAGE + EXECUTE on rungate.metrics() and metrics_text()
TMP=$(mktemp -d /tmp/monitor-http.XXXXXX)
PIDS=()

log() { printf '==> %s\n' "$*"; }
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  dropdb --if-exists "$DB" 2>/dev/null || true
  psql -X -q -d postgres -c "DROP ROLE IF EXISTS $VIEWER" -c "DROP ROLE IF EXISTS $NOGRANTS" \
    -c "DROP ROLE IF EXISTS $METRICS" >/dev/null 2>&1 || true
  rm -rf "$TMP"
}
trap cleanup EXIT

# ---- dependencies: Node.js >= 20 (playwright-core), Debian's chromium, npm packages
missing=()
command -v node >/dev/null && command -v npm >/dev/null || missing+=(nodejs npm)
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq </dev/null >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >/dev/null
fi
major=$(node -p 'process.versions.node.split(".")[0]')
[ "$major" -ge 20 ] || { echo "FAIL: Node.js >= 20 needed, found $(node --version)"; exit 1; }
log "npm ci in $APP"
(cd "$APP" && timeout 120 npm ci --no-audit --no-fund --loglevel=error >"$TMP/npm.log" 2>&1) \
  || { cat "$TMP/npm.log"; echo "FAIL: npm ci"; exit 1; }

# ---- database, runs in several states, roles
dropdb --if-exists "$DB" 2>/dev/null || true
psql -X -q -d postgres -c "DROP ROLE IF EXISTS $VIEWER" -c "DROP ROLE IF EXISTS $NOGRANTS" \
  -c "DROP ROLE IF EXISTS $METRICS" >/dev/null
createdb "$DB"
psql -X -q -v ON_ERROR_STOP=1 -d "$DB" >/dev/null <<SQL
CREATE EXTENSION rungate;
\i test/fixtures/seed.sql

-- blocked after a revocation: oscar (101) dispatches an inventory sync on
-- tenant 10 as its operator; his tenant role is then demoted to auditor
-- (operations.view only), and the claim blocks the run: capability_missing
SELECT id AS blocked FROM rungate.enqueue('inventory.sync', 1, 10, 101) \gset
UPDATE rungate.tenant_members SET role = 'auditor' WHERE tenant_id = 10 AND actor_id = 101;
SELECT count(*) AS started FROM rungate.claim('monitor-worker', '{inventory.sync}', 5) \gset
SELECT :started = 0 AS ok \gset
\if :ok
\else
  \warn 'the revoked run was started'
  SELECT 1/0;
\endif

-- failed: olivia's sync fails with a non-retryable error
SELECT id AS failed FROM rungate.enqueue('inventory.sync', 1, 10, 100) \gset
SELECT run_id, lease_token FROM rungate.claim('monitor-worker', '{inventory.sync}') \gset
SELECT rungate.fail(:run_id, :'lease_token', 'provider timeout: inventory API answered 504 three times');

-- succeeded: a provider check
SELECT id AS succeeded FROM rungate.enqueue('provider.connection.verify', 1, 10, 100) \gset
SELECT run_id, lease_token FROM rungate.claim('monitor-worker', '{provider.connection.verify}') \gset
SELECT rungate.complete(:run_id, :'lease_token', '{"verified": true}');

-- a system run: a scheduled workspace report, no initiator
SELECT id AS system FROM rungate.enqueue('reports.export', 1) \gset
SELECT run_id, lease_token FROM rungate.claim('monitor-worker', '{reports.export}') \gset
SELECT rungate.complete(:run_id, :'lease_token', '{"rows": 42}');

-- queued on tenant 11, where only olivia is a member
SELECT id AS other_tenant FROM rungate.enqueue('provider.connection.verify', 1, 11, 100) \gset
-- queued in workspace 2 (gus)
SELECT id AS other_workspace FROM rungate.enqueue('inventory.sync', 2, 20, 103) \gset

\o $TMP/runs.json
\pset format unaligned
\pset tuples_only on
SELECT json_build_object('blocked', :blocked, 'failed', :failed, 'succeeded', :succeeded,
                         'system', :system, 'other_tenant', :other_tenant,
                         'other_workspace', :other_workspace);
\o

CREATE ROLE $VIEWER LOGIN;
GRANT USAGE ON SCHEMA rungate TO $VIEWER;
GRANT EXECUTE ON FUNCTION rungate.operations(bigint, bigint, text, bigint, integer, bigint),
                          rungate.operation(bigint, bigint) TO $VIEWER;
CREATE ROLE $NOGRANTS LOGIN;
GRANT USAGE ON SCHEMA rungate TO $NOGRANTS;
CREATE ROLE $METRICS LOGIN;
GRANT USAGE ON SCHEMA rungate TO $METRICS;
GRANT EXECUTE ON FUNCTION rungate.metrics(), rungate.metrics_text() TO $METRICS;
SQL
log "runs: $(cat "$TMP/runs.json")"

# the service's role holds nothing but the two functions
for stmt in "SELECT count(*) FROM rungate.runs" "SELECT rungate.reap_expired()" \
            "SELECT rungate.decide('inventory.sync', 1, 10, 100)" \
            "SELECT rungate.metrics_text()" "SELECT count(*) FROM rungate.metrics()"; do
  if PGUSER=$VIEWER psql -X -q -d "$DB" -c "$stmt" >/dev/null 2>&1; then
    echo "FAIL: $VIEWER may run: $stmt"; exit 1
  fi
done

# ---- the service (PORT=0: a free port, read from its first line)
start_server() {  # start_server NAME ROLE [METRICS-ROLE] -> sets URL
  local name=$1 role=$2 i
  : >"$TMP/$name.log"   # exists before the background job opens it (sed below reads it at once)
  PORT=0 PGUSER=$role PGDATABASE=$DB METRICS_PGUSER=${3:-} METRICS_INTERVAL_MS=200 \
    node "$APP/server.js" >"$TMP/$name.log" 2>&1 &
  PIDS+=($!)
  for i in $(seq 1 100); do
    URL=$(sed -n 's/^rungate monitor listening on \(http:\/\/127\.0\.0\.1:[0-9]*\)$/\1/p' "$TMP/$name.log")
    [ -n "$URL" ] && return 0
    kill -0 "${PIDS[-1]}" 2>/dev/null || break
    sleep 0.1
  done
  cat "$TMP/$name.log"; echo "FAIL: $name did not start"; exit 1
}
start_server monitor "$VIEWER" "$METRICS"; MONITOR_URL=$URL
start_server nogrants "$NOGRANTS"; MONITOR_NOGRANTS_URL=$URL
log "monitor at $MONITOR_URL (role $VIEWER); $MONITOR_NOGRANTS_URL (role $NOGRANTS)"

# a plain curl, as a person would: the blocked run's reason is on the page
if command -v curl >/dev/null; then
  # (read whole, then searched: under pipefail, grep -q leaving early would
  # fail curl's write and the pipeline with it)
  page=$(curl -fsS -H 'X-Viewer-Id: 100' -H 'X-Workspace-Id: 1' "$MONITOR_URL/admin/operations")
  grep -q 'capability_missing' <<<"$page" || { echo "FAIL: curl: no blocked reason in the list"; exit 1; }
  # and /metrics, as Prometheus would scrape it
  scrape=$(curl -fsS "$MONITOR_URL/metrics")
  grep -qx 'rungate_blocked_total{reason_code="capability_missing"} 1' <<<"$scrape" \
    || { echo "FAIL: curl: /metrics does not count the blocked run"
         grep -E 'rungate_blocked_total' <<<"$scrape"; exit 1; }
fi

mkdir -p results/screenshots
rc=0
MONITOR_URL=$MONITOR_URL MONITOR_NOGRANTS_URL=$MONITOR_NOGRANTS_URL MONITOR_DB=$DB \
RUNS_JSON=$(cat "$TMP/runs.json") SCREENSHOT_DIR="$ROOT/results/screenshots" \
  timeout 150 node --test --test-reporter=spec \
    "$APP/test/http.test.js" "$APP/test/browser.test.js" "$APP/test/metrics.browser.test.js" || rc=$?

echo "---- server log (last lines)"
tail -n 5 "$TMP/monitor.log"
[ "$rc" -eq 0 ] || { echo "FAIL: node tests (exit $rc)"; exit "$rc"; }
ls results/screenshots/operations-*.png results/screenshots/metrics-*.png
echo "monitor over HTTP: ok"
