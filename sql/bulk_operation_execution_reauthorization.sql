-- Bulk orchestrators (CONTRACT §5): a parent decided when it starts, its
-- items created only when it is allowed and decided again when claimed,
-- blocked items blocked alone, the parent rolled up when its last item
-- ends, one notification for the parent's initiator and none per item.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS rungate CASCADE;
RESET client_min_messages;
CREATE EXTENSION rungate;
\i test/fixtures/seed.sql
\i test/fixtures/try.sql

CREATE TEMP VIEW tree AS
  SELECT id, parent_id, tenant_id, operation, initiator_id, status, reason_code, reason_category, attempt
    FROM rungate.runs ORDER BY id;

-- Malformed bulk requests: RG400, nothing created.
SELECT pg_temp.try($$SELECT rungate.enqueue_bulk('inventory.sync', 1, '{10}', 100)$$);
SELECT pg_temp.try($$SELECT rungate.enqueue_bulk('bulk.inventory.sync', 1, '{10,20}', 100)$$);
SELECT pg_temp.try($$SELECT rungate.enqueue_bulk('bulk.inventory.sync', 1, '{}', 100)$$);
SELECT pg_temp.try($$SELECT rungate.enqueue_bulk('bulk.inventory.sync', 1, NULL, 100)$$);
SELECT pg_temp.try($$SELECT rungate.enqueue_bulk('bulk.inventory.sync', 1, '{10,99999}', 100)$$);
SELECT pg_temp.try($$SELECT rungate.enqueue('bulk.inventory.sync', 1, NULL, 100)$$);
SELECT count(*) AS runs FROM rungate.runs;

