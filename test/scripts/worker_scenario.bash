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
#   2. SIGTERM: the run in hand finishes, the other held runs are released
#      (queued, attempt 1, no attempt spent), the worker exits 0 at once; a
#      --once worker then drains them (attempt 2).
#   3. LISTEN: with a 30 s polling interval, a run enqueued while the worker
#      waits is started within 3 s; polling fallback: a run that becomes due
#      later (no notification) is found by polling.
#   4. run control, four workers at once, each on its own run whose job
#      works for 30 s: an operator cancels a restore mid-flight (the worker
#      hears rungate_cancelled, stops the job within seconds, and the guarded
#      restore_log gets no row: the fence refuses one too); the initiator of
#      a report loses its membership (the next heartbeat returns null: the
#      run is blocked, the job stopped); a sync's lease is expired and reaped
#      (the next heartbeat raises RG409: the job stopped); a job says "later"
#      (released: audit 'released', no attempt spent, then completed).
#   5. claim_block_limit: 10,000 runs of a workspace that is then suspended,
#      ahead of one legitimate run (lower priority): with the default limit
#      each claim blocks 1,000, returns nothing and notifies rungate_queued;
#      the worker (polling every 30 s) calls again at once, drains the backlog
#      in 10 claims and starts the legitimate run within seconds.
# Exits non-zero on the first mismatch. About 40 s. WORKER_KEEP=1 keeps the
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
# wait_worker NAME SECONDS [PID]: the worker (default: the last started)
# must exit 0 within SECONDS
wait_worker() {
  local pid=${3:-$WPID} rc=0
  local deadline=$(($(date +%s%N) / 1000000 + $2 * 1000))
  while kill -0 "$pid" 2>/dev/null; do
    [ $(($(date +%s%N) / 1000000)) -lt $deadline ] || fail "worker $1 still running after $2 s"
    sleep 0.1
  done
  wait "$pid" || rc=$?
  [ "$rc" -eq 0 ] || fail "worker $1 exited with status $rc"
  echo "ok: worker $1 exited 0 within $2 s"
}
# scenario_id NAME: the run id of a named run
scenario_id() { q "SELECT run_id FROM scenario WHERE name = '$1'"; }
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
# worker logged, in rungate's audit vocabulary (a cancel's audit row names the
# canceller, not the worker: the worker's "cancelled by an operator" line is
# not compared)
log_transitions() {
  sed -nE 's/.* run ([0-9]+) [^ ]+ attempt ([0-9]+): (claimed|succeeded|failed|retry in|released|blocked by recheck|blocked by heartbeat).*/\1:\2:\3/p' "$1" |
    sed -E 's/:claimed$/:started/; s/:retry in$/:retry_scheduled/; s/:blocked by (recheck|heartbeat)$/:recheck_blocked/' |
    sort
}
# audit_transitions WORKER: the same, from the audit log (bulk parents are never handed out)
audit_transitions() {
  q "SELECT a.run_id || ':' || a.attempt || ':' || a.event FROM rungate.audit_log a
       JOIN rungate.runs r ON r.id = a.run_id
      WHERE a.worker = '$1' AND r.operation <> 'bulk.inventory.sync'
        AND a.event IN ('started', 'succeeded', 'failed', 'retry_scheduled', 'recheck_blocked', 'released')" | sort
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
  check "SIGTERM: the run in hand finished, the others were released" \
    "$OUTCOME WHERE s.name LIKE 'term %' ORDER BY s.name" \
"term 1|succeeded|1|-|-|dispatched,started,succeeded|actor|run_succeeded
term 2|queued|1|-|-|dispatched,started,released|actor|-
term 3|queued|1|-|-|dispatched,started,released|actor|-"
  check "released at shutdown: no attempt spent (max_attempts 3 + 1)" \
    "SELECT s.name, r.max_attempts FROM scenario s JOIN rungate.runs r ON r.id = s.run_id
      WHERE s.name LIKE 'term %' ORDER BY s.name" \
"term 1|3
term 2|4
term 3|4"
  grep -q 'no more claims' "$TMP/$LANG_NAME-term.log" || fail "no SIGTERM line in the log"
  check_log "$LANG_NAME-term"
  start_worker "$LANG_NAME-drain" --once --batch 5
  wait_worker "$LANG_NAME-drain" 20
  check "a --once worker drained the released runs (attempt 2)" \
    "$OUTCOME WHERE s.name LIKE 'term %' ORDER BY s.name" \
"term 1|succeeded|1|-|-|dispatched,started,succeeded|actor|run_succeeded
term 2|succeeded|2|-|-|dispatched,started,released,started,succeeded|actor|run_succeeded
term 3|succeeded|2|-|-|dispatched,started,released,started,succeeded|actor|run_succeeded"
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

  # ---------------------------------------------------------------- 4. run control
  log "phase 4: cancelled mid-flight, blocked at a heartbeat, lease lost at a heartbeat, released for later"
  psql -X -q -v ON_ERROR_STOP=1 -d "$DB" >/dev/null <<'SQL'
-- phase 1 revoked it; the restore below must be legitimate until it is cancelled
UPDATE rungate.tenant_prerequisites SET satisfied = true WHERE tenant_id = 10 AND name = 'admin_consent';
-- short leases: heartbeats every second (reports.export has 3 s since phase 1)
UPDATE rungate.operation_types SET lease = '3 seconds' WHERE name = 'inventory.sync';
INSERT INTO scenario
SELECT 'k cancelled_midflight', id FROM rungate.enqueue('restore.execute', 1, 10, 100,
        '{"snapshot": "s-cancelled", "sleep": 30}')
UNION ALL
SELECT 'l blocked_at_heartbeat', id FROM rungate.enqueue('reports.export', 2, NULL, 103, '{"sleep": 30}')
UNION ALL
SELECT 'm lease_lost_at_heartbeat', id FROM rungate.enqueue('inventory.sync', 1, 10, 100, '{"sleep": 30}')
UNION ALL
SELECT 'n released_later', id FROM rungate.enqueue('provider.connection.verify', 1, 10, 100,
        '{"later_attempts": 1}');
SQL
  local k l m pid_cancel pid_hbnull pid_hb409 pid_later
  k=$(scenario_id 'k cancelled_midflight')
  l=$(scenario_id 'l blocked_at_heartbeat')
  m=$(scenario_id 'm lease_lost_at_heartbeat')
  start_worker "$LANG_NAME-cancel" --ops restore.execute --max-runs 1 --poll 1; pid_cancel=$WPID
  start_worker "$LANG_NAME-hbnull" --ops reports.export --max-runs 1 --poll 1; pid_hbnull=$WPID
  start_worker "$LANG_NAME-hb409" --ops inventory.sync --max-runs 1 --poll 1; pid_hb409=$WPID
  start_worker "$LANG_NAME-later" --ops provider.connection.verify --max-runs 2 --poll 0.5; pid_later=$WPID
  wait_for "the three long jobs are running" 20 \
    "SELECT count(*) = 3 FROM rungate.runs WHERE id IN ($k, $l, $m) AND status = 'running'"
  sleep 1.5   # each job is in its 30 s of work, and has heartbeated at least once
  check "an operator cancels the restore while its job works" \
    "SELECT status FROM rungate.cancel($k, 101)" "cancelled"
  q "DELETE FROM rungate.workspace_members WHERE workspace_id = 2 AND actor_id = 103"
  echo "ok: the report's initiator lost its membership of workspace 2"
  check "the sync's lease expires and the reaper requeues it" \
    "UPDATE rungate.runs SET lease_expires_at = now() - interval '1 minute' WHERE id = $m;
     SELECT rungate.reap_expired()" "1"
  # their jobs would work for 30 s more: each worker stops it within seconds
  wait_worker "$LANG_NAME-cancel" 6 "$pid_cancel"
  wait_worker "$LANG_NAME-hbnull" 6 "$pid_hbnull"
  wait_worker "$LANG_NAME-hb409" 6 "$pid_hb409"
  wait_worker "$LANG_NAME-later" 15 "$pid_later"
  q "INSERT INTO rungate.workspace_members VALUES (2, 103, 'owner')"
  check "outcomes of run control (status|attempt|reason|error|events|authority|notifications)" \
    "$OUTCOME WHERE s.name ~ '^[klmn] ' ORDER BY s.name" \
"k cancelled_midflight|cancelled|1|-|-|dispatched,started,cancelled|actor|run_cancelled
l blocked_at_heartbeat|blocked|1|actor_not_in_workspace|-|dispatched,started,recheck_blocked|actor|run_blocked
m lease_lost_at_heartbeat|queued|1|-|lease of attempt 1 expired|dispatched,started,lease_expired|actor|-
n released_later|succeeded|2|-|-|dispatched,started,released,started,succeeded|actor|run_succeeded"
  check "the cancel names the operator; the heartbeat's block names the worker" \
    "SELECT a.event, a.actor_id, coalesce(a.worker, '-') FROM rungate.audit_log a
      WHERE (a.run_id = $k AND a.event = 'cancelled') OR (a.run_id = $l AND a.event = 'recheck_blocked')
      ORDER BY a.run_id" \
"cancelled|101|-
recheck_blocked|103|$LANG_NAME-hbnull"
  check "the cancelled restore left no row in the guarded restore_log" \
    "SELECT count(*) FROM public.restore_log WHERE run_id = $k" "0"
  if out=$(PGUSER=$ROLE psql -X -q -tA -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -d "$DB" -c \
      "INSERT INTO public.restore_log (run_id, tenant_id, snapshot) VALUES ($k, 10, 'late')" 2>&1); then
    fail "the worker role wrote restore_log for a cancelled run"
  fi
  case "$out" in *RG409*) echo "ok: the fence refused a late write: ${out%%$'\n'*}" ;;
                 *) fail "unexpected fence error: $out" ;; esac
  grep -qE "run $k restore.execute attempt 1: cancelled by an operator \(rungate_cancelled\)" \
    "$TMP/$LANG_NAME-cancel.log" || fail "the cancel worker did not log rungate_cancelled"
  grep -qE "run $k restore.execute attempt 1: stopped: " "$TMP/$LANG_NAME-cancel.log" \
    || fail "the cancel worker did not stop the job"
  echo "ok: the cancel worker heard rungate_cancelled and stopped the job"
  grep -qE "run $l reports.export attempt 1: stopped: blocked by heartbeat" "$TMP/$LANG_NAME-hbnull.log" \
    || fail "the hbnull worker did not stop the job on a null heartbeat"
  echo "ok: the hbnull worker stopped the job on a null heartbeat"
  grep -qE "run $m inventory.sync attempt 1: stopped: lease lost at heartbeat: RG409" "$TMP/$LANG_NAME-hb409.log" \
    || fail "the hb409 worker did not stop the job on RG409 at a heartbeat"
  echo "ok: the hb409 worker stopped the job on RG409 at a heartbeat"
  if grep -qE "run ($k|$l|$m) .*: (succeeded|failed|retry in|released)" "$TMP"/"$LANG_NAME"-{cancel,hbnull,hb409}.log; then
    fail "a worker reported an outcome for a run taken from it"
  fi
  echo "ok: nothing was reported for the runs taken away"
  check "released for later: no attempt spent (max_attempts 3 + 1), due 1 s later" \
    "SELECT r.max_attempts, r.run_at - a.at > interval '0.9 seconds', b.at >= r.run_at
       FROM rungate.runs r
       JOIN rungate.audit_log a ON a.run_id = r.id AND a.event = 'released'
       JOIN rungate.audit_log b ON b.run_id = r.id AND b.event = 'started' AND b.attempt = 2
      WHERE r.id = $(scenario_id 'n released_later')" \
    "4|t|t"
  local w
  for w in cancel hbnull hb409 later; do check_log "$LANG_NAME-$w"; done
  q "SELECT status FROM rungate.cancel($m)" >/dev/null   # out of phase 5's way

  # ---------------------------------------------------------------- 5. claim_block_limit
  log "phase 5: a 10,000-run illegitimate backlog, then the legitimate run behind it"
  psql -X -q -v ON_ERROR_STOP=1 -d "$DB" >/dev/null <<'SQL'
