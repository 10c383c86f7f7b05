# test/scripts/worker_scenario.bash: the scenario that test/scripts/worker_python.sh,
# worker_node.sh and worker_php.sh run against their example worker (sourced,
# not a test itself: test/run-tests.sh only runs *.sh).
#
# The caller sets, then sources this file and calls worker_scenario:
#   LANG_NAME   python | node | php   (names the database, the role, the workers)
#   WORKER_CMD  array: the command that starts the worker, options follow it
#
# Against a fresh database with the shared fixture (test/fixtures/seed.sql),
# examples/app.sql (the guarded side-effect table restore_log and the worker
# grants) and a worker role that holds only those grants, it proves:
#   1. drain: a batch of runs, with authority revoked before the worker runs
#      (scope: a tenant membership deleted; prerequisite: provider_connection
#      unmet) and, for a write family, between the claim and the recheck
#      (admin_consent unmet while the handler works): blocked with the right
#      reason code and audit events, no side effect, no notification for the
#      system run; a retryable error retried (attempt 2) and succeeded; a
#      permanent error failed; a bulk parent fanned out and rolled up; a
#      system-authority run with a 3-second lease kept alive by heartbeats
#      while a reaper calls rungate.reap_expired() every half second; and
#      one log line per transition, matching the audit log.
#   2. SIGTERM: the run in hand finishes, the other held runs are handed back
#      (queued, attempt 1), the worker exits 0 at once; a --once worker then
#      drains them (attempt 2).
#   3. LISTEN: with a 30 s polling interval, a run enqueued while the worker
#      waits is started within 3 s; polling fallback: a run that becomes due
#      later (no notification) is found by polling.
# Exits non-zero on the first mismatch. About 25 s. WORKER_KEEP=1 keeps the
# database, the role and the logs for a look.

set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
# names of this process's own: two runs at once (a suite and a developer on a
# shared cluster) must not drop each other's database
DB=worker_${LANG_NAME}_$$
ROLE=worker_${LANG_NAME}_role_$$
TMP=$(mktemp -d "/tmp/worker-$LANG_NAME.XXXXXX")
BG_PIDS=()

log() { printf '==> %s\n' "$*"; }
fail() {
  printf 'FAIL: %s\n' "$*"
  local f
  for f in "$TMP"/*.log; do
    [ -e "$f" ] || continue
    echo "---- ${f##*/}"; cat "$f"
  done
  exit 1
}
cleanup() {
  local pid
  for pid in "${BG_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${BG_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "${WORKER_KEEP:-0}" = 1 ]; then
    echo "WORKER_KEEP=1: kept database $DB, role $ROLE and logs in $TMP"
    return 0
  fi
  dropdb --if-exists "$DB" 2>/dev/null || true
  psql -X -q -d postgres -c "DROP ROLE IF EXISTS $ROLE" >/dev/null 2>&1 || true
  rm -rf "$TMP"
}

