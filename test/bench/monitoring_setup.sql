-- test/bench/monitoring_setup.sql: the world of BENCH_MODE=monitoring
-- (test/bench/monitoring.sh), issue 25.
--
-- psql variables: others (the runs of other tenants, 0 or 1,000,000),
-- extversion (default: the control file's default_version).
--
-- Workspace 1 has ten tenants, 101 to 110. The viewer (actor 1) is a member
-- of the workspace whose role grants no operations.view, and an auditor of
-- tenants 101 and 103: it sees their runs and nothing else. Its runs come
-- first (ids 1 to 10,000: 5,000 per tenant, 2% blocked, 5% failed, the rest
-- succeeded), the same in every database; then, when :others > 0, that many
-- runs of the other tenants and of the workspace itself, all newer, so a
-- page of the viewer's runs has every one of them in front of it in id order.
-- Runs are loaded as a restore would load them (rungate.restore_mode).
SET client_min_messages = warning;
\if :{?extversion}
CREATE EXTENSION rungate VERSION :'extversion';
\else
CREATE EXTENSION rungate;
\endif
INSERT INTO rungate.workspaces (id, name) VALUES (1, 'bench');
INSERT INTO rungate.tenants (id, workspace_id, name)
  SELECT t, 1, 'tenant-' || t FROM generate_series(101, 110) t;
INSERT INTO rungate.actors (id, name) VALUES (1, 'viewer'), (2, 'owner');
INSERT INTO rungate.role_capabilities VALUES
  ('owner', 'inventory.sync'), ('owner', 'reports.export'), ('owner', 'operations.view'),
  ('auditor', 'operations.view'), ('member', 'reports.read');
INSERT INTO rungate.workspace_members VALUES (1, 1, 'member'), (1, 2, 'owner');
INSERT INTO rungate.tenant_members VALUES (101, 1, 'auditor'), (103, 1, 'auditor');
INSERT INTO rungate.tenant_members SELECT t, 2, 'owner' FROM generate_series(101, 110) t;
INSERT INTO rungate.operation_types (name, capability, scope, requires_operable_tenant) VALUES
  ('inventory.sync', 'inventory.sync', 'tenant', true),
  ('reports.export', 'reports.export', 'workspace', false);

CREATE SCHEMA bench;
-- n runs of workspace 1 on the tenants t (NULL: the workspace's own), in
-- turn, finished at one-second steps from start
CREATE FUNCTION bench.load(n integer, t bigint[]) RETURNS void LANGUAGE sql AS $$
  SET rungate.restore_mode = on;
  INSERT INTO rungate.runs (workspace_id, tenant_id, operation, initiator_id, status,
                            reason_code, reason_category, error, attempt, max_attempts,
                            created_at, started_at, finished_at)
  SELECT 1, x.tenant, CASE WHEN x.tenant IS NULL THEN 'reports.export' ELSE 'inventory.sync' END,
         2, CASE WHEN g % 50 = 0 THEN 'blocked' WHEN g % 20 = 0 THEN 'failed' ELSE 'succeeded' END,
         CASE WHEN g % 50 = 0 THEN 'tenant_not_operable' END,
         CASE WHEN g % 50 = 0 THEN 'operability' END,
         CASE WHEN g % 20 = 0 AND g % 50 <> 0 THEN 'timeout' END,
         1, 3, x.at, CASE WHEN g % 50 <> 0 THEN x.at END, x.at + interval '1 second'
    FROM generate_series(1, n) g,
         LATERAL (SELECT t[g % array_length(t, 1) + 1] AS tenant,
                         timestamptz '2024-01-01' + g * interval '1 second' AS at) x
   ORDER BY g;
  RESET rungate.restore_mode;
$$;
SELECT bench.load(10000, '{101,103}');
-- the others, by 100,000: 10% without a tenant, 20% on tenant 102
SELECT bench.load(100000, '{102,104,105,106,107,108,109,110,NULL,102}')
  FROM generate_series(1, :others / 100000);
VACUUM ANALYZE;

-- The median time of calls calls of operations(viewer 1, workspace 1, st, tn)
-- (the default page of 100), in microseconds, timed in the server; and a
-- fingerprint of the page, to check every database answers the same page.
CREATE FUNCTION bench.page_us(st text, tn bigint, calls integer) RETURNS numeric
  LANGUAGE plpgsql AS $$
DECLARE
  t timestamptz;
  d numeric[] := '{}';
  n bigint;
BEGIN
  FOR i IN 1..calls LOOP
    t := clock_timestamp();
    SELECT count(*) INTO n FROM rungate.operations(1, 1, st, tn);
    d := d || (extract(epoch FROM clock_timestamp() - t) * 1000000)::numeric;
  END LOOP;
  RETURN (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x) FROM unnest(d) x);
END $$;
CREATE FUNCTION bench.page_md5(st text, tn bigint) RETURNS text LANGUAGE sql AS $$
  SELECT md5(string_agg(o.run_id || ':' || o.status || ':' || coalesce(o.tenant_id, 0), ',' ORDER BY k))
    FROM rungate.operations(1, 1, st, tn) WITH ORDINALITY o(run_id, workspace_id, tenant_id,
         operation, authority, initiator_id, status, reason_code, reason_category,
         reason_message, error, attempt, parent_id, created_at, started_at, finished_at, k)
$$;
