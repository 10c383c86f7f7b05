#!/usr/bin/env bash
# test/scripts/pg_cron.sh: the scheduling recipe of docs/scheduling.md, with
# pg_cron in a cluster of its own (pg_cron must be in shared_preload_libraries,
# which the suite's cluster does not have).
#
# Starts a throwaway cluster with pg_cron preloaded (test/lib.sh), applies the
# recipe's set-up block verbatim from docs/scheduling.md (the scheduler role
# and its grants), and, as that role, schedules:
#   - a system-authority run (initiator NULL) on tenant 12, which is onboarding:
#     it appears, decided as system authority (the actor checks skipped), and
#     is recorded blocked at dispatch (tenant_not_operable, operability), with
#     no notification;
#   - a system-authority run on tenant 11 (operable; an idempotency key keeps
#     it to one run): it appears queued; the tenant is then suspended and a
#     claim blocks it (execution_blocked, authority system), no notification;
#   - rungate.reap_expired(): a run claimed by a worker that died (1 s lease)
#     goes back to the queue (audit lease_expired);
#   - CALL rungate.purge_in_batches(now() - interval '30 days'), as the recipe
#     has it (a procedure that commits, run by a pg_cron background worker);
#   - rungate.run_schedules(): a row of rungate.schedules (every minute,
#     created an hour ago) gets one run, for its latest tick only, without
#     rungate in shared_preload_libraries (so no scheduler of its own).
# Every job must have run and succeeded, as the scheduler role.
# pg_cron 1.5+ runs the jobs every second ('1 seconds'); Debian bookworm's 1.4
# knows only minutes ('* * * * *'), so there the test waits for the next minute
# boundary: at most about 65 s, 10 s with 1.5+.
# Run by test/run-tests.sh (its PG* environment is not used: the cluster is
# this script's own). Installs postgresql-15-cron when missing; on another
# major, pg_cron comes with test/pg-build.sh's tree (17's does; 18's source
# build and 19 have none): without it the test is skipped (exit 77).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
cd "$RG_ROOT"
SCHED=rungate_scheduler           # the recipe's role (a private cluster: no clash)

rg_pg_paths
major=$("$PG_CONFIG" --version | sed -n 's/^PostgreSQL \([0-9][0-9]*\).*/\1/p')
if [ "$RG_PKGLIBDIR" = /usr/lib/postgresql/15/lib ]; then
  rg_install_deps postgresql-15-cron
else
  rg_install_deps   # another major: pg_cron comes with its tree, if at all
fi
if [ ! -f "$RG_PKGLIBDIR/pg_cron.so" ]; then
  echo "skip: no pg_cron for PostgreSQL $major in $RG_PKGLIBDIR (test/pg-build.sh)"
  exit 77
fi
[ -f "$RG_PKGLIBDIR/rungate.so" ] || rg_die "rungate is not installed (make install)"
rg_cluster_start "shared_preload_libraries = 'pg_cron'" \
                 "cron.database_name = 'postgres'" \
                 "cron.use_background_workers = on" \
                 "max_worker_processes = 16"

q() { psql -X -q -v ON_ERROR_STOP=1 -tA -c "$1"; }
check() {
  local got
  got=$(q "$2")
  if [ "$got" != "$3" ]; then
    printf 'FAIL: %s\n--- want\n%s\n--- got\n%s\n' "$1" "$3" "$got"
    echo "--- cron.job_run_details"
    q "SELECT jobid, status, username, command, return_message FROM cron.job_run_details ORDER BY runid" || true
    exit 1
  fi
  echo "ok: $1"
}

