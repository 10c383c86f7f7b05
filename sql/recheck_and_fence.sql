-- recheck_and_fence: restore.execute, a write family (writes = true), is
-- re-authorized at claim and again before side effects, and its side
-- effects are fenced (docs/guarantees.md#recheck, #fence,
-- #claim-reauthorization, #dispatch, #errors).
--   * each revocation between dispatch and claim blocks the run at claim;
--     restores need an actor (allow_system = false), so a system dispatch is
--     blocked at dispatch; malformed enqueues raise RG400, create nothing
--   * rungate.recheck: allowed while legitimate; after a revocation it
--     returns allowed = false with the reason, no exception, and the run
--     becomes blocked (audit recheck_blocked); the lease is void, so
--     complete / heartbeat / fail / recheck with the old token are RG409
--   * the side-effect fence: a table guarded with rungate.guard_writes
--     accepts rows of a running run and refuses (RG409) rows of a blocked,
--     queued, finished or unknown run; unguard_writes removes it;
--     guard_writes refuses bad tables and columns (RG400)
-- Fixture (test/fixtures/seed.sql): olivia (100) is owner of workspace 1
-- and tenants 10, 11; only the owner role grants restore.execute; restore
-- needs provider_connection and admin_consent: tenant 10 has both, tenant 11
-- lacks admin_consent.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS rungate CASCADE;
CREATE EXTENSION rungate;
\set ECHO none
\i test/fixtures/seed.sql
\i test/fixtures/try.sql
\set ECHO all
-- pg_temp.try(stmt) (test/fixtures/try.sql): 'ok', or 'SQLSTATE: message'.

-- pg_temp.reauth(revoke, restore): olivia enqueues a restore of tenant 10,
-- `revoke` runs, a worker claims; returns what became of the run, then runs
-- `restore`.
CREATE FUNCTION pg_temp.reauth(revoke text, restore text)
RETURNS TABLE (claimed bigint, status text, reason_code text,
               reason_category text, reason_message text, attempt int,
               started boolean, events text)
LANGUAGE plpgsql AS $$
DECLARE
    run rungate.runs;
BEGIN
    run := rungate.enqueue('restore.execute', 1, 10, 100);
    IF run.status <> 'queued' THEN
        RAISE EXCEPTION 'dispatch of the restore was denied: %', run.reason_code;
    END IF;
    IF revoke IS NOT NULL THEN EXECUTE revoke; END IF;
    SELECT count(*) INTO claimed FROM rungate.claim('restore-worker');
    SELECT r.status, r.reason_code, r.reason_category, r.reason_message,
           r.attempt, r.started_at IS NOT NULL
      INTO status, reason_code, reason_category, reason_message, attempt, started
      FROM rungate.runs r WHERE r.id = run.id;
    SELECT string_agg(a.event, ', ' ORDER BY a.id) INTO events
      FROM rungate.audit_log a WHERE a.run_id = run.id;
    IF restore IS NOT NULL THEN EXECUTE restore; END IF;
    RETURN NEXT;
END $$;

------------------------------------------------------------------------------
-- 1. Revocations between dispatch and claim block the restore at claim.
------------------------------------------------------------------------------
SELECT x.label AS revocation, r.*
  FROM (VALUES
    (0, 'none (control)', NULL, NULL),
    (1, 'restore.execute removed from owner',
        $$DELETE FROM rungate.role_capabilities WHERE role = 'owner' AND capability = 'restore.execute'$$,
        $$INSERT INTO rungate.role_capabilities VALUES ('owner', 'restore.execute')$$),
    (2, 'tenant role changed to operator',
        $$UPDATE rungate.tenant_members SET role = 'operator' WHERE tenant_id = 10 AND actor_id = 100$$,
        $$UPDATE rungate.tenant_members SET role = 'owner' WHERE tenant_id = 10 AND actor_id = 100$$),
    (3, 'tenant membership deleted',
        $$DELETE FROM rungate.tenant_members WHERE tenant_id = 10 AND actor_id = 100$$,
        $$INSERT INTO rungate.tenant_members VALUES (10, 100, 'owner')$$),
    (4, 'workspace membership deleted',
        $$DELETE FROM rungate.workspace_members WHERE workspace_id = 1 AND actor_id = 100$$,
        $$INSERT INTO rungate.workspace_members VALUES (1, 100, 'owner')$$),
    (5, 'actor disabled',
        $$UPDATE rungate.actors SET status = 'disabled' WHERE id = 100$$,
        $$UPDATE rungate.actors SET status = 'active' WHERE id = 100$$),
    (6, 'tenant moved to workspace 2',
        $$UPDATE rungate.tenants SET workspace_id = 2 WHERE id = 10$$,
        $$UPDATE rungate.tenants SET workspace_id = 1 WHERE id = 10$$),
    (7, 'tenant archived',
        $$UPDATE rungate.tenants SET status = 'archived' WHERE id = 10$$,
        $$UPDATE rungate.tenants SET status = 'active' WHERE id = 10$$),
    (8, 'workspace suspended',
        $$UPDATE rungate.workspaces SET status = 'suspended' WHERE id = 1$$,
        $$UPDATE rungate.workspaces SET status = 'active' WHERE id = 1$$),
    (9, 'admin_consent marked unsatisfied',
        $$UPDATE rungate.tenant_prerequisites SET satisfied = false WHERE tenant_id = 10 AND name = 'admin_consent'$$,
        $$UPDATE rungate.tenant_prerequisites SET satisfied = true WHERE tenant_id = 10 AND name = 'admin_consent'$$),
    (10, 'admin_consent deleted',
        $$DELETE FROM rungate.tenant_prerequisites WHERE tenant_id = 10 AND name = 'admin_consent'$$,
        $$INSERT INTO rungate.tenant_prerequisites VALUES (10, 'admin_consent', true)$$)
  ) AS x(k, label, revoke, restore),
  LATERAL pg_temp.reauth(x.revoke, x.restore) AS r
 ORDER BY x.k;
-- Nothing is left queued: each run was started or blocked by its claim.
SELECT status, count(*) FROM rungate.runs GROUP BY status ORDER BY status;

------------------------------------------------------------------------------
-- 2. Dispatch-time blocking (#dispatch): returned blocked, no exception,
--    audit dispatch_blocked; restores cannot run on system authority.
------------------------------------------------------------------------------
CREATE TEMP TABLE denied AS
SELECT x.k, x.label, r.*
  FROM (VALUES (1, 'system authority', 10::bigint, NULL::bigint),
               (2, 'oscar: operator lacks restore.execute', 10, 101),
               (3, 'tenant 11 lacks admin_consent', 11, 100)) AS x(k, label, tenant, actor),
       LATERAL rungate.enqueue('restore.execute', 1, x.tenant, x.actor) AS r;
SELECT d.label, d.status, d.reason_code, d.reason_category, d.reason_message,
       d.attempt, d.started_at IS NULL AS never_started,
       (SELECT string_agg(a.event || '/' || a.decision || '/' || a.authority, ', ' ORDER BY a.id)
          FROM rungate.audit_log a WHERE a.run_id = d.id) AS audit
  FROM denied d ORDER BY d.k;
SELECT count(*) AS claimed FROM rungate.claim('restore-worker', ARRAY['restore.execute'], 10);

------------------------------------------------------------------------------
-- 3. Malformed restores raise RG400 and create nothing.
------------------------------------------------------------------------------
SELECT count(*) AS runs_before FROM rungate.runs \gset
SELECT pg_temp.try($$SELECT rungate.enqueue('restore.execute', 1, NULL, 100)$$) AS no_tenant,
       pg_temp.try($$SELECT rungate.enqueue('restore.execute', 1, 20, 100)$$) AS foreign_tenant,
       pg_temp.try($$SELECT rungate.enqueue('restore.execute', 1, 10, 4242)$$) AS unknown_actor,
       pg_temp.try($$SELECT rungate.enqueue('restore.run', 1, 10, 100)$$) AS unknown_operation;
SELECT count(*) - :runs_before AS runs_created FROM rungate.runs;

------------------------------------------------------------------------------
-- 4. The application fences its restore side effects (#fence).
------------------------------------------------------------------------------
CREATE TABLE restore_items (
    id      serial PRIMARY KEY,
    run_id  bigint,
    item    text NOT NULL
);
SELECT rungate.guard_writes('restore_items', 'run_id');
SELECT tgname, tgenabled FROM pg_trigger
 WHERE tgrelid = 'restore_items'::regclass AND NOT tgisinternal ORDER BY tgname;

-- A restore is queued: its rows are fenced until it runs.
SELECT id AS r1 FROM rungate.enqueue('restore.execute', 1, 10, 100, '{"items": 2}') \gset
SELECT pg_temp.try(format('INSERT INTO restore_items (run_id, item) VALUES (%s, %L)',
                          :r1, 'too early')) AS insert_while_queued;

-- The worker claims it and rechecks before writing: allowed.
SELECT run_id AS claimed_run, lease_token AS tok, attempt
  FROM rungate.claim('restore-worker', ARRAY['restore.execute']) \gset
SELECT :claimed_run = :r1 AS same_run, :attempt AS attempt;
SELECT allowed, authority, reason_code, reason_category, reason_message,
       jsonb_array_length(checks) AS checks_evaluated
  FROM rungate.recheck(:r1, :'tok');
SELECT status FROM rungate.runs WHERE id = :r1;
-- While it runs, its side effects are accepted (the worker's transaction:
-- recheck, then write).
BEGIN;
SELECT allowed FROM rungate.recheck(:r1, :'tok');
INSERT INTO restore_items (run_id, item) VALUES (:r1, 'mailbox-1');
UPDATE restore_items SET item = 'mailbox-1 (restored)' WHERE run_id = :r1;
COMMIT;
-- Rows tied to no run are not fenced.
INSERT INTO restore_items (run_id, item) VALUES (NULL, 'unrelated');

-- Authority is revoked mid-run: the tenant's admin consent is withdrawn.
UPDATE rungate.tenant_prerequisites SET satisfied = false
 WHERE tenant_id = 10 AND name = 'admin_consent';
-- recheck says no, with the reason, and raises nothing ...
SELECT allowed, authority, reason_code, reason_category, reason_message
  FROM rungate.recheck(:r1, :'tok');
-- ... the run is blocked, with no lease left; it was started by the claim.
SELECT status, reason_code, reason_category, attempt,
       started_at IS NOT NULL AS was_started, lease_expires_at IS NULL AS lease_void,
       finished_at IS NOT NULL AS finished, result IS NULL AS no_result
  FROM rungate.runs WHERE id = :r1;
SELECT event, decision, reason_code, reason_category, attempt,
       (SELECT string_agg(c->>'code', ', ') FROM jsonb_array_elements(checks) c
         WHERE NOT (c->>'passed')::boolean) AS failed_checks
  FROM rungate.audit_log WHERE run_id = :r1 ORDER BY id;
-- The initiator is told once (#notifications).
SELECT actor_id, kind FROM rungate.notifications WHERE run_id = :r1 ORDER BY id;

-- The lease is void: the worker's old token no longer works (#leases).
SELECT pg_temp.try(format('SELECT rungate.complete(%s, %L)', :r1, :'tok')) AS complete_old_token;
SELECT pg_temp.try(format('SELECT rungate.heartbeat(%s, %L)', :r1, :'tok')) AS heartbeat_old_token;
SELECT pg_temp.try(format('SELECT rungate.fail(%s, %L, %L)', :r1, :'tok', 'gave up')) AS fail_old_token;
SELECT pg_temp.try(format('SELECT rungate.recheck(%s, %L)', :r1, :'tok')) AS recheck_old_token;
SELECT status, reason_code FROM rungate.runs WHERE id = :r1;

-- The fence refuses any further side effect of the blocked run ...
SELECT pg_temp.try(format('INSERT INTO restore_items (run_id, item) VALUES (%s, %L)',
                          :r1, 'mailbox-2')) AS insert_after_block,
       pg_temp.try(format('UPDATE restore_items SET item = %L WHERE run_id = %s',
                          'changed', :r1)) AS update_after_block,
       pg_temp.try(format('DELETE FROM restore_items WHERE run_id = %s', :r1)) AS delete_after_block;
-- ... and of runs that do not exist; moving a row onto the blocked run too.
SELECT pg_temp.try($$INSERT INTO restore_items (run_id, item) VALUES (424242, 'ghost')$$) AS insert_unknown_run,
       pg_temp.try(format('UPDATE restore_items SET run_id = %s WHERE item = %L',
                          :r1, 'unrelated')) AS move_onto_blocked;
-- What was written while the run was legitimate is all there is.
SELECT run_id = :r1 AS of_r1, item FROM restore_items ORDER BY id;
UPDATE rungate.tenant_prerequisites SET satisfied = true
 WHERE tenant_id = 10 AND name = 'admin_consent';

-- A legitimate restore: recheck allowed, write, complete; after success
-- the fence closes again.
SELECT id AS r2 FROM rungate.enqueue('restore.execute', 1, 10, 100) \gset
SELECT lease_token AS tok2 FROM rungate.claim('restore-worker', ARRAY['restore.execute']) \gset
SELECT allowed FROM rungate.recheck(:r2, :'tok2');
INSERT INTO restore_items (run_id, item) VALUES (:r2, 'site-1');
SELECT status, result FROM rungate.complete(:r2, :'tok2', '{"restored": 1}');
SELECT pg_temp.try(format('INSERT INTO restore_items (run_id, item) VALUES (%s, %L)',
                          :r2, 'late')) AS insert_after_success;
SELECT string_agg(event, ', ' ORDER BY id) AS r2_events FROM rungate.audit_log WHERE run_id = :r2;

-- recheck's own errors: another token RG409, unknown run RG404, nulls RG400.
SELECT id AS r3 FROM rungate.enqueue('restore.execute', 1, 10, 100) \gset
SELECT lease_token AS tok3 FROM rungate.claim('restore-worker') \gset
SELECT pg_temp.try(format('SELECT rungate.recheck(%s, %L)', :r3, gen_random_uuid())) AS wrong_token,
       pg_temp.try(format('SELECT rungate.recheck(%s, %L)', :r3, :'tok2')) AS token_of_other_run,
       pg_temp.try(format('SELECT rungate.recheck(%s, %L)', 424242, :'tok3')) AS unknown_run,
       pg_temp.try(format('SELECT rungate.recheck(NULL, %L)', :'tok3')) AS null_run,
       pg_temp.try(format('SELECT rungate.recheck(%s, NULL)', :r3)) AS null_token;
SELECT status, lease_expires_at IS NOT NULL AS leased FROM rungate.runs WHERE id = :r3;
SELECT status FROM rungate.complete(:r3, :'tok3');

------------------------------------------------------------------------------
-- 5. unguard_writes removes the fence (idempotent); guard_writes refuses
--    what cannot be fenced (RG400).
------------------------------------------------------------------------------
SELECT rungate.unguard_writes('restore_items');
SELECT count(*) AS fence_triggers FROM pg_trigger
 WHERE tgrelid = 'restore_items'::regclass AND NOT tgisinternal;
SELECT pg_temp.try(format('INSERT INTO restore_items (run_id, item) VALUES (%s, %L)',
                          :r1, 'unfenced')) AS insert_blocked_run_unguarded;
SELECT pg_temp.try($$SELECT rungate.unguard_writes('restore_items')$$) AS unguard_again;

CREATE TABLE restore_log (run_ref text, run_id bigint, ord int GENERATED ALWAYS AS (1) STORED);
CREATE VIEW restore_view AS SELECT * FROM restore_items;
SELECT label, pg_temp.try(stmt) AS result
  FROM (VALUES
    (1, 'missing column',   $$SELECT rungate.guard_writes('restore_log', 'no_such_column')$$),
    (2, 'text column',      $$SELECT rungate.guard_writes('restore_log', 'run_ref')$$),
    (3, 'generated column', $$SELECT rungate.guard_writes('restore_log', 'ord')$$),
    (4, 'system column',    $$SELECT rungate.guard_writes('restore_log', 'ctid')$$),
    (5, 'a view',           $$SELECT rungate.guard_writes('restore_view', 'run_id')$$),
    (6, 'rungate''s table', $$SELECT rungate.guard_writes('rungate.runs', 'id')$$),
    (7, 'unknown relation', $$SELECT rungate.guard_writes(4294967290::oid::regclass, 'run_id')$$),
    (8, 'null table',       $$SELECT rungate.guard_writes(NULL, 'run_id')$$),
    (9, 'null column',      $$SELECT rungate.guard_writes('restore_log', NULL)$$),
    (10, 'valid column',    $$SELECT rungate.guard_writes('restore_log', 'run_id')$$)
  ) AS t(k, label, stmt)
 ORDER BY k;
SELECT pg_temp.try(format('INSERT INTO restore_log (run_ref, run_id) VALUES (%L, %s)',
                          'x', :r1)) AS restore_log_fenced;

DROP VIEW restore_view;
DROP TABLE restore_log;
DROP TABLE restore_items;
