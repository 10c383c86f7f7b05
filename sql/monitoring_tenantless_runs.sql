-- monitoring_tenantless_runs: workspace-scoped (tenantless) runs are seen
-- through the workspace role, also by a viewer with no tenant membership at
-- all; the list's filters, keyset paging and order; the detail's payload,
-- result, items and audit trail (docs/guarantees.md#monitoring).
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS rungate CASCADE;
CREATE EXTENSION rungate;
\set ECHO none
\i test/fixtures/seed.sql
\i test/fixtures/try.sql
\set ECHO all
-- pg_temp.try(stmt) (test/fixtures/try.sql): 'ok', or 'SQLSTATE: message'.

-- wes: auditor of workspace 1, member of no tenant.
INSERT INTO rungate.actors (id, name, status) VALUES (106, 'wes', 'active');
INSERT INTO rungate.workspace_members (workspace_id, actor_id, role) VALUES (1, 106, 'auditor');

-- Runs, oldest first:
--   1 report by olivia          (workspace run)
--   2 report, system authority  (workspace run)
--   3 inventory sync, tenant 10
--   4 inventory sync, tenant 11
--   5 report by rita: blocked at dispatch (readonly lacks reports.run)
--   6 report in workspace 2
SELECT id, status FROM rungate.enqueue('reports.export', 1, NULL, 100, '{"format": "csv"}');
SELECT id, status FROM rungate.enqueue('reports.export', 1);
SELECT id, status FROM rungate.enqueue('inventory.sync', 1, 10, 101);
SELECT id, status FROM rungate.enqueue('inventory.sync', 1, 11, 100);
SELECT id, status, reason_code FROM rungate.enqueue('reports.export', 1, NULL, 102);
SELECT id, status FROM rungate.enqueue('reports.export', 2, NULL, 103);

-- A worker runs the first report to completion.
SELECT run_id, lease_token AS token FROM rungate.claim('w-1', '{reports.export}') \gset
SELECT :run_id AS claimed_run;
SELECT id, status FROM rungate.complete(:run_id, :'token', '{"rows": 42}');

-- ---------------------------------------------------------------------
-- wes sees the workspace runs of workspace 1, newest first, and no tenant
-- run; the system-authority run says so.
-- ---------------------------------------------------------------------
SELECT run_id, workspace_id, tenant_id, operation, authority, initiator_id,
       status, reason_code
  FROM rungate.operations(106, 1);
-- its tenant filter and the tenant runs' details are outside its scope
SELECT pg_temp.try('SELECT * FROM rungate.operations(106, 1, tenant_id => 10)') AS wes_t10;
SELECT pg_temp.try('SELECT * FROM rungate.operation(106, 3)') AS wes_run3;
SELECT pg_temp.try('SELECT * FROM rungate.operation(106, 4)') AS wes_run4;
SELECT pg_temp.try('SELECT * FROM rungate.operations(106, 2)') AS wes_ws2;
-- the workspace runs' details are visible
SELECT d.run_id, d.tenant_id, d.authority, d.initiator_id, d.status, d.payload, d.result
  FROM unnest(ARRAY[1, 2, 5]) r, LATERAL rungate.operation(106, r) d;

-- olivia (owner of everything in workspace 1) sees every run of it.
SELECT run_id, tenant_id, operation, authority, status
  FROM rungate.operations(100, 1);

-- ---------------------------------------------------------------------
-- Filters: status, tenant, both
-- ---------------------------------------------------------------------
SELECT run_id, tenant_id, status FROM rungate.operations(100, 1, 'queued');
SELECT run_id, tenant_id, status FROM rungate.operations(100, 1, 'succeeded');
SELECT run_id, tenant_id, status, reason_code FROM rungate.operations(100, 1, 'blocked');
SELECT run_id, tenant_id, status FROM rungate.operations(100, 1, 'running');
SELECT run_id, tenant_id, status FROM rungate.operations(100, 1, tenant_id => 10);
SELECT run_id, tenant_id, status FROM rungate.operations(100, 1, 'queued', 11);
SELECT run_id, tenant_id, status FROM rungate.operations(100, 1, 'succeeded', 11);
SELECT run_id, tenant_id, status FROM rungate.operations(106, 1, 'queued');

-- ---------------------------------------------------------------------
-- Keyset paging: max_rows and before_id (the last run_id of a page)
-- ---------------------------------------------------------------------
SELECT run_id FROM rungate.operations(100, 1, max_rows => 2);
SELECT run_id FROM rungate.operations(100, 1, max_rows => 2, before_id => 4);
SELECT run_id FROM rungate.operations(100, 1, max_rows => 2, before_id => 2);
SELECT run_id FROM rungate.operations(100, 1, max_rows => 2, before_id => 1);
SELECT run_id FROM rungate.operations(106, 1, max_rows => 1, before_id => 5);
SELECT run_id FROM rungate.operations(100, 1, 'queued', max_rows => 1, before_id => 4);
SELECT run_id FROM rungate.operations(100, 1, 'queued', 10, max_rows => 1, before_id => 4);
-- walking every page of one run each gives the whole list, newest first
WITH RECURSIVE pages(n, run_id) AS (
    SELECT 1, (SELECT o.run_id FROM rungate.operations(100, 1, max_rows => 1) o)
  UNION ALL
    SELECT p.n + 1, (SELECT o.run_id FROM rungate.operations(100, 1, max_rows => 1, before_id => p.run_id) o)
      FROM pages p WHERE p.run_id IS NOT NULL
)
SELECT n, run_id FROM pages WHERE run_id IS NOT NULL;

-- ---------------------------------------------------------------------
-- The detail: timestamps as stored, the audit trail oldest first
-- ---------------------------------------------------------------------
SELECT d.run_id, d.status, d.attempt, d.created_at IS NOT NULL AS created,
       d.started_at IS NOT NULL AS started, d.finished_at IS NOT NULL AS finished,
       d.started_at >= d.created_at AND d.finished_at >= d.started_at AS in_order,
       d.items, jsonb_array_length(d.audit) AS audit_rows
  FROM rungate.operation(106, 1) d;
SELECT e.n, e.a->>'event' AS event, e.a->>'attempt' AS attempt,
       e.a->>'authority' AS authority, e.a->>'actor_id' AS actor_id,
       e.a->>'decision' AS decision, e.a->>'worker' AS worker,
       (e.a->>'run_id')::bigint = 1 AS own_run,
       e.a->'at' IS NOT NULL AND e.a->'txid' IS NOT NULL AS stamped
  FROM rungate.operation(106, 1) d,
       LATERAL jsonb_array_elements(d.audit) WITH ORDINALITY AS e(a, n)
 ORDER BY e.n;
-- oldest first: the ids and the times only grow
SELECT bool_and((e.a->>'id')::bigint > (p.a->>'id')::bigint) AS ids_ascending,
       bool_and((e.a->>'at')::timestamptz >= (p.a->>'at')::timestamptz) AS times_ascending
  FROM rungate.operation(106, 1) d,
       LATERAL jsonb_array_elements(d.audit) WITH ORDINALITY AS e(a, n),
       LATERAL jsonb_array_elements(d.audit) WITH ORDINALITY AS p(a, m)
 WHERE p.m = e.n - 1;
-- every audit column is there
SELECT array_agg(k ORDER BY k) AS audit_keys
  FROM rungate.operation(106, 1) d, LATERAL jsonb_object_keys(d.audit->0) k;
-- the run blocked at dispatch: one row, the denial
SELECT d.status, d.reason_code, d.reason_category, d.reason_message, d.error,
       d.started_at IS NULL AS never_started,
       d.audit->0->>'event' AS event, d.audit->0->>'decision' AS decision,
       d.audit->0->>'reason_code' AS audit_reason, jsonb_array_length(d.audit) AS audit_rows
  FROM rungate.operation(106, 5) d;

-- ---------------------------------------------------------------------
-- A bulk orchestrator is a workspace run: wes sees it, and its items'
-- counts, but not the items themselves (tenant runs).
-- ---------------------------------------------------------------------
SELECT id, status FROM rungate.enqueue_bulk('bulk.inventory.sync', 1, '{10,11}', 100);
SELECT d.run_id, d.status, d.items FROM rungate.operation(106, 7) d;
SELECT count(*) AS handed_out FROM rungate.claim('w-1', '{bulk.inventory.sync}');
SELECT d.run_id, d.status, d.items FROM rungate.operation(106, 7) d;
SELECT run_id, tenant_id, parent_id, status FROM rungate.operations(106, 1, max_rows => 3);
SELECT run_id, tenant_id, parent_id, status FROM rungate.operations(100, 1, max_rows => 3);
SELECT run_id, parent_id FROM rungate.operations(100, 1, tenant_id => 11, max_rows => 1) \gset item_
SELECT pg_temp.try(format('SELECT * FROM rungate.operation(106, %s)', :item_run_id)) AS wes_item;
SELECT d.run_id, d.parent_id, d.items FROM rungate.operation(100, :item_run_id) d;
-- an item ends: the counts follow
SELECT c.run_id AS item_run, c.lease_token AS item_token
  FROM rungate.claim('w-1', '{inventory.sync}', 10) c
  JOIN rungate.runs r ON r.id = c.run_id
 WHERE r.parent_id = 7 AND c.tenant_id = 10 \gset
SELECT id, status FROM rungate.complete(:item_run, :'item_token');
SELECT d.run_id, d.status, d.items FROM rungate.operation(106, 7) d;