q() { psql -X -q -v ON_ERROR_STOP=1 -tA -d "$DB" -c "$1"; }
# check WHAT SQL WANT: SQL (superuser) prints exactly WANT
check() {
  local got
  got=$(q "$2")
  if [ "$got" != "$3" ]; then
    printf 'FAIL: %s\n--- want\n%s\n--- got\n%s\n' "$1" "$3" "$got"
    diff <(echo "$3") <(echo "$got") || true
    fail "$1"
  fi
  echo "ok: $1"
}
# wait_for WHAT SECONDS SQL: poll until SQL prints t
wait_for() {
  local deadline=$((SECONDS + $2))
  until [ "$(q "$3")" = t ]; do
    [ $SECONDS -lt $deadline ] || fail "timed out after $2 s waiting for: $1"
    sleep 0.1
  done
}
# start_worker NAME [option...]: the worker in the background as $ROLE; pid in WPID
start_worker() {
  local name=$1; shift
  : >"$TMP/$name.log"
  PGUSER=$ROLE PGDATABASE=$DB timeout 60 "${WORKER_CMD[@]}" --worker "$name" "$@" \
    >>"$TMP/$name.log" 2>&1 </dev/null &
  WPID=$!
  BG_PIDS+=("$WPID")
}
# wait_worker NAME SECONDS: the worker must exit 0 within SECONDS
wait_worker() {
  local deadline=$((SECONDS + $2)) rc=0
  while kill -0 "$WPID" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || fail "worker $1 still running after $2 s"
    sleep 0.1
  done
  wait "$WPID" || rc=$?
  [ "$rc" -eq 0 ] || fail "worker $1 exited with status $rc"
  echo "ok: worker $1 exited 0"
}
# The outcome of each named run: status, attempt, reason, error, audit events,
# authorities, notification kinds.
OUTCOME="SELECT s.name, r.status, r.attempt, coalesce(r.reason_code, '-'),
       coalesce(r.error, '-'),
       (SELECT string_agg(a.event, ',' ORDER BY a.id) FROM rungate.audit_log a WHERE a.run_id = r.id),
       (SELECT string_agg(DISTINCT a.authority, ',') FROM rungate.audit_log a WHERE a.run_id = r.id),
       coalesce((SELECT string_agg(n.kind, ',' ORDER BY n.id) FROM rungate.notifications n
                  WHERE n.run_id = r.id), '-')
  FROM scenario s JOIN rungate.runs r ON r.id = s.run_id"

# log_transitions LOGFILE: 'run_id:attempt:event' for each transition line the
# worker logged, in rungate's audit vocabulary
log_transitions() {
  sed -nE 's/.* run ([0-9]+) [^ ]+ attempt ([0-9]+): (claimed|succeeded|failed|retry in|released|blocked by recheck).*/\1:\2:\3/p' "$1" |
    sed -E 's/:claimed$/:started/; s/:(retry in|released)$/:retry_scheduled/; s/:blocked by recheck$/:recheck_blocked/' |
    sort
}
# audit_transitions WORKER: the same, from the audit log (bulk parents are never handed out)
audit_transitions() {
  q "SELECT a.run_id || ':' || a.attempt || ':' || a.event FROM rungate.audit_log a
       JOIN rungate.runs r ON r.id = a.run_id
      WHERE a.worker = '$1' AND r.operation <> 'bulk.inventory.sync'
        AND a.event IN ('started', 'succeeded', 'failed', 'retry_scheduled', 'recheck_blocked')" | sort
}
check_log() {
  local want got
  want=$(audit_transitions "$1")
  got=$(log_transitions "$TMP/$1.log")
  [ -n "$want" ] || fail "$1: no transition in the audit log"
  if [ "$want" != "$got" ]; then
    diff <(echo "$want") <(echo "$got") || true
    fail "$1: logged transitions differ from the audit log (< audit, > log)"
  fi
  echo "ok: $1 logged one line per transition ($(echo "$want" | wc -l) transitions)"
}

worker_scenario() {
  trap cleanup EXIT
  createdb "$DB"
  psql -X -q -v ON_ERROR_STOP=1 -d "$DB" >/dev/null <<SQL
CREATE EXTENSION rungate;
\i test/fixtures/seed.sql
CREATE ROLE $ROLE LOGIN;
SQL
  psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -v worker_role="$ROLE" -f examples/app.sql >/dev/null
  # the worker role reaches rungate through the five functions only
  local out
  if out=$(PGUSER=$ROLE psql -X -q -tA -d "$DB" -c 'SELECT count(*) FROM rungate.runs' 2>&1); then
    fail "the worker role can read rungate.runs"
  fi
  case "$out" in *"permission denied"*) echo "ok: the worker role has no table privilege" ;;
                 *) fail "unexpected: $out" ;; esac

  # ---------------------------------------------------------------- 1. drain
  log "phase 1: a batch with revocations, retries, a bulk run and a system run"
  psql -X -q -v ON_ERROR_STOP=1 -d "$DB" >/dev/null <<'SQL'
