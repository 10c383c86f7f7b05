-- Logical replication on one node (the two-node test is
-- test/t/003_logical_replication.pl): a session in the replica role is
-- refused like any other; a subscriber's lagging sequences, simulated here
-- with setval, make rungate's writes fail with RG409 naming
-- rungate.sync_sequences() instead of a key conflict, whichever write meets
-- the taken id first; sync_sequences() moves every sequence of rungate's
-- tables past its largest id, never backwards.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS rungate CASCADE;
RESET client_min_messages;
CREATE EXTENSION rungate;
\i test/fixtures/seed.sql
\i test/fixtures/try.sql
\set SHOW_CONTEXT never

-- some history: a completed run, a run blocked at dispatch (with its
-- notification), a queued run
SELECT (rungate.enqueue('inventory.sync', 1, 10, 100)).id AS done_run \gset
SELECT (rungate.complete(run_id, lease_token)).status FROM rungate.claim('w');
SELECT status, reason_code FROM rungate.enqueue('restore.execute', 1, 11, 100);
SELECT (rungate.enqueue('inventory.sync', 1, 10, 100)).id AS queued_run \gset
SELECT count(*) AS notifications FROM rungate.notifications;

-- 1. The replica role relaxes nothing, even for a superuser
SET session_replication_role = replica;
SELECT pg_temp.try($$INSERT INTO rungate.runs (workspace_id, tenant_id, operation, status, max_attempts)
                     VALUES (1, 10, 'inventory.sync', 'queued', 3)$$) AS insert_run;
SELECT pg_temp.try(format('UPDATE rungate.runs SET status = %L WHERE id = %s', 'running', :queued_run)) AS start_by_hand;
SELECT pg_temp.try(format('DELETE FROM rungate.runs WHERE id = %s', :done_run)) AS delete_run;
SELECT pg_temp.try($$INSERT INTO rungate.audit_log (at, run_id, workspace_id, attempt, event, authority, txid)
                     VALUES (now(), 1, 1, 0, 'dispatched', 'system', 1)$$) AS insert_audit;
SELECT pg_temp.try('UPDATE rungate.audit_log SET worker = ''forged''') AS update_audit;
SELECT pg_temp.try('DELETE FROM rungate.audit_log') AS delete_audit;
SELECT pg_temp.try('TRUNCATE rungate.runs') AS truncate_runs;
RESET session_replication_role;

-- 2. Sequences behind the rows, as on a subscriber: set back to 1
SELECT setval(pg_get_serial_sequence('rungate.' || t, 'id'), 1, false)
  FROM unnest(ARRAY['runs', 'audit_log', 'notifications']) t;

-- enqueue's insert meets a taken id: RG409 naming the fix, not a key conflict
-- (each failed insert took an id: the third finds runs' sequence past its
-- rows, and names the audit log's, still behind)
SELECT pg_temp.try($$SELECT rungate.enqueue('inventory.sync', 1, 10, 100)$$) AS enqueue;
SELECT pg_temp.try($$SELECT rungate.enqueue('inventory.sync', 1, 10, 100, idempotency_key => 'k1')$$) AS enqueue_with_key;
SELECT rungate.enqueue('inventory.sync', 1, 10, 100);

-- a claim's audit row meets a taken id (the run insert is past them)
SELECT setval(pg_get_serial_sequence('rungate.runs', 'id'), 1000);
SELECT pg_temp.try($$SELECT rungate.claim('w')$$) AS claim;
SELECT rungate.claim('w');

-- a blocked dispatch's notification meets a taken id
SELECT setval(pg_get_serial_sequence('rungate.audit_log', 'id'), 1000);
SELECT pg_temp.try($$SELECT rungate.enqueue('restore.execute', 1, 11, 100)$$) AS blocked_dispatch;

-- nothing was written by the refused calls
SELECT count(*) AS runs, max(id) < 1000 AS no_new_run FROM rungate.runs;

-- 3. sync_sequences(): every sequence of rungate's tables moves past its
-- largest id (workspaces, tenants and actors too, whose seeded ids were
-- given by hand); runs and audit_log, set ahead above, stay where they are
SET client_min_messages = notice;
SELECT rungate.sync_sequences();
SELECT t, pg_sequence_last_value(pg_get_serial_sequence('rungate.' || t, 'id')) AS last_value
  FROM unnest(ARRAY['workspaces', 'tenants', 'actors', 'runs', 'audit_log', 'notifications']) t;
-- again: nothing to move
SELECT rungate.sync_sequences();
RESET client_min_messages;

-- work goes on, with fresh ids
SELECT id > 1000 AS fresh_id, status FROM rungate.enqueue('inventory.sync', 1, 10, 100);
SELECT status, reason_code FROM rungate.enqueue('restore.execute', 1, 11, 100);
SELECT count(*) > 0 AS claimed FROM rungate.claim('w', NULL, 10);
INSERT INTO rungate.workspaces (name) VALUES ('initech') RETURNING id;

-- administrator only
SELECT has_function_privilege('public', 'rungate.sync_sequences()', 'EXECUTE') AS public_may_sync,
       prosecdef AS security_definer, proconfig
  FROM pg_proc WHERE oid = 'rungate.sync_sequences()'::regprocedure;
