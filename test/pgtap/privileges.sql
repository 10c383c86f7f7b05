-- Privileges (CONTRACT §11): the four personas of docs/privileges.md, granted
-- exactly as written there, can each do their job and nothing more; PUBLIC
-- can call nothing; a hostile search_path changes nothing.
BEGIN;
SELECT plan(38);

\set QUIET on
SET client_min_messages = warning;
\i test/fixtures/seed.sql

CREATE ROLE tap_worker;
CREATE ROLE tap_dispatcher;
CREATE ROLE tap_viewer;
CREATE ROLE tap_admin;
CREATE ROLE tap_nobody;

GRANT USAGE ON SCHEMA rungate TO tap_worker, tap_dispatcher, tap_viewer, tap_admin;
GRANT EXECUTE ON FUNCTION
    rungate.claim(text, text[], integer),
    rungate.heartbeat(bigint, uuid),
    rungate.recheck(bigint, uuid),
    rungate.complete(bigint, uuid, jsonb),
    rungate.fail(bigint, uuid, text, boolean, interval)
  TO tap_worker;
GRANT EXECUTE ON FUNCTION
    rungate.decide(text, bigint, bigint, bigint),
    rungate.enqueue(text, bigint, bigint, bigint, jsonb, timestamptz, integer, text),
    rungate.enqueue_bulk(text, bigint, bigint[], bigint, jsonb),
    rungate.cancel(bigint, bigint)
  TO tap_dispatcher;
GRANT EXECUTE ON FUNCTION
    rungate.operations(bigint, bigint, text, bigint, integer, bigint),
    rungate.operation(bigint, bigint)
  TO tap_viewer;
GRANT SELECT, INSERT, UPDATE, DELETE ON
    rungate.workspaces, rungate.tenants, rungate.actors,
    rungate.role_capabilities, rungate.workspace_members,
    rungate.tenant_members, rungate.tenant_prerequisites,
    rungate.operation_types
  TO tap_admin;
GRANT USAGE ON SEQUENCE rungate.workspaces_id_seq, rungate.tenants_id_seq,
    rungate.actors_id_seq TO tap_admin;
GRANT SELECT ON rungate.runs, rungate.audit_log TO tap_admin;
GRANT UPDATE (priority, run_at) ON rungate.runs TO tap_admin;
GRANT SELECT, UPDATE (read_at) ON rungate.notifications TO tap_admin;
GRANT EXECUTE ON FUNCTION
    rungate.reap_expired(), rungate.purge(timestamptz),
    rungate.guard_writes(regclass, name), rungate.unguard_writes(regclass),
    rungate.fence()
  TO tap_admin;

-- a table the worker's side effects go to, guarded by the fence
CREATE TABLE public.tap_items (run_id bigint, item text);
GRANT INSERT ON public.tap_items TO tap_worker;
SELECT rungate.guard_writes('public.tap_items', 'run_id');
RESET client_min_messages;
\set QUIET off

-- PUBLIC: nothing in the schema is callable or readable by a role without grants
SELECT is_empty($$
    SELECT p.oid::regprocedure FROM pg_proc p
     WHERE p.pronamespace = 'rungate'::regnamespace
       AND has_function_privilege('tap_nobody', p.oid, 'EXECUTE')$$,
  'a role without grants can execute no rungate function');
SELECT is_empty($$
    SELECT c.oid::regclass FROM pg_class c
     WHERE c.relnamespace = 'rungate'::regnamespace AND c.relkind IN ('r', 'S')
       AND (has_table_privilege('tap_nobody', c.oid, 'SELECT')
         OR has_table_privilege('tap_nobody', c.oid, 'INSERT'))$$,
  'a role without grants can read or write no rungate table');
SET LOCAL ROLE tap_nobody;
SELECT throws_ok($$SELECT rungate.decide('inventory.sync', 1, 10, 100)$$, '42501',
                 NULL, 'PUBLIC cannot decide');
SELECT throws_ok($$SELECT * FROM rungate.claim('w')$$, '42501', NULL, 'PUBLIC cannot claim');
RESET ROLE;

-- dispatcher: decide, enqueue, cancel; no claim, no tables, no monitoring
SET LOCAL ROLE tap_dispatcher;
SELECT ok((SELECT allowed FROM rungate.decide('inventory.sync', 1, 10, 100)),
          'the dispatcher can decide');
SELECT lives_ok($$SELECT rungate.enqueue('inventory.sync', 1, 10, 100)$$,
                'the dispatcher can enqueue');
SELECT lives_ok($$SELECT rungate.enqueue('restore.execute', 1, 10, 100)$$,
                'the dispatcher can enqueue a restore');
SELECT lives_ok($$SELECT rungate.cancel(rungate_tap_last.id, 100)
                    FROM (SELECT (rungate.enqueue('reports.export', 1, NULL, 100)).id) rungate_tap_last$$,
                'the dispatcher can cancel');
SELECT throws_ok($$SELECT * FROM rungate.claim('w')$$, '42501', NULL, 'the dispatcher cannot claim');
SELECT throws_ok($$SELECT * FROM rungate.runs$$, '42501', NULL, 'the dispatcher cannot read runs');
SELECT throws_ok($$SELECT * FROM rungate.operations(100, 1)$$, '42501', NULL,
                 'the dispatcher cannot use monitoring');
RESET ROLE;

-- worker: claim, heartbeat, recheck, complete, fail; no tables, no enqueue
SELECT id AS sync_id FROM rungate.runs WHERE operation = 'inventory.sync' \gset
SELECT id AS restore_id FROM rungate.runs WHERE operation = 'restore.execute' \gset
SET LOCAL ROLE tap_worker;
SELECT is((SELECT run_id FROM rungate.claim('w', ARRAY['inventory.sync'])), :sync_id::bigint,
          'the worker can claim');