-- a short lease, so that only heartbeats keep the system run alive
UPDATE rungate.operation_types SET lease = '3 seconds' WHERE name = 'reports.export';
CREATE TABLE scenario (name text PRIMARY KEY, run_id bigint NOT NULL);
INSERT INTO scenario
SELECT 'a restore_ok', id FROM rungate.enqueue('restore.execute', 1, 10, 100,
        '{"snapshot": "s-early"}', priority => 10)
UNION ALL
SELECT 'b restore_revoked_midrun', id FROM rungate.enqueue('restore.execute', 1, 10, 100,
        '{"snapshot": "s-late", "sleep": 4}', priority => 9)
UNION ALL
SELECT 'c report_system', id FROM rungate.enqueue('reports.export', 1, NULL, NULL,
        '{"sleep": 5}', priority => 8)
UNION ALL
SELECT 'd verify_ok', id FROM rungate.enqueue('provider.connection.verify', 1, 10, 100)
UNION ALL
SELECT 'e sync_retry', id FROM rungate.enqueue('inventory.sync', 1, 10, 100, '{"fail_attempts": 1}')
UNION ALL
SELECT 'f sync_permanent', id FROM rungate.enqueue('inventory.sync', 1, 10, 100, '{"fail": "permanent"}')
UNION ALL
SELECT 'g sync_revoked_scope', id FROM rungate.enqueue('inventory.sync', 1, 10, 101)
UNION ALL
SELECT 'h verify_revoked_prereq', id FROM rungate.enqueue('provider.connection.verify', 1, 11, 100)
UNION ALL
SELECT 'i bulk', id FROM rungate.enqueue_bulk('bulk.inventory.sync', 1, '{10,11}', 100);
-- revocations committed before any worker runs
DELETE FROM rungate.tenant_members WHERE tenant_id = 10 AND actor_id = 101;
UPDATE rungate.tenant_prerequisites SET satisfied = false
 WHERE tenant_id = 11 AND name = 'provider_connection';
SQL
  check "all dispatched runs are queued" \
    "SELECT string_agg(DISTINCT r.status, ',') FROM scenario s JOIN rungate.runs r ON r.id = s.run_id" \
    "queued"

  # a reaper, as pg_cron would run it (more often: the lease is 3 s)
  (while :; do
     psql -X -q -tA -d "$DB" -c 'SELECT rungate.reap_expired()' 2>&1 || true
     sleep 0.5
   done) >"$TMP/reaper.out" &
  local reaper=$!
  BG_PIDS+=("$reaper")

  start_worker "$LANG_NAME-main" --batch 5 --poll 1 --exit-when-idle 3
  # revoke admin_consent while the write-family run is held but not rechecked:
  # once restore_ok succeeded, restore_revoked_midrun is in its 4 s of work
  wait_for "restore_ok succeeded" 30 \
    "SELECT status = 'succeeded' FROM rungate.runs WHERE id = (SELECT run_id FROM scenario WHERE name = 'a restore_ok')"
  check "restore_revoked_midrun is running when its authority is revoked" \
    "SELECT status FROM rungate.runs WHERE id = (SELECT run_id FROM scenario WHERE name = 'b restore_revoked_midrun')" \
    "running"
  q "UPDATE rungate.tenant_prerequisites SET satisfied = false WHERE tenant_id = 10 AND name = 'admin_consent'"
  echo "ok: admin_consent of tenant 10 revoked mid-run"
  wait_worker "$LANG_NAME-main" 45
  kill "$reaper" 2>/dev/null || true
  wait "$reaper" 2>/dev/null || true

  q "INSERT INTO scenario SELECT 'j bulk item tenant ' || tenant_id, id FROM rungate.runs
      WHERE parent_id = (SELECT run_id FROM scenario WHERE name = 'i bulk')"
  check "outcomes of the drain (status|attempt|reason|error|events|authority|notifications)" \
    "$OUTCOME ORDER BY s.name" \
