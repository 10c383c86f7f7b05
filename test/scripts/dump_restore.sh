#!/usr/bin/env bash
# test/scripts/dump_restore.sh: pg_dump and restore of a database using
# rungate brings back every authority row, run, audit row and notification
# (pg_extension_config_dump), ids continue where they were, and the restored
# database still enforces every guard. Run by test/run-tests.sh with the
# cluster's PG* environment; exits non-zero on any difference.
set -euo pipefail
src=rg_dump_src dst=rg_dump_dst dump=$(mktemp /tmp/rungate-dump.XXXXXX)
trap 'rm -f "$dump"; dropdb --if-exists "$src" 2>/dev/null; dropdb --if-exists "$dst" 2>/dev/null' EXIT
q() { psql -X -q -v ON_ERROR_STOP=1 -tA -d "$1" -c "$2"; }

dropdb --if-exists "$src" 2>/dev/null; dropdb --if-exists "$dst" 2>/dev/null
createdb "$src"
psql -X -q -v ON_ERROR_STOP=1 -d "$src" >/dev/null <<'SQL'
CREATE EXTENSION rungate;
\i test/fixtures/seed.sql
-- a run in every state: blocked at dispatch, blocked at claim, running,
-- succeeded, failed, cancelled, queued, and a bulk parent with items
SELECT rungate.enqueue('restore.execute', 1, 11, 100);
SELECT rungate.enqueue('inventory.sync', 1, 10, 101);
SELECT rungate.enqueue('inventory.sync', 1, 10, 100) FROM generate_series(1, 3);
SELECT rungate.enqueue_bulk('bulk.inventory.sync', 1, '{10,11,12}', 100);
DELETE FROM rungate.tenant_members WHERE tenant_id = 10 AND actor_id = 101;
SELECT count(*) FROM rungate.claim('w', NULL, 10);
SELECT rungate.complete(id, lease_token) FROM rungate.runs WHERE status = 'running' AND id = 3;
SELECT rungate.fail(id, lease_token, 'boom') FROM rungate.runs WHERE status = 'running' AND id = 4;
SELECT rungate.enqueue('inventory.sync', 1, 10, 100, run_at => now() + interval '1 day');
SELECT rungate.cancel((SELECT max(id) FROM rungate.runs), 100);
SELECT rungate.enqueue('inventory.sync', 1, 10, 100);
-- recurring runs: restored through their validation trigger, last_tick kept
INSERT INTO rungate.schedules (name, cron, operation, workspace_id, tenant_id, last_tick)
VALUES ('nightly', '0 2 * * *', 'inventory.sync', 1, 10, '2030-01-01 02:00+00');
INSERT INTO rungate.schedules (name, cron, operation, workspace_id, initiator_id, enabled)
VALUES ('hourly-report', '@hourly', 'reports.export', 1, 100, false);
SQL

fingerprint() {
  q "$1" "SELECT md5(string_agg(x, '|' ORDER BY x)) FROM (
      SELECT 'r' || to_jsonb(r)::text AS x FROM rungate.runs r
      UNION ALL SELECT 'a' || to_jsonb(a)::text FROM rungate.audit_log a
      UNION ALL SELECT 'n' || to_jsonb(n)::text FROM rungate.notifications n
      UNION ALL SELECT 't' || to_jsonb(t)::text FROM rungate.tenants t
      UNION ALL SELECT 'm' || to_jsonb(m)::text FROM rungate.tenant_members m
      UNION ALL SELECT 'o' || to_jsonb(o)::text FROM rungate.operation_types o
      UNION ALL SELECT 'p' || to_jsonb(p)::text FROM rungate.tenant_prerequisites p
      UNION ALL SELECT 's' || to_jsonb(s)::text FROM rungate.schedules s) s"
}

pg_dump -Fc -d "$src" -f "$dump" 2>/dev/null
createdb "$dst"

# Without restore mode the guards refuse the dumped runs: nothing sneaks in.
if pg_restore -d "$dst" "$dump" >/dev/null 2>&1; then
  echo "FAIL: a plain restore loaded runs past the guards"; exit 1
fi
[ "$(q "$dst" 'SELECT count(*) FROM rungate.runs')" = 0 ] \
  || { echo "FAIL: a refused restore left runs behind"; exit 1; }

dropdb "$dst"; createdb "$dst"
PGOPTIONS='-c rungate.restore_mode=on' pg_restore -d "$dst" "$dump"

a=$(fingerprint "$src") b=$(fingerprint "$dst")
[ "$a" = "$b" ] || { echo "FAIL: restored data differs ($a vs $b)"; exit 1; }
echo "restored data identical: $a"

# ids continue; guards still enforced, ENABLE ALWAYS kept
next=$(q "$dst" "SELECT (rungate.enqueue('inventory.sync', 1, 10, 100)).id")
max=$(q "$src" 'SELECT max(id) FROM rungate.runs')
[ "$next" -gt "$max" ] || { echo "FAIL: new run id $next not after $max"; exit 1; }
[ "$(q "$dst" "SELECT string_agg(tgname || '=' || tgenabled::text, ',' ORDER BY tgname) FROM pg_trigger WHERE tgrelid IN ('rungate.runs'::regclass, 'rungate.audit_log'::regclass) AND NOT tgisinternal")" \
  = "guard_audit=A,guard_audit_truncate=A,guard_runs=A,guard_runs_truncate=A,note_queued=A" ] \
  || { echo "FAIL: guard triggers not ENABLE ALWAYS after restore"; exit 1; }
for stmt in "UPDATE rungate.runs SET status = 'running' WHERE status = 'queued'" \
            "UPDATE rungate.runs SET status = 'queued' WHERE status = 'succeeded'" \
            "DELETE FROM rungate.audit_log" \
            "INSERT INTO rungate.runs (workspace_id, operation, status, max_attempts) VALUES (1, 'reports.export', 'queued', 1)"; do
  if out=$(psql -X -q -d "$dst" -v ON_ERROR_STOP=1 -c "$stmt" 2>&1); then
    echo "FAIL: restored database allowed: $stmt"; exit 1
  fi
  case "$out" in *"rungate"*|*"run "*) ;; *) echo "FAIL: unexpected error for $stmt: $out"; exit 1 ;; esac
  echo "refused as expected: $stmt"
done
echo "dump and restore: ok"
