#!/usr/bin/env bash
# test/scripts/monitoring_scale.sh: with RG_SCALE_RUNS (default 1,000,000)
# runs in one workspace, a page of rungate.operations reads a page's worth of
# index entries, whoever asks: the plain list, a status filter, a tenant
# filter, a later page, and a viewer scoped to a tenant whose 50 runs are
# the oldest of the workspace (issue 25: every other run is newer). Since
# 1.7 the page is read in C (src/monitoring.c), so the reads are counted
# with this transaction's statistics of rungate.runs and its indexes: index
# entries returned and heap rows fetched through runs_tenant_status_idx and
# runs_workspace_status_idx, sequential scans of rungate.runs. The time per
# page is printed for information only, never asserted.
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
-- Load history directly (restore mode lets rows in as a restore would):
-- 50 runs of tenant 12 first, then finished runs of every terminal kind
-- spread over tenants 10 and 11 and the workspace itself.
SET rungate.restore_mode = on;
INSERT INTO rungate.runs (workspace_id, tenant_id, operation, initiator_id, status,
                          reason_code, reason_category, error, attempt, max_attempts,
                          created_at, finished_at)
SELECT 1, CASE WHEN g <= 50 THEN 12 WHEN g % 7 = 0 THEN NULL WHEN g % 3 = 0 THEN 11 ELSE 10 END,
       CASE WHEN g > 50 AND g % 7 = 0 THEN 'reports.export' ELSE 'inventory.sync' END, 100,
       CASE WHEN g % 50 = 0 THEN 'blocked' WHEN g % 20 = 0 THEN 'failed' ELSE 'succeeded' END,
       CASE WHEN g % 50 = 0 THEN 'tenant_not_operable' END,
       CASE WHEN g % 50 = 0 THEN 'operability' END,
       CASE WHEN g % 20 = 0 AND g % 50 <> 0 THEN 'timeout' END,
       1, 3, now() - (:n - g) * interval '1 second', now()
  FROM generate_series(1, :n) g;
RESET rungate.restore_mode;
VACUUM ANALYZE rungate.runs;
-- sam: a member of workspace 1 (no operations.view there) and of tenant 12
INSERT INTO rungate.actors (id, name) VALUES (106, 'sam');
INSERT INTO rungate.workspace_members VALUES (1, 106, 'readonly');
INSERT INTO rungate.tenant_members VALUES (12, 106, 'auditor');

SQL

out=$(psql -X -q -tA -F' ' -v ON_ERROR_STOP=1 -d "$db" <<'SQL'
SET client_min_messages = warning;
-- One call, with what it read: entries of the two indexes, heap rows
-- fetched through them, sequential scans of rungate.runs, and the time.
CREATE FUNCTION pg_temp.page(label text, viewer bigint, st text, tn bigint, before bigint,
                             OUT what text, OUT got bigint, OUT entries bigint,
                             OUT fetched bigint, OUT seq_scans bigint, OUT ms numeric)
  LANGUAGE plpgsql AS $$
DECLARE
  ti regclass := 'rungate.runs_tenant_status_idx';
  wi regclass := 'rungate.runs_workspace_status_idx';
  e0 bigint; f0 bigint; s0 bigint; t0 timestamptz;
BEGIN
  e0 := pg_stat_get_xact_tuples_returned(ti) + pg_stat_get_xact_tuples_returned(wi);
  f0 := pg_stat_get_xact_tuples_fetched(ti) + pg_stat_get_xact_tuples_fetched(wi);
  s0 := pg_stat_get_xact_numscans('rungate.runs'::regclass);
  t0 := clock_timestamp();
  SELECT count(*) INTO got FROM rungate.operations(viewer, 1, st, tn, 100, before);
  ms := round(extract(epoch FROM clock_timestamp() - t0)::numeric * 1000, 2);
  what := label;
  entries := pg_stat_get_xact_tuples_returned(ti) + pg_stat_get_xact_tuples_returned(wi) - e0;
  fetched := pg_stat_get_xact_tuples_fetched(ti) + pg_stat_get_xact_tuples_fetched(wi) - f0;
  seq_scans := pg_stat_get_xact_numscans('rungate.runs'::regclass) - s0;
END $$;
CREATE TEMP TABLE pages AS SELECT * FROM pg_temp.page('warm-up', 100, NULL, NULL, NULL) LIMIT 0;
INSERT INTO pages SELECT * FROM pg_temp.page('list', 100, NULL, NULL, NULL);
INSERT INTO pages SELECT * FROM pg_temp.page('status', 100, 'blocked', NULL, NULL);
INSERT INTO pages SELECT * FROM pg_temp.page('tenant', 100, NULL, 11, NULL);
INSERT INTO pages SELECT * FROM pg_temp.page('later', 100, NULL, NULL, 500000);
INSERT INTO pages SELECT * FROM pg_temp.page('scoped', 101, NULL, NULL, NULL);
INSERT INTO pages SELECT * FROM pg_temp.page('scoped-status', 101, 'failed', NULL, 500000);
INSERT INTO pages SELECT * FROM pg_temp.page('oldest-tenant', 106, NULL, NULL, NULL);
INSERT INTO pages SELECT * FROM pg_temp.page('oldest-tenant-filter', 106, 'succeeded', 12, NULL);
SELECT * FROM pages;
SQL
)
echo "page got entries fetched seq_scans ms"
echo "$out"
# each page: 100 rows (the oldest tenant's 50, 47 of them succeeded), at
# most 5 entries per row and 64 more, no sequential scan of rungate.runs
bad=$(echo "$out" | awk '{ want = ($1 ~ /^oldest-tenant-filter/) ? 47 : ($1 ~ /^oldest-tenant/) ? 50 : 100
                           if ($2 != want || $3 > 5 * $2 + 64 || $4 > $3 || $5 != 0) print }')
[ "$(echo "$out" | wc -l)" -eq 8 ] || { echo "FAIL: expected 8 pages"; exit 1; }
if [ -n "$bad" ]; then
  echo "FAIL: a page read more than its rows' worth, or scanned rungate.runs:"; echo "$bad"; exit 1
fi
echo "monitoring at $n runs: every page reads its own runs' entries, no sequential scan"