"a restore_ok|succeeded|1|-|-|dispatched,started,succeeded|actor|run_succeeded
b restore_revoked_midrun|blocked|1|prerequisite_unmet|-|dispatched,started,recheck_blocked|actor|run_blocked
c report_system|succeeded|1|-|-|dispatched,started,succeeded|system|-
d verify_ok|succeeded|1|-|-|dispatched,started,succeeded|actor|run_succeeded
e sync_retry|succeeded|2|-|-|dispatched,started,retry_scheduled,started,succeeded|actor|run_succeeded
f sync_permanent|failed|1|-|permanent error requested by the payload|dispatched,started,failed|actor|run_failed
g sync_revoked_scope|blocked|0|actor_not_in_tenant|-|dispatched,execution_blocked|actor|run_blocked
h verify_revoked_prereq|blocked|0|prerequisite_unmet|-|dispatched,execution_blocked|actor|run_blocked
i bulk|partially_succeeded|1|-|-|dispatched,started,partially_succeeded|actor|run_partially_succeeded
j bulk item tenant 10|succeeded|1|-|-|dispatched,started,succeeded|actor|-
j bulk item tenant 11|blocked|0|prerequisite_unmet|-|dispatched,execution_blocked|actor|-"
  check "runs blocked at claim never started, and carry their category" \
    "SELECT s.name, r.reason_category, r.started_at IS NULL FROM scenario s
       JOIN rungate.runs r ON r.id = s.run_id WHERE r.status = 'blocked' ORDER BY s.name" \
"b restore_revoked_midrun|prerequisite|f
g sync_revoked_scope|scope|t
h verify_revoked_prereq|prerequisite|t
j bulk item tenant 11|prerequisite|t"
  check "the recheck_blocked audit row names the prerequisite check that denied it" \
    "SELECT a.decision, a.reason_code, a.worker,
            (SELECT string_agg(c->>'code', ',') FROM jsonb_array_elements(a.checks) c
              WHERE NOT (c->>'passed')::boolean)
       FROM rungate.audit_log a WHERE a.event = 'recheck_blocked'" \
    "deny|prerequisite_unmet|$LANG_NAME-main|prerequisite_unmet"
  check "only the allowed restore left a side effect (restore_log)" \
    "SELECT s.name || ':' || l.snapshot FROM public.restore_log l JOIN scenario s ON s.run_id = l.run_id" \
    "a restore_ok:s-early"
  # the fence: even a buggy worker cannot write a side effect for the blocked run
  local blocked_id
  blocked_id=$(q "SELECT run_id FROM scenario WHERE name = 'b restore_revoked_midrun'")
  if out=$(PGUSER=$ROLE psql -X -q -tA -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -d "$DB" -c \
      "INSERT INTO public.restore_log (run_id, tenant_id, snapshot) VALUES ($blocked_id, 10, 'sneaky')" 2>&1); then
    fail "the worker role wrote restore_log for a blocked run"
  fi
  case "$out" in *RG409*) echo "ok: the fence refused it: ${out%%$'\n'*}" ;;
                 *) fail "unexpected fence error: $out" ;; esac
  check "the reaper never found an expired lease (heartbeats)" \
    "SELECT count(*) FROM rungate.audit_log WHERE event = 'lease_expired'" "0"
  if grep -qvE '^0$' "$TMP/reaper.out"; then fail "reap_expired returned: $(sort -u "$TMP/reaper.out" | tr '\n' ' ')"; fi
  [ -s "$TMP/reaper.out" ] || fail "the reaper never ran"
  echo "ok: reap_expired ran $(wc -l <"$TMP/reaper.out") times and reaped nothing"
  check "the worker's name is on the 8 starts of runs handed to it" \
    "SELECT count(*) FROM rungate.audit_log a JOIN rungate.runs r ON r.id = a.run_id
      WHERE a.event = 'started' AND a.worker = '$LANG_NAME-main' AND r.operation <> 'bulk.inventory.sync'" "8"
  check_log "$LANG_NAME-main"
  grep -qE "run $(q "SELECT run_id FROM scenario WHERE name = 'b restore_revoked_midrun'") restore.execute attempt 1: blocked by recheck: prerequisite_unmet" \
    "$TMP/$LANG_NAME-main.log" || fail "no 'blocked by recheck: prerequisite_unmet' line"
  echo "ok: the worker logged the recheck denial with its reason code"

  # ---------------------------------------------------------------- 2. SIGTERM
  log "phase 2: SIGTERM while holding a batch"
  q "INSERT INTO scenario
     SELECT 'term ' || t, id FROM generate_series(1, 3) t,
            LATERAL rungate.enqueue('inventory.sync', 1, 10, 100, jsonb_build_object('sleep', 2, 'n', t))" >/dev/null
  start_worker "$LANG_NAME-term" --batch 3 --poll 1 --grace 0
  wait_for "the three runs are claimed" 20 \
    "SELECT count(*) = 3 FROM scenario s JOIN rungate.runs r ON r.id = s.run_id
      WHERE s.name LIKE 'term %' AND r.status = 'running'"
  sleep 0.3
  kill -TERM "$WPID"
  wait_worker "$LANG_NAME-term" 8
  check "SIGTERM: the run in hand finished, the others were handed back" \
    "$OUTCOME WHERE s.name LIKE 'term %' ORDER BY s.name" \
