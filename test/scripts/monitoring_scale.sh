#!/usr/bin/env bash
# test/scripts/monitoring_scale.sh: with RG_SCALE_RUNS (default 1,000,000)
# runs in one workspace, a page of rungate.operations is served by an index
# (keyset paging by id, no sort of the workspace, no sequential scan), for
# the plain list, a status filter, a tenant filter and a later page. The
# plans are read with auto_explain (nested statements at NOTICE level); the
# time per page is printed for information only, never asserted.
set -euo pipefail
db=rg_monitoring_scale n=${RG_SCALE_RUNS:-1000000}
trap 'dropdb --if-exists "$db" 2>/dev/null || true' EXIT
dropdb --if-exists "$db" 2>/dev/null || true
createdb "$db"
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

psql -X -q -v ON_ERROR_STOP=1 -d "$db" -v n="$n" <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION rungate;
\i test/fixtures/seed.sql
-- Load history directly (restore mode lets rows in as a restore would);
-- finished runs of every terminal kind, spread over both tenants.
SET rungate.restore_mode = on;
INSERT INTO rungate.runs (workspace_id, tenant_id, operation, initiator_id, status,
                          reason_code, reason_category, error, attempt, max_attempts,
                          created_at, finished_at)
SELECT 1, CASE WHEN g % 3 = 0 THEN 11 ELSE 10 END, 'inventory.sync', 100,
       CASE WHEN g % 50 = 0 THEN 'blocked' WHEN g % 20 = 0 THEN 'failed' ELSE 'succeeded' END,
       CASE WHEN g % 50 = 0 THEN 'tenant_not_operable' END,
       CASE WHEN g % 50 = 0 THEN 'operability' END,
       CASE WHEN g % 20 = 0 AND g % 50 <> 0 THEN 'timeout' END,
       1, 3, now() - (:n - g) * interval '1 second', now()
  FROM generate_series(1, :n) g;
RESET rungate.restore_mode;
VACUUM ANALYZE rungate.runs;
SQL

plans=$(psql -X -q -v ON_ERROR_STOP=1 -d "$db" 2>&1 <<'SQL'
LOAD 'auto_explain';
SET auto_explain.log_min_duration = 0;
SET auto_explain.log_nested_statements = on;
SET auto_explain.log_level = notice;
SET client_min_messages = notice;
\timing on
\o /dev/null
SELECT * FROM rungate.operations(100, 1);
SELECT * FROM rungate.operations(100, 1, status => 'blocked');
SELECT * FROM rungate.operations(100, 1, tenant_id => 11);
SELECT * FROM rungate.operations(100, 1, before_id => 500000);
SQL
)
echo "$plans" | grep -E '^Time:' | sed 's/^/page /'

# every plan that reads rungate.runs uses one of its indexes, never a seq scan or a sort
list_plans=$(echo "$plans" | awk '/Query Text:/{q=$0} /rungate\.runs r/{print q}' | wc -l)
if echo "$plans" | grep -qE 'Seq Scan on runs'; then
  echo "FAIL: a list query scans rungate.runs sequentially"; echo "$plans"; exit 1
fi
if echo "$plans" | grep -E -A3 'Limit' | grep -qE '^\s*->\s*Sort'; then
  echo "FAIL: a list query sorts instead of walking an index"; echo "$plans"; exit 1
fi
scans=$(echo "$plans" | grep -cE 'Index (Only )?Scan( Backward)? using runs_' || true)
[ "$scans" -ge 4 ] || { echo "FAIL: expected the four pages to walk runs indexes, saw $scans"; echo "$plans"; exit 1; }
echo "$plans" | grep -oE 'Index (Only )?Scan( Backward)? using runs_[a-z_]+' | sort | uniq -c
echo "monitoring at $n runs: every page walks an index"
