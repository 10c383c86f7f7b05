-- bulk_reauthorization: bulk orchestrators (docs/guarantees.md#bulk, with
-- #transitions, #dispatch, #run-control for cancel, #audit and
-- #notifications; enqueue_bulk and cancel in docs/reference.md): the parent
-- is decided when it is claimed; denied, it is blocked and no item ever
-- exists; allowed, it starts (never handed to a worker), its items are
-- created queued and each is decided again when claimed, so an item whose
-- tenant lost authority is blocked alone; the parent rolls up when its last
-- item ends; only the parent's initiator is notified, once.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS rungate CASCADE;
RESET client_min_messages;
CREATE EXTENSION rungate;
\i test/fixtures/seed.sql
\i test/fixtures/try.sql

-- Tenants 13-16 of workspace 1: olivia (100) owns them, provider connected.
-- Each will lose one kind of authority while a bulk run is in flight.
INSERT INTO rungate.tenants (id, workspace_id, name) VALUES
    (13, 1, 'acme-13'), (14, 1, 'acme-14'), (15, 1, 'acme-15'), (16, 1, 'acme-16');
INSERT INTO rungate.tenant_members (tenant_id, actor_id, role)
    SELECT t, 100, 'owner' FROM generate_series(13, 16) t;
INSERT INTO rungate.tenant_prerequisites (tenant_id, name, satisfied)
    SELECT t, 'provider_connection', true FROM generate_series(13, 16) t;

-- Every claim of this file goes through pg_temp.claim, which records what
-- the worker was handed, so the end of the file can prove that no bulk
-- parent was ever handed to a worker.
CREATE TEMP TABLE handed (run_id bigint NOT NULL);
CREATE FUNCTION pg_temp.claim(ops text[] DEFAULT NULL, n int DEFAULT 10)
RETURNS SETOF rungate.claimed LANGUAGE sql AS $$
    WITH c AS (SELECT * FROM rungate.claim('w', ops, n)),
         h AS (INSERT INTO pg_temp.handed SELECT run_id FROM c)
    SELECT * FROM c
$$;
-- a run and its items, in id order
CREATE FUNCTION pg_temp.tree(root bigint)
RETURNS TABLE (id bigint, parent_id bigint, tenant_id bigint, operation text,
               initiator_id bigint, status text, reason_code text, attempt int)
LANGUAGE sql AS $$
    SELECT r.id, r.parent_id, r.tenant_id, r.operation, r.initiator_id,
           r.status, r.reason_code, r.attempt
      FROM rungate.runs r WHERE r.id = root OR r.parent_id = root ORDER BY r.id
$$;

------------------------------------------------------------------------------
-- Malformed bulk requests (#dispatch, #errors) raise RG400 and create
-- nothing: a type that is not a bulk orchestrator (tenant- or
-- workspace-scoped), a tenant of another workspace, an unknown tenant, empty,
-- null or null-holding tenant arrays, unknown workspace or initiator;
-- enqueue() refuses a bulk type.
------------------------------------------------------------------------------
SELECT pg_temp.try($$SELECT rungate.enqueue_bulk('inventory.sync', 1, '{10}', 100)$$);
SELECT pg_temp.try($$SELECT rungate.enqueue_bulk('reports.export', 1, '{10}', 100)$$);
SELECT pg_temp.try($$SELECT rungate.enqueue_bulk('no.such.type', 1, '{10}', 100)$$);
SELECT pg_temp.try($$SELECT rungate.enqueue_bulk('bulk.inventory.sync', 1, '{10,20}', 100)$$);
SELECT pg_temp.try($$SELECT rungate.enqueue_bulk('bulk.inventory.sync', 1, '{10,99999}', 100)$$);
SELECT pg_temp.try($$SELECT rungate.enqueue_bulk('bulk.inventory.sync', 1, '{}', 100)$$);
SELECT pg_temp.try($$SELECT rungate.enqueue_bulk('bulk.inventory.sync', 1, NULL, 100)$$);
SELECT pg_temp.try($$SELECT rungate.enqueue_bulk('bulk.inventory.sync', 1, '{10,NULL}', 100)$$);
SELECT pg_temp.try($$SELECT rungate.enqueue_bulk('bulk.inventory.sync', 99, '{10}', 100)$$);
SELECT pg_temp.try($$SELECT rungate.enqueue_bulk('bulk.inventory.sync', 1, '{10}', 999)$$);
SELECT pg_temp.try($$SELECT rungate.enqueue('bulk.inventory.sync', 1, NULL, 100)$$);
SELECT (SELECT count(*) FROM rungate.runs) AS runs,
       (SELECT count(*) FROM rungate.audit_log) AS audit_rows;

------------------------------------------------------------------------------
-- Denied at dispatch. oscar's operator role lacks bulk.sync: the parent
-- is recorded blocked (audit dispatch_blocked) and no item ever exists, not
-- even after a claim; oscar is notified once. Without an initiator
-- (allow_system is false for this type) it is blocked too, and nobody is
-- notified.
------------------------------------------------------------------------------
SELECT id AS denied, status, reason_code, reason_category
  FROM rungate.enqueue_bulk('bulk.inventory.sync', 1, '{10,11}', 101) \gset
SELECT :'status' AS status, :'reason_code' AS reason_code, :'reason_category' AS reason_category;
SELECT id AS denied_system, status, reason_code
  FROM rungate.enqueue_bulk('bulk.inventory.sync', 1, '{10,11}', NULL) \gset
SELECT :'status' AS status, :'reason_code' AS reason_code;
SELECT count(*) AS handed_to_worker FROM pg_temp.claim();
SELECT * FROM pg_temp.tree(:denied);
SELECT * FROM pg_temp.tree(:denied_system);
SELECT run_id, event, decision, reason_code FROM rungate.audit_log
 WHERE run_id IN (:denied, :denied_system) ORDER BY id;
SELECT actor_id, run_id = :denied AS for_denied, kind FROM rungate.notifications
 WHERE run_id IN (:denied, :denied_system) ORDER BY id;

------------------------------------------------------------------------------
-- Denied at claim. The owner role loses bulk.sync after dispatch: the
-- claim blocks the parent (audit execution_blocked, naming the claimer),
-- hands nothing over and creates no item; the parent never started.
------------------------------------------------------------------------------
SELECT id AS late FROM rungate.enqueue_bulk('bulk.inventory.sync', 1, '{10,11}', 100) \gset
DELETE FROM rungate.role_capabilities WHERE role = 'owner' AND capability = 'bulk.sync';
SELECT count(*) AS handed_to_worker FROM pg_temp.claim();
SELECT * FROM pg_temp.tree(:late);
SELECT started_at IS NULL AS never_started, lease_expires_at IS NULL AS no_lease
  FROM rungate.runs WHERE id = :late;
SELECT event, decision, reason_code, worker FROM rungate.audit_log WHERE run_id = :late ORDER BY id;
SELECT actor_id, kind FROM rungate.notifications WHERE run_id = :late;
INSERT INTO rungate.role_capabilities (role, capability) VALUES ('owner', 'bulk.sync');

------------------------------------------------------------------------------
-- Allowed. A claim for the bulk type starts the parent but hands nothing
-- to the worker; the parent holds no lease. Its items exist now, queued, one
-- per distinct tenant (the duplicate 10 collapses), with parent_id set, the
-- parent's initiator and payload, each with one 'dispatched' audit row (no
-- decision yet) written by the claim's transaction.
------------------------------------------------------------------------------
SELECT id AS parent FROM rungate.enqueue_bulk('bulk.inventory.sync', 1, '{10,11,13,14,15,16,10}', 100,
                                              '{"full": true}') \gset
SELECT count(*) AS items_before_claim FROM rungate.runs WHERE parent_id = :parent;
SELECT count(*) AS handed_to_worker FROM pg_temp.claim(ARRAY['bulk.inventory.sync']);
SELECT * FROM pg_temp.tree(:parent);
SELECT started_at IS NOT NULL AS started, lease_expires_at IS NULL AS no_lease
  FROM rungate.runs WHERE id = :parent;
SELECT count(*) AS items, count(*) FILTER (WHERE payload = '{"full": true}') AS with_payload
  FROM rungate.runs WHERE parent_id = :parent;
SELECT a.event, a.authority, a.actor_id, a.decision, count(*) AS rows
  FROM rungate.audit_log a JOIN rungate.runs r ON r.id = a.run_id
 WHERE r.parent_id = :parent GROUP BY 1, 2, 3, 4 ORDER BY 1;
SELECT count(DISTINCT a.txid) AS writing_transactions
  FROM rungate.audit_log a JOIN rungate.runs r ON r.id = a.run_id
 WHERE r.parent_id = :parent OR (r.id = :parent AND a.event = 'started');
-- a worker cannot finish the parent: it holds no lease
SELECT pg_temp.try(format('SELECT rungate.complete(%s, gen_random_uuid())', :parent));

------------------------------------------------------------------------------
-- Each item is decided again when claimed. Before the items are claimed,
-- every tenant but 10 loses one thing: 11 its prerequisite, 13 olivia's
-- membership (scope), 14 her capability (role downgraded), 15 its
-- operability, 16 moves to workspace 2. Each of those items is blocked
-- alone, with its own reason; tenant 10's item starts; the parent keeps
-- running while an item is still running.
------------------------------------------------------------------------------
UPDATE rungate.tenant_prerequisites SET satisfied = false WHERE tenant_id = 11 AND name = 'provider_connection';
DELETE FROM rungate.tenant_members WHERE tenant_id = 13 AND actor_id = 100;
UPDATE rungate.tenant_members SET role = 'readonly' WHERE tenant_id = 14 AND actor_id = 100;
UPDATE rungate.tenants SET status = 'suspended' WHERE id = 15;
UPDATE rungate.tenants SET workspace_id = 2 WHERE id = 16;
SELECT operation, tenant_id, initiator_id FROM pg_temp.claim() ORDER BY run_id;
SELECT r.tenant_id, r.status, r.reason_code, r.reason_category, r.started_at IS NULL AS never_started
  FROM rungate.runs r WHERE r.parent_id = :parent ORDER BY r.tenant_id;
SELECT status FROM rungate.runs WHERE id = :parent;
-- put the authority back for the next sections
UPDATE rungate.tenant_prerequisites SET satisfied = true WHERE tenant_id = 11 AND name = 'provider_connection';
INSERT INTO rungate.tenant_members (tenant_id, actor_id, role) VALUES (13, 100, 'owner');
UPDATE rungate.tenant_members SET role = 'owner' WHERE tenant_id = 14 AND actor_id = 100;
UPDATE rungate.tenants SET status = 'active' WHERE id = 15;
UPDATE rungate.tenants SET workspace_id = 1 WHERE id = 16;

------------------------------------------------------------------------------
-- Roll-up, some items succeeded: when the last item ends the parent becomes
-- partially_succeeded (audited), finished; its initiator gets one
-- notification and no item gets one (#notifications); the detail counts the
-- items.
------------------------------------------------------------------------------
SELECT status FROM rungate.complete(
         (SELECT id FROM rungate.runs WHERE parent_id = :parent AND status = 'running'),
         (SELECT lease_token FROM rungate.runs WHERE parent_id = :parent AND status = 'running'));
SELECT status, finished_at IS NOT NULL AS finished, reason_code, error FROM rungate.runs WHERE id = :parent;
SELECT event, decision FROM rungate.audit_log WHERE run_id = :parent ORDER BY id;
SELECT actor_id, run_id = :parent AS for_parent, kind FROM rungate.notifications
 WHERE run_id = :parent OR run_id IN (SELECT id FROM rungate.runs WHERE parent_id = :parent);
SELECT items FROM rungate.operation(100, :parent);

------------------------------------------------------------------------------
-- Roll-up, every item succeeded: succeeded. An item that fails with a
-- retry left goes back to queued and the parent waits for it; its retry is
-- decided afresh and succeeds.
------------------------------------------------------------------------------
SELECT id AS all_ok FROM rungate.enqueue_bulk('bulk.inventory.sync', 1, '{10,13}', 100) \gset
SELECT tenant_id FROM pg_temp.claim() ORDER BY run_id;
SELECT status FROM rungate.fail(
         (SELECT id FROM rungate.runs WHERE parent_id = :all_ok AND tenant_id = 13),
         (SELECT lease_token FROM rungate.runs WHERE parent_id = :all_ok AND tenant_id = 13),
         'provider timeout', retryable => true);
SELECT status FROM rungate.complete(
         (SELECT id FROM rungate.runs WHERE parent_id = :all_ok AND tenant_id = 10),
         (SELECT lease_token FROM rungate.runs WHERE parent_id = :all_ok AND tenant_id = 10));
SELECT status AS parent_waits_for_the_retry FROM rungate.runs WHERE id = :all_ok;
SELECT tenant_id, attempt FROM pg_temp.claim();
SELECT status FROM rungate.complete(
         (SELECT id FROM rungate.runs WHERE parent_id = :all_ok AND tenant_id = 13),
         (SELECT lease_token FROM rungate.runs WHERE parent_id = :all_ok AND tenant_id = 13));
SELECT * FROM pg_temp.tree(:all_ok);
SELECT actor_id, kind FROM rungate.notifications WHERE run_id = :all_ok;

------------------------------------------------------------------------------
-- Roll-up, every item blocked: after the fan-out olivia loses her
-- workspace membership; every item is blocked, so the parent becomes blocked
-- with reason all_items_blocked, category bulk (audit execution_blocked);
-- its initiator is notified once.
------------------------------------------------------------------------------
SELECT id AS all_blocked FROM rungate.enqueue_bulk('bulk.inventory.sync', 1, '{10,11}', 100) \gset
SELECT count(*) AS handed_to_worker FROM pg_temp.claim(ARRAY['bulk.inventory.sync']);
DELETE FROM rungate.workspace_members WHERE workspace_id = 1 AND actor_id = 100;
SELECT count(*) AS handed_to_worker FROM pg_temp.claim();
SELECT * FROM pg_temp.tree(:all_blocked);
SELECT status, reason_code, reason_category, reason_message, error FROM rungate.runs WHERE id = :all_blocked;
SELECT event, decision, reason_code, reason_category FROM rungate.audit_log
 WHERE run_id = :all_blocked ORDER BY id;
SELECT actor_id, kind FROM rungate.notifications WHERE run_id = :all_blocked;
INSERT INTO rungate.workspace_members (workspace_id, actor_id, role) VALUES (1, 100, 'owner');

------------------------------------------------------------------------------
-- Roll-up, otherwise: failed, with an error counting the items. One item
-- fails for good; the other fails with a retry left, its tenant is
-- suspended meanwhile, and the retry is blocked (a retry never inherits the
-- authority of its first attempt). Nothing succeeded, not all were blocked.
------------------------------------------------------------------------------
SELECT id AS none_ok FROM rungate.enqueue_bulk('bulk.inventory.sync', 1, '{10,13}', 100) \gset
SELECT tenant_id FROM pg_temp.claim() ORDER BY run_id;
SELECT status FROM rungate.fail(
         (SELECT id FROM rungate.runs WHERE parent_id = :none_ok AND tenant_id = 13),
         (SELECT lease_token FROM rungate.runs WHERE parent_id = :none_ok AND tenant_id = 13),
         'provider timeout', retryable => true);
UPDATE rungate.tenants SET status = 'suspended' WHERE id = 13;
SELECT count(*) AS handed_to_worker FROM pg_temp.claim();
SELECT status FROM rungate.fail(
         (SELECT id FROM rungate.runs WHERE parent_id = :none_ok AND tenant_id = 10),
         (SELECT lease_token FROM rungate.runs WHERE parent_id = :none_ok AND tenant_id = 10),
         'provider down');
SELECT * FROM pg_temp.tree(:none_ok);
SELECT status, reason_code, error FROM rungate.runs WHERE id = :none_ok;
SELECT actor_id, kind FROM rungate.notifications WHERE run_id = :none_ok;
UPDATE rungate.tenants SET status = 'active' WHERE id = 13;

------------------------------------------------------------------------------
-- cancel of a running parent: the parent is cancelled with its queued and
-- running items (each audited with the cancelling actor), not rolled up;
-- the running item's worker has lost its lease (RG409). A queued parent is
-- cancelled itself and never fans out. A terminal parent cannot be
-- cancelled (RG409).
------------------------------------------------------------------------------
SELECT id AS cancel_mid FROM rungate.enqueue_bulk('bulk.inventory.sync', 1, '{10,11,13}', 100) \gset
SELECT count(*) AS handed_to_worker FROM pg_temp.claim(ARRAY['bulk.inventory.sync']);
SELECT tenant_id FROM pg_temp.claim(ARRAY['inventory.sync'], 1);
SELECT id AS mid_item, lease_token AS mid_token FROM rungate.runs
 WHERE parent_id = :cancel_mid AND status = 'running' \gset
SELECT status AS parent_status FROM rungate.cancel(:cancel_mid, 101);
SELECT * FROM pg_temp.tree(:cancel_mid);
SELECT r.tenant_id, a.actor_id, a.worker FROM rungate.audit_log a JOIN rungate.runs r ON r.id = a.run_id
 WHERE r.parent_id = :cancel_mid AND a.event = 'cancelled' ORDER BY r.tenant_id;
SELECT pg_temp.try(format('SELECT rungate.complete(%s, %L)', :mid_item, :'mid_token'));
SELECT status FROM rungate.runs WHERE id = :cancel_mid;

SELECT id AS cancel_all FROM rungate.enqueue_bulk('bulk.inventory.sync', 1, '{10,11}', 100) \gset
SELECT count(*) AS handed_to_worker FROM pg_temp.claim(ARRAY['bulk.inventory.sync']);
SELECT status AS parent_status, error FROM rungate.cancel(:cancel_all, 100);
SELECT * FROM pg_temp.tree(:cancel_all);

SELECT id AS cancel_queued FROM rungate.enqueue_bulk('bulk.inventory.sync', 1, '{10}', 100) \gset
SELECT status FROM rungate.cancel(:cancel_queued, 100);
SELECT count(*) AS handed_to_worker FROM pg_temp.claim();
SELECT * FROM pg_temp.tree(:cancel_queued);
SELECT actor_id, kind FROM rungate.notifications WHERE run_id IN (:cancel_all, :cancel_queued) ORDER BY run_id;
SELECT pg_temp.try(format('SELECT rungate.cancel(%s, 100)', :cancel_all));

------------------------------------------------------------------------------
-- At scale: a bulk of 2,000 tenants fans out in one claim call (2,000
-- queued items, 2,000 'dispatched' rows). olivia owns the even-numbered
-- tenants only, so one claim of 1,000 starts the even items and blocks
-- every odd one on its own (actor_not_in_tenant); completing the started
-- ones rolls the parent up to partially_succeeded.
------------------------------------------------------------------------------
INSERT INTO rungate.tenants (id, workspace_id, name)
    SELECT 1000 + g, 1, 'bulk-' || g FROM generate_series(1, 2000) g;
INSERT INTO rungate.tenant_prerequisites (tenant_id, name, satisfied)
    SELECT 1000 + g, 'provider_connection', true FROM generate_series(1, 2000) g;
INSERT INTO rungate.tenant_members (tenant_id, actor_id, role)
    SELECT 1000 + g, 100, 'owner' FROM generate_series(2, 2000, 2) g;
SELECT id AS big FROM rungate.enqueue_bulk('bulk.inventory.sync', 1,
         ARRAY(SELECT 1000 + g FROM generate_series(1, 2000) g)::bigint[], 100) \gset
SELECT count(*) AS handed_to_worker FROM pg_temp.claim(ARRAY['bulk.inventory.sync']);
SELECT status, count(*) FROM rungate.runs WHERE parent_id = :big GROUP BY status ORDER BY status;
SELECT count(*) AS dispatched_rows FROM rungate.audit_log a
  JOIN rungate.runs r ON r.id = a.run_id WHERE r.parent_id = :big AND a.event = 'dispatched';
-- (one call blocks all 1,000 odd items: above the default claim_block_limit)
SET rungate.claim_block_limit = 2000;
SELECT count(*) AS started, count(*) FILTER (WHERE tenant_id % 2 = 0) AS even_tenants
  FROM pg_temp.claim(ARRAY['inventory.sync'], 1000);
RESET rungate.claim_block_limit;
SELECT status, reason_code, tenant_id % 2 = 0 AS even_tenant, count(*)
  FROM rungate.runs WHERE parent_id = :big GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;
SELECT count(*) AS completed FROM (
    SELECT rungate.complete(id, lease_token) FROM rungate.runs
     WHERE parent_id = :big AND status = 'running' ORDER BY id) s;
SELECT status, items FROM rungate.operation(100, :big);

------------------------------------------------------------------------------
-- Whole file: no bulk parent was ever handed to a worker, though workers
-- were handed runs; no bulk item ever created a notification; each terminal
-- actor-bound parent notified its initiator exactly once.
------------------------------------------------------------------------------
SELECT count(*) AS runs_handed_out,
       count(*) FILTER (WHERE r.operation = 'bulk.inventory.sync') AS parents_handed_out
  FROM handed h JOIN rungate.runs r ON r.id = h.run_id;
SELECT count(*) AS item_notifications
  FROM rungate.notifications n JOIN rungate.runs r ON r.id = n.run_id WHERE r.parent_id IS NOT NULL;
SELECT r.id, r.status, count(n.id) AS notifications, min(n.actor_id) = r.initiator_id AS to_initiator
  FROM rungate.runs r LEFT JOIN rungate.notifications n ON n.run_id = r.id
 WHERE r.operation = 'bulk.inventory.sync' AND r.initiator_id IS NOT NULL
 GROUP BY r.id ORDER BY r.id;

------------------------------------------------------------------------------
-- #authority-data, #no-run-lost: a tenant named by a queued bulk run is
-- referenced by that run: its deletion is refused (23503). And the claim
-- must not fail on that parent: a claim that raises on it would raise again
-- on every later claim (the parent stays first in line), and no other run
-- could start. Expected: the claim succeeds, the unrelated run starts, the
-- parent is no longer queued.
------------------------------------------------------------------------------
INSERT INTO rungate.tenants (id, workspace_id, name) VALUES (17, 1, 'acme-17');
SELECT id AS doomed FROM rungate.enqueue_bulk('bulk.inventory.sync', 1, '{10,17}', 100) \gset
SELECT split_part(pg_temp.try('DELETE FROM rungate.tenants WHERE id = 17'), ':', 1) AS delete_refused;
SELECT id AS bystander FROM rungate.enqueue('inventory.sync', 1, 10, 100) \gset
SELECT pg_temp.try('SELECT * FROM rungate.claim(''w'', NULL, 10)') AS claim;
SELECT status AS bystander_status FROM rungate.runs WHERE id = :bystander;
SELECT status <> 'queued' AS parent_taken FROM rungate.runs WHERE id = :doomed;