"term 1|succeeded|1|-|-|dispatched,started,succeeded|actor|run_succeeded
term 2|queued|1|-|worker shutting down|dispatched,started,retry_scheduled|actor|-
term 3|queued|1|-|worker shutting down|dispatched,started,retry_scheduled|actor|-"
  grep -q 'no more claims' "$TMP/$LANG_NAME-term.log" || fail "no SIGTERM line in the log"
  check_log "$LANG_NAME-term"
  start_worker "$LANG_NAME-drain" --once --batch 5
  wait_worker "$LANG_NAME-drain" 20
  check "a --once worker drained the handed-back runs (attempt 2)" \
    "$OUTCOME WHERE s.name LIKE 'term %' ORDER BY s.name" \
"term 1|succeeded|1|-|-|dispatched,started,succeeded|actor|run_succeeded
term 2|succeeded|2|-|-|dispatched,started,retry_scheduled,started,succeeded|actor|run_succeeded
term 3|succeeded|2|-|-|dispatched,started,retry_scheduled,started,succeeded|actor|run_succeeded"
  check_log "$LANG_NAME-drain"

  # ---------------------------------------------------------------- 3. LISTEN, polling
  log "phase 3: woken by LISTEN rungate_queued; polling fallback"
  start_worker "$LANG_NAME-listen" --poll 30 --max-runs 1
  local deadline=$((SECONDS + 15))
  until grep -q 'listening on rungate_queued' "$TMP/$LANG_NAME-listen.log"; do
    [ $SECONDS -lt $deadline ] || fail "the listen worker never started"
    sleep 0.1
  done
  sleep 1   # its first claim found nothing: it is waiting (up to 30 s)
  q "INSERT INTO scenario SELECT 'listen', id FROM rungate.enqueue('provider.connection.verify', 1, 10, 100)" >/dev/null
  wait_worker "$LANG_NAME-listen" 10
  check "a run enqueued while the worker waits starts within 3 s (poll interval 30 s)" \
    "SELECT r.status, r.started_at - r.created_at < interval '3 seconds'
       FROM scenario s JOIN rungate.runs r ON r.id = s.run_id WHERE s.name = 'listen'" \
    "succeeded|t"
  q "INSERT INTO scenario SELECT 'poll', id FROM rungate.enqueue('provider.connection.verify', 1, 10, 100,
       run_at => clock_timestamp() + interval '2 seconds')" >/dev/null
  start_worker "$LANG_NAME-poll" --poll 0.5 --max-runs 1
  wait_worker "$LANG_NAME-poll" 15
  check "a run that became due later (no notification) was found by polling" \
    "SELECT r.status, r.started_at >= r.run_at
       FROM scenario s JOIN rungate.runs r ON r.id = s.run_id WHERE s.name = 'poll'" \
    "succeeded|t"
  log "worker_$LANG_NAME: all checks passed"
}
