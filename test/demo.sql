-- test/demo.sql: the seed's manual smoke-check (its section 6), played by
-- `make demo` (test/demo.sh) against a throwaway cluster. Each step says
-- what it shows, shows it, then checks it: a step that does not show what
-- it says stops the demo with an error (psql ON_ERROR_STOP), and make demo
-- exits non-zero. test/scripts/demo_smoke_check.sh plays it in make test.

\set QUIET on
\set ECHO none
\pset footer off
SET client_min_messages = warning;
CREATE EXTENSION rungate;
\i fixtures/seed.sql
\i fixtures/try.sql

-- expect(condition, what): the demo's own assertion
CREATE FUNCTION pg_temp.expect(ok boolean, what text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    IF ok IS NOT TRUE THEN
        RAISE EXCEPTION 'demo check failed: %', what;
    END IF;
    RETURN 'ok: ' || what;
END $$;

-- the application's own table of restored items, fenced by rungate
CREATE TABLE restore_items (id serial PRIMARY KEY, run_id bigint, item text);
\o /dev/null
SELECT rungate.guard_writes('restore_items', 'run_id');
\o

\echo
\echo '================================================================'
\echo ' rungate demo: queued work re-authorized when it starts'
\echo '================================================================'
\echo 'Workspace 1 "acme", tenants 10 (acme-eu, active) and 11 (acme-us).'
\echo 'Actors: 100 olivia (owner), 101 oscar (operator), 102 rita (readonly,'
\echo 'no operations.view), 103 gus (member of another workspace only).'
\echo
SELECT name, capability, scope, prerequisites, allow_system, writes
  FROM rungate.operation_types ORDER BY name;

\echo
\echo '--- 1. Tenant-affecting operations are queued --------------------'
\echo 'oscar queues an inventory sync of tenant 10; olivia queues a restore'
\echo 'and a provider check of tenant 10. All are allowed at dispatch.'
SELECT id AS oscar_sync FROM rungate.enqueue('inventory.sync', 1, 10, 101) \gset
SELECT id AS olivia_restore FROM rungate.enqueue('restore.execute', 1, 10, 100) \gset
SELECT id AS olivia_check FROM rungate.enqueue('provider.connection.verify', 1, 10, 100) \gset
SELECT id, operation, tenant_id, initiator_id, status FROM rungate.runs ORDER BY id;
SELECT pg_temp.expect(count(*) = 3 AND bool_and(status = 'queued'), 'three runs queued')
  FROM rungate.runs;

\echo
\echo '--- 2. Before a worker picks them up, authority is revoked --------'
\echo 'The operator role loses the inventory.sync capability (plain DML).'
DELETE FROM rungate.role_capabilities WHERE role = 'operator' AND capability = 'inventory.sync';
SELECT role, capability FROM rungate.role_capabilities WHERE role = 'operator' ORDER BY 2;

\echo
\echo '--- 3. The worker claims -----------------------------------------'
\echo 'One claim re-decides every due run: oscar''s sync is blocked inside the'
\echo 'claim (never running), olivia''s two runs start and are handed over.'
SELECT run_id, operation, attempt FROM rungate.claim('worker-1', NULL, 10) ORDER BY run_id;
SELECT pg_temp.expect(status = 'blocked' AND reason_code = 'capability_missing'
                      AND started_at IS NULL AND attempt = 0,
                      'oscar''s sync is blocked with capability_missing and never started')
  FROM rungate.runs WHERE id = :oscar_sync;

\echo
\echo 'The provider check fails for real: a generic failure, with an error.'
SELECT status, error FROM rungate.fail(:olivia_check,
       (SELECT lease_token FROM rungate.runs WHERE id = :olivia_check),
       'provider API answered 503');

\echo
\echo 'The restore is a write family: before its side effects the worker'
\echo 'rechecks. Meanwhile olivia''s tenant membership was revoked.'
DELETE FROM rungate.tenant_members WHERE tenant_id = 10 AND actor_id = 100;
SELECT allowed, reason_code, reason_category
  FROM rungate.recheck(:olivia_restore, (SELECT lease_token FROM rungate.runs WHERE id = :olivia_restore));
\echo 'The worker obeys the denial. Had it tried its side effect anyway:'
SELECT pg_temp.try(format('INSERT INTO restore_items (run_id, item) VALUES (%s, %L)',
                          :olivia_restore, 'mailbox 42')) AS write_attempt;
SELECT pg_temp.expect(count(*) = 0, 'no side effect was written for the blocked restore')
  FROM restore_items;
INSERT INTO rungate.tenant_members VALUES (10, 100, 'owner');

\echo
\echo '--- 4. Monitoring: blocked is not failed --------------------------'
\echo 'rungate.operations(viewer 100, workspace 1):'
SELECT run_id, operation, status, reason_code, reason_category, error
  FROM rungate.operations(100, 1) ORDER BY run_id;
SELECT pg_temp.expect(
         (SELECT status FROM rungate.operations(100, 1) WHERE run_id = :oscar_sync) = 'blocked'
     AND (SELECT error FROM rungate.operations(100, 1) WHERE run_id = :oscar_sync) IS NULL
     AND (SELECT status FROM rungate.operations(100, 1) WHERE run_id = :olivia_check) = 'failed',
       'the list shows the blocked run as blocked and the failed run as failed');

\echo
\echo 'rungate.operation(viewer 100, the blocked sync): terminal, with its reason'
\echo 'and the audit trail that says which check denied it.'
SELECT status, reason_code, reason_message, started_at IS NULL AS never_started
  FROM rungate.operation(100, :oscar_sync);
SELECT a->>'event' AS event, a->>'decision' AS decision, a->>'reason_code' AS reason_code,
       a->>'worker' AS worker
  FROM rungate.operation(100, :oscar_sync), jsonb_array_elements(audit) a;
SELECT pg_temp.expect(d.status = 'blocked'
                      AND jsonb_path_exists(d.audit, '$[*] ? (@.event == "execution_blocked")')
                      AND NOT jsonb_path_exists(d.audit, '$[*] ? (@.event == "started")'),
                      'the detail shows a terminal blocked run, denied at claim, never started')
  FROM rungate.operation(100, :oscar_sync) d;
\echo 'The restore, blocked by its recheck, left nothing in the guarded table:'
SELECT status, reason_code FROM rungate.runs WHERE id = :olivia_restore;
SELECT count(*) AS restore_items FROM restore_items;

\echo
\echo '--- 5. 404 outside scope, 403 in scope without operations.view ---'
\echo 'gus (103) belongs to another workspace: not found, on both surfaces.'
\echo 'rita (102) is in scope but her role lacks operations.view: forbidden.'
SELECT v.viewer, v.surface, pg_temp.try(v.call) AS answer
  FROM (VALUES
    ('gus 103',  'operations', 'SELECT rungate.operations(103, 1)'),
    ('gus 103',  'operation',  format('SELECT rungate.operation(103, %s)', :oscar_sync)),
    ('gus 103',  'operation (no such run)', 'SELECT rungate.operation(103, 999999)'),
    ('rita 102', 'operations', 'SELECT rungate.operations(102, 1)'),
    ('rita 102', 'operation',  format('SELECT rungate.operation(102, %s)', :oscar_sync))
  ) AS v(viewer, surface, call);
SELECT pg_temp.expect(
         pg_temp.try('SELECT rungate.operations(103, 1)') LIKE 'RG404:%'
     AND pg_temp.try(format('SELECT rungate.operation(103, %s)', :oscar_sync)) LIKE 'RG404:%'
     AND pg_temp.try(format('SELECT rungate.operation(103, %s)', :oscar_sync))
         = replace(pg_temp.try('SELECT rungate.operation(103, 999999)'), '999999', :'oscar_sync')
     AND pg_temp.try('SELECT rungate.operations(102, 1)') LIKE 'RG403:%'
     AND pg_temp.try(format('SELECT rungate.operation(102, %s)', :oscar_sync)) LIKE 'RG403:%',
       '404 for the outsider (same as a missing run), 403 for the in-scope viewer, on both surfaces');

\echo
\echo '--- 6. The same with a tenant that becomes non-operable ----------'
\echo 'olivia queues another sync of tenant 10; the tenant is suspended'
\echo 'before the worker runs.'
SELECT id AS suspended_sync FROM rungate.enqueue('inventory.sync', 1, 10, 100) \gset
UPDATE rungate.tenants SET status = 'suspended' WHERE id = 10;
SELECT count(*) AS handed_to_worker FROM rungate.claim('worker-1');
SELECT run_id, status, reason_code, reason_category, reason_message
  FROM rungate.operation(100, :suspended_sync);
SELECT pg_temp.expect(status = 'blocked' AND reason_code = 'tenant_not_operable',
                      'the run of the suspended tenant is blocked with tenant_not_operable')
  FROM rungate.runs WHERE id = :suspended_sync;
UPDATE rungate.tenants SET status = 'active' WHERE id = 10;

\echo
\echo '--- 7. A scheduled run (no initiator) is blocked, no notification -'
\echo 'A scheduler queues a provider check of tenant 11 under system'
\echo 'authority; the tenant is disconnected before it runs.'
SELECT id AS system_check FROM rungate.enqueue('provider.connection.verify', 1, 11, NULL) \gset
UPDATE rungate.tenants SET status = 'disconnected' WHERE id = 11;
SELECT count(*) AS handed_to_worker FROM rungate.claim('worker-1');
SELECT run_id, authority, initiator_id, status, reason_code
  FROM rungate.operations(100, 1, tenant_id => 11);
\echo 'Notifications: one per terminal actor-bound run, none for the system run.'
SELECT actor_id, run_id, kind FROM rungate.notifications ORDER BY id;
SELECT pg_temp.expect(
         (SELECT status = 'blocked' AND reason_code = 'tenant_not_operable'
            FROM rungate.operations(100, 1, tenant_id => 11) WHERE run_id = :system_check)
     AND NOT EXISTS (SELECT 1 FROM rungate.notifications WHERE run_id = :system_check)
     AND (SELECT count(*) FROM rungate.notifications WHERE run_id = :oscar_sync) = 1,
       'the system run is blocked and visible in monitoring, with no notification');

\echo
\echo '================================================================'
\echo ' Every step showed what it said. Invalid transitions are refused'
\echo ' by C triggers, whoever tries:'
SELECT pg_temp.try(format('UPDATE rungate.runs SET status = %L WHERE id = %s', 'running', :oscar_sync))
       AS superuser_tries_to_run_a_blocked_run;
\echo '================================================================'
