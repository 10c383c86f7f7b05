-- Privileges (docs/guarantees.md#privileges): the four personas of
-- docs/privileges.md, granted exactly as written there, can each do their job
-- and nothing more; a role without grants (PUBLIC) can call and read nothing;
-- a caller with a hostile search_path gets the same answers from the SECURITY
-- DEFINER functions. Runs in one transaction that is rolled back: the roles
-- vanish with it.
BEGIN;
SELECT plan(105);

\set QUIET on
SET client_min_messages = warning;
\i test/fixtures/seed.sql

CREATE ROLE tap_worker;
CREATE ROLE tap_dispatcher;
CREATE ROLE tap_viewer;
CREATE ROLE tap_admin;
CREATE ROLE tap_nobody;        -- no grant at all: what PUBLIC gets
CREATE ROLE tap_schema_only;   -- USAGE on the schema and nothing else

-- ---- the recipes of docs/privileges.md, verbatim (role names aside) ----
-- worker
GRANT USAGE ON SCHEMA rungate TO tap_worker;
GRANT EXECUTE ON FUNCTION
    rungate.claim(text, text[], integer),
    rungate.heartbeat(bigint, uuid),
    rungate.recheck(bigint, uuid),
    rungate.complete(bigint, uuid, jsonb),
    rungate.fail(bigint, uuid, text, boolean, interval),
    rungate.release(bigint, uuid, timestamptz)
  TO tap_worker;
-- dispatcher
GRANT USAGE ON SCHEMA rungate TO tap_dispatcher;
GRANT EXECUTE ON FUNCTION
    rungate.decide(text, bigint, bigint, bigint),
    rungate.enqueue(text, bigint, bigint, bigint, jsonb, timestamptz, integer, text),
    rungate.enqueue_bulk(text, bigint, bigint[], bigint, jsonb),
    rungate.cancel(bigint, bigint),
    rungate.rerun(bigint, bigint)
  TO tap_dispatcher;
-- viewer
GRANT USAGE ON SCHEMA rungate TO tap_viewer;
GRANT EXECUTE ON FUNCTION
    rungate.operations(bigint, bigint, text, bigint, integer, bigint),
    rungate.operation(bigint, bigint)
  TO tap_viewer;
-- administrator
GRANT USAGE ON SCHEMA rungate TO tap_admin;
GRANT ALL ON ALL TABLES IN SCHEMA rungate TO tap_admin;
GRANT ALL ON ALL SEQUENCES IN SCHEMA rungate TO tap_admin;
GRANT EXECUTE ON ALL ROUTINES IN SCHEMA rungate TO tap_admin;   -- procedures too
-- ---- end of the recipes ----
GRANT USAGE ON SCHEMA rungate TO tap_schema_only;

-- the worker's side effects go to an application table fenced by rungate;
-- the worker holds INSERT on it and nothing in rungate
CREATE TABLE public.tap_items (run_id bigint, item text);
GRANT INSERT ON public.tap_items TO tap_worker;
SELECT rungate.guard_writes('public.tap_items', 'run_id');
-- a table the administrator owns, for guard_writes
CREATE TABLE public.tap_admin_items (run_id bigint);
ALTER TABLE public.tap_admin_items OWNER TO tap_admin;
RESET client_min_messages;
\set QUIET off

------------------------------------------------------------------------------
-- PUBLIC (a role without grants) can call nothing and read nothing: every
-- function and table of the schema is revoked from PUBLIC (checked at the
-- object itself, and by calling each public function as that role).
------------------------------------------------------------------------------
SELECT is_empty($$
    SELECT p.oid::regprocedure FROM pg_proc p
     WHERE p.pronamespace = 'rungate'::regnamespace
       AND has_function_privilege('tap_nobody', p.oid, 'EXECUTE')$$,
  'PUBLIC can execute no rungate function');
SELECT is_empty($$
    SELECT c.oid::regclass, priv FROM pg_class c,
           unnest('{SELECT,INSERT,UPDATE,DELETE,TRUNCATE,REFERENCES,TRIGGER}'::text[]) priv
     WHERE c.relnamespace = 'rungate'::regnamespace AND c.relkind IN ('r', 'v', 'm', 'p')
       AND has_table_privilege('tap_nobody', c.oid, priv)
    UNION ALL
    SELECT c.oid::regclass, priv FROM pg_class c, unnest('{USAGE,SELECT,UPDATE}'::text[]) priv
     WHERE c.relnamespace = 'rungate'::regnamespace AND c.relkind = 'S'
       AND has_sequence_privilege('tap_nobody', c.oid, priv)$$,
  'PUBLIC holds no privilege on any rungate table or sequence');
SELECT ok(NOT has_schema_privilege('tap_nobody', 'rungate', 'USAGE'),
          'PUBLIC has no USAGE on the schema');

SET LOCAL ROLE tap_nobody;
SELECT throws_ok($$SELECT rungate.decide('inventory.sync', 1, 10, 100)$$, '42501', NULL, 'PUBLIC cannot decide');
SELECT throws_ok($$SELECT rungate.enqueue('inventory.sync', 1, 10, 100)$$, '42501', NULL, 'PUBLIC cannot enqueue');
SELECT throws_ok($$SELECT rungate.enqueue_bulk('bulk.inventory.sync', 1, '{10}', 100)$$, '42501', NULL,
                 'PUBLIC cannot enqueue_bulk');
SELECT throws_ok($$SELECT rungate.cancel(1, 100)$$, '42501', NULL, 'PUBLIC cannot cancel');
SELECT throws_ok($$SELECT * FROM rungate.claim('w')$$, '42501', NULL, 'PUBLIC cannot claim');
SELECT throws_ok($$SELECT rungate.heartbeat(1, gen_random_uuid())$$, '42501', NULL, 'PUBLIC cannot heartbeat');
SELECT throws_ok($$SELECT rungate.recheck(1, gen_random_uuid())$$, '42501', NULL, 'PUBLIC cannot recheck');
SELECT throws_ok($$SELECT rungate.complete(1, gen_random_uuid())$$, '42501', NULL, 'PUBLIC cannot complete');
SELECT throws_ok($$SELECT rungate.fail(1, gen_random_uuid(), 'x')$$, '42501', NULL, 'PUBLIC cannot fail');
SELECT throws_ok($$SELECT rungate.reap_expired()$$, '42501', NULL, 'PUBLIC cannot reap_expired');
SELECT throws_ok($$SELECT rungate.release(1, gen_random_uuid())$$, '42501', NULL, 'PUBLIC cannot release');
SELECT throws_ok($$SELECT rungate.rerun(1)$$, '42501', NULL, 'PUBLIC cannot rerun');
SELECT throws_ok($$SELECT rungate.hold(1)$$, '42501', NULL, 'PUBLIC cannot hold');
SELECT throws_ok($$SELECT rungate.resume(1)$$, '42501', NULL, 'PUBLIC cannot resume');
SELECT throws_ok($$SELECT rungate.purge(now())$$, '42501', NULL, 'PUBLIC cannot purge');
SELECT throws_ok($$SELECT rungate.purge_batch(now(), 10)$$, '42501', NULL, 'PUBLIC cannot purge_batch');
SELECT throws_ok($$CALL rungate.purge_in_batches(now())$$, '42501', NULL, 'PUBLIC cannot call purge_in_batches');
SELECT throws_ok($$SELECT * FROM rungate.operations(100, 1)$$, '42501', NULL, 'PUBLIC cannot list operations');
SELECT throws_ok($$SELECT rungate.operation(100, 1)$$, '42501', NULL, 'PUBLIC cannot open an operation');
SELECT throws_ok($$SELECT rungate.guard_writes('public.tap_items', 'run_id')$$, '42501', NULL,
                 'PUBLIC cannot guard_writes');
SELECT throws_ok($$SELECT rungate.unguard_writes('public.tap_items')$$, '42501', NULL,
                 'PUBLIC cannot unguard_writes');
SELECT throws_ok($$SELECT * FROM rungate.runs$$, '42501', NULL, 'PUBLIC cannot read runs');
RESET ROLE;

-- USAGE on the schema alone unlocks nothing: the functions themselves refuse
SET LOCAL ROLE tap_schema_only;
SELECT throws_ok($$SELECT rungate.decide('inventory.sync', 1, 10, 100)$$, '42501',
                 'permission denied for function decide',
                 'schema USAGE alone: decide is still refused at the function');
SELECT throws_ok($$SELECT * FROM rungate.claim('w')$$, '42501',
                 'permission denied for function claim',
                 'schema USAGE alone: claim is still refused at the function');
SELECT throws_ok($$SELECT * FROM rungate.tenants$$, '42501',
                 'permission denied for table tenants',
                 'schema USAGE alone: tables are still refused');
RESET ROLE;

------------------------------------------------------------------------------
-- Dispatcher: decide, enqueue, enqueue_bulk, cancel (denials come back as
-- blocked runs, not errors); it cannot claim or drive runs, read or write
-- any table, or use monitoring.
------------------------------------------------------------------------------
SET LOCAL ROLE tap_dispatcher;
SELECT ok((SELECT allowed FROM rungate.decide('inventory.sync', 1, 10, 100)), 'the dispatcher can decide');
SELECT is((SELECT status FROM rungate.enqueue('inventory.sync', 1, 10, 100)), 'queued',
          'the dispatcher can enqueue');
SELECT is((SELECT status FROM rungate.enqueue('restore.execute', 1, 10, 100)), 'queued',
          'the dispatcher can enqueue a restore');
SELECT id AS denied_id, reason_code AS denied_reason FROM rungate.enqueue('inventory.sync', 1, 10, 102) \gset
SELECT is(:'denied_reason'::text, 'capability_missing',
          'a denied dispatch comes back to the dispatcher as a blocked run');
SELECT is((SELECT status FROM rungate.rerun(:denied_id, 100)), 'queued',
          'the dispatcher can rerun a blocked run on another actor''s authority');
SELECT throws_ok($$SELECT rungate.hold(1)$$, '42501', NULL, 'the dispatcher cannot hold');
SELECT id AS bulk_id FROM rungate.enqueue_bulk('bulk.inventory.sync', 1, '{10,11}', 100) \gset
SELECT is((SELECT status FROM rungate.cancel(:bulk_id, 100)), 'cancelled',
          'the dispatcher can enqueue_bulk and cancel');
SELECT throws_ok($$SELECT * FROM rungate.claim('w')$$, '42501', NULL, 'the dispatcher cannot claim');
SELECT throws_ok($$SELECT rungate.complete(1, gen_random_uuid())$$, '42501', NULL, 'the dispatcher cannot complete');
SELECT throws_ok($$SELECT rungate.fail(1, gen_random_uuid(), 'x')$$, '42501', NULL, 'the dispatcher cannot fail');
SELECT throws_ok($$SELECT * FROM rungate.runs$$, '42501', NULL, 'the dispatcher cannot read runs');
SELECT throws_ok($$SELECT * FROM rungate.tenant_members$$, '42501', NULL,
                 'the dispatcher cannot read authority data');
SELECT throws_ok($$INSERT INTO rungate.tenant_members VALUES (11, 102, 'owner')$$, '42501', NULL,
                 'the dispatcher cannot grant itself authority');
SELECT throws_ok($$SELECT * FROM rungate.operations(100, 1)$$, '42501', NULL,
                 'the dispatcher cannot list operations');
SELECT throws_ok($$SELECT rungate.reap_expired()$$, '42501', NULL, 'the dispatcher cannot reap');
RESET ROLE;

------------------------------------------------------------------------------
-- Worker: everything it needs comes back from claim (run id, lease token);
-- it can heartbeat, recheck, complete and fail, and write its side effect
-- while the run is running. It cannot read or change runs, the audit log or
-- authority data, enqueue, decide, cancel, monitor or reap.
------------------------------------------------------------------------------
SET LOCAL ROLE tap_worker;
SELECT run_id AS sync_id, lease_token AS sync_token, operation AS sync_op
  FROM rungate.claim('w', ARRAY['inventory.sync']) \gset
SELECT run_id AS restore_id, lease_token AS restore_token
  FROM rungate.claim('w', ARRAY['restore.execute']) \gset
SELECT is(:'sync_op'::text, 'inventory.sync'::text, 'the worker can claim, and gets the run and its lease token');
SELECT ok(rungate.heartbeat(:restore_id, :'restore_token') > now(), 'the worker can heartbeat');
SELECT ok((SELECT allowed FROM rungate.recheck(:restore_id, :'restore_token')), 'the worker can recheck');
SELECT lives_ok(format('INSERT INTO public.tap_items VALUES (%s, %L)', :restore_id, 'item'),
                'the worker writes its side effect while the run is running');
SELECT is((SELECT status FROM rungate.complete(:sync_id, :'sync_token')), 'succeeded',
          'the worker can complete');
SELECT is((SELECT status FROM rungate.fail(:restore_id, :'restore_token', 'boom')), 'failed',
          'the worker can fail');
SELECT throws_ok(format('INSERT INTO public.tap_items VALUES (%s, %L)', :restore_id, 'late'), 'RG409', NULL,
                 'the fence refuses the worker''s write once the run is no longer running');
SELECT run_id AS rel_id, lease_token AS rel_token FROM rungate.claim('w', ARRAY['inventory.sync']) \gset
SELECT is((SELECT status FROM rungate.release(:rel_id, :'rel_token')), 'queued',
          'the worker can release a run');
SELECT run_id AS rel_id2, lease_token AS rel_token2 FROM rungate.claim('w', ARRAY['inventory.sync']) \gset
SELECT status AS rel_done FROM rungate.complete(:rel_id2, :'rel_token2') \gset
SELECT throws_ok($$SELECT rungate.rerun(1)$$, '42501', NULL, 'the worker cannot rerun');
SELECT throws_ok($$SELECT rungate.hold(1)$$, '42501', NULL, 'the worker cannot hold');
SELECT throws_ok($$SELECT * FROM rungate.runs$$, '42501', NULL, 'the worker cannot read runs');
SELECT throws_ok($$UPDATE rungate.runs SET priority = 9$$, '42501', NULL, 'the worker cannot update runs');
SELECT throws_ok($$SELECT * FROM rungate.tenant_members$$, '42501', NULL,
                 'the worker cannot read authority data');
SELECT throws_ok($$INSERT INTO rungate.role_capabilities VALUES ('readonly', 'inventory.sync')$$, '42501', NULL,
                 'the worker cannot add authority data');
SELECT throws_ok($$UPDATE rungate.tenants SET status = 'active'$$, '42501', NULL,
                 'the worker cannot update authority data');
SELECT throws_ok($$SELECT * FROM rungate.audit_log$$, '42501', NULL, 'the worker cannot read the audit log');
SELECT throws_ok($$SELECT rungate.enqueue('inventory.sync', 1, 10, 100)$$, '42501', NULL,
                 'the worker cannot enqueue');
SELECT throws_ok($$SELECT rungate.enqueue_bulk('bulk.inventory.sync', 1, '{10}', 100)$$, '42501', NULL,
                 'the worker cannot enqueue_bulk');
SELECT throws_ok($$SELECT rungate.decide('inventory.sync', 1, 10, 100)$$, '42501', NULL,
                 'the worker cannot decide');
SELECT throws_ok($$SELECT rungate.cancel(1, 100)$$, '42501', NULL, 'the worker cannot cancel');
SELECT throws_ok($$SELECT * FROM rungate.operations(100, 1)$$, '42501', NULL,
                 'the worker cannot list operations');
SELECT throws_ok($$SELECT rungate.reap_expired()$$, '42501', NULL, 'the worker cannot reap');
RESET ROLE;

------------------------------------------------------------------------------
-- Viewer: both operations surfaces, which apply their own 404/403 rules to
-- the viewer_id passed in; nothing else.
------------------------------------------------------------------------------
SELECT count(*) AS ws1_runs FROM rungate.runs WHERE workspace_id = 1 \gset
SET LOCAL ROLE tap_viewer;
SELECT is((SELECT count(*) FROM rungate.operations(100, 1)), :ws1_runs::bigint,
          'the viewer can list operations (olivia sees every run of workspace 1)');
SELECT is((SELECT status FROM rungate.operation(100, :sync_id)), 'succeeded', 'the viewer can open a run');
SELECT throws_ok(format('SELECT rungate.operation(103, %s)', :sync_id), 'RG404', NULL,
                 'an outsider viewer_id still gets RG404');
SELECT throws_ok($$SELECT * FROM rungate.operations(102, 1)$$, 'RG403', NULL,
                 'an in-scope viewer_id without operations.view still gets RG403');
SELECT throws_ok($$SELECT * FROM rungate.claim('w')$$, '42501', NULL, 'the viewer cannot claim');
SELECT throws_ok($$SELECT rungate.enqueue('inventory.sync', 1, 10, 100)$$, '42501', NULL,
                 'the viewer cannot enqueue');
SELECT throws_ok($$SELECT rungate.decide('inventory.sync', 1, 10, 100)$$, '42501', NULL,
                 'the viewer cannot decide');
SELECT throws_ok($$SELECT * FROM rungate.runs$$, '42501', NULL, 'the viewer cannot read runs');
SELECT throws_ok($$SELECT * FROM rungate.audit_log$$, '42501', NULL, 'the viewer cannot read the audit log');
RESET ROLE;

------------------------------------------------------------------------------
-- Administrator (owner-like: every table, sequence and function): maintains
-- authority data, reads runs and the audit log, edits a queued run's
-- priority, marks notifications read, calls every function, fences its own
-- tables. Privileges do not reach past the C guards: a hand-written run
-- insert, status change or delete, an audit change, a TRUNCATE of the log
-- raise RG409; the guards cannot be disabled, nor replication mode set.
------------------------------------------------------------------------------
SET LOCAL ROLE tap_admin;
SELECT lives_ok($$INSERT INTO rungate.actors (name) VALUES ('new hire')$$,
                'the administrator adds an actor (id from the sequence)');
SELECT lives_ok($$UPDATE rungate.tenants SET status = 'suspended' WHERE id = 12$$,
                'the administrator suspends a tenant');
SELECT lives_ok($$DELETE FROM rungate.tenant_members WHERE tenant_id = 10 AND actor_id = 104$$,
                'the administrator revokes a membership');
SELECT ok((SELECT count(*) FROM rungate.runs) > 0 AND (SELECT count(*) FROM rungate.audit_log) > 0,
          'the administrator reads runs and the audit log');
SELECT id AS admin_run FROM rungate.enqueue('reports.export', 1, NULL, 100) \gset
SELECT lives_ok(format('UPDATE rungate.runs SET priority = 5 WHERE id = %s', :admin_run),
                'the administrator edits the priority of a queued run');
SELECT lives_ok($$UPDATE rungate.notifications SET read_at = now()$$,
                'the administrator marks notifications read');
SELECT is((SELECT count(*) FROM rungate.claim('admin', ARRAY['reports.export'])), 1::bigint,
          'the administrator can call the worker functions too');
SELECT lives_ok($$SELECT rungate.reap_expired()$$, 'the administrator can reap');
SELECT lives_ok($$SELECT rungate.purge(now() - interval '1 year')$$, 'the administrator can purge');
SELECT lives_ok($$SELECT rungate.purge_batch(now() - interval '1 year', 10)$$, 'the administrator can purge_batch');
SELECT lives_ok($$CALL rungate.purge_in_batches(now() - interval '1 year')$$,
                'the administrator can call purge_in_batches');
SELECT lives_ok($$SELECT rungate.guard_writes('public.tap_admin_items', 'run_id')$$,
                'the administrator fences a table it owns');
SELECT lives_ok($$SELECT rungate.unguard_writes('public.tap_admin_items')$$,
                'the administrator removes that fence');
SELECT throws_ok(format('UPDATE rungate.runs SET status = %L WHERE id = %s', 'succeeded', :admin_run), 'RG409', NULL,
                 'the administrator cannot move a run by hand');
SELECT throws_ok(format('UPDATE rungate.runs SET status = %L WHERE id = %s', 'running', :sync_id), 'RG409', NULL,
                 'the administrator cannot change a terminal run');
SELECT throws_ok($$INSERT INTO rungate.runs (workspace_id, operation, status, max_attempts)
                   VALUES (1, 'reports.export', 'queued', 1)$$, 'RG409', NULL,
                 'the administrator cannot insert a run by hand');
SELECT throws_ok(format('DELETE FROM rungate.runs WHERE id = %s', :sync_id), 'RG409', NULL,
                 'the administrator cannot delete a run by hand');
SELECT throws_ok($$UPDATE rungate.audit_log SET event = 'succeeded'$$, 'RG409', NULL,
                 'the administrator cannot rewrite the audit log');
SELECT throws_ok($$DELETE FROM rungate.audit_log$$, 'RG409', NULL,
                 'the administrator cannot delete audit rows');
SELECT throws_ok($$TRUNCATE rungate.audit_log$$, 'RG409', NULL,
                 'the administrator cannot truncate the audit log');
SELECT throws_ok($$ALTER TABLE rungate.runs DISABLE TRIGGER guard_runs$$, '42501', NULL,
                 'the administrator cannot disable the run guard');
SELECT throws_ok($$SET session_replication_role = replica$$, '42501', NULL,
                 'the administrator cannot switch to replication mode');
RESET ROLE;

------------------------------------------------------------------------------
-- A hostile search_path: a schema of the caller's, first in the path, with
-- its own now() (a fixed past time) and a text "=" that is always true.
-- decide, claim and operations pin their search_path, so they answer as
-- they do for a caller with a clean path. (pgTAP would be fooled too: the
-- answers are taken under the hostile path and asserted after it is reset.)
------------------------------------------------------------------------------
CREATE SCHEMA tap_evil;
CREATE FUNCTION tap_evil.now() RETURNS timestamptz LANGUAGE sql
    AS $$ SELECT '2000-01-01 00:00:00+00'::timestamptz $$;
CREATE FUNCTION tap_evil.texteq(text, text) RETURNS boolean LANGUAGE sql AS $$ SELECT true $$;
CREATE OPERATOR tap_evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = tap_evil.texteq);
GRANT USAGE ON SCHEMA tap_evil TO tap_dispatcher, tap_worker, tap_viewer;