psql -X -q -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
CREATE EXTENSION rungate;
\i test/fixtures/seed.sql
SQL
# the recipe's set-up, verbatim: the first ```sql block of docs/scheduling.md
# that starts with "-- set-up"
awk '/^```sql$/ { inblock = 1; first = 1; next }
     /^```$/    { if (keep) exit; inblock = 0; next }
     inblock && first { first = 0; if ($0 ~ /^-- set-up/) keep = 1 }
     inblock && keep' docs/scheduling.md >"$RG_TMP/setup.sql"
grep -q 'CREATE EXTENSION IF NOT EXISTS pg_cron' "$RG_TMP/setup.sql" || rg_die "no set-up block in docs/scheduling.md"
psql -X -q -v ON_ERROR_STOP=1 -f "$RG_TMP/setup.sql" >/dev/null
echo "ok: the recipe's set-up applied (pg_cron $(q "SELECT extversion FROM pg_extension WHERE extname = 'pg_cron'"))"

# ---- a recurring run: rungate's own scheduler is not running here (not preloaded)
q "INSERT INTO rungate.schedules (name, cron, operation, workspace_id, tenant_id, created_at)
   VALUES ('every-minute', '* * * * *', 'inventory.sync', 1, 10, now() - interval '1 hour')"
check "rungate's own scheduler does not run without preload" \
  "SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'rungate%'" "0"

# ---- a run held by a worker that died: a 1 s lease nobody renews
q "UPDATE rungate.operation_types SET lease = '1 second' WHERE name = 'inventory.sync';
   SELECT rungate.enqueue('inventory.sync', 1, 10, 100, idempotency_key => 'crashed')" >/dev/null
check "a worker claims a run and dies" \
  "SELECT count(*) FROM rungate.claim('crashed-worker', '{inventory.sync}', 1)" "1"

# ---- the schedule: every second where pg_cron has seconds, else every minute
EVERY='1 seconds'
if ! q "SELECT cron.unschedule(cron.schedule('probe-seconds', '1 seconds', 'SELECT 1'))" >/dev/null 2>&1; then
  EVERY='* * * * *'
  # at least a few seconds before the minute boundary, so the crashed lease has expired
  sec=$(date +%S); sec=${sec#0}
  if [ "$sec" -ge 56 ]; then sleep $((61 - sec)); fi
  echo "ok: pg_cron without seconds: every minute (the next boundary is $((60 - $(date +%S | sed 's/^0//'))) s away)"
fi
sleep 1.2   # the crashed worker's lease has expired
psql -X -q -v ON_ERROR_STOP=1 >/dev/null <<SQL
SET ROLE $SCHED;
SELECT cron.schedule('scheduled-verify-acme-new', '$EVERY',
  \$\$SELECT rungate.enqueue('provider.connection.verify', 1, 12, NULL, '{"scheduled": true}')\$\$);
SELECT cron.schedule('scheduled-verify-acme-us', '$EVERY',
  \$\$SELECT rungate.enqueue('provider.connection.verify', 1, 11, NULL, '{"scheduled": true}',
                            idempotency_key => 'scheduled-verify-acme-us')\$\$);
SELECT cron.schedule('rungate-reap-expired', '$EVERY', \$\$SELECT rungate.reap_expired()\$\$);
SELECT cron.schedule('rungate-purge', '$EVERY', \$\$CALL rungate.purge_in_batches(now() - interval '30 days')\$\$);
SELECT cron.schedule('rungate-run-schedules', '$EVERY', \$\$SELECT count(*) FROM rungate.run_schedules()\$\$);
RESET ROLE;
SQL

deadline=$((SECONDS + 75))
until [ "$(q "SELECT count(DISTINCT d.jobid) FROM cron.job_run_details d JOIN cron.job j USING (jobid)
                WHERE d.status IN ('succeeded', 'failed')")" = 5 ]; do
  [ $SECONDS -lt $deadline ] || { q "SELECT * FROM cron.job_run_details"; rg_die "the jobs did not all run within 75 s"; }
  sleep 0.5
done
# what ran, by job name, before the jobs are unscheduled (then nothing runs any more)
q "CREATE TABLE cron_runs AS SELECT j.jobname, d.status, d.username, d.return_message
     FROM cron.job_run_details d JOIN cron.job j USING (jobid)
    WHERE d.status IN ('succeeded', 'failed')"
q "SET ROLE $SCHED; SELECT cron.unschedule(jobname) FROM cron.job; RESET ROLE" >/dev/null
check "the jobs are unscheduled" "SELECT count(*) FROM cron.job" "0"
sleep 0.5   # a job started just before the unschedule finishes
echo "ok: every scheduled job ran"
check "the five jobs succeeded, as the scheduler role" \
  "SELECT jobname, bool_and(status = 'succeeded'), string_agg(DISTINCT username, ',')
     FROM cron_runs GROUP BY jobname ORDER BY jobname" \
"rungate-purge|t|$SCHED
rungate-reap-expired|t|$SCHED
rungate-run-schedules|t|$SCHED
scheduled-verify-acme-new|t|$SCHED
scheduled-verify-acme-us|t|$SCHED"

# ---- tenant 12 (onboarding): a system run, blocked at dispatch
check "scheduled runs on tenant 12 appeared, initiator NULL, blocked: tenant_not_operable" \
  "SELECT count(*) > 0, string_agg(DISTINCT status || '|' || reason_code || '|' || reason_category
                                   || '|' || coalesce(initiator_id::text, 'null') || '|' || attempt
                                   || '|' || (started_at IS NULL), ',')
     FROM rungate.runs WHERE tenant_id = 12" \
  "t|blocked|tenant_not_operable|operability|null|0|true"
check "audited as a system-authority denial at dispatch; the actor checks were skipped" \
  "SELECT DISTINCT a.event, a.authority, coalesce(a.actor_id::text, 'null'), a.decision, a.reason_code,
          (SELECT string_agg(c->>'code' || ':' || (c->>'passed'), ',' ORDER BY o)
             FROM jsonb_array_elements(a.checks) WITH ORDINALITY AS e(c, o))
     FROM rungate.audit_log a JOIN rungate.runs r ON r.id = a.run_id WHERE r.tenant_id = 12" \
  "dispatch_blocked|system|null|deny|tenant_not_operable|system_authority_not_allowed:true,tenant_not_in_workspace:true,workspace_not_operable:true,tenant_not_operable:false,prerequisite_unmet:true"

# ---- tenant 11 (operable): queued; suspended; a claim blocks it
check "the scheduled run on tenant 11 appeared queued, once, as system authority" \
  "SELECT r.status, coalesce(r.initiator_id::text, 'null'), a.event, a.authority, a.decision
     FROM rungate.runs r JOIN rungate.audit_log a ON a.run_id = r.id
    WHERE r.tenant_id = 11 ORDER BY a.id" \
  "queued|null|dispatched|system|allow"
q "UPDATE rungate.tenants SET status = 'suspended' WHERE id = 11"
check "after the tenant is suspended, a claim hands out nothing" \
  "SELECT count(*) FROM rungate.claim('cron-test-worker', '{provider.connection.verify}', 10)" "0"
check "the run is blocked at claim: tenant_not_operable, authority system, never started" \
  "SELECT r.status, r.reason_code, r.reason_category, r.started_at IS NULL,
          string_agg(a.event || ':' || a.authority || ':' || coalesce(a.decision, '-'), ',' ORDER BY a.id)
     FROM rungate.runs r JOIN rungate.audit_log a ON a.run_id = r.id
    WHERE r.tenant_id = 11 GROUP BY r.id" \
  "blocked|tenant_not_operable|operability|t|dispatched:system:allow,execution_blocked:system:deny"
check "no notification for any system run (none at all here)" \
  "SELECT count(*) FROM rungate.notifications" "0"

# ---- the reaper
check "the scheduled reaper requeued the dead worker's run (lease_expired)" \
  "SELECT r.status, r.attempt, r.lease_expires_at IS NULL,
          string_agg(a.event || ':' || coalesce(a.worker, '-'), ',' ORDER BY a.id)
     FROM rungate.runs r JOIN rungate.audit_log a ON a.run_id = r.id
    WHERE r.idempotency_key = 'crashed' GROUP BY r.id" \
  "queued|1|t|dispatched:-,started:crashed-worker,lease_expired:crashed-worker"
# ---- the recurring run
check "the schedule's ticks were enqueued once each, the first one coalescing the past hour" \
  "SELECT count(*) >= 1, count(*) = count(DISTINCT idempotency_key),
          min(run_at) >= date_trunc('minute', (SELECT created_at FROM rungate.schedules)) + interval '59 minutes',
          max(run_at) = (SELECT last_tick FROM rungate.schedules),
          bool_and(initiator_id IS NULL AND status = 'queued')
     FROM rungate.runs WHERE idempotency_key LIKE 'schedule:every-minute:%'" \
  "t|t|t|t|t"
echo "pg_cron: all checks passed"
