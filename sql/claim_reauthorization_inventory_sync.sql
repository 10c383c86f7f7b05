-- claim_reauthorization_inventory_sync: inventory.sync runs are
-- re-authorized when a worker claims them
-- (docs/guarantees.md#claim-reauthorization, #decision, #blocked,
-- #dispatch, #errors, #atomic).
--   * each revocation committed between dispatch and claim blocks the run at
--     claim with the decision's reason_code / reason_category, before any
--     side effect (never running, no lease, no `started` row)
--   * a batch claim decides each run on its own: legitimate runs start,
--     revoked ones are blocked in the same transaction and not returned;
--     a claim that rolls back leaves its blocked runs queued (#atomic)
--   * scheduled (initiator-null) syncs are blocked by tenant, workspace and
--     prerequisite changes, never by actor-side ones
--   * dispatch-time blocking still works; malformed enqueues raise RG400
--     and create nothing
-- Fixture (test/fixtures/seed.sql): olivia (100) is owner of workspace 1 and
-- tenants 10, 11, 12; the owner role grants inventory.sync; inventory.sync
-- needs provider_connection, which tenants 10 and 11 satisfy; tenant 12 is
-- onboarding.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS rungate CASCADE;
CREATE EXTENSION rungate;
\set ECHO none
\i test/fixtures/seed.sql
\i test/fixtures/try.sql
\set ECHO all
-- pg_temp.try(stmt) (test/fixtures/try.sql): 'ok', or 'SQLSTATE: message'.

-- pg_temp.reauth(actor, revoke, restore): enqueue an inventory sync of
-- tenant 10 by `actor` (NULL: scheduled, system authority), run `revoke`,
-- let a worker claim, report the run, then run `restore`.
CREATE FUNCTION pg_temp.reauth(actor bigint, revoke text, restore text)
RETURNS TABLE (dispatched text, claimed bigint, status text, reason_code text,
               reason_category text, reason_message text, attempt int,
               started boolean, leased boolean, events text)
LANGUAGE plpgsql AS $$
DECLARE
    run rungate.runs;
BEGIN
    run := rungate.enqueue('inventory.sync', 1, 10, actor);
    dispatched := run.status;
    IF revoke IS NOT NULL THEN EXECUTE revoke; END IF;
    SELECT count(*) INTO claimed FROM rungate.claim('inventory-worker');
    SELECT r.status, r.reason_code, r.reason_category, r.reason_message, r.attempt,
           r.started_at IS NOT NULL, r.lease_expires_at IS NOT NULL
      INTO status, reason_code, reason_category, reason_message, attempt, started, leased
      FROM rungate.runs r WHERE r.id = run.id;
    SELECT string_agg(a.event, ', ' ORDER BY a.id) INTO events
      FROM rungate.audit_log a WHERE a.run_id = run.id;
    IF restore IS NOT NULL THEN EXECUTE restore; END IF;
    RETURN NEXT;
END $$;

-- The revocations of the slice, each with the DML that undoes it.
CREATE TEMP TABLE revocation (k int PRIMARY KEY, label text, revoke text, restore text);
INSERT INTO revocation VALUES
 (0, 'none (control)', NULL, NULL),
 (1, 'capability removed from role',
     $$DELETE FROM rungate.role_capabilities WHERE role = 'owner' AND capability = 'inventory.sync'$$,
     $$INSERT INTO rungate.role_capabilities VALUES ('owner', 'inventory.sync')$$),
 (2, 'tenant membership deleted',
     $$DELETE FROM rungate.tenant_members WHERE tenant_id = 10 AND actor_id = 100$$,
     $$INSERT INTO rungate.tenant_members VALUES (10, 100, 'owner')$$),
 (3, 'workspace membership deleted',
     $$DELETE FROM rungate.workspace_members WHERE workspace_id = 1 AND actor_id = 100$$,
     $$INSERT INTO rungate.workspace_members VALUES (1, 100, 'owner')$$),
 (4, 'actor disabled',
     $$UPDATE rungate.actors SET status = 'disabled' WHERE id = 100$$,
     $$UPDATE rungate.actors SET status = 'active' WHERE id = 100$$),
 (5, 'tenant moved to workspace 2',
     $$UPDATE rungate.tenants SET workspace_id = 2 WHERE id = 10$$,
     $$UPDATE rungate.tenants SET workspace_id = 1 WHERE id = 10$$),
 (6, 'tenant suspended (not operable)',
     $$UPDATE rungate.tenants SET status = 'suspended' WHERE id = 10$$,
     $$UPDATE rungate.tenants SET status = 'active' WHERE id = 10$$),
 (7, 'workspace suspended',
     $$UPDATE rungate.workspaces SET status = 'suspended' WHERE id = 1$$,
     $$UPDATE rungate.workspaces SET status = 'active' WHERE id = 1$$),
 (8, 'prerequisite marked unsatisfied',
     $$UPDATE rungate.tenant_prerequisites SET satisfied = false WHERE tenant_id = 10 AND name = 'provider_connection'$$,
     $$UPDATE rungate.tenant_prerequisites SET satisfied = true WHERE tenant_id = 10 AND name = 'provider_connection'$$),
 (9, 'prerequisite deleted',
     $$DELETE FROM rungate.tenant_prerequisites WHERE tenant_id = 10 AND name = 'provider_connection'$$,
     $$INSERT INTO rungate.tenant_prerequisites VALUES (10, 'provider_connection', true)$$);

------------------------------------------------------------------------------
-- 1. Actor-bound syncs (olivia): each revocation between dispatch and claim
--    blocks the run with its reason; the control starts.
------------------------------------------------------------------------------
SELECT v.k, v.label AS revocation, r.*
  FROM revocation v, LATERAL pg_temp.reauth(100, v.revoke, v.restore) AS r
 ORDER BY v.k;
-- The fixture is intact again: a fresh sync is legitimate.
SELECT allowed FROM rungate.decide('inventory.sync', 1, 10, 100);

------------------------------------------------------------------------------
-- 2. Scheduled syncs (no initiator, system authority): actor-side
--    revocations (1-4) do not apply; the others block.
------------------------------------------------------------------------------
SELECT v.k, v.label AS revocation, r.dispatched, r.claimed, r.status,
       r.reason_code, r.reason_category, r.attempt, r.started, r.events
  FROM revocation v, LATERAL pg_temp.reauth(NULL, v.revoke, v.restore) AS r
 ORDER BY v.k;

------------------------------------------------------------------------------
-- 3. One claim, several runs: each is decided on its own
--    (#claim-reauthorization).
--    Syncs of tenants 10 and 11 by olivia and of tenant 10 by oscar; then
--    tenant 11 loses provider_connection and oscar is disabled.
------------------------------------------------------------------------------
SELECT count(*) AS queued_now FROM rungate.runs WHERE status = 'queued';
SELECT id AS s10 FROM rungate.enqueue('inventory.sync', 1, 10, 100, '{"sync": "eu"}') \gset
SELECT id AS s11 FROM rungate.enqueue('inventory.sync', 1, 11, 100, '{"sync": "us"}') \gset
SELECT id AS s10b FROM rungate.enqueue('inventory.sync', 1, 10, 101, '{"sync": "eu-oscar"}') \gset
UPDATE rungate.tenant_prerequisites SET satisfied = false
 WHERE tenant_id = 11 AND name = 'provider_connection';
UPDATE rungate.actors SET status = 'disabled' WHERE id = 101;

-- A claim that rolls back takes its blocks with it: the runs stay queued
-- and no execution_blocked row survives (#atomic).
BEGIN;
SELECT payload->>'sync' AS claimed_in_rolled_back_tx
  FROM rungate.claim('inventory-worker', NULL, 10) ORDER BY run_id;
SELECT payload->>'sync' AS sync, status FROM rungate.runs
 WHERE id IN (:s10, :s11, :s10b) ORDER BY id;
ROLLBACK;
SELECT payload->>'sync' AS sync, status, attempt FROM rungate.runs
 WHERE id IN (:s10, :s11, :s10b) ORDER BY id;
SELECT count(*) AS audit_rows_beyond_dispatch FROM rungate.audit_log
 WHERE run_id IN (:s10, :s11, :s10b) AND event <> 'dispatched';

-- The committed claim: only the legitimate run is handed out; the two
-- others are blocked with their own reasons in the same transaction.
SELECT payload->>'sync' AS claimed, attempt, tenant_id, initiator_id
  FROM rungate.claim('inventory-worker', NULL, 10) ORDER BY run_id;
SELECT payload->>'sync' AS sync, status, reason_code, reason_category, reason_message,
       attempt, started_at IS NOT NULL AS started
  FROM rungate.runs WHERE id IN (:s10, :s11, :s10b) ORDER BY id;
-- Each status change has its audit row, from the same transaction.
SELECT r.payload->>'sync' AS sync, a.event, a.decision, a.reason_code, a.worker
  FROM rungate.audit_log a JOIN rungate.runs r ON r.id = a.run_id
 WHERE a.run_id IN (:s10, :s11, :s10b) AND a.event <> 'dispatched'
 ORDER BY a.run_id, a.id;
SELECT count(DISTINCT a.txid) AS claim_transactions FROM rungate.audit_log a
 WHERE a.run_id IN (:s10, :s11, :s10b) AND a.event <> 'dispatched';
UPDATE rungate.tenant_prerequisites SET satisfied = true
 WHERE tenant_id = 11 AND name = 'provider_connection';
UPDATE rungate.actors SET status = 'active' WHERE id = 101;

------------------------------------------------------------------------------
-- 4. The operations filter: a worker for other types leaves the sync
--    queued; revocations are decided when a sync worker does claim it.
------------------------------------------------------------------------------
SELECT id AS s_filter FROM rungate.enqueue('inventory.sync', 1, 10, 100) \gset
DELETE FROM rungate.role_capabilities WHERE role = 'owner' AND capability = 'inventory.sync';
SELECT count(*) AS claimed_by_provider_worker
  FROM rungate.claim('provider-worker', ARRAY['provider.connection.verify']);
SELECT status FROM rungate.runs WHERE id = :s_filter;
SELECT count(*) AS claimed_by_sync_worker
  FROM rungate.claim('inventory-worker', ARRAY['inventory.sync', 'restore.execute']);
SELECT status, reason_code, reason_category FROM rungate.runs WHERE id = :s_filter;
INSERT INTO rungate.role_capabilities VALUES ('owner', 'inventory.sync');

------------------------------------------------------------------------------
-- 5. Dispatch-time blocking still works: recorded blocked, returned, no
--    exception, audit dispatch_blocked; a claim never starts it.
------------------------------------------------------------------------------
CREATE TEMP TABLE denied AS
SELECT x.k, x.label, r.*
  FROM (VALUES (1, 'tenant 12 onboarding (olivia)', 12::bigint, 100::bigint),
               (2, 'tenant 11, oscar not a member', 11, 101),
               (3, 'tenant 12 onboarding (scheduled)', 12, NULL)) AS x(k, label, tenant, actor),
       LATERAL rungate.enqueue('inventory.sync', 1, x.tenant, x.actor) AS r;
SELECT d.label, d.status, d.reason_code, d.reason_category, d.attempt,
       d.started_at IS NULL AS never_started, d.finished_at IS NOT NULL AS finished,
       (SELECT string_agg(a.event || '/' || a.decision, ', ' ORDER BY a.id)
          FROM rungate.audit_log a WHERE a.run_id = d.id) AS audit
  FROM denied d ORDER BY d.k;
SELECT count(*) AS claimed FROM rungate.claim('inventory-worker', NULL, 10);

------------------------------------------------------------------------------
-- 6. Malformed enqueues raise RG400 and create nothing (#dispatch, #errors).
------------------------------------------------------------------------------
SELECT (SELECT count(*) FROM rungate.runs) AS runs_before,
       (SELECT count(*) FROM rungate.audit_log) AS audit_before \gset
SELECT label, pg_temp.try(stmt) AS result
  FROM (VALUES
    (1, 'unknown operation',     $$SELECT rungate.enqueue('inventory.resync', 1, 10, 100)$$),
    (2, 'bulk type via enqueue', $$SELECT rungate.enqueue('bulk.inventory.sync', 1, NULL, 100)$$),
    (3, 'bulk type with tenant', $$SELECT rungate.enqueue('bulk.inventory.sync', 1, 10, 100)$$),
    (4, 'tenant missing',        $$SELECT rungate.enqueue('inventory.sync', 1, NULL, 100)$$),
    (5, 'tenant superfluous',    $$SELECT rungate.enqueue('reports.export', 1, 11, 100)$$),
    (6, 'tenant of workspace 2', $$SELECT rungate.enqueue('inventory.sync', 1, 20, 100)$$),
    (7, 'workspace of tenant 10 is 1, not 2', $$SELECT rungate.enqueue('inventory.sync', 2, 10, 103)$$),
    (8, 'unknown workspace',     $$SELECT rungate.enqueue('inventory.sync', 3, 10, 100)$$),
    (9, 'unknown tenant',        $$SELECT rungate.enqueue('inventory.sync', 1, 13, 100)$$),
    (10, 'unknown actor',        $$SELECT rungate.enqueue('inventory.sync', 1, 10, 106)$$)
  ) AS t(k, label, stmt)
 ORDER BY k;
SELECT (SELECT count(*) FROM rungate.runs) - :runs_before AS runs_created,
       (SELECT count(*) FROM rungate.audit_log) - :audit_before AS audit_rows_written;
