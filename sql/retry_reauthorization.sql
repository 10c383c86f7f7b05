-- retry_reauthorization: every attempt is decided afresh; a retry never
-- inherits the authority of an earlier attempt (docs/guarantees.md#retries,
-- #leases, #audit; fail and reap_expired in docs/reference.md).
--   * fail(retryable) with attempts left: back to queued (audit
--     retry_scheduled, attempt kept, lease void); the next claim starts
--     attempt + 1 with a new lease
--   * a revocation after the retry was scheduled: the next claim blocks it
--   * an expired lease: reap_expired() requeues the run (audit
--     lease_expired) and returns the count; the stale token is RG409; a
--     revocation then blocks the next claim; with no attempts left reap
--     makes the run failed
--   * fail non-retryable, or retryable without attempts left: failed, with
--     the error; retry_in delays run_at (not claimable until due)
-- Fixture (test/fixtures/seed.sql): inventory.sync allows 3 attempts,
-- restore.execute 1; olivia (100) holds both capabilities on tenant 10.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS rungate CASCADE;
CREATE EXTENSION rungate;
\set ECHO none
\i test/fixtures/seed.sql
\i test/fixtures/try.sql
\set ECHO all
-- pg_temp.try(stmt) (test/fixtures/try.sql): 'ok', or 'SQLSTATE: message'.

-- pg_temp.history(id): the run's audit rows as event(attempt/decision).
CREATE FUNCTION pg_temp.history(run_id bigint) RETURNS text
LANGUAGE sql AS $$
    SELECT string_agg(a.event || '(' || a.attempt || '/' || coalesce(a.decision, '-') || ')',
                      ', ' ORDER BY a.id)
      FROM rungate.audit_log a WHERE a.run_id = history.run_id
$$;

-- pg_temp.state(id): the lifecycle columns of a run.
CREATE FUNCTION pg_temp.state(run_id bigint)
RETURNS TABLE (status text, attempt int, max_attempts int, error text,
               reason_code text, leased boolean, due boolean, finished boolean)
LANGUAGE sql AS $$
    SELECT r.status, r.attempt, r.max_attempts, r.error, r.reason_code,
           r.lease_expires_at IS NOT NULL, r.run_at <= now(), r.finished_at IS NOT NULL
      FROM rungate.runs r WHERE r.id = run_id
$$;

------------------------------------------------------------------------------
-- 1. fail(retryable) with attempts left: queued again, attempt kept; the
--    next claim is attempt + 1 with a new lease token.
------------------------------------------------------------------------------
SELECT id AS r1 FROM rungate.enqueue('inventory.sync', 1, 10, 100) \gset
SELECT lease_token AS tok1, attempt FROM rungate.claim('retry-worker') \gset
SELECT :attempt AS first_attempt;
SELECT status, attempt, error, lease_expires_at IS NULL AS lease_void
  FROM rungate.fail(:r1, :'tok1', 'provider timeout', true);
SELECT * FROM pg_temp.state(:r1);
SELECT event, attempt, decision, reason_code, worker FROM rungate.audit_log
 WHERE run_id = :r1 AND event = 'retry_scheduled';
-- Not terminal: no notification.
SELECT count(*) AS notifications FROM rungate.notifications WHERE run_id = :r1;
-- The first attempt's token is dead.
SELECT pg_temp.try(format('SELECT rungate.complete(%s, %L)', :r1, :'tok1')) AS complete_old_token;
-- The retry: attempt 2, a different token, a `started` row of its own.
SELECT lease_token AS tok2, attempt FROM rungate.claim('retry-worker') \gset
SELECT :attempt AS second_attempt, :'tok1' <> :'tok2' AS new_token;
SELECT pg_temp.try(format('SELECT rungate.heartbeat(%s, %L)', :r1, :'tok1')) AS heartbeat_old_token;
SELECT status, attempt, result FROM rungate.complete(:r1, :'tok2', '{"items": 3}');
SELECT pg_temp.history(:r1);

------------------------------------------------------------------------------
-- 2. A revocation after the retry was scheduled: the next claim decides
--    afresh and blocks the run (the first attempt's allow is not reused).
------------------------------------------------------------------------------
SELECT id AS r2 FROM rungate.enqueue('inventory.sync', 1, 10, 100) \gset
SELECT lease_token AS tok FROM rungate.claim('retry-worker') \gset
SELECT status FROM rungate.fail(:r2, :'tok', 'rate limited', true);
DELETE FROM rungate.tenant_members WHERE tenant_id = 10 AND actor_id = 100;
SELECT count(*) AS claimed FROM rungate.claim('retry-worker');
SELECT * FROM pg_temp.state(:r2);
SELECT pg_temp.history(:r2);
SELECT reason_code, reason_category, worker FROM rungate.audit_log
 WHERE run_id = :r2 AND event = 'execution_blocked';
INSERT INTO rungate.tenant_members VALUES (10, 100, 'owner');
-- Blocked is terminal: restoring the membership does not bring it back.
SELECT count(*) AS claimed FROM rungate.claim('retry-worker');
SELECT status FROM rungate.runs WHERE id = :r2;

-- The same for a scheduled (system-authority) sync whose tenant is
-- suspended between its attempts.
SELECT id AS r2s FROM rungate.enqueue('inventory.sync', 1, 10, NULL) \gset
SELECT lease_token AS tok FROM rungate.claim('retry-worker') \gset
SELECT status FROM rungate.fail(:r2s, :'tok', 'provider timeout', true);
UPDATE rungate.tenants SET status = 'suspended' WHERE id = 10;
SELECT count(*) AS claimed FROM rungate.claim('retry-worker');
SELECT * FROM pg_temp.state(:r2s);
SELECT pg_temp.history(:r2s);
UPDATE rungate.tenants SET status = 'active' WHERE id = 10;

------------------------------------------------------------------------------
-- 3. An expired lease: reap_expired() requeues the run (audit
--    lease_expired), the stale worker's token is RG409, and the next claim
--    decides afresh.
------------------------------------------------------------------------------
SELECT id AS r3 FROM rungate.enqueue('inventory.sync', 1, 10, 101) \gset
SELECT lease_token AS tok3 FROM rungate.claim('stale-worker') \gset
-- Nothing has expired yet.
SELECT rungate.reap_expired() AS reaped_before_expiry;
SELECT status FROM rungate.runs WHERE id = :r3;
-- Force the expiry: editing lease_expires_at is not a status change.
UPDATE rungate.runs SET lease_expires_at = now() - interval '1 minute' WHERE id = :r3;
SELECT rungate.reap_expired() AS reaped;
SELECT * FROM pg_temp.state(:r3);
SELECT event, attempt, decision, worker FROM rungate.audit_log
 WHERE run_id = :r3 AND event = 'lease_expired';
-- The stale worker comes back: every call with its token is refused and
-- changes nothing.
SELECT pg_temp.try(format('SELECT rungate.heartbeat(%s, %L)', :r3, :'tok3')) AS stale_heartbeat,
       pg_temp.try(format('SELECT rungate.complete(%s, %L)', :r3, :'tok3')) AS stale_complete,
       pg_temp.try(format('SELECT rungate.fail(%s, %L, %L)', :r3, :'tok3', 'x')) AS stale_fail;
SELECT status, attempt FROM rungate.runs WHERE id = :r3;
-- Reaping again finds nothing.
SELECT rungate.reap_expired() AS reaped_again;
-- oscar loses the capability before the retry is claimed: blocked.
DELETE FROM rungate.role_capabilities WHERE role = 'operator' AND capability = 'inventory.sync';
SELECT count(*) AS claimed FROM rungate.claim('fresh-worker');
SELECT * FROM pg_temp.state(:r3);
SELECT pg_temp.history(:r3);
INSERT INTO rungate.role_capabilities VALUES ('operator', 'inventory.sync');

-- Reaped and re-claimed: the stale token cannot touch the new attempt.
SELECT id AS r4 FROM rungate.enqueue('inventory.sync', 1, 10, 101) \gset
SELECT lease_token AS old_tok FROM rungate.claim('stale-worker') \gset
UPDATE rungate.runs SET lease_expires_at = now() - interval '1 minute' WHERE id = :r4;
SELECT rungate.reap_expired() AS reaped;
SELECT lease_token AS new_tok, attempt FROM rungate.claim('fresh-worker') \gset
SELECT :attempt AS attempt, :'old_tok' <> :'new_tok' AS new_token;
SELECT pg_temp.try(format('SELECT rungate.complete(%s, %L)', :r4, :'old_tok')) AS stale_complete;
SELECT status, attempt, worker FROM rungate.runs WHERE id = :r4;
SELECT status FROM rungate.complete(:r4, :'new_tok');
SELECT pg_temp.history(:r4);

------------------------------------------------------------------------------
-- 4. No attempts left: reap_expired makes the run failed, with an error
--    (restore.execute allows one attempt); several expired runs are
--    counted together.
------------------------------------------------------------------------------
SELECT id AS r5 FROM rungate.enqueue('restore.execute', 1, 10, 100) \gset
SELECT id AS r6 FROM rungate.enqueue('inventory.sync', 1, 10, 100) \gset
SELECT count(*) AS claimed FROM rungate.claim('doomed-worker', NULL, 2);
UPDATE rungate.runs SET lease_expires_at = now() - interval '1 minute'
 WHERE id IN (:r5, :r6);
SELECT rungate.reap_expired() AS reaped;
SELECT id = :r5 AS is_restore, s.* FROM rungate.runs r, LATERAL pg_temp.state(r.id) s
 WHERE r.id IN (:r5, :r6) ORDER BY r.id;
SELECT pg_temp.history(:r5);
-- The initiator is told of the failure, once.
SELECT actor_id, kind FROM rungate.notifications WHERE run_id = :r5 ORDER BY id;

------------------------------------------------------------------------------
-- 5. fail without retry: failed, with the error; retryable on the last
--    attempt: failed as well.
------------------------------------------------------------------------------
SELECT lease_token AS tok6 FROM rungate.claim('retry-worker') \gset
SELECT status, attempt, error FROM rungate.fail(:r6, :'tok6', 'provider rejected the token');
SELECT pg_temp.history(:r6);

SELECT id AS r7 FROM rungate.enqueue('inventory.sync', 1, 10, 100) \gset
SELECT lease_token AS t FROM rungate.claim('retry-worker') \gset
SELECT status, attempt FROM rungate.fail(:r7, :'t', 'attempt 1 failed', true);
SELECT lease_token AS t FROM rungate.claim('retry-worker') \gset
SELECT status, attempt FROM rungate.fail(:r7, :'t', 'attempt 2 failed', true);
SELECT lease_token AS t FROM rungate.claim('retry-worker') \gset
SELECT status, attempt, error FROM rungate.fail(:r7, :'t', 'attempt 3 failed', true);
SELECT * FROM pg_temp.state(:r7);
SELECT pg_temp.history(:r7);
SELECT kind, count(*) FROM rungate.notifications WHERE run_id = :r7 GROUP BY kind ORDER BY kind;

------------------------------------------------------------------------------
-- 6. retry_in delays the retry: run_at moves, the run is not claimable
--    until due; bad fail arguments are RG400.
------------------------------------------------------------------------------
SELECT id AS r8 FROM rungate.enqueue('inventory.sync', 1, 10, 100) \gset
SELECT lease_token AS t8 FROM rungate.claim('retry-worker') \gset
SELECT pg_temp.try(format('SELECT rungate.fail(%s, %L, %L, true, %L)',
                          :r8, :'t8', 'x', '-1 minute')) AS negative_retry_in,
       pg_temp.try(format('SELECT rungate.fail(%s, %L, NULL)', :r8, :'t8')) AS null_error,
       pg_temp.try(format('SELECT rungate.fail(%s, %L, %L)', 424242, :'t8', 'x')) AS unknown_run;
SELECT status FROM rungate.runs WHERE id = :r8;
SELECT status, run_at > now() + interval '59 minutes' AS delayed_an_hour
  FROM rungate.fail(:r8, :'t8', 'throttled', true, interval '1 hour');
SELECT count(*) AS claimed_before_due FROM rungate.claim('retry-worker');
SELECT * FROM pg_temp.state(:r8);
-- Once due (the owner may move run_at of a queued run), it is claimed.
UPDATE rungate.runs SET run_at = now() - interval '1 second' WHERE id = :r8;
SELECT run_id = :r8 AS same_run, attempt FROM rungate.claim('retry-worker');
SELECT pg_temp.history(:r8);
