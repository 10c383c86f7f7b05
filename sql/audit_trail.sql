-- audit_trail: rungate.audit_log (docs/guarantees.md#audit, #atomic,
-- #transitions).
--   * the documented columns, in order
--   * exactly one audit row per run creation and per status change, written
--     by the transaction that makes the change (txid = txid_current() of that
--     transaction), with the run's workspace, tenant and attempt, the
--     decision behind it (allow / deny / null) and its checks
--   * every event (docs/reference.md#audit-events) is produced by the
--     transition it names; for
--     `cancelled` actor_id is the canceller, not the initiator
--   * nothing survives a ROLLBACK (nor a rolled-back savepoint)
--   * the log is append-only: hand-written INSERT, UPDATE, DELETE and
--     TRUNCATE raise RG409, also for a superuser under
--     session_replication_role = replica
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS rungate CASCADE;
CREATE EXTENSION rungate;
\set ECHO none
\i test/fixtures/seed.sql
\i test/fixtures/try.sql
\set ECHO all
-- pg_temp.try(stmt) (test/fixtures/try.sql): 'ok', or 'SQLSTATE: message'.

-- pg_temp.audit: the audit rows of the runs in pg_temp.watch, the volatile
-- columns as facts (at set, txid as the label of the step that wrote it).
CREATE TEMP TABLE watch (run_id bigint PRIMARY KEY, label text NOT NULL);
CREATE TEMP TABLE step (txid bigint PRIMARY KEY, label text NOT NULL);
CREATE TEMP VIEW audit AS
SELECT w.label AS run, a.workspace_id AS ws, a.tenant_id AS tenant, a.attempt,
       a.event, a.authority, a.actor_id, a.decision, a.reason_code,
       a.reason_category,
       jsonb_array_length(a.checks) AS n_checks,
       (SELECT string_agg(c->>'code', ',') FROM jsonb_array_elements(a.checks) c
         WHERE NOT (c->>'passed')::boolean) AS failed,
       a.worker, a.at IS NOT NULL AS has_at,
       coalesce(s.label, '-') AS written_by, a.id
  FROM rungate.audit_log a
  JOIN watch w ON w.run_id = a.run_id
  LEFT JOIN step s ON s.txid = a.txid;

------------------------------------------------------------------------------
-- 1. The columns of docs/reference.md#rungateaudit_log, in order.
------------------------------------------------------------------------------
SELECT ordinal_position, column_name, data_type
  FROM information_schema.columns
 WHERE table_schema = 'rungate' AND table_name = 'audit_log'
 ORDER BY ordinal_position;

------------------------------------------------------------------------------
-- 2. A run's whole life, one transaction per step: each step writes exactly
--    one row, in its own transaction (txid), with the run's attempt.
--    olivia (100) syncs tenant 10: dispatched, started, retry_scheduled,
--    started, succeeded.
------------------------------------------------------------------------------
BEGIN;
INSERT INTO step VALUES (txid_current(), 'tx enqueue');
SELECT id AS a FROM rungate.enqueue('inventory.sync', 1, 10, 100) \gset
INSERT INTO watch VALUES (:a, 'A');
-- Inside the writing transaction: its txid, at no earlier than its start.
SELECT txid = txid_current() AS same_tx, at >= now() AS at_in_tx
  FROM rungate.audit_log WHERE run_id = :a;
COMMIT;
BEGIN;
INSERT INTO step VALUES (txid_current(), 'tx claim 1');
SELECT lease_token AS tok FROM rungate.claim('audit-worker') \gset
COMMIT;
BEGIN;
INSERT INTO step VALUES (txid_current(), 'tx fail retryable');
SELECT status FROM rungate.fail(:a, :'tok', 'timeout', true);
COMMIT;
BEGIN;
INSERT INTO step VALUES (txid_current(), 'tx claim 2');
SELECT lease_token AS tok FROM rungate.claim('audit-worker') \gset
COMMIT;
-- A heartbeat and a refused call are not status changes: no row.
SELECT rungate.heartbeat(:a, :'tok') IS NOT NULL AS heartbeat_ok;
SELECT pg_temp.try(format('SELECT rungate.fail(%s, %L, %L)', :a, gen_random_uuid(), 'x')) AS stale_fail;
BEGIN;
INSERT INTO step VALUES (txid_current(), 'tx complete');
SELECT status FROM rungate.complete(:a, :'tok', '{"ok": true}');
COMMIT;
SELECT run, ws, tenant, attempt, event, authority, actor_id, decision,
       reason_code, n_checks, failed, worker, has_at, written_by
  FROM audit WHERE run = 'A' ORDER BY id;
-- The at column follows the order of the changes.
SELECT bool_and(at >= prev) AS at_ordered FROM (
  SELECT at, lag(at) OVER (ORDER BY id) AS prev FROM rungate.audit_log WHERE run_id = :a) x
 WHERE prev IS NOT NULL;
-- The allow decisions carry the checks that rungate.decide gives now.
SELECT event, checks = (SELECT d.checks FROM rungate.decide('inventory.sync', 1, 10, 100) d)
       AS checks_as_decided
  FROM rungate.audit_log WHERE run_id = :a AND decision = 'allow' ORDER BY id;

------------------------------------------------------------------------------
-- 3. Every other event, each from the transition it names.
------------------------------------------------------------------------------
-- B: dispatch_blocked (rita's role lacks inventory.sync).
BEGIN;
INSERT INTO step VALUES (txid_current(), 'tx enqueue B');
SELECT id AS b, status FROM rungate.enqueue('inventory.sync', 1, 10, 102) \gset
INSERT INTO watch VALUES (:b, 'B');
COMMIT;
-- C: execution_blocked (oscar disabled after dispatch).
SELECT id AS c FROM rungate.enqueue('provider.connection.verify', 1, 10, 101) \gset
INSERT INTO watch VALUES (:c, 'C');
UPDATE rungate.actors SET status = 'disabled' WHERE id = 101;
BEGIN;
INSERT INTO step VALUES (txid_current(), 'tx claim C');
SELECT count(*) AS claimed FROM rungate.claim('audit-worker');
COMMIT;
UPDATE rungate.actors SET status = 'active' WHERE id = 101;
-- D: recheck_blocked (a restore whose tenant is suspended mid-run).
SELECT id AS d FROM rungate.enqueue('restore.execute', 1, 10, 100) \gset
INSERT INTO watch VALUES (:d, 'D');
SELECT lease_token AS tok FROM rungate.claim('restore-worker') \gset
UPDATE rungate.tenants SET status = 'suspended' WHERE id = 10;
BEGIN;
INSERT INTO step VALUES (txid_current(), 'tx recheck D');
SELECT allowed, reason_code FROM rungate.recheck(:d, :'tok');
COMMIT;
UPDATE rungate.tenants SET status = 'active' WHERE id = 10;
-- E: lease_expired, then cancelled by oscar (101), not by its initiator.
SELECT id AS e FROM rungate.enqueue('inventory.sync', 1, 10, 100) \gset
INSERT INTO watch VALUES (:e, 'E');
SELECT count(*) AS claimed FROM rungate.claim('lost-worker');
UPDATE rungate.runs SET lease_expires_at = now() - interval '1 minute' WHERE id = :e;
SELECT rungate.reap_expired() AS reaped;
BEGIN;
INSERT INTO step VALUES (txid_current(), 'tx cancel E');
SELECT status FROM rungate.cancel(:e, 101);
COMMIT;
-- F: failed (not retryable).
SELECT id AS f FROM rungate.enqueue('inventory.sync', 1, 10, 100) \gset
INSERT INTO watch VALUES (:f, 'F');
SELECT lease_token AS tok FROM rungate.claim('audit-worker') \gset
SELECT status FROM rungate.fail(:f, :'tok', 'bad credentials');
-- G: cancelled by nobody in particular (no actor: system authority).
SELECT id AS g FROM rungate.enqueue('provider.connection.verify', 1, 10, 100) \gset
INSERT INTO watch VALUES (:g, 'G');
SELECT status FROM rungate.cancel(:g);
-- H: a bulk parent (tenants 10, 11) whose items are dispatched when it
-- starts; one item succeeds and one fails: partially_succeeded.
SELECT id AS h FROM rungate.enqueue_bulk('bulk.inventory.sync', 1, '{10,11}', 100) \gset
INSERT INTO watch VALUES (:h, 'H');
SELECT count(*) AS handed_out FROM rungate.claim('bulk-worker', ARRAY['bulk.inventory.sync']);
INSERT INTO watch SELECT id, 'H item t' || tenant_id FROM rungate.runs WHERE parent_id = :h;
CREATE TEMP TABLE items AS
SELECT run_id, lease_token, tenant_id FROM rungate.claim('item-worker', ARRAY['inventory.sync'], 2);
SELECT status FROM rungate.complete((SELECT run_id FROM items WHERE tenant_id = 10),
                                    (SELECT lease_token FROM items WHERE tenant_id = 10));
SELECT status FROM rungate.fail((SELECT run_id FROM items WHERE tenant_id = 11),
                                (SELECT lease_token FROM items WHERE tenant_id = 11), 'quota');
SELECT status FROM rungate.runs WHERE id = :h;

-- (worker shown for the claim's rows; written_by for the steps above that
-- recorded their transaction, '-' for the others)
SELECT run, ws, tenant, attempt, event, authority, actor_id, decision,
       reason_code, reason_category, n_checks, failed,
       CASE WHEN event IN ('started', 'execution_blocked') THEN worker END AS claim_worker,
       written_by
  FROM audit WHERE run <> 'A' ORDER BY run, id;
-- Every documented event occurred above.
SELECT e AS event, EXISTS (SELECT 1 FROM rungate.audit_log a WHERE a.event = e) AS seen
  FROM unnest(ARRAY['dispatched', 'dispatch_blocked', 'started', 'execution_blocked',
                    'recheck_blocked', 'succeeded', 'partially_succeeded', 'failed',
                    'retry_scheduled', 'lease_expired', 'cancelled']) AS e
 ORDER BY e;

------------------------------------------------------------------------------
-- 4. One row per creation and per status change, for every run: the rows
--    and the run agree on the current status, attempt and scope.
------------------------------------------------------------------------------
SELECT count(*) AS runs,
       count(*) FILTER (WHERE last_event_status IS DISTINCT FROM r.status) AS last_row_disagrees,
       count(*) FILTER (WHERE last_attempt <> r.attempt) AS attempt_disagrees,
       count(*) FILTER (WHERE first_event NOT IN ('dispatched', 'dispatch_blocked')) AS bad_first_row,
       count(*) FILTER (WHERE scope_mismatch) AS scope_mismatch
  FROM rungate.runs r
  CROSS JOIN LATERAL (
    SELECT (array_agg(CASE a.event
              WHEN 'dispatched' THEN 'queued' WHEN 'dispatch_blocked' THEN 'blocked'
              WHEN 'started' THEN 'running' WHEN 'execution_blocked' THEN 'blocked'
              WHEN 'recheck_blocked' THEN 'blocked' WHEN 'retry_scheduled' THEN 'queued'
              WHEN 'lease_expired' THEN 'queued' ELSE a.event END ORDER BY a.id DESC))[1]
              AS last_event_status,
           (array_agg(a.attempt ORDER BY a.id DESC))[1] AS last_attempt,
           (array_agg(a.event ORDER BY a.id))[1] AS first_event,
           bool_or(a.workspace_id <> r.workspace_id
                   OR a.tenant_id IS DISTINCT FROM r.tenant_id) AS scope_mismatch
      FROM rungate.audit_log a WHERE a.run_id = r.id) x;
SELECT count(*) AS audit_rows_without_run
  FROM rungate.audit_log a WHERE NOT EXISTS (SELECT 1 FROM rungate.runs r WHERE r.id = a.run_id);

------------------------------------------------------------------------------
-- 5. Nothing after a ROLLBACK: the run, its rows and its notification go
--    together (#atomic).
------------------------------------------------------------------------------
SELECT (SELECT count(*) FROM rungate.runs) AS runs_before,
       (SELECT count(*) FROM rungate.audit_log) AS audit_before,
       (SELECT count(*) FROM rungate.notifications) AS notes_before \gset
BEGIN;
SELECT id AS rb FROM rungate.enqueue('inventory.sync', 1, 10, 100) \gset
SELECT count(*) AS claimed FROM rungate.claim('audit-worker');
SELECT event FROM rungate.audit_log WHERE run_id = :rb ORDER BY id;
ROLLBACK;
BEGIN;
SELECT status FROM rungate.enqueue('inventory.sync', 1, 10, 102);
ROLLBACK;
BEGIN;
SAVEPOINT s;
SELECT status FROM rungate.enqueue('inventory.sync', 1, 10, 100);
ROLLBACK TO SAVEPOINT s;
COMMIT;
SELECT count(*) AS rows_of_rolled_back_run FROM rungate.audit_log WHERE run_id = :rb;
SELECT (SELECT count(*) FROM rungate.runs) - :runs_before AS runs_added,
       (SELECT count(*) FROM rungate.audit_log) - :audit_before AS audit_added,
       (SELECT count(*) FROM rungate.notifications) - :notes_before AS notes_added;

------------------------------------------------------------------------------
-- 6. Append-only (#audit): hand-written writes are RG409, for a superuser too,
--    also under session_replication_role = replica.
------------------------------------------------------------------------------
SELECT count(*) AS audit_rows FROM rungate.audit_log \gset
SELECT label, pg_temp.try(stmt) AS result
  FROM (VALUES
    (1, 'insert',   $$INSERT INTO rungate.audit_log (at, run_id, workspace_id, attempt, event, authority, txid)
                      VALUES (now(), 1, 1, 0, 'dispatched', 'system', txid_current())$$),
    (2, 'update',   $$UPDATE rungate.audit_log SET reason_code = NULL WHERE event = 'execution_blocked'$$),
    (3, 'delete',   $$DELETE FROM rungate.audit_log WHERE event = 'dispatch_blocked'$$),
    (4, 'truncate', $$TRUNCATE rungate.audit_log$$)
  ) AS t(k, label, stmt)
 ORDER BY k;
SET session_replication_role = replica;
SELECT label, pg_temp.try(stmt) AS replica_result
  FROM (VALUES
    (1, 'insert',   $$INSERT INTO rungate.audit_log (at, run_id, workspace_id, attempt, event, authority, txid)
                      VALUES (now(), 1, 1, 0, 'dispatched', 'system', txid_current())$$),
    (2, 'update',   $$UPDATE rungate.audit_log SET reason_code = NULL WHERE event = 'execution_blocked'$$),
    (3, 'delete',   $$DELETE FROM rungate.audit_log WHERE event = 'dispatch_blocked'$$),
    (4, 'truncate', $$TRUNCATE rungate.audit_log$$)
  ) AS t(k, label, stmt)
 ORDER BY k;
RESET session_replication_role;
SELECT count(*) - :audit_rows AS rows_changed_count FROM rungate.audit_log;
SELECT count(*) AS blocked_rows_with_reason FROM rungate.audit_log
 WHERE event IN ('execution_blocked', 'dispatch_blocked', 'recheck_blocked')
   AND reason_code IS NOT NULL;
