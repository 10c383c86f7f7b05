#!/usr/bin/env bash
# test/scripts/prometheus.sh: rungate's metrics read back through a real
# Prometheus, scraping Debian's prometheus-postgres-exporter with the custom
# queries of examples/prometheus/queries.yaml.
#
#   1. a database of its own (fresh, so its counters start at zero), the
#      shared fixture, and runs in several states: queued, running,
#      succeeded, failed, blocked at dispatch (capability_missing) and at
#      claim (actor_not_in_tenant); a monitoring role that may execute
#      rungate.metrics() and nothing else;
#   2. the exporter (as that role) and Prometheus (scraping it every second,
#      with examples/prometheus/alerts.yml) on free ports of 127.0.0.1;
#   3. load while Prometheus scrapes: a tenant is suspended under 30 queued
#      runs (claims block them: tenant_not_operable), and workers enqueue,
#      claim and complete for a few seconds;
#   4. Prometheus's HTTP query API must then return, for every operation
#      type and status, rungate_runs equal to the runs in the table (zeros
#      included), rungate_blocked_total per reason equal to the blocked runs,
#      rungate_transitions_total{event="started"} equal to the started audit
#      rows, the claim histogram's count equal to the claim calls made, a
#      median from histogram_quantile, the target up with no scrape error,
#      the three alert rules loaded and healthy, and RungateBlockedSpike
#      firing for tenant_not_operable. promtool checks the rules and runs
#      their unit tests (examples/prometheus/alerts.test.yml).
# Run by test/run-tests.sh with the cluster's PG* environment (superuser,
# rungate preloaded: the counters need it). Installs Debian's prometheus,
# prometheus-postgres-exporter, curl and jq when missing. About 30 s.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
EX=examples/prometheus
DB=prometheus_metrics
ROLE=prometheus_metrics_reader   # USAGE + EXECUTE on rungate.metrics(), nothing else
TMP=$(mktemp -d /tmp/prometheus-test.XXXXXX)
PIDS=()

log() { printf '==> %s\n' "$*"; }
fail() { echo "FAIL: $*"; exit 1; }
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  dropdb --if-exists "$DB" 2>/dev/null || true
  psql -X -q -d postgres -c "DROP ROLE IF EXISTS $ROLE" >/dev/null 2>&1 || true
  rm -rf "$TMP"
}
trap cleanup EXIT

# ---- dependencies: Debian's packages (no service of theirs is used)
missing=()
command -v prometheus >/dev/null && command -v promtool >/dev/null || missing+=(prometheus)
command -v prometheus-postgres-exporter >/dev/null || missing+=(prometheus-postgres-exporter)
command -v curl >/dev/null || missing+=(curl)
command -v jq >/dev/null || missing+=(jq)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq </dev/null >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >/dev/null
fi
log "$(prometheus --version 2>&1 | head -1); $(prometheus-postgres-exporter --version 2>&1 | head -1)"

# ---- the shipped rules: valid, and their unit tests pass
promtool check rules "$EX/alerts.yml" >"$TMP/promtool.log" 2>&1 \
  || { cat "$TMP/promtool.log"; fail "promtool check rules"; }
(cd "$EX" && promtool test rules alerts.test.yml) >>"$TMP/promtool.log" 2>&1 \
  || { cat "$TMP/promtool.log"; fail "promtool test rules"; }
log "alert rules: checked, unit tests pass"

