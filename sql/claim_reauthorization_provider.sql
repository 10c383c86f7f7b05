-- claim_reauthorization_provider: provider.connection.verify runs are
-- re-authorized when a worker claims them
-- (docs/guarantees.md#claim-reauthorization, #decision, #blocked,
-- #dispatch, #errors).
--   * each revocation committed between dispatch and claim blocks the run at
--     claim with the decision's reason_code / reason_category, actor-bound
--     and system authority (the type allows system runs)
--   * the decision reads the state as it is at claim: authority restored
--     before the claim lets the run start; a change the decision does not
--     depend on (the workspace role, for a tenant run) does not block it
--   * dispatch-time blocking still works: enqueue returns a blocked run with
--     audit `dispatch_blocked`, no exception, and no claim ever starts it
--   * malformed enqueues raise RG400 and create nothing
-- Fixture (test/fixtures/seed.sql): oscar (101) is operator of workspace 1
-- and tenant 10; the operator role grants provider.manage; tenant 10 is
-- active with provider_connection satisfied.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS rungate CASCADE;
CREATE EXTENSION rungate;
\set ECHO none
\i test/fixtures/seed.sql
\i test/fixtures/try.sql
\set ECHO all
-- pg_temp.try(stmt) (test/fixtures/try.sql): 'ok', or 'SQLSTATE: message'.

-- pg_temp.reauth(actor, revoke, restore): enqueue a provider verification
-- of tenant 10 by `actor` (NULL: system authority), run the `revoke` DML,
-- let a worker claim, report what became of the run, then run `restore`.
--   dispatched       status returned by enqueue
--   claimed          runs the claim handed to the worker
--   status .. lease  the run after the claim (started/leased as flags)
--   events           its audit events, oldest first
--   failed_checks    the failed checks of the claim's decision (audit row)
CREATE FUNCTION pg_temp.reauth(actor bigint, revoke text, restore text)
RETURNS TABLE (dispatched text, claimed bigint, status text, reason_code text,
               reason_category text, attempt int, started boolean,
               leased boolean, events text, failed_checks text)
LANGUAGE plpgsql AS $$
DECLARE
    run rungate.runs;
BEGIN
    run := rungate.enqueue('provider.connection.verify', 1, 10, actor);
    dispatched := run.status;
    IF revoke IS NOT NULL THEN EXECUTE revoke; END IF;
    SELECT count(*) INTO claimed FROM rungate.claim('provider-worker');
    SELECT r.status, r.reason_code, r.reason_category, r.attempt,
           r.started_at IS NOT NULL, r.lease_expires_at IS NOT NULL
      INTO status, reason_code, reason_category, attempt, started, leased
      FROM rungate.runs r WHERE r.id = run.id;
    SELECT string_agg(a.event, ', ' ORDER BY a.id) INTO events
      FROM rungate.audit_log a WHERE a.run_id = run.id;
    SELECT string_agg(c->>'code', ', ' ORDER BY o) INTO failed_checks
      FROM rungate.audit_log a,
           jsonb_array_elements(a.checks) WITH ORDINALITY AS x(c, o)
     WHERE a.run_id = run.id AND a.event IN ('started', 'execution_blocked')
       AND NOT (c->>'passed')::boolean;
    IF restore IS NOT NULL THEN EXECUTE restore; END IF;
    RETURN NEXT;
END $$;

------------------------------------------------------------------------------
-- 1. The slice's story, step by step: oscar queues a verification, his
--    tenant membership is revoked (committed), then a worker claims.
------------------------------------------------------------------------------
SELECT id AS run1, status, attempt FROM rungate.enqueue('provider.connection.verify', 1, 10, 101) \gset
SELECT :'status' AS status, :attempt AS attempt;
DELETE FROM rungate.tenant_members WHERE tenant_id = 10 AND actor_id = 101;
SELECT count(*) AS claimed FROM rungate.claim('provider-worker');
SELECT status, reason_code, reason_category, reason_message, attempt,
       started_at IS NULL AS never_started, lease_expires_at IS NULL AS no_lease,
       finished_at IS NOT NULL AS finished
  FROM rungate.runs WHERE id = :run1;
-- The blocked run stays visible in monitoring with its stable reason
-- (#blocked-not-failed).
SELECT status, reason_code, reason_category
  FROM rungate.operations(100, 1) WHERE run_id = :run1;
INSERT INTO rungate.tenant_members VALUES (10, 101, 'operator');

------------------------------------------------------------------------------
-- 2. Each revocation between dispatch and claim, actor-bound (oscar):
--    the claim blocks the run with the decision's reason; the control row
--    starts.
------------------------------------------------------------------------------
SELECT 'no revocation (control)' AS revocation, *
  FROM pg_temp.reauth(101, NULL, NULL);
SELECT 'capability removed from role' AS revocation, *
  FROM pg_temp.reauth(101,
    $$DELETE FROM rungate.role_capabilities WHERE role = 'operator' AND capability = 'provider.manage'$$,
    $$INSERT INTO rungate.role_capabilities VALUES ('operator', 'provider.manage')$$);
SELECT 'tenant role downgraded' AS revocation, *
  FROM pg_temp.reauth(101,
    $$UPDATE rungate.tenant_members SET role = 'readonly' WHERE tenant_id = 10 AND actor_id = 101$$,
    $$UPDATE rungate.tenant_members SET role = 'operator' WHERE tenant_id = 10 AND actor_id = 101$$);
SELECT 'tenant membership deleted' AS revocation, *
  FROM pg_temp.reauth(101,
    $$DELETE FROM rungate.tenant_members WHERE tenant_id = 10 AND actor_id = 101$$,
    $$INSERT INTO rungate.tenant_members VALUES (10, 101, 'operator')$$);
SELECT 'workspace membership deleted' AS revocation, *
  FROM pg_temp.reauth(101,
    $$DELETE FROM rungate.workspace_members WHERE workspace_id = 1 AND actor_id = 101$$,
    $$INSERT INTO rungate.workspace_members VALUES (1, 101, 'operator')$$);
SELECT 'actor disabled' AS revocation, *
  FROM pg_temp.reauth(101,
    $$UPDATE rungate.actors SET status = 'disabled' WHERE id = 101$$,
    $$UPDATE rungate.actors SET status = 'active' WHERE id = 101$$);
SELECT 'tenant moved to workspace 2' AS revocation, *
  FROM pg_temp.reauth(101,
    $$UPDATE rungate.tenants SET workspace_id = 2 WHERE id = 10$$,
    $$UPDATE rungate.tenants SET workspace_id = 1 WHERE id = 10$$);
SELECT 'tenant ' || s AS revocation, r.*
  FROM unnest(ARRAY['onboarding', 'suspended', 'disconnected', 'archived']) AS s,
       LATERAL pg_temp.reauth(101,
         format('UPDATE rungate.tenants SET status = %L WHERE id = 10', s),
         $$UPDATE rungate.tenants SET status = 'active' WHERE id = 10$$) AS r
 ORDER BY s;
SELECT 'workspace ' || s AS revocation, r.*
  FROM unnest(ARRAY['suspended', 'archived']) AS s,
       LATERAL pg_temp.reauth(101,
         format('UPDATE rungate.workspaces SET status = %L WHERE id = 1', s),
         $$UPDATE rungate.workspaces SET status = 'active' WHERE id = 1$$) AS r
 ORDER BY s;
SELECT 'prerequisite marked unsatisfied' AS revocation, *
  FROM pg_temp.reauth(101,
    $$UPDATE rungate.tenant_prerequisites SET satisfied = false WHERE tenant_id = 10 AND name = 'provider_connection'$$,
    $$UPDATE rungate.tenant_prerequisites SET satisfied = true WHERE tenant_id = 10 AND name = 'provider_connection'$$);
SELECT 'prerequisite deleted' AS revocation, *
  FROM pg_temp.reauth(101,
    $$DELETE FROM rungate.tenant_prerequisites WHERE tenant_id = 10 AND name = 'provider_connection'$$,
    $$INSERT INTO rungate.tenant_prerequisites VALUES (10, 'provider_connection', true)$$);
-- Several revocations at once: the first failing check in #decision order is
-- the reason; every failure is in the checks.
SELECT 'actor disabled + tenant suspended + prerequisite lost' AS revocation, *
  FROM pg_temp.reauth(101,
    $$UPDATE rungate.actors SET status = 'disabled' WHERE id = 101;
      UPDATE rungate.tenants SET status = 'suspended' WHERE id = 10;
      UPDATE rungate.tenant_prerequisites SET satisfied = false WHERE tenant_id = 10 AND name = 'provider_connection'$$,
    $$UPDATE rungate.actors SET status = 'active' WHERE id = 101;
      UPDATE rungate.tenants SET status = 'active' WHERE id = 10;
      UPDATE rungate.tenant_prerequisites SET satisfied = true WHERE tenant_id = 10 AND name = 'provider_connection'$$);

------------------------------------------------------------------------------
-- 3. The decision is about the state at claim, nothing else:
--    a tenant run needs the tenant role's capability, so downgrading the
--    workspace role alone does not block it; authority revoked and given
--    back before the claim lets the run start.
------------------------------------------------------------------------------
SELECT 'workspace role downgraded (tenant run)' AS change, *
  FROM pg_temp.reauth(101,
    $$UPDATE rungate.workspace_members SET role = 'readonly' WHERE workspace_id = 1 AND actor_id = 101$$,
    $$UPDATE rungate.workspace_members SET role = 'operator' WHERE workspace_id = 1 AND actor_id = 101$$);
SELECT 'membership revoked then restored' AS change, *
  FROM pg_temp.reauth(101,
    $$DELETE FROM rungate.tenant_members WHERE tenant_id = 10 AND actor_id = 101;
      INSERT INTO rungate.tenant_members VALUES (10, 101, 'operator')$$,
    NULL);
-- A revocation that rolls back never happened.
BEGIN;
SELECT id AS run2 FROM rungate.enqueue('provider.connection.verify', 1, 10, 101) \gset
COMMIT;
BEGIN;
DELETE FROM rungate.tenant_members WHERE tenant_id = 10 AND actor_id = 101;
ROLLBACK;
SELECT run_id = :run2 AS same_run, attempt FROM rungate.claim('provider-worker');

------------------------------------------------------------------------------
-- 4. System authority (no initiator): the actor checks do not apply, the
--    tenant, operability and prerequisite checks do (#decision); and a type
--    that stops allowing system runs blocks the queued ones.
------------------------------------------------------------------------------
SELECT 'system: no revocation (control)' AS revocation, *
  FROM pg_temp.reauth(NULL, NULL, NULL);
SELECT 'system: actor-side revocations do not apply' AS revocation, *
  FROM pg_temp.reauth(NULL,
    $$DELETE FROM rungate.role_capabilities WHERE role = 'operator' AND capability = 'provider.manage'$$,
    $$INSERT INTO rungate.role_capabilities VALUES ('operator', 'provider.manage')$$);
SELECT 'system: allow_system turned off' AS revocation, *
  FROM pg_temp.reauth(NULL,
    $$UPDATE rungate.operation_types SET allow_system = false WHERE name = 'provider.connection.verify'$$,
    $$UPDATE rungate.operation_types SET allow_system = true WHERE name = 'provider.connection.verify'$$);
SELECT 'system: tenant moved to workspace 2' AS revocation, *
  FROM pg_temp.reauth(NULL,
    $$UPDATE rungate.tenants SET workspace_id = 2 WHERE id = 10$$,
    $$UPDATE rungate.tenants SET workspace_id = 1 WHERE id = 10$$);
SELECT 'system: workspace suspended' AS revocation, *
  FROM pg_temp.reauth(NULL,
    $$UPDATE rungate.workspaces SET status = 'suspended' WHERE id = 1$$,
    $$UPDATE rungate.workspaces SET status = 'active' WHERE id = 1$$);
SELECT 'system: tenant disconnected' AS revocation, *
  FROM pg_temp.reauth(NULL,
    $$UPDATE rungate.tenants SET status = 'disconnected' WHERE id = 10$$,
    $$UPDATE rungate.tenants SET status = 'active' WHERE id = 10$$);
SELECT 'system: prerequisite marked unsatisfied' AS revocation, *
  FROM pg_temp.reauth(NULL,
    $$UPDATE rungate.tenant_prerequisites SET satisfied = false WHERE tenant_id = 10 AND name = 'provider_connection'$$,
    $$UPDATE rungate.tenant_prerequisites SET satisfied = true WHERE tenant_id = 10 AND name = 'provider_connection'$$);
-- The system-authority rows of the audit log say so.
SELECT a.event, a.authority, a.actor_id IS NULL AS no_actor, count(*)
  FROM rungate.audit_log a JOIN rungate.runs r ON r.id = a.run_id
 WHERE r.initiator_id IS NULL
 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;

------------------------------------------------------------------------------
-- 5. Dispatch-time blocking still works (#dispatch): a denied dispatch is
--    recorded blocked and returned, no exception; no claim starts it.
------------------------------------------------------------------------------
SELECT count(*) AS queued_before FROM rungate.runs WHERE status = 'queued';
CREATE TEMP TABLE dispatch_denied AS
SELECT x.label, r.*
  FROM (VALUES ('rita: readonly role', 10::bigint, 102::bigint),
               ('gus: outside workspace 1', 10, 103),
               ('dora: disabled', 10, 104),
               ('olivia: tenant 12 onboarding', 12, 100)) AS x(label, tenant, actor),
       LATERAL rungate.enqueue('provider.connection.verify', 1, x.tenant, x.actor) AS r;
SELECT label, status, reason_code, reason_category, reason_message, attempt,
       started_at IS NULL AS never_started, lease_expires_at IS NULL AS no_lease,
       finished_at IS NOT NULL AS finished
  FROM dispatch_denied ORDER BY id;
-- One audit row each: dispatch_blocked, decision deny, the same reason.
SELECT d.label, a.event, a.decision, a.reason_code, a.attempt, a.worker
  FROM dispatch_denied d JOIN rungate.audit_log a ON a.run_id = d.id
 ORDER BY a.id;
-- A worker finds nothing to do: the blocked runs are terminal.
SELECT count(*) AS claimed FROM rungate.claim('provider-worker', NULL, 10);
-- Restoring authority afterwards does not revive a blocked run.
UPDATE rungate.tenants SET status = 'active' WHERE id = 12;
SELECT count(*) AS claimed FROM rungate.claim('provider-worker', NULL, 10);
SELECT d.label, r.status FROM dispatch_denied d JOIN rungate.runs r USING (id)
 ORDER BY id;
UPDATE rungate.tenants SET status = 'onboarding' WHERE id = 12;

------------------------------------------------------------------------------
-- 6. Malformed enqueues raise RG400 and create nothing (#dispatch, #errors):
--    no run, no audit row, no notification.
------------------------------------------------------------------------------
SELECT (SELECT count(*) FROM rungate.runs) AS runs_before,
       (SELECT count(*) FROM rungate.audit_log) AS audit_before,
       (SELECT count(*) FROM rungate.notifications) AS notes_before \gset
SELECT label, pg_temp.try(stmt) AS result
  FROM (VALUES
    (1, 'unknown operation',         $$SELECT rungate.enqueue('provider.connection.wipe', 1, 10, 101)$$),
    (2, 'bulk type via enqueue',     $$SELECT rungate.enqueue('bulk.inventory.sync', 1, NULL, 100)$$),
    (3, 'tenant missing',            $$SELECT rungate.enqueue('provider.connection.verify', 1, NULL, 101)$$),
    (4, 'tenant superfluous',        $$SELECT rungate.enqueue('reports.export', 1, 10, 100)$$),
    (5, 'tenant of workspace 2',     $$SELECT rungate.enqueue('provider.connection.verify', 1, 20, 101)$$),
    (6, 'unknown workspace',         $$SELECT rungate.enqueue('provider.connection.verify', 99, 10, 101)$$),
    (7, 'unknown tenant',            $$SELECT rungate.enqueue('provider.connection.verify', 1, 99, 101)$$),
    (8, 'unknown actor',             $$SELECT rungate.enqueue('provider.connection.verify', 1, 10, 999)$$),
    (9, 'null operation',            $$SELECT rungate.enqueue(NULL, 1, 10, 101)$$),
    (10, 'null workspace',           $$SELECT rungate.enqueue('provider.connection.verify', NULL, 10, 101)$$),
    (11, 'infinite run_at',          $$SELECT rungate.enqueue('provider.connection.verify', 1, 10, 101, '{}', 'infinity')$$)
  ) AS t(k, label, stmt)
 ORDER BY k;
SELECT (SELECT count(*) FROM rungate.runs) - :runs_before AS runs_created,
       (SELECT count(*) FROM rungate.audit_log) - :audit_before AS audit_rows_written,
       (SELECT count(*) FROM rungate.notifications) - :notes_before AS notifications_written;
