-- test/demo.sql: the seed's manual smoke-check (its section 6), played by
-- `make demo` (test/demo.sh) against a throwaway cluster, and by
-- test/scripts/demo_smoke_check.sh in `make test`.
--
-- Each step has a heading saying what it shows, then the SQL an application
-- or a worker would run (echoed), then its checks: a step that does not
-- show what its heading says raises an error, psql stops (ON_ERROR_STOP)
-- and the demo exits non-zero. Run from the test/ directory.

\set ON_ERROR_STOP 1
\set QUIET on
\set ECHO none
\pset footer off
\pset null '(null)'
SET client_min_messages = warning;
CREATE EXTENSION rungate;
\i fixtures/seed.sql
\i fixtures/try.sql

-- expect(condition, claim): a demo check, printed as one line; a claim that
-- does not hold stops the demo
CREATE FUNCTION pg_temp.expect(ok boolean, claim text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    IF ok IS NOT TRUE THEN
        RAISE EXCEPTION 'demo check failed: %', claim;
    END IF;
    RETURN '  check: ' || claim;
END $$;

-- the application's own table of restored items
CREATE TABLE restore_items (id serial PRIMARY KEY, run_id bigint NOT NULL, item text);

\echo
\echo '=================================================================='
\echo ' rungate: queued work is re-authorized when a worker claims it'
\echo '=================================================================='
\echo 'Workspace 1 "acme" has tenant 10 "acme-eu" (active, provider connected).'
\echo 'Actors: 100 olivia (owner), 101 oscar (operator), 105 ada (auditor: may'
\echo 'view operations), 102 rita (readonly: may not), 103 gus (another'
\echo 'workspace only). The job families and what each needs:'
SELECT name, capability, scope, prerequisites, allow_system AS system_ok
  FROM rungate.operation_types WHERE name <> 'bulk.inventory.sync' ORDER BY name;

\echo
\echo '--- 1. Tenant-affecting operations are queued ----------------------'
\echo 'oscar (operator) queues an inventory sync of tenant 10, and a provider'
\echo 'check that will fail for real; olivia (owner) queues a restore. The'
\echo 'restore writes into restore_items, which rungate fences: a row may only'
\echo 'be written for a run that is running.'
\set ECHO queries
SELECT rungate.guard_writes('restore_items', 'run_id') \g /dev/null
SELECT id AS sync_id FROM rungate.enqueue('inventory.sync', 1, 10, 101) \gset
SELECT id AS check_id FROM rungate.enqueue('provider.connection.verify', 1, 10, 101) \gset
SELECT id AS restore_id FROM rungate.enqueue('restore.execute', 1, 10, 100,
                                             payload => '{"items": ["mailbox 42"]}') \gset
SELECT id, operation, tenant_id, initiator_id, status FROM rungate.runs ORDER BY id;
\set ECHO none
\pset tuples_only on
SELECT pg_temp.expect(count(*) = 3 AND bool_and(status = 'queued'),
                      'all three were allowed at dispatch and are queued')
  FROM rungate.runs;
\pset tuples_only off

\echo
\echo '--- 2. Before a worker picks them up, authority is revoked ---------'
\echo 'Plain DML on the authority tables: the operator role loses the'
\echo 'inventory.sync capability, and olivia loses her membership of tenant 10.'
\echo 'The runs are untouched; asked now, rungate.decide would say no to two.'
\set ECHO queries
DELETE FROM rungate.role_capabilities WHERE role = 'operator' AND capability = 'inventory.sync';
DELETE FROM rungate.tenant_members WHERE tenant_id = 10 AND actor_id = 100;
SELECT r.id, r.operation, r.status, d.allowed AS allowed_now, d.reason_code
  FROM rungate.runs r,
       rungate.decide(r.operation, r.workspace_id, r.tenant_id, r.initiator_id) d
 ORDER BY r.id;
\set ECHO none
\pset tuples_only on
SELECT pg_temp.expect(count(*) = 3 AND bool_and(status = 'queued'),
                      'revoking authority changed no run: all three are still queued')
  FROM rungate.runs;
\pset tuples_only off

\echo
\echo '--- 3. The worker claims -------------------------------------------'
\echo 'One claim decides every due run again, in its own transaction: the sync'
\echo 'and the restore are blocked inside the claim and never handed over;'
\echo 'only the provider check starts. Its provider call then fails for real.'
\set ECHO queries
SELECT run_id, operation, tenant_id, attempt FROM rungate.claim('worker-1', NULL, 10);
SELECT status, error
  FROM rungate.fail(:check_id, (SELECT lease_token FROM rungate.runs WHERE id = :check_id),
                    'provider API answered 503');
\echo 'A rogue worker that writes the restore''s rows anyway is refused:'
SELECT pg_temp.try(format('INSERT INTO restore_items (run_id, item) VALUES (%s, %L)',
                          :restore_id, 'mailbox 42')) AS rogue_write;
\set ECHO none
\pset tuples_only on
SELECT pg_temp.expect(status = 'blocked' AND reason_code = 'capability_missing'
                      AND started_at IS NULL AND attempt = 0 AND lease_expires_at IS NULL,
                      'the sync is blocked (capability_missing), never started, no lease')
  FROM rungate.runs WHERE id = :sync_id;
SELECT pg_temp.expect(status = 'blocked' AND reason_code = 'actor_not_in_tenant'
                      AND started_at IS NULL AND attempt = 0,
                      'the restore is blocked (actor_not_in_tenant), never started')
  FROM rungate.runs WHERE id = :restore_id;
SELECT pg_temp.expect(status = 'failed' AND error IS NOT NULL AND reason_code IS NULL,
                      'the provider check started and failed, with an error and no reason code')
  FROM rungate.runs WHERE id = :check_id;
SELECT pg_temp.expect(pg_temp.try(format('INSERT INTO restore_items (run_id, item) VALUES (%s, %L)',
                                         :restore_id, 'x')) LIKE 'RG409:%',
                      'the fence refuses a write for the blocked restore (RG409)');
\pset tuples_only off

\echo
\echo '--- 4. Monitoring: blocked is not failed ----------------------------'
\echo 'The operations list as ada (105, auditor) sees it, newest first: two'
\echo 'blocked runs with the check that denied them, next to a failed run with'
\echo 'its error.'
\set ECHO queries
SELECT run_id, operation, status, reason_code, reason_category, error
  FROM rungate.operations(105, 1);
\echo 'The blocked sync in detail: terminal, its reason, and the audit trail'
\echo 'naming the check, the claim that denied it, and no start.'
SELECT status, reason_code, reason_message, started_at IS NULL AS never_started
  FROM rungate.operation(105, :sync_id);
SELECT a->>'event' AS event, a->>'decision' AS decision,
       a->>'reason_code' AS reason_code, a->>'worker' AS worker
  FROM rungate.operation(105, :sync_id), jsonb_array_elements(audit) a;
\echo 'The blocked restore left no side effect in the application''s table:'
SELECT status, reason_code, reason_message FROM rungate.operation(105, :restore_id);
SELECT count(*) AS restore_items FROM restore_items;
\set ECHO none
\pset tuples_only on
SELECT pg_temp.expect(
         (SELECT array_agg(status ORDER BY run_id) FROM rungate.operations(105, 1))
           = ARRAY['blocked', 'failed', 'blocked']
     AND (SELECT bool_and(error IS NULL AND reason_code IS NOT NULL)
            FROM rungate.operations(105, 1) WHERE status = 'blocked'),
       'the list shows both blocked runs as blocked, with a reason and no error, and the failure as failed');
SELECT pg_temp.expect(d.status = 'blocked' AND d.reason_code = 'capability_missing'
                      AND d.audit -> -1 ->> 'event' = 'execution_blocked'
                      AND d.audit -> -1 ->> 'decision' = 'deny'
                      AND NOT jsonb_path_exists(d.audit, '$[*] ? (@.event == "started")'),
                      'the detail shows a terminal blocked run, denied at claim, never started')
  FROM rungate.operation(105, :sync_id) d;
SELECT pg_temp.expect(count(*) = 0, 'the guarded restore_items table is empty')
  FROM restore_items;
\pset tuples_only off

\echo
\echo '--- 5. 404 outside scope, 403 in scope without operations.view -----'
\echo 'gus (103) has no scope in workspace 1: not found on both surfaces, the'
\echo 'same answer as for a run that does not exist. rita (102) is in scope'
\echo 'but her role lacks operations.view: forbidden on both surfaces.'
\set ECHO queries
SELECT v.viewer, v.surface, pg_temp.try(v.call) AS answer
  FROM (VALUES
    ('gus 103',  'operations',              'SELECT rungate.operations(103, 1)'),
    ('gus 103',  'operation',               format('SELECT rungate.operation(103, %s)', :sync_id)),
    ('gus 103',  'operation (no such run)', 'SELECT rungate.operation(103, 999999)'),
    ('rita 102', 'operations',              'SELECT rungate.operations(102, 1)'),
    ('rita 102', 'operation',               format('SELECT rungate.operation(102, %s)', :sync_id))
  ) AS v(viewer, surface, call);
\set ECHO none
\pset tuples_only on
SELECT pg_temp.expect(
         pg_temp.try('SELECT rungate.operations(103, 1)') LIKE 'RG404:%'
     AND pg_temp.try(format('SELECT rungate.operation(103, %s)', :sync_id)) LIKE 'RG404:%'
     AND pg_temp.try(format('SELECT rungate.operation(103, %s)', :sync_id))
         = replace(pg_temp.try('SELECT rungate.operation(103, 999999)'), '999999', :'sync_id'),
       'the outsider gets RG404 on both surfaces, worded as for a missing run');
SELECT pg_temp.expect(
         pg_temp.try('SELECT rungate.operations(102, 1)') LIKE 'RG403:%'
     AND pg_temp.try(format('SELECT rungate.operation(102, %s)', :sync_id)) LIKE 'RG403:%',
       'the in-scope viewer without operations.view gets RG403 on both surfaces');
\pset tuples_only off

\echo
\echo '--- 6. The same with a tenant that becomes non-operable ------------'
\echo 'oscar queues another provider check of tenant 10 (his role still grants'
\echo 'provider.manage); tenant 10 is suspended before the worker runs.'
\set ECHO queries
SELECT id AS suspended_id FROM rungate.enqueue('provider.connection.verify', 1, 10, 101) \gset
UPDATE rungate.tenants SET status = 'suspended' WHERE id = 10;
SELECT count(*) AS handed_to_worker FROM rungate.claim('worker-1', NULL, 10);
SELECT run_id, status, reason_code, reason_category, reason_message
  FROM rungate.operation(105, :suspended_id);
SELECT v.viewer, pg_temp.try(format('SELECT rungate.operation(%s, %s)', v.id, :suspended_id)) AS answer
  FROM (VALUES ('gus 103', 103), ('rita 102', 102)) AS v(viewer, id);
\set ECHO none
\pset tuples_only on
SELECT pg_temp.expect(status = 'blocked' AND reason_code = 'tenant_not_operable'
                      AND reason_category = 'operability' AND started_at IS NULL,
                      'the run of the suspended tenant is blocked (tenant_not_operable), never started')
  FROM rungate.runs WHERE id = :suspended_id;
SELECT pg_temp.expect(
         (SELECT status FROM rungate.operations(105, 1) WHERE run_id = :suspended_id) = 'blocked'
     AND pg_temp.try(format('SELECT rungate.operation(103, %s)', :suspended_id)) LIKE 'RG404:%'
     AND pg_temp.try(format('SELECT rungate.operation(102, %s)', :suspended_id)) LIKE 'RG403:%',
       'it is listed as blocked; RG404 and RG403 hold for it too');
\pset tuples_only off
\set ECHO queries
UPDATE rungate.tenants SET status = 'active' WHERE id = 10;
\set ECHO none

\echo
\echo '--- 7. A scheduled run (no initiator) is blocked: no notification --'
\echo 'A scheduler queues a provider check of tenant 10 under system authority'
\echo '(initiator null); the provider connection is lost before it runs.'
\set ECHO queries
SELECT id AS system_id FROM rungate.enqueue('provider.connection.verify', 1, 10, NULL) \gset
UPDATE rungate.tenant_prerequisites SET satisfied = false
 WHERE tenant_id = 10 AND name = 'provider_connection';
SELECT count(*) AS handed_to_worker FROM rungate.claim('worker-1', NULL, 10);
SELECT run_id, authority, initiator_id, status, reason_code, reason_category
  FROM rungate.operations(105, 1, status => 'blocked');
\echo 'Notifications: one for the initiator of each terminal actor-bound run,'
\echo 'none for the system run, which stays visible in monitoring instead.'
SELECT actor_id, run_id, kind FROM rungate.notifications ORDER BY id;
\set ECHO none
\pset tuples_only on
SELECT pg_temp.expect(
         (SELECT status = 'blocked' AND reason_code = 'prerequisite_unmet' AND authority = 'system'
            FROM rungate.operations(105, 1) WHERE run_id = :system_id),
       'the system run is blocked (prerequisite_unmet) and visible in monitoring');
SELECT pg_temp.expect(
         NOT EXISTS (SELECT 1 FROM rungate.notifications WHERE run_id = :system_id)
     AND (SELECT count(*) FROM rungate.notifications) = 4
     AND (SELECT bool_and(n.actor_id = r.initiator_id AND n.kind = 'run_' || r.status)
            FROM rungate.notifications n JOIN rungate.runs r ON r.id = n.run_id),
       'no notification for the system run; one per actor-bound run, to its initiator');
\pset tuples_only off

\echo
\echo '=================================================================='
\echo ' Every step showed what it said. And whoever tries, a run changes'
\echo ' status only through rungate''s functions:'
\set ECHO queries
SELECT pg_temp.try(format('UPDATE rungate.runs SET status = %L WHERE id = %s', 'running', :sync_id))
       AS superuser_starts_a_blocked_run;
\set ECHO none
\echo '=================================================================='
