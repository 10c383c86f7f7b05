-- monitoring_blocked_not_failed: a run denied at claim (or at recheck, or
-- at dispatch) is presented as blocked, with the reason and the audited
-- decision, in the list and in the detail; a failed run shows its error.
-- Nothing presents blocked as failed (docs/guarantees.md#blocked-not-failed,
-- #blocked, #monitoring, #audit).
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS rungate CASCADE;
CREATE EXTENSION rungate;
\set ECHO none
\i test/fixtures/seed.sql
\set ECHO all

-- 1: a restore by olivia on tenant 10, 2 and 3: inventory syncs by oscar.
SELECT id, status FROM rungate.enqueue('restore.execute', 1, 10, 100, '{"snapshot": "s-1"}');
SELECT id, status FROM rungate.enqueue('inventory.sync', 1, 10, 101);
SELECT id, status FROM rungate.enqueue('inventory.sync', 1, 10, 101);

-- Revocation after dispatch: olivia is now only operator on tenant 10
-- (operator grants operations.view, not restore.execute).
UPDATE rungate.tenant_members SET role = 'operator' WHERE tenant_id = 10 AND actor_id = 100;

-- The claim blocks the restore and hands out nothing for it.
SELECT count(*) AS handed_out FROM rungate.claim('w-1', '{restore.execute}');

-- Run 2 starts and fails for good.
SELECT run_id AS r2, lease_token AS t2 FROM rungate.claim('w-1', '{inventory.sync}') \gset
SELECT id, status, error FROM rungate.fail(:r2, :'t2', 'provider timed out');

-- Run 3 starts; its tenant loses the provider connection before the side
-- effects; the worker's recheck blocks it.
SELECT run_id AS r3, lease_token AS t3 FROM rungate.claim('w-1', '{inventory.sync}') \gset
SELECT :r2 AS r2, :r3 AS r3;
UPDATE rungate.tenant_prerequisites SET satisfied = false
 WHERE tenant_id = 10 AND name = 'provider_connection';
SELECT allowed, reason_code, reason_category FROM rungate.recheck(:r3, :'t3');

-- 4: rita (readonly) dispatches a sync: blocked at dispatch.
SELECT id, status, reason_code FROM rungate.enqueue('inventory.sync', 1, 10, 102);

-- ---------------------------------------------------------------------
-- The list: status and reason as stored
-- ---------------------------------------------------------------------
SELECT run_id, operation, status, reason_code, reason_category, reason_message,
       error, attempt, started_at IS NOT NULL AS started,
       finished_at IS NOT NULL AS finished
  FROM rungate.operations(100, 1);
-- the blocked runs are not among the failed ones, and the reverse
SELECT run_id, status FROM rungate.operations(100, 1, 'failed');
SELECT run_id, status, reason_code FROM rungate.operations(100, 1, 'blocked');
-- oscar, who dispatched 2 and 3, sees the same
SELECT run_id, status, reason_code, error FROM rungate.operations(101, 1, tenant_id => 10);

-- ---------------------------------------------------------------------
-- The detail of the run blocked at claim
-- ---------------------------------------------------------------------
SELECT d.run_id, d.operation, d.authority, d.initiator_id, d.status,
       d.reason_code, d.reason_category, d.reason_message, d.error,
       d.attempt, d.started_at IS NULL AS never_started,
       d.finished_at IS NOT NULL AS finished, d.payload, d.result, d.items
  FROM rungate.operation(100, 1) d;
-- its audit trail: the allowed dispatch, then the denial at execution
SELECT e.n, e.a->>'event' AS event, e.a->>'decision' AS decision,
       e.a->>'reason_code' AS reason_code, e.a->>'reason_category' AS category,
       e.a->>'attempt' AS attempt, e.a->>'authority' AS authority,
       e.a->>'actor_id' AS actor_id
  FROM rungate.operation(100, 1) d,
       LATERAL jsonb_array_elements(d.audit) WITH ORDINALITY AS e(a, n)
 ORDER BY e.n;
-- the denial's checks: which check failed, in the decision's order
SELECT c.i, c.c->>'code' AS code, c.c->>'passed' AS passed
  FROM rungate.operation(100, 1) d,
       LATERAL jsonb_array_elements(d.audit->1->'checks') WITH ORDINALITY AS c(c, i)
 ORDER BY c.i;
-- and no audit row ever says it started or failed
SELECT count(*) FILTER (WHERE a->>'event' IN ('started', 'failed')) AS started_or_failed
  FROM rungate.operation(100, 1) d, LATERAL jsonb_array_elements(d.audit) a;

-- ---------------------------------------------------------------------
-- The failed run: an error, no reason
-- ---------------------------------------------------------------------
SELECT d.run_id, d.status, d.reason_code, d.reason_category, d.reason_message,
       d.error, d.attempt, d.started_at IS NOT NULL AS started,
       d.finished_at IS NOT NULL AS finished
  FROM rungate.operation(101, :r2) d;
SELECT e.n, e.a->>'event' AS event, e.a->>'decision' AS decision,
       e.a->>'reason_code' AS reason_code, e.a->>'attempt' AS attempt,
       e.a->>'worker' AS worker
  FROM rungate.operation(101, :r2) d,
       LATERAL jsonb_array_elements(d.audit) WITH ORDINALITY AS e(a, n)
 ORDER BY e.n;

-- ---------------------------------------------------------------------
-- The run blocked mid-run by its recheck: it had started, it is blocked
-- ---------------------------------------------------------------------
SELECT d.run_id, d.status, d.reason_code, d.reason_category, d.reason_message,
       d.error, d.attempt, d.started_at IS NOT NULL AS started,
       d.finished_at IS NOT NULL AS finished
  FROM rungate.operation(101, :r3) d;
SELECT e.n, e.a->>'event' AS event, e.a->>'decision' AS decision,
       e.a->>'reason_code' AS reason_code, e.a->>'reason_category' AS category,
       e.a->>'attempt' AS attempt
  FROM rungate.operation(101, :r3) d,
       LATERAL jsonb_array_elements(d.audit) WITH ORDINALITY AS e(a, n)
 ORDER BY e.n;
SELECT c.i, c.c->>'code' AS code, c.c->>'passed' AS passed
  FROM rungate.operation(101, :r3) d,
       LATERAL jsonb_array_elements(d.audit->-1->'checks') WITH ORDINALITY AS c(c, i)
 ORDER BY c.i;

-- ---------------------------------------------------------------------
-- The run blocked at dispatch: every failing check is in the audit
-- ---------------------------------------------------------------------
SELECT d.run_id, d.status, d.reason_code, d.reason_category, d.reason_message,
       d.attempt, d.started_at IS NULL AS never_started
  FROM rungate.operation(100, 4) d;
SELECT e.a->>'event' AS event, e.a->>'decision' AS decision,
       e.a->>'reason_code' AS reason_code,
       (SELECT string_agg(c->>'code', ', ' ORDER BY i)
          FROM jsonb_array_elements(e.a->'checks') WITH ORDINALITY AS x(c, i)
         WHERE NOT (c->>'passed')::boolean) AS failed_checks
  FROM rungate.operation(100, 4) d,
       LATERAL jsonb_array_elements(d.audit) AS e(a);

-- Across every run: a blocked run always has a reason and never an error,
-- a failed run always an error and never a reason.
SELECT status, count(*) AS runs,
       bool_and(reason_code IS NOT NULL) AS reason_always,
       bool_and(reason_code IS NULL) AS reason_never,
       bool_and(error IS NOT NULL) AS error_always,
       bool_and(error IS NULL) AS error_never
  FROM rungate.operations(100, 1)
 GROUP BY status ORDER BY status;
