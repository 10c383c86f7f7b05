-- monitoring_access: who may call the operations surfaces, and what each
-- kind of viewer gets (docs/guarantees.md#monitoring, #errors).
--   RG404  outside scope, or nonexistent: the two are indistinguishable
--   RG403  in scope, but no membership in it grants operations.view
--   RG400  bad arguments
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS rungate CASCADE;
CREATE EXTENSION rungate;
\set ECHO none
\i test/fixtures/seed.sql
\i test/fixtures/try.sql
\set ECHO all
-- pg_temp.try(stmt) (test/fixtures/try.sql): 'ok', or 'SQLSTATE: message'.

-- Runs: a tenant run on tenant 10, one on tenant 11 (only olivia is a member
-- there), a workspace run, and a run of workspace 2.
SELECT id AS r_t10, status FROM rungate.enqueue('inventory.sync', 1, 10, 101) \gset
SELECT id AS r_t11, status FROM rungate.enqueue('inventory.sync', 1, 11, 100) \gset
SELECT id AS r_ws, status FROM rungate.enqueue('reports.export', 1, NULL, 100) \gset
SELECT id AS r_g, status FROM rungate.enqueue('inventory.sync', 2, 20, 103) \gset
SELECT id, workspace_id, tenant_id, operation, initiator_id, status
  FROM rungate.runs ORDER BY id;

-- ---------------------------------------------------------------------
-- rungate.operations: the list
-- ---------------------------------------------------------------------

-- Outside scope: unknown viewer, disabled actor, outsider of workspace 1,
-- and a workspace that does not exist. All the same answer.
SELECT v AS viewer, pg_temp.try(format('SELECT * FROM rungate.operations(%s, 1)', v))
  FROM unnest(ARRAY[999, 104, 103]) v;
SELECT pg_temp.try('SELECT * FROM rungate.operations(100, 3)') AS unknown_workspace;
SELECT pg_temp.try('SELECT * FROM rungate.operations(103, 1)')
     = replace(pg_temp.try('SELECT * FROM rungate.operations(103, 3)'), '3', '1')
       AS outsider_looks_like_missing;

-- In scope, no operations.view in any membership: rita (readonly).
SELECT pg_temp.try('SELECT * FROM rungate.operations(102, 1)') AS rita;

-- Viewers with operations.view see what their memberships show, newest first.
-- olivia: everything of workspace 1.
SELECT run_id, tenant_id, operation, authority, initiator_id, status
  FROM rungate.operations(100, 1);
-- oscar (operator of ws 1 and tenant 10): not tenant 11's run.
SELECT run_id, tenant_id, operation, authority, initiator_id, status
  FROM rungate.operations(101, 1);
-- ada (auditor): the same scope as oscar.
SELECT run_id, tenant_id, operation, authority, initiator_id, status
  FROM rungate.operations(105, 1);
-- gus sees workspace 2 only.
SELECT run_id, workspace_id, tenant_id, operation, status
  FROM rungate.operations(103, 2);

-- Tenant filter: the viewer needs a membership on that tenant, and the
-- tenant must belong to the workspace. Not a member, another workspace's
-- tenant and a nonexistent tenant are the same answer.
SELECT t AS tenant, pg_temp.try(format('SELECT * FROM rungate.operations(101, 1, tenant_id => %s)', t))
  FROM unnest(ARRAY[11, 20, 99]) t;
-- a membership on a tenant of another workspace does not bring it into this one
INSERT INTO rungate.tenant_members (tenant_id, actor_id, role) VALUES (20, 101, 'operator');
SELECT pg_temp.try('SELECT * FROM rungate.operations(101, 1, tenant_id => 20)') AS oscar_t20_in_ws1;
SELECT pg_temp.try('SELECT * FROM rungate.operations(101, 2, tenant_id => 20)') AS oscar_t20_in_ws2;
SELECT pg_temp.try(format('SELECT * FROM rungate.operation(101, %s)', :r_g)) AS oscar_run_of_t20;
DELETE FROM rungate.tenant_members WHERE tenant_id = 20 AND actor_id = 101;
-- outside the workspace, the tenant filter changes nothing
SELECT v AS viewer, pg_temp.try(format('SELECT * FROM rungate.operations(%s, 1, tenant_id => 10)', v))
  FROM unnest(ARRAY[999, 104, 103]) v;
-- in scope of tenant 10 but readonly there
SELECT pg_temp.try('SELECT * FROM rungate.operations(102, 1, tenant_id => 10)') AS rita_t10;
SELECT run_id, tenant_id, status FROM rungate.operations(100, 1, tenant_id => 11);
SELECT run_id, tenant_id, status FROM rungate.operations(105, 1, tenant_id => 10);

-- ---------------------------------------------------------------------
-- rungate.operation: the detail
-- ---------------------------------------------------------------------

-- Outside scope: unknown, disabled, outsider, and a workspace member with
-- no membership on the run's tenant; a nonexistent run says the same.
SELECT v AS viewer, r AS run,
       pg_temp.try(format('SELECT * FROM rungate.operation(%s, %s)', v, r))
  FROM (VALUES (999, :r_t10), (104, :r_t10), (103, :r_t10), (103, :r_ws),
               (101, :r_t11), (105, :r_t11), (100, :r_g), (100, 424242)) x(v, r);
SELECT replace(pg_temp.try(format('SELECT * FROM rungate.operation(101, %s)', :r_t11)), :'r_t11', 'N')
     = replace(pg_temp.try('SELECT * FROM rungate.operation(101, 424242)'), '424242', 'N')
       AS out_of_scope_looks_like_missing;

-- In scope, not visible: rita's tenant role and workspace role are readonly.
SELECT r AS run, pg_temp.try(format('SELECT * FROM rungate.operation(102, %s)', r))
  FROM unnest(ARRAY[:r_t10, :r_ws]) r;

-- Visible.
SELECT v AS viewer, d.run_id, d.tenant_id, d.operation, d.status
  FROM (VALUES (100, :r_t10), (100, :r_t11), (100, :r_ws), (101, :r_t10),
               (101, :r_ws), (105, :r_t10), (105, :r_ws), (103, :r_g)) x(v, r),
       LATERAL rungate.operation(x.v, x.r) d
 ORDER BY v, d.run_id;

-- ---------------------------------------------------------------------
-- The membership that scopes the run decides, not any other one.
-- ---------------------------------------------------------------------

-- rita becomes auditor on tenant 10 (still readonly in the workspace): the
-- list opens, with tenant 10's run only; the workspace run stays forbidden.
UPDATE rungate.tenant_members SET role = 'auditor' WHERE tenant_id = 10 AND actor_id = 102;
SELECT run_id, tenant_id, status FROM rungate.operations(102, 1);
SELECT d.run_id, d.status FROM rungate.operation(102, :r_t10) d;
SELECT pg_temp.try(format('SELECT * FROM rungate.operation(102, %s)', :r_ws)) AS rita_ws_run;

-- ada becomes readonly on tenant 10 (still auditor in the workspace): the
-- list shows the workspace run only, tenant 10 is forbidden, not hidden.
UPDATE rungate.tenant_members SET role = 'readonly' WHERE tenant_id = 10 AND actor_id = 105;
SELECT run_id, tenant_id, status FROM rungate.operations(105, 1);
SELECT pg_temp.try('SELECT * FROM rungate.operations(105, 1, tenant_id => 10)') AS ada_t10;
SELECT pg_temp.try(format('SELECT * FROM rungate.operation(105, %s)', :r_t10)) AS ada_t10_run;

-- Revoking scope turns 403 (or a visible run) into 404: ada leaves
-- tenant 10, olivia leaves workspace 1 (her tenant memberships stay).
DELETE FROM rungate.tenant_members WHERE tenant_id = 10 AND actor_id = 105;
SELECT pg_temp.try(format('SELECT * FROM rungate.operation(105, %s)', :r_t10)) AS ada_gone;
SELECT pg_temp.try('SELECT * FROM rungate.operations(105, 1, tenant_id => 10)') AS ada_gone_list;
DELETE FROM rungate.workspace_members WHERE workspace_id = 1 AND actor_id = 100;
SELECT pg_temp.try('SELECT * FROM rungate.operations(100, 1)') AS olivia_gone;
SELECT pg_temp.try(format('SELECT * FROM rungate.operation(100, %s)', :r_t11)) AS olivia_gone_run;
-- a re-enabled actor gets its view back
UPDATE rungate.actors SET status = 'active' WHERE id = 104;
SELECT run_id, tenant_id, status FROM rungate.operations(104, 1);

-- ---------------------------------------------------------------------
-- Bad arguments: RG400, checked before scope
-- ---------------------------------------------------------------------
SELECT c AS call, pg_temp.try('SELECT * FROM rungate.' || c)
  FROM unnest(ARRAY[
    'operations(NULL, 1)',
    'operations(101, NULL)',
    'operations(101, 1, ''done'')',
    'operations(101, 1, ''FAILED'')',
    'operations(999, 1, ''done'')',
    'operations(101, 1, max_rows => 0)',
    'operations(101, 1, max_rows => -1)',
    'operations(101, 1, max_rows => 10001)',
    'operations(101, 1, max_rows => NULL)',
    'operations(101, 1, before_id => 0)',
    'operations(101, 1, before_id => -5)',
    'operations(101, 1, max_rows => 1)',
    'operations(101, 1, max_rows => 10000)',
    'operations(101, 1, ''partially_succeeded'', before_id => 1)',
    'operation(NULL, 1)',
    'operation(101, NULL)',
    'operation(NULL, NULL)'
  ]) c;
