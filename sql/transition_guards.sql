-- transition_guards: a run is never `running` before the legitimacy
-- decision passes, and changes status only through rungate's functions
-- (docs/guarantees.md#transitions, #blocked, #claim-reauthorization).
--   * a claim the decision denies leaves the run blocked with its reason,
--     attempt 0, no started_at, no lease, no worker, no `started` audit row
--   * runs are created and change status only inside rungate's functions:
--     hand-written INSERT, UPDATE of status (any pair), any change of a
--     terminal run, DELETE and TRUNCATE raise RG409, also for a superuser
--     under session_replication_role = replica (ENABLE ALWAYS triggers)
--   * priority and run_at of a queued run may be edited by the owner and
--     drive claim order: priority higher first, then age; a run whose run_at
--     is in the future is not claimed
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS rungate CASCADE;
CREATE EXTENSION rungate;
\set ECHO none
\i test/fixtures/seed.sql
\i test/fixtures/try.sql
\set ECHO all
-- pg_temp.try(stmt) (test/fixtures/try.sql): 'ok', or 'SQLSTATE: message'.

-- pg_temp.run(id): the lifecycle columns of a run, tokens and times as flags.
CREATE FUNCTION pg_temp.run(run_id bigint)
RETURNS TABLE (id bigint, status text, reason_code text, reason_category text,
               attempt int, has_started_at boolean, has_lease boolean,
               worker text, has_finished_at boolean)
LANGUAGE sql AS $$
    SELECT r.id, r.status, r.reason_code, r.reason_category, r.attempt,
           r.started_at IS NOT NULL, r.lease_expires_at IS NOT NULL,
           r.worker, r.finished_at IS NOT NULL
      FROM rungate.runs r WHERE r.id = run_id
$$;

-- pg_temp.events(id): the run's audit events, oldest first.
CREATE FUNCTION pg_temp.events(run_id bigint) RETURNS text
LANGUAGE sql AS $$
    SELECT string_agg(a.event || '(' || coalesce(a.decision, '-') || ')', ', ' ORDER BY a.id)
      FROM rungate.audit_log a WHERE a.run_id = events.run_id
$$;

------------------------------------------------------------------------------
-- 1. A denied claim never makes the run running (#blocked).
--    oscar (101) queues an inventory sync of tenant 10, then loses his
--    tenant membership before a worker claims it.
------------------------------------------------------------------------------
SELECT id AS denied_run, status FROM rungate.enqueue('inventory.sync', 1, 10, 101) \gset
SELECT :'status' AS status_at_dispatch;
DELETE FROM rungate.tenant_members WHERE tenant_id = 10 AND actor_id = 101;

-- The claim hands nothing to the worker ...
SELECT count(*) AS claimed FROM rungate.claim('worker-1');
-- ... and the run is blocked with the reason, attempt 0, never started,
-- no lease, no worker.
SELECT * FROM pg_temp.run(:denied_run);
-- No `started` audit row: dispatched, then execution_blocked.
SELECT pg_temp.events(:denied_run);
SELECT count(*) AS started_rows
  FROM rungate.audit_log WHERE run_id = :denied_run AND event = 'started';
-- The blocked row carries the denying decision, and the worker that tried.
SELECT event, decision, reason_code, reason_category, worker, authority, actor_id
  FROM rungate.audit_log WHERE run_id = :denied_run AND event = 'execution_blocked';
INSERT INTO rungate.tenant_members VALUES (10, 101, 'operator');

-- An allowed claim, for contrast: running, attempt 1, started, leased.
SELECT id AS ok_run FROM rungate.enqueue('inventory.sync', 1, 10, 101) \gset
SELECT run_id = :ok_run AS same_run, attempt, lease_token IS NOT NULL AS has_token
  FROM rungate.claim('worker-1');
SELECT * FROM pg_temp.run(:ok_run);
SELECT pg_temp.events(:ok_run);

------------------------------------------------------------------------------
-- 2. Runs are created only by rungate.enqueue / enqueue_bulk: a
--    hand-written INSERT is RG409, whatever the status, and creates nothing.
------------------------------------------------------------------------------
SELECT count(*) AS runs_before FROM rungate.runs \gset
SELECT s AS status,
       pg_temp.try(format(
         'INSERT INTO rungate.runs (workspace_id, tenant_id, operation, initiator_id,'
         ' status, reason_code, max_attempts) VALUES (1, 10, %L, 100, %L, %L, 3)',
         'inventory.sync', s, CASE WHEN s = 'blocked' THEN 'capability_missing' END)) AS hand_insert
  FROM unnest(ARRAY['queued', 'running', 'blocked', 'succeeded']) AS s
 ORDER BY s;
SELECT count(*) - :runs_before AS runs_created FROM rungate.runs;

------------------------------------------------------------------------------
-- 3. A hand-written UPDATE of status is RG409 whatever the pair, `running`
--    included; the run is left as it was.
------------------------------------------------------------------------------
SELECT id AS queued_run FROM rungate.enqueue('inventory.sync', 1, 10, 100) \gset
SELECT s AS to_status,
       pg_temp.try(format(
         'UPDATE rungate.runs SET status = %L,'
         ' reason_code = coalesce(reason_code, %L), error = coalesce(error, %L)'
         ' WHERE id = %s', s, 'capability_missing', 'boom', :queued_run)) AS from_queued
  FROM unnest(ARRAY['running', 'succeeded', 'failed', 'blocked', 'cancelled',
                    'partially_succeeded']) AS s
 ORDER BY s;
-- From running (the run claimed in block 1): back to queued, or to any end.
SELECT s AS to_status,
       pg_temp.try(format(
         'UPDATE rungate.runs SET status = %L,'
         ' reason_code = coalesce(reason_code, %L), error = coalesce(error, %L)'
         ' WHERE id = %s', s, 'capability_missing', 'boom', :ok_run)) AS from_running
  FROM unnest(ARRAY['queued', 'succeeded', 'failed', 'blocked', 'cancelled']) AS s
 ORDER BY s;
-- Nothing moved, and no audit row was written for the attempts.
SELECT * FROM pg_temp.run(:queued_run);
SELECT * FROM pg_temp.run(:ok_run);
SELECT pg_temp.events(:queued_run) AS queued_events, pg_temp.events(:ok_run) AS running_events;

------------------------------------------------------------------------------
-- 4. A terminal run cannot change at all: not its status, not its
--    priority, run_at, payload or reason.
------------------------------------------------------------------------------
SELECT c AS change,
       pg_temp.try(format('UPDATE rungate.runs SET %s WHERE id = %s', c, :denied_run)) AS on_blocked
  FROM unnest(ARRAY['status = ''queued''', 'priority = 7',
                    'run_at = now() + interval ''1 hour''',
                    'payload = ''{"x": 1}''', 'reason_code = ''tenant_not_operable''',
                    'attempt = 1']) AS c
 ORDER BY c;
SELECT * FROM pg_temp.run(:denied_run);

------------------------------------------------------------------------------
-- 5. Runs cannot be deleted or truncated by hand (#retention: purge is the
--    only way out): queued, running and terminal runs alike.
------------------------------------------------------------------------------
SELECT pg_temp.try(format('DELETE FROM rungate.runs WHERE id = %s', :queued_run)) AS delete_queued,
       pg_temp.try(format('DELETE FROM rungate.runs WHERE id = %s', :ok_run)) AS delete_running,
       pg_temp.try(format('DELETE FROM rungate.runs WHERE id = %s', :denied_run)) AS delete_blocked;
SELECT pg_temp.try('DELETE FROM rungate.runs') AS delete_all;
SELECT pg_temp.try('TRUNCATE rungate.runs CASCADE') AS truncate_runs;
SELECT count(*) - :runs_before - 1 AS runs_lost FROM rungate.runs;

------------------------------------------------------------------------------
-- 6. The same guards hold for a superuser under
--    session_replication_role = replica (the triggers are ENABLE ALWAYS).
------------------------------------------------------------------------------
SELECT rolsuper FROM pg_roles WHERE rolname = current_user;
SET session_replication_role = replica;
SELECT pg_temp.try(
         'INSERT INTO rungate.runs (workspace_id, tenant_id, operation, initiator_id,'
         ' status, max_attempts) VALUES (1, 10, ''inventory.sync'', 100, ''running'', 3)') AS replica_insert;
SELECT pg_temp.try(format('UPDATE rungate.runs SET status = ''running'' WHERE id = %s',
                          :queued_run)) AS replica_start;
SELECT pg_temp.try(format('UPDATE rungate.runs SET status = ''succeeded'' WHERE id = %s',
                          :ok_run)) AS replica_finish;
SELECT pg_temp.try(format('UPDATE rungate.runs SET priority = 1 WHERE id = %s',
                          :denied_run)) AS replica_touch_terminal;
SELECT pg_temp.try(format('DELETE FROM rungate.runs WHERE id = %s', :denied_run)) AS replica_delete;
SELECT pg_temp.try('TRUNCATE rungate.runs CASCADE') AS replica_truncate;
RESET session_replication_role;
SELECT count(*) - :runs_before - 1 AS runs_lost FROM rungate.runs;
SELECT * FROM pg_temp.run(:queued_run);
SELECT * FROM pg_temp.run(:ok_run);

------------------------------------------------------------------------------
-- 7. priority and run_at of a queued run are the owner's to edit, and
--    claim takes due runs by priority (higher first), then age
--    (docs/reference.md#claim).
------------------------------------------------------------------------------
-- Settle the runs of the blocks above so only the four below are queued.
SELECT status FROM rungate.cancel(:queued_run);
SELECT id AS run_a FROM rungate.enqueue('inventory.sync', 1, 10, 100, '{"n": "a"}') \gset
SELECT id AS run_b FROM rungate.enqueue('inventory.sync', 1, 10, 100, '{"n": "b"}') \gset
SELECT id AS run_c FROM rungate.enqueue('inventory.sync', 1, 10, 100, '{"n": "c"}') \gset
SELECT id AS run_d FROM rungate.enqueue('inventory.sync', 1, 10, 100, '{"n": "d"}') \gset
-- The owner raises c's priority and postpones a by an hour: both allowed,
-- status untouched, no audit row (not a status change).
UPDATE rungate.runs SET priority = 5 WHERE id = :run_c;
UPDATE rungate.runs SET run_at = now() + interval '1 hour' WHERE id = :run_a;
SELECT payload->>'n' AS run, status, priority, run_at > now() AS in_future
  FROM rungate.runs WHERE id IN (:run_a, :run_b, :run_c, :run_d) ORDER BY id;
SELECT count(*) AS audit_rows FROM rungate.audit_log
 WHERE run_id IN (:run_a, :run_b, :run_c, :run_d);
-- One run per claim: c (priority 5), then b and d by age; a is not due.
SELECT payload->>'n' AS first_claim FROM rungate.claim('worker-2');
SELECT payload->>'n' AS second_claim FROM rungate.claim('worker-2');
SELECT payload->>'n' AS third_claim FROM rungate.claim('worker-2');
SELECT count(*) AS fourth_claim FROM rungate.claim('worker-2');
SELECT payload->>'n' AS run, status, attempt FROM rungate.runs
 WHERE id IN (:run_a, :run_b, :run_c, :run_d) ORDER BY id;
-- Once its run_at is back in the past, a is claimed like any due run.
UPDATE rungate.runs SET run_at = now() - interval '1 minute' WHERE id = :run_a;
SELECT payload->>'n' AS fifth_claim, attempt FROM rungate.claim('worker-2');
-- Priority beats age: an older run of priority -1 waits behind a newer one.
SELECT id AS run_e FROM rungate.enqueue('inventory.sync', 1, 10, 100, '{"n": "e"}', NULL, -1) \gset
SELECT id AS run_f FROM rungate.enqueue('inventory.sync', 1, 10, 100, '{"n": "f"}') \gset
SELECT payload->>'n' AS sixth_claim FROM rungate.claim('worker-2', NULL, 1);
SELECT payload->>'n' AS seventh_claim FROM rungate.claim('worker-2', NULL, 1);
