-- run_control: stopping, handing back and re-running runs.
--   * cancel of a running run: cancelled at once (audit 'cancelled' naming
--     the canceller, notification run_cancelled, LISTEN rungate_cancelled),
--     the lease void: heartbeat, recheck, complete, fail and release raise
--     RG409, and a guarded write for the run raises RG409
--   * heartbeat decides again: allowed, the lease is extended; denied, the
--     run is blocked (recheck_blocked, lease void) and null is returned
--   * release: back to queued (audit 'released'), attempt kept, max_attempts
--     one higher, due at run_at; the next claim decides afresh
--   * rerun: a new run of a failed, blocked or cancelled run, decided at
--     dispatch on the asking actor's authority, rerun_of set; refusals
--   * claim_block_limit: one claim blocks at most that many runs, then
--     returns and notifies rungate_queued; a bad value is 22023
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS rungate CASCADE;
DROP TABLE IF EXISTS rc_effects;
CREATE EXTENSION rungate;
\set ECHO none
\i test/fixtures/seed.sql
\i test/fixtures/try.sql
\set ECHO all

\setenv PGDATABASE :DBNAME
\setenv PGHOST :HOST
\setenv PGPORT :PORT
\setenv PGUSER :USER
CREATE TABLE rc_effects (run_id bigint NOT NULL, note text);
SELECT rungate.guard_writes('rc_effects', 'run_id');

------------------------------------------------------------------------------
-- 1. cancel of a running run
------------------------------------------------------------------------------
SELECT id AS r1 FROM rungate.enqueue('inventory.sync', 1, 10, 100) \gset
SELECT run_id, lease_token AS t1 FROM rungate.claim('w1') \gset
INSERT INTO rc_effects VALUES (:r1, 'before the cancel');
-- (a listening session of its own: its notifications print with the PID masked)
\setenv R1 :r1
\! psql -X -q -c 'LISTEN rungate_cancelled' -c "SELECT id, status, lease_token IS NULL AS lease_void, lease_expires_at IS NULL AS no_expiry, finished_at IS NOT NULL AS finished FROM rungate.cancel($R1, 101)" 2>&1 | sed -E 's/PID [0-9]+/PID N/'
SELECT event, actor_id, worker, decision FROM rungate.audit_log WHERE run_id = :r1 ORDER BY id;
SELECT actor_id, kind FROM rungate.notifications WHERE run_id = :r1;
SELECT pg_temp.try(format('SELECT rungate.heartbeat(%s, %L)', :r1, :'t1')) AS heartbeat,
       pg_temp.try(format('SELECT rungate.recheck(%s, %L)', :r1, :'t1')) AS recheck;
SELECT pg_temp.try(format('SELECT rungate.complete(%s, %L)', :r1, :'t1')) AS complete;
SELECT pg_temp.try(format('SELECT rungate.fail(%s, %L, %L)', :r1, :'t1', 'x')) AS fail;
SELECT pg_temp.try(format('SELECT rungate.release(%s, %L)', :r1, :'t1')) AS release;
SELECT pg_temp.try(format('INSERT INTO rc_effects VALUES (%s, %L)', :r1, 'after')) AS fenced;
SELECT pg_temp.try(format('SELECT rungate.cancel(%s)', :r1)) AS cancel_again;
-- by hand, running -> cancelled stays refused
SELECT id AS r2 FROM rungate.enqueue('inventory.sync', 1, 10, 100) \gset
SELECT count(*) FROM rungate.claim('w1');
SELECT pg_temp.try(format('UPDATE rungate.runs SET status = %L WHERE id = %s', 'cancelled', :r2)) AS by_hand;

------------------------------------------------------------------------------
-- 2. heartbeat decides again
------------------------------------------------------------------------------
SELECT lease_token AS t2 FROM rungate.runs WHERE id = :r2 \gset
SELECT rungate.heartbeat(:r2, :'t2') > now() AS extended;
-- the actor loses the tenant membership: the next heartbeat blocks the run
DELETE FROM rungate.tenant_members WHERE tenant_id = 10 AND actor_id = 100;
\setenv R2 :r2
\setenv T2 :t2
\! psql -X -q -c 'LISTEN rungate_blocked' -c "SELECT rungate.heartbeat($R2, '$T2') IS NULL AS heartbeat_null" 2>&1 | sed -E 's/PID [0-9]+/PID N/'
SELECT status, reason_code, reason_category, lease_token IS NULL AS lease_void
  FROM rungate.runs WHERE id = :r2;
SELECT event, decision, reason_code, worker FROM rungate.audit_log WHERE run_id = :r2 ORDER BY id;
SELECT kind FROM rungate.notifications WHERE run_id = :r2;
SELECT pg_temp.try(format('SELECT rungate.heartbeat(%s, %L)', :r2, :'t2')) AS heartbeat_again;
INSERT INTO rungate.tenant_members (tenant_id, actor_id, role) VALUES (10, 100, 'owner');

------------------------------------------------------------------------------
-- 3. release: no attempt spent
------------------------------------------------------------------------------
SELECT id AS r3 FROM rungate.enqueue('restore.execute', 1, 10, 100) \gset
SELECT max_attempts FROM rungate.runs WHERE id = :r3;
SELECT lease_token AS t3, attempt FROM rungate.claim('w1') \gset
SELECT id, status, attempt, max_attempts, lease_token IS NULL AS lease_void, worker,
       run_at > now() + interval '50 minutes' AS due_later
  FROM rungate.release(:r3, :'t3', now() + interval '1 hour');
