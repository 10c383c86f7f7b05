-- notifications: who is told about a terminal run
-- (docs/guarantees.md#notifications, #blocked-not-failed, #atomic).
--   * initiator-null (system authority) runs never create a notification,
--     whatever their outcome: blocked at dispatch, at claim or at recheck,
--     failed, succeeded, cancelled; they stay visible in rungate.runs and in
--     monitoring with their reason
--   * an actor-bound run that is not a bulk item notifies its initiator
--     exactly once per terminal outcome: kind run_blocked, run_succeeded,
--     run_failed, run_cancelled, run_partially_succeeded; never while
--     queued or running (dispatch, start, retry, lease expiry); the
--     initiator, not the canceller, is told of a cancel
--   * bulk items notify nobody; their parent does
--   * nothing is left behind by a transaction that rolls back
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS rungate CASCADE;
CREATE EXTENSION rungate;
\set ECHO none
\i test/fixtures/seed.sql
\i test/fixtures/try.sql
\set ECHO all
-- pg_temp.try(stmt) (test/fixtures/try.sql): 'ok', or 'SQLSTATE: message'.

CREATE TEMP TABLE label (run_id bigint PRIMARY KEY, label text NOT NULL);

------------------------------------------------------------------------------
-- 1. System-authority provider verifications (no initiator) that block:
--    at dispatch, at claim, at recheck. No notification; all visible.
------------------------------------------------------------------------------
-- s1: blocked at dispatch (tenant 12 is onboarding).
SELECT id AS s1, status, reason_code FROM rungate.enqueue('provider.connection.verify', 1, 12, NULL) \gset
INSERT INTO label VALUES (:s1, 's1 system, blocked at dispatch');
SELECT :'status' AS status, :'reason_code' AS reason_code;
-- s2: blocked at claim (tenant 10 suspended after dispatch).
SELECT id AS s2 FROM rungate.enqueue('provider.connection.verify', 1, 10, NULL) \gset
INSERT INTO label VALUES (:s2, 's2 system, blocked at claim');
UPDATE rungate.tenants SET status = 'suspended' WHERE id = 10;
SELECT count(*) AS claimed FROM rungate.claim('system-worker');
UPDATE rungate.tenants SET status = 'active' WHERE id = 10;
-- s3: blocked at recheck (provider_connection lost mid-run).
SELECT id AS s3 FROM rungate.enqueue('provider.connection.verify', 1, 10, NULL) \gset
INSERT INTO label VALUES (:s3, 's3 system, blocked at recheck');
SELECT lease_token AS tok FROM rungate.claim('system-worker') \gset
UPDATE rungate.tenant_prerequisites SET satisfied = false
 WHERE tenant_id = 10 AND name = 'provider_connection';
SELECT allowed, reason_code FROM rungate.recheck(:s3, :'tok');
UPDATE rungate.tenant_prerequisites SET satisfied = true
 WHERE tenant_id = 10 AND name = 'provider_connection';

SELECT l.label, r.initiator_id, r.status, r.reason_code, r.reason_category
  FROM rungate.runs r JOIN label l ON l.run_id = r.id ORDER BY r.id;
SELECT count(*) AS notifications FROM rungate.notifications;
-- Monitoring shows them, as system-authority blocked runs with reasons
-- (#blocked-not-failed).
SELECT o.run_id = l.run_id AS listed, l.label, o.authority, o.initiator_id,
       o.status, o.reason_code
  FROM rungate.operations(100, 1) o JOIN label l ON l.run_id = o.run_id
 ORDER BY o.run_id;
SELECT status, authority, reason_code,
       (SELECT string_agg(e->>'event', ', ') FROM jsonb_array_elements(audit) e) AS audit
  FROM rungate.operation(105, :s2);

------------------------------------------------------------------------------
-- 2. System runs with other outcomes: still no notification.
------------------------------------------------------------------------------
SELECT id AS s4 FROM rungate.enqueue('inventory.sync', 1, 10, NULL) \gset
SELECT id AS s5 FROM rungate.enqueue('inventory.sync', 1, 10, NULL) \gset
SELECT id AS s6 FROM rungate.enqueue('reports.export', 1, NULL, NULL) \gset
INSERT INTO label VALUES (:s4, 's4 system, succeeded'), (:s5, 's5 system, failed'),
                         (:s6, 's6 system, cancelled');
SELECT status FROM rungate.cancel(:s6, 100);
CREATE TEMP TABLE leases AS
SELECT run_id, lease_token FROM rungate.claim('system-worker', ARRAY['inventory.sync'], 2);
SELECT status FROM rungate.complete(:s4, (SELECT lease_token FROM leases WHERE run_id = :s4));
SELECT status FROM rungate.fail(:s5, (SELECT lease_token FROM leases WHERE run_id = :s5), 'unreachable');
SELECT l.label, r.status FROM rungate.runs r JOIN label l ON l.run_id = r.id
 WHERE r.id IN (:s4, :s5, :s6) ORDER BY r.id;
SELECT count(*) AS notifications FROM rungate.notifications;

------------------------------------------------------------------------------
-- 3. Actor-bound runs: one notification for the initiator per terminal
--    outcome, none before.
------------------------------------------------------------------------------
-- a1: rita's verification, blocked at dispatch (her role lacks
-- provider.manage).
SELECT id AS a1 FROM rungate.enqueue('provider.connection.verify', 1, 10, 102) \gset
INSERT INTO label VALUES (:a1, 'a1 rita, blocked at dispatch');
-- a2: oscar's verification blocked at claim (membership revoked).
SELECT id AS a2 FROM rungate.enqueue('provider.connection.verify', 1, 10, 101) \gset
INSERT INTO label VALUES (:a2, 'a2 oscar, blocked at claim');
-- Queued: nobody is told yet.
SELECT count(*) AS notifications_of_a2 FROM rungate.notifications WHERE run_id = :a2;
DELETE FROM rungate.tenant_members WHERE tenant_id = 10 AND actor_id = 101;
SELECT count(*) AS claimed FROM rungate.claim('actor-worker');
INSERT INTO rungate.tenant_members VALUES (10, 101, 'operator');
-- a3: olivia's sync: started, retried, started, succeeded.
SELECT id AS a3 FROM rungate.enqueue('inventory.sync', 1, 10, 100) \gset
INSERT INTO label VALUES (:a3, 'a3 olivia, succeeded after a retry');
SELECT lease_token AS tok FROM rungate.claim('actor-worker') \gset
SELECT count(*) AS notifications_while_running FROM rungate.notifications WHERE run_id = :a3;
SELECT status FROM rungate.fail(:a3, :'tok', 'timeout', true);
SELECT lease_token AS tok FROM rungate.claim('actor-worker') \gset
SELECT count(*) AS notifications_before_the_end FROM rungate.notifications WHERE run_id = :a3;
SELECT status FROM rungate.complete(:a3, :'tok');
-- a4: olivia's sync whose lease expires once, then fails for good.
SELECT id AS a4 FROM rungate.enqueue('inventory.sync', 1, 10, 100) \gset
INSERT INTO label VALUES (:a4, 'a4 olivia, failed after a lease expiry');
SELECT count(*) AS claimed FROM rungate.claim('actor-worker');
UPDATE rungate.runs SET lease_expires_at = now() - interval '1 minute' WHERE id = :a4;
SELECT rungate.reap_expired() AS reaped;
SELECT count(*) AS notifications_after_expiry FROM rungate.notifications WHERE run_id = :a4;
SELECT lease_token AS tok FROM rungate.claim('actor-worker') \gset
SELECT status FROM rungate.fail(:a4, :'tok', 'bad credentials');
-- a5: olivia's verification cancelled by oscar: olivia is told.
SELECT id AS a5 FROM rungate.enqueue('provider.connection.verify', 1, 10, 100) \gset
INSERT INTO label VALUES (:a5, 'a5 olivia, cancelled by oscar');
SELECT status FROM rungate.cancel(:a5, 101);
-- a6: olivia's restore blocked at recheck (admin consent withdrawn).
SELECT id AS a6 FROM rungate.enqueue('restore.execute', 1, 10, 100) \gset
INSERT INTO label VALUES (:a6, 'a6 olivia, blocked at recheck');
SELECT lease_token AS tok FROM rungate.claim('actor-worker') \gset
UPDATE rungate.tenant_prerequisites SET satisfied = false
 WHERE tenant_id = 10 AND name = 'admin_consent';
SELECT allowed, reason_code FROM rungate.recheck(:a6, :'tok');
UPDATE rungate.tenant_prerequisites SET satisfied = true
 WHERE tenant_id = 10 AND name = 'admin_consent';

SELECT l.label, r.status, n.actor_id, n.kind, n.read_at IS NULL AS unread,
       n.created_at IS NOT NULL AS has_created_at
  FROM label l JOIN rungate.runs r ON r.id = l.run_id
  LEFT JOIN rungate.notifications n ON n.run_id = r.id
 WHERE l.label LIKE 'a%'
 ORDER BY r.id, n.id;

------------------------------------------------------------------------------
-- 4. Bulk runs: the items notify nobody; the parent tells its initiator of
--    the roll-up (partially_succeeded here).
------------------------------------------------------------------------------
SELECT id AS b FROM rungate.enqueue_bulk('bulk.inventory.sync', 1, '{10,11}', 100) \gset
INSERT INTO label VALUES (:b, 'b olivia, bulk parent');
SELECT count(*) AS handed_out FROM rungate.claim('bulk-worker', ARRAY['bulk.inventory.sync']);
CREATE TEMP TABLE item_leases AS
SELECT run_id, lease_token, tenant_id FROM rungate.claim('item-worker', ARRAY['inventory.sync'], 2);
SELECT count(*) AS items_claimed FROM item_leases;
SELECT status FROM rungate.complete((SELECT run_id FROM item_leases WHERE tenant_id = 10),
                                    (SELECT lease_token FROM item_leases WHERE tenant_id = 10));
SELECT status FROM rungate.fail((SELECT run_id FROM item_leases WHERE tenant_id = 11),
                                (SELECT lease_token FROM item_leases WHERE tenant_id = 11), 'quota');
SELECT CASE WHEN r.id = :b THEN 'parent' ELSE 'item t' || r.tenant_id END AS run,
       r.status, r.initiator_id,
       (SELECT string_agg(n.kind || ' to ' || n.actor_id, ', ') FROM rungate.notifications n
         WHERE n.run_id = r.id) AS notified
  FROM rungate.runs r WHERE r.id = :b OR r.parent_id = :b ORDER BY r.id;

------------------------------------------------------------------------------
-- 5. A rolled-back transaction leaves no notification (#atomic).
------------------------------------------------------------------------------
SELECT count(*) AS notes_before FROM rungate.notifications \gset
BEGIN;
SELECT status FROM rungate.enqueue('provider.connection.verify', 1, 10, 102);
SELECT id AS rb FROM rungate.enqueue('provider.connection.verify', 1, 10, 100) \gset
SELECT status FROM rungate.cancel(:rb, 100);
SELECT count(*) - :notes_before AS notes_inside_tx FROM rungate.notifications;
ROLLBACK;
SELECT count(*) - :notes_before AS notes_after_rollback FROM rungate.notifications;

------------------------------------------------------------------------------
-- 6. In sum: exactly one notification per terminal actor-bound top-level
--    run, none for any other run.
------------------------------------------------------------------------------
SELECT (r.initiator_id IS NOT NULL AND r.parent_id IS NULL
        AND r.status NOT IN ('queued', 'running')) AS should_notify,
       count(*) AS runs,
       count(*) FILTER (WHERE n.cnt = 1) AS with_one,
       count(*) FILTER (WHERE n.cnt = 0) AS with_none,
       count(*) FILTER (WHERE n.cnt > 1) AS with_several,
       count(*) FILTER (WHERE n.cnt = 1 AND NOT n.to_initiator_of_status) AS wrong_recipient_or_kind
  FROM rungate.runs r
  CROSS JOIN LATERAL (
    SELECT count(*) AS cnt,
           coalesce(bool_and(x.actor_id = r.initiator_id AND x.kind = 'run_' || r.status), true)
             AS to_initiator_of_status
      FROM rungate.notifications x WHERE x.run_id = r.id) n
 GROUP BY 1 ORDER BY 1;