-- at a higher priority than the legitimate run, so that it is behind all of
-- them (at one priority, fair turns would start it at the first claim)
SELECT count(*) FROM (SELECT rungate.enqueue('inventory.sync', 2, 20, 103, priority => 1)
                        FROM generate_series(1, 10000)) s;
UPDATE rungate.workspaces SET status = 'suspended' WHERE id = 2;
INSERT INTO scenario
SELECT 'o legitimate_behind_backlog', id FROM rungate.enqueue('provider.connection.verify', 1, 10, 100);
SQL
  # the default limit (the worker's role sets nothing); polling every 30 s
  start_worker "$LANG_NAME-backlog" --max-runs 1 --poll 30
  wait_worker "$LANG_NAME-backlog" 25
  check "the backlog was blocked by the worker's claims, 1,000 per claim, in 10 claims" \
    "SELECT count(*), sum(n), max(n) FROM (
       SELECT a.txid, count(*) AS n FROM rungate.audit_log a
        WHERE a.event = 'execution_blocked' AND a.workspace_id = 2 AND a.worker = '$LANG_NAME-backlog'
        GROUP BY a.txid) c" \
    "10|10000|1000"
  check "nothing of the backlog is left queued" \
    "SELECT string_agg(status || ':' || n, ',') FROM (
       SELECT status, count(*) AS n FROM rungate.runs WHERE workspace_id = 2 AND priority = 1
        GROUP BY status) c" \
    "blocked:10000"
  check "then the legitimate run was started, by the 11th claim, within seconds (poll interval 30 s)" \
    "SELECT r.status, r.started_at > (SELECT max(a.at) FROM rungate.audit_log a
                                        WHERE a.event = 'execution_blocked' AND a.workspace_id = 2),
            r.started_at - (SELECT min(a.at) FROM rungate.audit_log a
                             WHERE a.event = 'execution_blocked' AND a.workspace_id = 2) < interval '20 seconds'
       FROM rungate.runs r WHERE r.id = $(scenario_id 'o legitimate_behind_backlog')" \
    "succeeded|t|t"
  check_log "$LANG_NAME-backlog"
  log "worker_$LANG_NAME: all checks passed"
}