SELECT event, attempt, worker, decision FROM rungate.audit_log WHERE run_id = :r3 ORDER BY id;
SELECT count(*) AS not_due FROM rungate.claim('w1');
-- the owner makes it due now; the next claim starts attempt 2 of 2
UPDATE rungate.runs SET run_at = now() WHERE id = :r3;
SELECT run_id = :r3 AS same_run, attempt, lease_token AS t3b FROM rungate.claim('w1') \gset
SELECT :'same_run' AS same_run, :attempt AS attempt;
SELECT pg_temp.try(format('SELECT rungate.release(%s, %L)', :r3, :'t3')) AS stale_token;
-- released without run_at: due now, and a waiting worker hears of it
\setenv R3 :r3
\setenv T3 :t3b
\! psql -X -q -c 'LISTEN rungate_queued' -c "SELECT status, attempt, max_attempts, run_at <= now() AS due FROM rungate.release($R3, '$T3')" 2>&1 | sed -E 's/PID [0-9]+/PID N/'
SELECT count(*) FROM rungate.notifications WHERE run_id = :r3;

------------------------------------------------------------------------------
-- 4. rerun
------------------------------------------------------------------------------
-- a cancelled run, rerun by oscar: a new queued run naming it
SELECT id AS rr1, status, operation, tenant_id, initiator_id, rerun_of = :r1 AS names_original,
       parent_id, attempt
  FROM rungate.rerun(:r1, 101) \gset
SELECT :'status' AS status, :'names_original' AS names_original, :initiator_id AS initiator;
SELECT status FROM rungate.runs WHERE id = :r1;
SELECT event, actor_id, decision FROM rungate.audit_log WHERE run_id = :rr1 ORDER BY id;
-- a blocked run rerun on the authority of rita (no capability): inserted blocked
SELECT status, reason_code, rerun_of = :r2 AS names_original FROM rungate.rerun(:r2, 102);
-- on system authority (inventory.sync allows it): queued
SELECT status, reason_code, initiator_id FROM rungate.rerun(:r2);
-- payload and priority are carried over
SELECT id AS r4 FROM rungate.enqueue('provider.connection.verify', 1, 10, 100,
                                     '{"k": 4}', priority => 7) \gset
SELECT lease_token AS t4 FROM rungate.claim('w1') \gset
SELECT status FROM rungate.fail(:r4, :'t4', 'provider down');
SELECT payload, priority, status, rerun_of = :r4 AS names_original FROM rungate.rerun(:r4, 100);
-- refusals: unknown run, succeeded, queued, running, bulk parent, unknown actor
SELECT pg_temp.try('SELECT rungate.rerun(987654)') AS unknown;
SELECT pg_temp.try(format('SELECT rungate.rerun(%s)', :rr1)) AS queued;
SELECT id AS b1 FROM rungate.enqueue_bulk('bulk.inventory.sync', 1, '{10}', 100) \gset
SELECT status FROM rungate.cancel(:b1, 100);
SELECT pg_temp.try(format('SELECT rungate.rerun(%s)', :b1)) AS bulk_parent;
SELECT pg_temp.try(format('SELECT rungate.rerun(%s, 999999)', :r4)) AS unknown_actor;
SELECT lease_token AS t5, run_id AS r5 FROM rungate.claim('w1') \gset
SELECT pg_temp.try(format('SELECT rungate.rerun(%s)', :r5)) AS running;
SELECT status FROM rungate.complete(:r5, :'t5');
SELECT pg_temp.try(format('SELECT rungate.rerun(%s)', :r5)) AS succeeded;
-- rerun_of is rungate's to write
SELECT pg_temp.try(format('UPDATE rungate.runs SET rerun_of = NULL WHERE id = %s',
                          (SELECT min(id) FROM rungate.runs WHERE status = 'queued'))) AS by_hand;

------------------------------------------------------------------------------
-- 5. claim_block_limit
------------------------------------------------------------------------------
SHOW rungate.claim_block_limit;
SELECT pg_temp.try('SET rungate.claim_block_limit = 0') AS zero;
SELECT pg_temp.try('SET rungate.claim_block_limit = -5') AS negative;
-- drain what is queued, then 5 runs of workspace 2 before a legitimate one
-- of workspace 1; workspace 2 is then suspended
SELECT count(*) AS drained FROM rungate.claim('w1', NULL, 100);
SELECT count(*) FROM (SELECT rungate.enqueue('inventory.sync', 2, 20, 103)
                        FROM generate_series(1, 5)) s;
SELECT id AS legit FROM rungate.enqueue('inventory.sync', 1, 10, 100, priority => -1) \gset
UPDATE rungate.workspaces SET status = 'suspended' WHERE id = 2;
\! psql -X -q -c 'SET rungate.claim_block_limit = 2' -c 'LISTEN rungate_queued' -c "SELECT count(*) AS started FROM rungate.claim('w1')" 2>&1 | sed -E 's/PID [0-9]+/PID N/'
SELECT status, count(*) FROM rungate.runs WHERE workspace_id = 2 GROUP BY status ORDER BY status;
SET rungate.claim_block_limit = 2;
SELECT count(*) AS started FROM rungate.claim('w1');
SELECT status, count(*) FROM rungate.runs WHERE workspace_id = 2 GROUP BY status ORDER BY status;
-- the last blocked run, then the legitimate one in the same call
SELECT run_id = :legit AS legit_started FROM rungate.claim('w1');
SELECT status, count(*) FROM rungate.runs WHERE workspace_id = 2 GROUP BY status ORDER BY status;
SELECT event, count(*) FROM rungate.audit_log WHERE workspace_id = 2 GROUP BY event ORDER BY event;
RESET rungate.claim_block_limit;
UPDATE rungate.workspaces SET status = 'active' WHERE id = 2;
