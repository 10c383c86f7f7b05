-- decision: rungate.decide(operation, workspace_id, tenant_id, actor_id),
-- the legitimacy decision (docs/guarantees.md#decision; its bad arguments,
-- #errors).
--   * nine checks in a fixed order; the first failure gives reason_code,
--     every failure appears in checks
--   * actor authority evaluates the checks that apply to the scope;
--     system authority (no actor) skips 2, 3, 5, 6 and keeps 1, 4, 7, 8, 9;
--     workspace-scoped types have no tenant checks (4, 5, 8, 9)
--   * revoking is ordinary DML, seen by the next decision
--   * deciding has no side effects
--   * malformed requests raise RG400
-- Each revocation is done in a transaction and rolled back, so every block
-- starts from the fixture (test/fixtures/seed.sql).
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS rungate CASCADE;
CREATE EXTENSION rungate;
\set ECHO none
\i test/fixtures/seed.sql
\i test/fixtures/try.sql
\set ECHO all
-- pg_temp.try(stmt) (test/fixtures/try.sql): 'ok', or 'SQLSTATE: message'.

-- pg_temp.show(op, ws, tenant, actor): the decision as one record. Two
-- derived fields summarise the checks array:
--   checks         each evaluated check as its check number (1..9, by
--                  code) followed by + (passed) or - (failed), in array order
--   failed_checks  the codes of the failed checks, in array order
CREATE FUNCTION pg_temp.show(op text, ws bigint, t bigint, a bigint)
RETURNS TABLE (allowed boolean, authority text, reason_code text,
               reason_category text, reason_message text,
               checks text, failed_checks text)
LANGUAGE sql AS $$
    SELECT d.allowed, d.authority, d.reason_code, d.reason_category,
           d.reason_message,
           (SELECT string_agg(coalesce(array_position(ARRAY[
                        'system_authority_not_allowed', 'actor_disabled',
                        'actor_not_in_workspace', 'tenant_not_in_workspace',
                        'actor_not_in_tenant', 'capability_missing',
                        'workspace_not_operable', 'tenant_not_operable',
                        'prerequisite_unmet'], c->>'code')::text,
                        '?' || (c->>'code'))
                      || CASE WHEN (c->'passed')::boolean THEN '+' ELSE '-' END,
                      ' ' ORDER BY n)
              FROM jsonb_array_elements(d.checks) WITH ORDINALITY e(c, n)),
           (SELECT string_agg(c->>'code', ', ' ORDER BY n)
              FROM jsonb_array_elements(d.checks) WITH ORDINALITY e(c, n)
             WHERE NOT (c->'passed')::boolean)
      FROM rungate.decide(op, ws, t, a) d
$$;

-- pg_temp.checks(op, ws, tenant, actor): the checks array, one element a line.
CREATE FUNCTION pg_temp.checks(op text, ws bigint, t bigint, a bigint)
RETURNS TABLE (n bigint, code text, passed boolean, element_keys text)
LANGUAGE sql AS $$
    SELECT e.n, e.c->>'code', (e.c->'passed')::boolean,
           (SELECT string_agg(k, ',' ORDER BY k) FROM jsonb_object_keys(e.c) k)
      FROM rungate.decide(op, ws, t, a) d,
           jsonb_array_elements(d.checks) WITH ORDINALITY e(c, n)
     ORDER BY e.n
$$;

-- ---------------------------------------------------------------------
-- Shape: decide returns a rungate.decision; checks is a jsonb array of
-- {"code", "passed"} objects. Allowed decisions have no reason.
-- ---------------------------------------------------------------------
SELECT pg_typeof(rungate.decide('restore.execute', 1, 10, 100)) AS type,
       jsonb_typeof((rungate.decide('restore.execute', 1, 10, 100)).checks) AS checks_type;

\x on
-- Actor authority on a tenant-scoped type: all nine checks, in the documented
-- order.
SELECT * FROM pg_temp.show('restore.execute', 1, 10, 100);
\x off
SELECT * FROM pg_temp.checks('restore.execute', 1, 10, 100);

\x on
-- System authority on a tenant-scoped type (allow_system): 1, 4, 7, 8, 9.
SELECT * FROM pg_temp.show('inventory.sync', 1, 10, NULL);
\x off
SELECT * FROM pg_temp.checks('inventory.sync', 1, 10, NULL);

\x on
-- Actor authority on a workspace-scoped type: no tenant checks: 1, 2, 3, 6, 7.
SELECT * FROM pg_temp.show('reports.export', 1, NULL, 100);
\x off
SELECT * FROM pg_temp.checks('reports.export', 1, NULL, 100);

\x on
-- System authority on a workspace-scoped type: 1, 7.
SELECT * FROM pg_temp.show('reports.export', 1, NULL, NULL);
\x off
SELECT * FROM pg_temp.checks('reports.export', 1, NULL, NULL);

-- Every capable fixture combination is allowed, with the authority of its mode.
SELECT o AS operation, t AS tenant, a AS actor, d.allowed, d.authority,
       d.reason_code IS NULL AS no_reason, d.reason_category IS NULL AS no_category,
       d.reason_message IS NULL AS no_message, jsonb_array_length(d.checks) AS n_checks
  FROM (VALUES ('provider.connection.verify', 10, 100), ('provider.connection.verify', 10, 101),
               ('provider.connection.verify', 10, NULL), ('inventory.sync', 10, 101),
               ('inventory.sync', 11, 100), ('restore.execute', 10, 100),
               ('reports.export', NULL, 100), ('reports.export', NULL, NULL),
               ('bulk.inventory.sync', NULL, 100)) v(o, t, a),
       LATERAL rungate.decide(o, 1, t, a) d
 ORDER BY o, t, a;

-- ---------------------------------------------------------------------
-- Each check failing on its own, actor authority: olivia (100) running
-- restore.execute on tenant 10, which she may do (above). Each block
-- revokes one thing by DML and rolls it back.
-- ---------------------------------------------------------------------
\x on

-- 1 system_authority_not_allowed: restore.execute has allow_system = false.
SELECT * FROM pg_temp.show('restore.execute', 1, 10, NULL);
-- ... and a type that allowed it stops allowing it.
BEGIN;
UPDATE rungate.operation_types SET allow_system = false WHERE name = 'inventory.sync';
SELECT * FROM pg_temp.show('inventory.sync', 1, 10, NULL);
ROLLBACK;

-- 2 actor_disabled: the actor is disabled now.
BEGIN;
UPDATE rungate.actors SET status = 'disabled' WHERE id = 100;
SELECT * FROM pg_temp.show('restore.execute', 1, 10, 100);
ROLLBACK;
-- the fixture's dora (104) is a disabled owner of workspace 1 and tenant 10
SELECT * FROM pg_temp.show('restore.execute', 1, 10, 104);

-- 3 actor_not_in_workspace: the workspace membership is deleted. The tenant
-- role still grants the capability of a tenant-scoped type.
BEGIN;
DELETE FROM rungate.workspace_members WHERE workspace_id = 1 AND actor_id = 100;
SELECT * FROM pg_temp.show('restore.execute', 1, 10, 100);
ROLLBACK;

-- 4 tenant_not_in_workspace: tenant 10 now belongs to workspace 2.
BEGIN;
UPDATE rungate.tenants SET workspace_id = 2 WHERE id = 10;
SELECT * FROM pg_temp.show('restore.execute', 1, 10, 100);
ROLLBACK;

-- 5 actor_not_in_tenant: the tenant membership is deleted. With no tenant
-- role, no role grants the capability either: 6 fails too, 5 comes first.
BEGIN;
DELETE FROM rungate.tenant_members WHERE tenant_id = 10 AND actor_id = 100;
SELECT * FROM pg_temp.show('restore.execute', 1, 10, 100);
ROLLBACK;

-- 6 capability_missing, three ways:
-- (a) the tenant role changes to one without the capability
BEGIN;
UPDATE rungate.tenant_members SET role = 'operator' WHERE tenant_id = 10 AND actor_id = 100;
SELECT * FROM pg_temp.show('restore.execute', 1, 10, 100);
ROLLBACK;
-- (b) the capability is removed from the role
BEGIN;
DELETE FROM rungate.role_capabilities WHERE role = 'owner' AND capability = 'restore.execute';
SELECT * FROM pg_temp.show('restore.execute', 1, 10, 100);
ROLLBACK;
-- (c) the fixture's rita (102): readonly in workspace 1 and tenant 10
SELECT * FROM pg_temp.show('restore.execute', 1, 10, 102);

-- 7 workspace_not_operable: suspended, then archived.
BEGIN;
UPDATE rungate.workspaces SET status = 'suspended' WHERE id = 1;
SELECT * FROM pg_temp.show('restore.execute', 1, 10, 100);
UPDATE rungate.workspaces SET status = 'archived' WHERE id = 1;
SELECT * FROM pg_temp.show('restore.execute', 1, 10, 100);
ROLLBACK;

-- 8 tenant_not_operable: every status but active.
\x off
BEGIN;
UPDATE rungate.tenants SET status = 'onboarding' WHERE id = 10;
SELECT 'onboarding' AS tenant_status, * FROM pg_temp.show('restore.execute', 1, 10, 100);
UPDATE rungate.tenants SET status = 'suspended' WHERE id = 10;
SELECT 'suspended' AS tenant_status, * FROM pg_temp.show('restore.execute', 1, 10, 100);
UPDATE rungate.tenants SET status = 'disconnected' WHERE id = 10;
SELECT 'disconnected' AS tenant_status, * FROM pg_temp.show('restore.execute', 1, 10, 100);
UPDATE rungate.tenants SET status = 'archived' WHERE id = 10;
SELECT 'archived' AS tenant_status, * FROM pg_temp.show('restore.execute', 1, 10, 100);
ROLLBACK;
\x on
-- the fixture's tenant 12 is onboarding
SELECT * FROM pg_temp.show('inventory.sync', 1, 12, 100);

-- 9 prerequisite_unmet: the message names the prerequisite.
-- (a) marked unsatisfied
BEGIN;
UPDATE rungate.tenant_prerequisites SET satisfied = false
 WHERE tenant_id = 10 AND name = 'admin_consent';
SELECT * FROM pg_temp.show('restore.execute', 1, 10, 100);
ROLLBACK;
-- (b) the row is deleted: a missing prerequisite is unmet
BEGIN;
DELETE FROM rungate.tenant_prerequisites WHERE tenant_id = 10 AND name = 'provider_connection';
SELECT * FROM pg_temp.show('restore.execute', 1, 10, 100);
ROLLBACK;
-- (c) both unmet: one failing check, the message names the first listed
BEGIN;
UPDATE rungate.tenant_prerequisites SET satisfied = false WHERE tenant_id = 10;
SELECT * FROM pg_temp.show('restore.execute', 1, 10, 100);
ROLLBACK;
-- (d) the fixture's tenant 11: admin_consent unmet; inventory.sync does not
-- list it, restore.execute does
SELECT * FROM pg_temp.show('restore.execute', 1, 11, 100);
SELECT * FROM pg_temp.show('inventory.sync', 1, 11, 100);

-- ---------------------------------------------------------------------
-- The membership that scopes the run decides the capability (check 6):
-- the tenant role for tenant runs, the workspace role for workspace runs.
-- ---------------------------------------------------------------------
-- Workspace role downgraded: a tenant run still allowed (tenant role owner),
-- a workspace run denied.
BEGIN;
UPDATE rungate.workspace_members SET role = 'readonly' WHERE workspace_id = 1 AND actor_id = 100;
SELECT * FROM pg_temp.show('restore.execute', 1, 10, 100);
SELECT * FROM pg_temp.show('reports.export', 1, NULL, 100);
ROLLBACK;
-- Tenant role downgraded and tenant membership deleted: a workspace run does
-- not look at tenants at all.
BEGIN;
UPDATE rungate.tenant_members SET role = 'readonly' WHERE actor_id = 100;
DELETE FROM rungate.tenant_members WHERE tenant_id = 10 AND actor_id = 100;
SELECT * FROM pg_temp.show('reports.export', 1, NULL, 100);
ROLLBACK;
-- oscar (101) is operator of workspace 1 and tenant 10; operator lacks
-- restore.execute. Making his workspace role owner does not help a tenant
-- run, nor does granting the capability to a role he does not hold ...
BEGIN;
UPDATE rungate.workspace_members SET role = 'owner' WHERE workspace_id = 1 AND actor_id = 101;
INSERT INTO rungate.role_capabilities VALUES ('auditor', 'restore.execute');
SELECT * FROM pg_temp.show('restore.execute', 1, 10, 101);
-- ... but giving his tenant membership a role that grants it does.
UPDATE rungate.tenant_members SET role = 'auditor' WHERE tenant_id = 10 AND actor_id = 101;
SELECT * FROM pg_temp.show('restore.execute', 1, 10, 101);
ROLLBACK;

-- ---------------------------------------------------------------------
-- requires_operable_tenant = false: check 8 is still evaluated, and passes
-- whatever the tenant's status.
-- ---------------------------------------------------------------------
BEGIN;
UPDATE rungate.operation_types SET requires_operable_tenant = false WHERE name = 'inventory.sync';
UPDATE rungate.tenants SET status = 'suspended' WHERE id = 10;
SELECT * FROM pg_temp.show('inventory.sync', 1, 10, 101);
SELECT * FROM pg_temp.show('inventory.sync', 1, 10, NULL);
ROLLBACK;

-- ---------------------------------------------------------------------
-- The first-failure rule: several checks fail at once; every failure
-- appears in checks, the first in the documented order gives the reason.
-- ---------------------------------------------------------------------
-- Olivia: disabled, out of the workspace, out of the tenant, workspace
-- suspended, tenant archived, a prerequisite unmet: 2 comes first.
BEGIN;
UPDATE rungate.actors SET status = 'disabled' WHERE id = 100;
DELETE FROM rungate.workspace_members WHERE workspace_id = 1 AND actor_id = 100;
DELETE FROM rungate.tenant_members WHERE tenant_id = 10 AND actor_id = 100;
UPDATE rungate.workspaces SET status = 'suspended' WHERE id = 1;
UPDATE rungate.tenants SET status = 'archived' WHERE id = 10;
UPDATE rungate.tenant_prerequisites SET satisfied = false WHERE tenant_id = 10 AND name = 'admin_consent';
SELECT * FROM pg_temp.show('restore.execute', 1, 10, 100);
\x off
SELECT * FROM pg_temp.checks('restore.execute', 1, 10, 100);
\x on
-- Re-enable her: the reason moves to the next failure, 3.
UPDATE rungate.actors SET status = 'active' WHERE id = 100;
SELECT * FROM pg_temp.show('restore.execute', 1, 10, 100);
-- Back in the workspace: 5 (and 6, no tenant role).
INSERT INTO rungate.workspace_members VALUES (1, 100, 'owner');
SELECT * FROM pg_temp.show('restore.execute', 1, 10, 100);
-- Back in the tenant: 7.
INSERT INTO rungate.tenant_members VALUES (10, 100, 'owner');
SELECT * FROM pg_temp.show('restore.execute', 1, 10, 100);
-- Workspace active again: 8.
UPDATE rungate.workspaces SET status = 'active' WHERE id = 1;
SELECT * FROM pg_temp.show('restore.execute', 1, 10, 100);
-- Tenant active again: 9.
UPDATE rungate.tenants SET status = 'active' WHERE id = 10;
SELECT * FROM pg_temp.show('restore.execute', 1, 10, 100);
-- Prerequisite satisfied again: allowed.
UPDATE rungate.tenant_prerequisites SET satisfied = true WHERE tenant_id = 10 AND name = 'admin_consent';
SELECT * FROM pg_temp.show('restore.execute', 1, 10, 100);
ROLLBACK;

-- Tenant moved, and the actor is not a member of its new workspace's
-- tenant either: 4 comes before 5.
BEGIN;
UPDATE rungate.tenants SET workspace_id = 2 WHERE id = 10;
DELETE FROM rungate.tenant_members WHERE tenant_id = 10 AND actor_id = 100;
SELECT * FROM pg_temp.show('restore.execute', 1, 10, 100);
ROLLBACK;

-- gus (103) is an outsider of workspace 1: 3, 5 and 6 fail; 3 first.
SELECT * FROM pg_temp.show('inventory.sync', 1, 10, 103);

-- No actor for a type that needs one, with everything else broken as well:
-- 1 first, and 4, 7, 8, 9 still evaluated and failing.
BEGIN;
UPDATE rungate.tenants SET workspace_id = 2, status = 'suspended' WHERE id = 10;
UPDATE rungate.workspaces SET status = 'archived' WHERE id = 1;
DELETE FROM rungate.tenant_prerequisites WHERE tenant_id = 10;
SELECT * FROM pg_temp.show('restore.execute', 1, 10, NULL);
\x off
SELECT * FROM pg_temp.checks('restore.execute', 1, 10, NULL);
\x on
ROLLBACK;

-- ---------------------------------------------------------------------
-- System authority skips 2, 3, 5, 6 and keeps 1, 4, 7, 8, 9: revocations
-- of actors, memberships and roles do not concern it; the others do.
-- ---------------------------------------------------------------------
\x off
BEGIN;
-- actor-side revocations only: nothing changes for system authority
UPDATE rungate.actors SET status = 'disabled';
DELETE FROM rungate.tenant_members;
DELETE FROM rungate.workspace_members;
DELETE FROM rungate.role_capabilities;
SELECT o AS operation, t AS tenant, d.*
  FROM (VALUES ('provider.connection.verify', 10), ('inventory.sync', 10),
               ('reports.export', NULL)) v(o, t),
       LATERAL pg_temp.show(o, 1, t, NULL) d
 ORDER BY o;
ROLLBACK;
-- each kept check, failing alone for system authority (inventory.sync, tenant 10)
BEGIN;
UPDATE rungate.operation_types SET allow_system = false WHERE name = 'inventory.sync';
SELECT 'allow_system off' AS scenario, * FROM pg_temp.show('inventory.sync', 1, 10, NULL);
ROLLBACK;
BEGIN;
UPDATE rungate.tenants SET workspace_id = 2 WHERE id = 10;
SELECT 'tenant moved' AS scenario, * FROM pg_temp.show('inventory.sync', 1, 10, NULL);
ROLLBACK;
BEGIN;
UPDATE rungate.workspaces SET status = 'suspended' WHERE id = 1;
SELECT 'workspace suspended' AS scenario, * FROM pg_temp.show('inventory.sync', 1, 10, NULL);
ROLLBACK;
BEGIN;
UPDATE rungate.tenants SET status = 'disconnected' WHERE id = 10;
SELECT 'tenant disconnected' AS scenario, * FROM pg_temp.show('inventory.sync', 1, 10, NULL);
ROLLBACK;
BEGIN;
UPDATE rungate.tenant_prerequisites SET satisfied = false WHERE tenant_id = 10 AND name = 'provider_connection';
SELECT 'prerequisite lost' AS scenario, * FROM pg_temp.show('inventory.sync', 1, 10, NULL);
ROLLBACK;
-- a workspace-scoped system decision: only 1 and 7
BEGIN;
UPDATE rungate.workspaces SET status = 'archived' WHERE id = 1;
SELECT 'workspace archived' AS scenario, * FROM pg_temp.show('reports.export', 1, NULL, NULL);
ROLLBACK;

-- ---------------------------------------------------------------------
-- Workspace-scoped types: no tenant checks, so the state of the tenants
-- does not matter; the workspace does.
-- ---------------------------------------------------------------------
BEGIN;
UPDATE rungate.tenants SET status = 'archived';
UPDATE rungate.tenant_prerequisites SET satisfied = false;
DELETE FROM rungate.tenant_members;
SELECT o AS operation, a AS actor, d.*
  FROM (VALUES ('reports.export', 100), ('reports.export', NULL),
               ('bulk.inventory.sync', 100)) v(o, a),
       LATERAL pg_temp.show(o, 1, NULL, a) d
 ORDER BY o, a;
ROLLBACK;
-- each actor check on a workspace-scoped type
SELECT a AS actor, d.*
  FROM unnest(ARRAY[104, 103, 102, 105]) a,
       LATERAL pg_temp.show('reports.export', 1, NULL, a) d
 ORDER BY a;

-- allow_system = false types with no actor: system_authority_not_allowed,
-- for a tenant-scoped and a workspace-scoped (bulk) type.
SELECT o AS operation, t AS tenant, d.*
  FROM (VALUES ('restore.execute', 10), ('bulk.inventory.sync', NULL)) v(o, t),
       LATERAL pg_temp.show(o, 1, t, NULL) d
 ORDER BY o;

-- A tenant of another workspace is the denial of check 4 (not an error):
-- decide answers "could this start now?" for any known tenant.
SELECT * FROM pg_temp.show('inventory.sync', 1, 20, 100);
SELECT * FROM pg_temp.show('inventory.sync', 1, 20, NULL);

-- ---------------------------------------------------------------------
-- No side effects: decide writes no run, audit row or notification, and
-- works in a read-only transaction.
-- ---------------------------------------------------------------------
SELECT (SELECT count(*) FROM rungate.runs) AS runs,
       (SELECT count(*) FROM rungate.audit_log) AS audit_rows,
       (SELECT count(*) FROM rungate.notifications) AS notifications;
BEGIN READ ONLY;
SELECT o AS operation, a AS actor, (rungate.decide(o, 1, t, a)).allowed
  FROM (VALUES ('restore.execute', 10, 100), ('restore.execute', 10, NULL),
               ('reports.export', NULL, 102)) v(o, t, a)
 ORDER BY o, a;
COMMIT;
SELECT provolatile AS decide_volatility
  FROM pg_proc WHERE oid = 'rungate.decide(text, bigint, bigint, bigint)'::regprocedure;
-- the same question twice, the same answer
SELECT rungate.decide('restore.execute', 1, 11, 100) = rungate.decide('restore.execute', 1, 11, 100) AS same;

-- ---------------------------------------------------------------------
-- Bad arguments: RG400, naming the argument at fault (#errors).
-- ---------------------------------------------------------------------
SELECT label, pg_temp.try(stmt) AS result
  FROM (VALUES
    (1, 'null operation',            'SELECT rungate.decide(NULL, 1, 10, 100)'),
    (2, 'null workspace',            'SELECT rungate.decide(''inventory.sync'', NULL, 10, 100)'),
    (3, 'unknown operation',         'SELECT rungate.decide(''no.such.op'', 1, 10, 100)'),
    (4, 'empty operation',           'SELECT rungate.decide('''', 1, 10, 100)'),
    (5, 'unknown workspace',         'SELECT rungate.decide(''inventory.sync'', 3, 10, 100)'),
    (6, 'unknown actor',             'SELECT rungate.decide(''inventory.sync'', 1, 10, 999)'),
    (7, 'unknown tenant',            'SELECT rungate.decide(''inventory.sync'', 1, 99, 100)'),
    (8, 'tenant missing',            'SELECT rungate.decide(''inventory.sync'', 1, NULL, 100)'),
    (9, 'tenant missing, system',    'SELECT rungate.decide(''restore.execute'', 1, NULL, NULL)'),
    (10, 'tenant given',             'SELECT rungate.decide(''reports.export'', 1, 10, 100)'),
    (11, 'tenant given, bulk type',  'SELECT rungate.decide(''bulk.inventory.sync'', 1, 10, NULL)'),
    (12, 'unknown ws, unknown actor','SELECT rungate.decide(''inventory.sync'', 3, 10, 999)')
  ) v(k, label, stmt)
 ORDER BY k;
\x off

-- The decision reads the authority tables directly (primary-key probes); the
-- tables it found are looked up again when they change: in one session,
-- the extension dropped and created again (new tables, new OIDs), an index
-- rebuilt, a primary key dropped and added again.
SELECT allowed, reason_code FROM rungate.decide('inventory.sync', 1, 10, 100);
SET client_min_messages = warning;
DROP EXTENSION rungate CASCADE;
CREATE EXTENSION rungate;
RESET client_min_messages;
\set ECHO none
\i test/fixtures/seed.sql
\set ECHO all
SELECT allowed, reason_code FROM rungate.decide('inventory.sync', 1, 10, 100);
REINDEX TABLE rungate.tenant_members;
ALTER TABLE rungate.tenant_prerequisites DROP CONSTRAINT tenant_prerequisites_pkey;
ALTER TABLE rungate.tenant_prerequisites ADD PRIMARY KEY (tenant_id, name);
SELECT allowed, reason_code FROM rungate.decide('inventory.sync', 1, 10, 100);
BEGIN;
UPDATE rungate.tenant_prerequisites SET satisfied = false WHERE tenant_id = 10;
SELECT allowed, reason_code, reason_message FROM rungate.decide('restore.execute', 1, 10, 100);
ROLLBACK;
SELECT allowed, reason_code FROM rungate.decide('restore.execute', 1, 10, 100);