-- the hostile objects are live: under that path, now() and = lie
SET LOCAL search_path = tap_evil, pg_catalog, public;
SELECT now() = '2000-01-01 00:00:00+00'::timestamptz AS evil_now, 'a' = 'b' AS evil_eq \gset
RESET search_path;
SELECT ok(:'evil_now' AND :'evil_eq', 'the hostile now() and text = take effect under that search_path');

SELECT is((SELECT count(*) FROM rungate.runs WHERE status = 'queued'), 0::bigint, 'nothing is queued yet');
SELECT id AS due_id FROM rungate.enqueue('inventory.sync', 1, 10, 100) \gset
SELECT id AS later_id FROM rungate.enqueue('inventory.sync', 1, 10, 100, run_at => now() + interval '1 hour') \gset

-- the same decisions, clean and hostile: denied for three different checks
-- (text comparisons of roles, capabilities, prerequisite names), allowed once
CREATE TEMP VIEW tap_decisions AS
    SELECT string_agg(d::text, ' | ' ORDER BY v.n) AS rows,
           string_agg(coalesce(d.reason_code, 'allowed'), ',' ORDER BY v.n) AS reasons
      FROM (VALUES (1, 'inventory.sync', 10::bigint, 102::bigint),
                   (2, 'restore.execute', 11, 100),
                   (3, 'inventory.sync', 10, 103),
                   (4, 'inventory.sync', 10, 100)) v(n, op, tenant, actor),
           LATERAL rungate.decide(v.op, 1, v.tenant, v.actor) d;