-- 1. Denied at dispatch (oscar's operator role lacks bulk.sync): the parent
--    is recorded blocked, and no item ever exists.
SELECT id AS denied_parent, status, reason_code
  FROM rungate.enqueue_bulk('bulk.inventory.sync', 1, '{10,11}', 101) \gset
SELECT :'status' AS status, :'reason_code' AS reason_code;
SELECT count(*) AS items FROM rungate.runs WHERE parent_id = :denied_parent;

-- 2. Denied at claim: the capability is revoked after dispatch; the parent
--    is blocked inside the claim, no item is created, nothing is returned.
SELECT id AS late_parent FROM rungate.enqueue_bulk('bulk.inventory.sync', 1, '{10,11}', 100) \gset
DELETE FROM rungate.role_capabilities WHERE role = 'owner' AND capability = 'bulk.sync';
SELECT count(*) AS handed_to_worker FROM rungate.claim('w');
SELECT status, reason_code FROM rungate.runs WHERE id = :late_parent;
SELECT count(*) AS items FROM rungate.runs WHERE parent_id = :late_parent;
INSERT INTO rungate.role_capabilities VALUES ('owner', 'bulk.sync');

-- 3. Allowed: the parent starts (never handed to a worker), its items are
--    created queued with the parent's initiator, audited 'dispatched', and
--    decided again when claimed: tenant 12 is onboarding, tenant 11 lacks no
--    prerequisite of inventory.sync, tenant 10 is fine. Duplicates collapse.
SELECT id AS parent FROM rungate.enqueue_bulk('bulk.inventory.sync', 1, '{10,11,12,10}', 100) \gset
SELECT run_id = :parent AS parent_handed_out, operation, tenant_id
  FROM rungate.claim('w', NULL, 10) ORDER BY run_id;
SELECT * FROM tree WHERE id = :parent OR parent_id = :parent;
SELECT run_id, event, decision, reason_code
  FROM rungate.audit_log WHERE run_id = :parent OR run_id IN (SELECT id FROM rungate.runs WHERE parent_id = :parent)
 ORDER BY id;

-- The parent holds no lease: a worker cannot complete it.
SELECT pg_temp.try(format('SELECT rungate.complete(%s, gen_random_uuid())', :parent));

-- Roll-up: the last item ending ends the parent; some succeeded, one was
-- blocked, so partially_succeeded; one notification, for the parent only.
SELECT (rungate.complete(id, lease_token)).status FROM rungate.runs
 WHERE parent_id = :parent AND tenant_id = 10;
SELECT status FROM rungate.runs WHERE id = :parent;
SELECT (rungate.complete(id, lease_token)).status FROM rungate.runs
 WHERE parent_id = :parent AND tenant_id = 11;
SELECT status, finished_at IS NOT NULL AS finished FROM rungate.runs WHERE id = :parent;
SELECT actor_id, run_id = :parent AS for_parent, kind FROM rungate.notifications
 WHERE run_id = :parent OR run_id IN (SELECT id FROM rungate.runs WHERE parent_id = :parent);
SELECT items FROM rungate.operation(100, :parent);

-- 4. Every item succeeded: succeeded.
SELECT id AS all_ok FROM rungate.enqueue_bulk('bulk.inventory.sync', 1, '{10,11}', 100) \gset
SELECT count(*) AS started FROM rungate.claim('w', NULL, 10);
SELECT count(*) FROM (SELECT rungate.complete(id, lease_token) FROM rungate.runs
                       WHERE parent_id = :all_ok) s;
SELECT status FROM rungate.runs WHERE id = :all_ok;

-- 5. Every item blocked: the parent is blocked with all_items_blocked / bulk
--    (audit execution_blocked), and its initiator is notified once.
SELECT id AS all_blocked FROM rungate.enqueue_bulk('bulk.inventory.sync', 1, '{10,11}', 100) \gset
UPDATE rungate.tenant_prerequisites SET satisfied = false WHERE name = 'provider_connection';
SELECT count(*) AS started FROM rungate.claim('w', NULL, 10);
SELECT status, reason_code, reason_category, reason_message FROM rungate.runs WHERE id = :all_blocked;
SELECT status, reason_code FROM rungate.runs WHERE parent_id = :all_blocked ORDER BY id;
SELECT event, reason_code, reason_category FROM rungate.audit_log
 WHERE run_id = :all_blocked ORDER BY id;
SELECT kind FROM rungate.notifications WHERE run_id = :all_blocked;
UPDATE rungate.tenant_prerequisites SET satisfied = true WHERE name = 'provider_connection';

-- 6. No item succeeded, not all blocked: failed, with an error counting them.
SELECT id AS none_ok FROM rungate.enqueue_bulk('bulk.inventory.sync', 1, '{10,12}', 100) \gset
SELECT count(*) AS started FROM rungate.claim('w', NULL, 10);
SELECT count(*) FROM (SELECT rungate.fail(id, lease_token, 'provider down') FROM rungate.runs
                       WHERE parent_id = :none_ok AND status = 'running') s;
SELECT status, error FROM rungate.runs WHERE id = :none_ok;

-- 7. Cancelling a running parent cancels its queued items; the parent then
--    rolls up from what its items became. A queued parent is cancelled itself.
SELECT id AS cancel_parent FROM rungate.enqueue_bulk('bulk.inventory.sync', 1, '{10,11}', 100) \gset
SELECT count(*) AS started FROM rungate.claim('w', ARRAY['bulk.inventory.sync']);
SELECT status FROM rungate.cancel(:cancel_parent, 100);
SELECT status FROM rungate.runs WHERE parent_id = :cancel_parent ORDER BY id;
SELECT status, error FROM rungate.runs WHERE id = :cancel_parent;
SELECT id AS queued_parent FROM rungate.enqueue_bulk('bulk.inventory.sync', 1, '{10}', 100) \gset
SELECT status FROM rungate.cancel(:queued_parent, 100);

-- 8. A bulk of 2,000 tenants fans out in one claim call, in one statement.
INSERT INTO rungate.tenants (id, workspace_id, name)
  SELECT 1000 + g, 1, 'bulk-' || g FROM generate_series(1, 2000) g;
SELECT id AS big FROM rungate.enqueue_bulk('bulk.inventory.sync', 1,
         ARRAY(SELECT 1000 + g FROM generate_series(1, 2000) g)::bigint[], 100) \gset
SELECT count(*) AS started FROM rungate.claim('w', ARRAY['bulk.inventory.sync']);
SELECT status, count(*) FROM rungate.runs WHERE parent_id = :big GROUP BY status;
SELECT count(*) AS dispatched_rows FROM rungate.audit_log a
  JOIN rungate.runs r ON r.id = a.run_id WHERE r.parent_id = :big AND a.event = 'dispatched';
-- each item is decided on its own: olivia is no member of these tenants
SELECT count(*) AS started FROM rungate.claim('w', ARRAY['inventory.sync'], 1000);
SELECT reason_code, count(*) FROM rungate.runs WHERE parent_id = :big GROUP BY reason_code;
