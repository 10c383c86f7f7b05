-- A run recorded under one shape of its operation type is always decided,
-- never an error, even if the type's scope changed since dispatch (the
-- definition trigger refuses that while runs are live, but a concurrent
-- enqueue can slip past it). An error here would stop every later claim.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS rungate CASCADE;
RESET client_min_messages;
CREATE EXTENSION rungate;
\i test/fixtures/seed.sql
\i test/fixtures/try.sql

SELECT (rungate.enqueue('inventory.sync', 1, 10, 100)).id AS tenant_run \gset
SELECT (rungate.enqueue('reports.export', 1, NULL, 100)).id AS workspace_run \gset

-- The trigger refuses the change while the runs are queued ...
SELECT pg_temp.try($$UPDATE rungate.operation_types SET scope = 'tenant', requires_operable_tenant = true WHERE name = 'reports.export'$$);

-- ... so simulate the race by switching it off (superuser only).
ALTER TABLE rungate.operation_types DISABLE TRIGGER validate_operation_type;
UPDATE rungate.operation_types
   SET scope = 'workspace', prerequisites = '{}', requires_operable_tenant = false
 WHERE name = 'inventory.sync';
UPDATE rungate.operation_types
   SET scope = 'tenant', requires_operable_tenant = true
 WHERE name = 'reports.export';
ALTER TABLE rungate.operation_types ENABLE ALWAYS TRIGGER validate_operation_type;

-- The claim decides both: the tenant run, now of a workspace type, is
-- decided as a workspace run and starts; the workspace run, now of a tenant
-- type, has no tenant and is blocked (check 4).
SELECT run_id = :tenant_run AS started_tenant_run FROM rungate.claim('w', NULL, 5);
SELECT id = :workspace_run AS is_workspace_run, status, reason_code, reason_category, reason_message
  FROM rungate.runs WHERE status = 'blocked';
SELECT e->>'code' AS code, e->>'passed' AS passed
  FROM rungate.audit_log a, jsonb_array_elements(a.checks) e
 WHERE a.run_id = :workspace_run AND a.event = 'execution_blocked';