# a TCP port of 127.0.0.1 that nothing listens on
free_port() {
  local p i
  for i in $(seq 1 50); do
    p=$((20000 + RANDOM % 30000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
  done
  fail "no free port"
}

sql() { psql -X -q -tA -v ON_ERROR_STOP=1 -d "$DB" "$@"; }

# ---- 1. the database, runs in several states, the monitoring role
dropdb --if-exists "$DB" 2>/dev/null || true
psql -X -q -d postgres -c "SET client_min_messages = warning" -c "DROP ROLE IF EXISTS $ROLE" >/dev/null
createdb "$DB"
psql -X -q -v ON_ERROR_STOP=1 -d "$DB" >/dev/null <<SQL
CREATE EXTENSION rungate;
\i test/fixtures/seed.sql
-- six syncs (olivia, tenant 10): two start in one claim call, four stay queued
SELECT count(rungate.enqueue('inventory.sync', 1, 10, 100)) FROM generate_series(1, 6);
SELECT count(*) FROM rungate.claim('prom-worker', '{inventory.sync}', 2);
-- blocked at claim: oscar's three provider checks, after he left tenant 10
-- (actor_not_in_tenant)
SELECT count(rungate.enqueue('provider.connection.verify', 1, 10, 101)) FROM generate_series(1, 3);
DELETE FROM rungate.tenant_members WHERE tenant_id = 10 AND actor_id = 101;
SELECT count(*) FROM rungate.claim('prom-worker', '{provider.connection.verify}', 10);
-- olivia's three provider checks: one succeeds, one fails, one stays queued
SELECT count(rungate.enqueue('provider.connection.verify', 1, 10, 100)) FROM generate_series(1, 3);
SELECT rungate.complete(run_id, lease_token) FROM rungate.claim('prom-worker', '{provider.connection.verify}');
SELECT rungate.fail(run_id, lease_token, 'provider timeout') FROM rungate.claim('prom-worker', '{provider.connection.verify}');
-- blocked at dispatch: rita is readonly (capability_missing), twice
SELECT count(rungate.enqueue('inventory.sync', 1, 10, 102)) FROM generate_series(1, 2);

CREATE ROLE $ROLE LOGIN;
GRANT USAGE ON SCHEMA rungate TO $ROLE;
GRANT EXECUTE ON FUNCTION rungate.metrics() TO $ROLE;
SQL
CLAIMS=4   # claim calls so far
if PGUSER=$ROLE psql -X -q -d "$DB" -c "SELECT count(*) FROM rungate.runs" >/dev/null 2>&1; then
  fail "$ROLE may read rungate.runs"
fi
log "runs: $(sql -c "SELECT string_agg(status || ' ' || n, ', ' ORDER BY status)
                       FROM (SELECT status, count(*) n FROM rungate.runs GROUP BY 1) s")"

# ---- 2. the exporter, then Prometheus
EP=$(free_port)
DATA_SOURCE_NAME="host=$PGHOST port=$PGPORT user=$ROLE dbname=$DB sslmode=disable" \
  prometheus-postgres-exporter --extend.query-path="$EX/queries.yaml" \
    --disable-default-metrics --disable-settings-metrics \
    --no-collector.database --no-collector.bgwriter \
    --web.listen-address="127.0.0.1:$EP" --log.level=warn >"$TMP/exporter.log" 2>&1 &
PIDS+=($!)
for i in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$EP/metrics" -o "$TMP/exporter.txt" 2>/dev/null \
    && grep -q '^rungate_runs{' "$TMP/exporter.txt" && break
  kill -0 "${PIDS[-1]}" 2>/dev/null || { cat "$TMP/exporter.log"; fail "the exporter exited"; }
  sleep 0.1
done
grep -q '^rungate_runs{' "$TMP/exporter.txt" || { cat "$TMP/exporter.log"; fail "the exporter serves no rungate_runs"; }
grep -q '^rungate_claim_duration_seconds_bucket{.*le="+Inf"' "$TMP/exporter.txt" \
  || { cat "$TMP/exporter.log"; fail "the exporter serves no claim histogram"; }
log "exporter at http://127.0.0.1:$EP/metrics ($(grep -c '^rungate_' "$TMP/exporter.txt") rungate samples)"

PP=$(free_port)
while [ "$PP" = "$EP" ]; do PP=$(free_port); done
cat >"$TMP/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $ROOT/$EX/alerts.yml
scrape_configs:
  - job_name: rungate
    static_configs:
      - targets: ['127.0.0.1:$EP']
YAML
prometheus --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$TMP/tsdb" \
  --web.listen-address="127.0.0.1:$PP" --log.level=warn >"$TMP/prometheus.log" 2>&1 &
PIDS+=($!)
PROM="http://127.0.0.1:$PP"
for i in $(seq 1 150); do
  curl -fsS "$PROM/-/ready" >/dev/null 2>&1 && break
  kill -0 "${PIDS[-1]}" 2>/dev/null || { cat "$TMP/prometheus.log"; fail "prometheus exited"; }
  sleep 0.1
done
curl -fsS "$PROM/-/ready" >/dev/null || { cat "$TMP/prometheus.log"; fail "prometheus not ready"; }
log "prometheus at $PROM"

# query EXPR: the value of its first series at the latest evaluation, or "none"
query() {
  curl -fsS -G --data-urlencode "query=$1" "$PROM/api/v1/query" \
    | jq -r '.data.result[0].value[1] // "none"'
}
# expect EXPR WANT [what]: poll (up to 20 s) until Prometheus answers WANT
expect() {
  local got i
  for i in $(seq 1 100); do
    got=$(query "$1")
    [ "$got" = "$2" ] && { echo "ok: $1 = $2${3:+ ($3)}"; return 0; }
    sleep 0.2
  done
  fail "$1: Prometheus says $got, expected $2${3:+ ($3)}"
}

# the state before the load, as scraped: Prometheus has a sample of the
# blocked counter before the spike below
expect 'rungate_blocked_total{reason_code="actor_not_in_tenant"}' 3 "oscar's provider checks"
expect 'rungate_blocked_total{reason_code="tenant_not_operable"}' 0 "zero before the load"

# ---- 3. load while Prometheus scrapes
log "load: tenant 11 suspended under 30 queued runs; 5 s of enqueue, claim, complete"
sql >/dev/null <<'SQL'
SELECT count(rungate.enqueue('provider.connection.verify', 1, 11, 100)) FROM generate_series(1, 30);
UPDATE rungate.tenants SET status = 'suspended' WHERE id = 11;
SELECT count(*) FROM rungate.claim('prom-worker', '{provider.connection.verify}', 30);
SQL
CLAIMS=$((CLAIMS + 1))
cat >"$TMP/cycle.sql" <<'SQL'
SELECT count(*) FROM rungate.enqueue('reports.export', 1);
SELECT rungate.complete(run_id, lease_token) FROM rungate.claim('prom-load', '{reports.export}');
SQL
worker() {   # worker N: N enqueue-claim-complete cycles, one claim each
  local k
  for ((k = 0; k < $1; k++)); do sql -f "$TMP/cycle.sql" >/dev/null; done
}
CYCLES=0 t0=$SECONDS
while [ $((SECONDS - t0)) -lt 5 ]; do
  worker 10 & w1=$!
  worker 10 & w2=$!
  wait "$w1" "$w2"
  CYCLES=$((CYCLES + 20))
done
CLAIMS=$((CLAIMS + CYCLES))
# one run of each still queued, one more running
sql -c "SELECT count(*) FROM rungate.enqueue('reports.export', 1)" >/dev/null
sql -c "SELECT count(*) FROM rungate.enqueue('restore.execute', 1, 10, 100, run_at => now() + interval '1 hour')" >/dev/null
sql -c "SELECT count(*) FROM rungate.claim('prom-worker', '{inventory.sync}')" >/dev/null
CLAIMS=$((CLAIMS + 1))
log "load done: $CYCLES cycles, $CLAIMS claim calls in all"

# ---- 4. what Prometheus read
# rungate_runs for every operation type and status, zeros included
while IFS='|' read -r op st n; do
  expect "rungate_runs{operation=\"$op\",status=\"$st\"}" "$n"
done < <(sql -c "SELECT ot.name, s.status, (SELECT count(*) FROM rungate.runs r
                                           WHERE r.operation = ot.name AND r.status = s.status)
                   FROM rungate.operation_types ot,
                        (VALUES ('queued'), ('running')) s(status) ORDER BY 1, 2")
# rungate_blocked_total per reason: the blocked runs of this fresh database
while IFS='|' read -r reason n; do
  expect "rungate_blocked_total{reason_code=\"$reason\"}" "$n"
done < <(sql -c "SELECT reason_code, count(*) FROM rungate.runs WHERE status = 'blocked'
                  GROUP BY 1 ORDER BY 1")
expect 'rungate_blocked_total{reason_code="tenant_not_operable"}' 30 "the suspended tenant's runs"
expect 'rungate_blocked_total{reason_code="prerequisite_unmet"}' 0 "a reason never met: zero"
# every started audit row, per operation type
while IFS='|' read -r op n; do
  expect "sum(rungate_transitions_total{event=\"started\",operation=\"$op\"})" "$n" "started audit rows"
done < <(sql -c "SELECT r.operation, count(*) FROM rungate.audit_log a JOIN rungate.runs r ON r.id = a.run_id
                  WHERE a.event = 'started' GROUP BY 1 ORDER BY 1")
expect 'rungate_claim_duration_seconds_count' "$CLAIMS" "claim calls"
expect 'rungate_claim_duration_seconds_bucket{le="+Inf"}' "$CLAIMS"
q=$(query 'histogram_quantile(0.5, rungate_claim_duration_seconds_bucket)')
awk -v v="$q" 'BEGIN { exit !(v + 0 > 0 && v + 0 <= 5) }' \
  || fail "histogram_quantile(0.5, ...) = $q, not a duration"
echo "ok: median claim duration by histogram_quantile: ${q}s"
expect 'rungate_queue_lag_seconds{operation="restore.execute"}' 0 "not yet due"
expect 'rungate_metrics_overflow_total' 0
expect 'up{job="rungate"}' 1
expect 'pg_up' 1
expect 'pg_exporter_last_scrape_error' 0

# the rules are loaded and healthy, and the spike of blocks fires its alert
rules=$(curl -fsS "$PROM/api/v1/rules" | jq -r '[.data.groups[].rules[] | select(.health == "ok") | .name] | sort | join(",")')
[ "$rules" = "RungateBlockedSpike,RungateLeasesExpiring,RungateQueueLag" ] \
  || fail "rules loaded and healthy: '$rules'"
echo "ok: rules $rules"
for i in $(seq 1 100); do
  firing=$(curl -fsS "$PROM/api/v1/alerts" \
    | jq -r '[.data.alerts[] | select(.state == "firing") | .labels.alertname + ":" + (.labels.reason_code // "")] | join(",")')
  [[ ",$firing," == *",RungateBlockedSpike:tenant_not_operable,"* ]] && break
  sleep 0.2
done
[[ ",$firing," == *",RungateBlockedSpike:tenant_not_operable,"* ]] \
  || fail "RungateBlockedSpike is not firing for tenant_not_operable (firing: '$firing')"
echo "ok: firing $firing"

echo "---- exporter log (last lines)"
tail -n 5 "$TMP/exporter.log"
if grep -qi 'level=error' "$TMP/exporter.log"; then fail "the exporter logged errors"; fi
echo "prometheus: ok"