GRANT SELECT ON tap_decisions TO tap_dispatcher;
SELECT rows AS clean_rows FROM tap_decisions \gset
SELECT count(*) AS clean_failed FROM rungate.operations(100, 1, status => 'failed') \gset

SET LOCAL ROLE tap_dispatcher;
SET LOCAL search_path = tap_evil, pg_catalog, public;
SELECT rows AS evil_rows, reasons AS evil_reasons FROM pg_temp.tap_decisions \gset
RESET ROLE;
SET LOCAL ROLE tap_worker;
SET LOCAL search_path = tap_evil, pg_catalog, public;
SELECT count(*) AS evil_filtered FROM rungate.claim('w', ARRAY['reports.export']) \gset
SELECT count(*) AS evil_claimed, min(run_id) AS evil_run, min(lease_expires_at) AS evil_lease
  FROM rungate.claim('w', NULL, 10) \gset
RESET ROLE;
SET LOCAL ROLE tap_viewer;
SET LOCAL search_path = tap_evil, pg_catalog, public;
SELECT count(*) AS evil_failed FROM rungate.operations(100, 1, status => 'failed') \gset
RESET ROLE;
RESET search_path;

SELECT is(:'evil_reasons'::text, 'capability_missing,prerequisite_unmet,actor_not_in_workspace,allowed'::text,
          'decide under a hostile search_path: each check still decides');
SELECT is(:'evil_rows'::text, :'clean_rows'::text, 'decide under a hostile search_path: identical decisions and checks');
SELECT is(:evil_filtered::bigint, 0::bigint,
          'claim under a hostile search_path: the operations filter still compares names');
SELECT is(:evil_claimed::bigint, 1::bigint,
          'claim under a hostile search_path: the due run is taken (a year-2000 now() would find nothing due)');
SELECT is(:evil_run::bigint, :due_id::bigint, 'claim under a hostile search_path: the run not yet due is left');
SELECT ok(:'evil_lease'::timestamptz > now(), 'claim under a hostile search_path: the lease is set from the real clock');
SELECT is(:evil_failed::bigint, :clean_failed::bigint,
          'operations under a hostile search_path: the status filter still filters');

SELECT * FROM finish();
ROLLBACK;