SELECT ok(rungate.heartbeat(:restore_id, (SELECT lease_token FROM rungate.claim('w', ARRAY['restore.execute']))) IS NOT NULL,
          'the worker can claim and heartbeat a restore');
RESET ROLE;
SELECT lease_token AS sync_token FROM rungate.runs WHERE id = :sync_id \gset
SELECT lease_token AS restore_token FROM rungate.runs WHERE id = :restore_id \gset
SET LOCAL ROLE tap_worker;
SELECT ok((SELECT allowed FROM rungate.recheck(:restore_id, :'restore_token')), 'the worker can recheck');
SELECT lives_ok(format('INSERT INTO public.tap_items VALUES (%s, %L)', :restore_id, 'item'),
                'the worker writes its side effect while the run is running');
SELECT is((SELECT status FROM rungate.complete(:sync_id, :'sync_token')), 'succeeded',
          'the worker can complete');
SELECT is((SELECT status FROM rungate.fail(:restore_id, :'restore_token', 'boom')), 'failed',
          'the worker can fail');
SELECT throws_ok(format('INSERT INTO public.tap_items VALUES (%s, %L)', :restore_id, 'late'), 'RG409', NULL,
                 'the fence refuses a write for a run that is no longer running');
SELECT throws_ok($$SELECT * FROM rungate.runs$$, '42501', NULL, 'the worker cannot read runs');
SELECT throws_ok($$UPDATE rungate.runs SET priority = 9$$, '42501', NULL,
                 'the worker cannot update runs');
SELECT throws_ok($$SELECT * FROM rungate.tenant_members$$, '42501', NULL,
                 'the worker cannot read authority data');
SELECT throws_ok($$SELECT * FROM rungate.audit_log$$, '42501', NULL,
                 'the worker cannot read the audit log');
SELECT throws_ok($$SELECT rungate.enqueue('inventory.sync', 1, 10, 100)$$, '42501', NULL,
                 'the worker cannot enqueue');
SELECT throws_ok($$SELECT rungate.decide('inventory.sync', 1, 10, 100)$$, '42501', NULL,
                 'the worker cannot decide');
SELECT throws_ok($$SELECT rungate.reap_expired()$$, '42501', NULL, 'the worker cannot reap');
RESET ROLE;

-- viewer: both surfaces, with their own 404/403 rules; nothing else
SET LOCAL ROLE tap_viewer;
SELECT ok((SELECT count(*) FROM rungate.operations(100, 1)) >= 3, 'the viewer can list operations');
SELECT is((SELECT status FROM rungate.operation(100, :sync_id)), 'succeeded', 'the viewer can open a run');
SELECT throws_ok(format('SELECT rungate.operation(103, %s)', :sync_id), 'RG404', NULL,
                 'an outsider viewer id still gets RG404');
SELECT throws_ok($$SELECT * FROM rungate.claim('w')$$, '42501', NULL, 'the viewer cannot claim');
SELECT throws_ok($$SELECT * FROM rungate.runs$$, '42501', NULL, 'the viewer cannot read runs');
RESET ROLE;

-- administrator: authority data, reading runs, maintenance; never a status
SET LOCAL ROLE tap_admin;
SELECT lives_ok($$INSERT INTO rungate.actors (name) VALUES ('new hire')$$,
                'the administrator maintains authority data (ids from the sequence)');
SELECT lives_ok($$UPDATE rungate.tenants SET status = 'suspended' WHERE id = 12$$,
                'the administrator can suspend a tenant');
SELECT ok((SELECT count(*) FROM rungate.audit_log) > 0, 'the administrator reads the audit log');
SELECT lives_ok($$UPDATE rungate.notifications SET read_at = now()$$,
                'the administrator marks notifications read');
SELECT lives_ok($$SELECT rungate.reap_expired()$$, 'the administrator can reap');
SELECT throws_ok($$UPDATE rungate.runs SET status = 'running' WHERE status = 'queued'$$, '42501', NULL,
                 'the administrator has no privilege on a run''s status');
RESET ROLE;

-- a hostile search_path: the caller's own now() and text = change nothing
CREATE SCHEMA tap_evil;
CREATE FUNCTION tap_evil.now() RETURNS timestamptz LANGUAGE sql AS $$ SELECT '2000-01-01'::timestamptz $$;
CREATE FUNCTION tap_evil.texteq(text, text) RETURNS boolean LANGUAGE sql AS $$ SELECT true $$;
CREATE OPERATOR tap_evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = tap_evil.texteq);
GRANT USAGE ON SCHEMA tap_evil TO tap_dispatcher, tap_worker;
SELECT rungate.enqueue('inventory.sync', 1, 10, 100, run_at => now() + interval '1 hour') IS NULL AS queued_for_later \gset
-- (pgTAP's own functions would be fooled too: take the answers under the
-- hostile path, assert after it is reset)
SET LOCAL ROLE tap_dispatcher;
SET LOCAL search_path = tap_evil, pg_catalog, public;
SELECT reason_code AS evil_reason FROM rungate.decide('inventory.sync', 1, 10, 102) \gset
RESET ROLE;
SET LOCAL ROLE tap_worker;
SET LOCAL search_path = tap_evil, pg_catalog, public;
SELECT count(*) AS evil_claimed FROM rungate.claim('w') \gset
RESET ROLE;
RESET search_path;
SELECT is(:'evil_reason'::text, 'capability_missing'::text,
          'decide under a hostile search_path still denies');
SELECT is(:evil_claimed::bigint, 0::bigint,
          'claim under a hostile search_path does not take a run that is not due');

SELECT * FROM finish();
ROLLBACK;
