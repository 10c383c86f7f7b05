-- worker_protocol: the SQL surface a worker and a dispatcher use
-- (docs/reference.md#worker; docs/guarantees.md#notifications, #retention,
-- #idempotency, #errors, #leases).
--   * claim returns rungate.claimed; max_runs takes several; the operations
--     filter limits the types
--   * heartbeat extends the lease and returns the new expiry; stale or wrong
--     tokens are RG409 and change nothing; a nonexistent run is RG404
--   * complete stores the result
--   * idempotency_key: the same live run is returned; a new one once it
--     finished
--   * cancel: queued and running runs become cancelled (audit, notification;
--     the running one's worker then loses its lease); a finished run is RG409
--   * bad arguments are RG400
--   * LISTEN rungate_queued / rungate_blocked: the signals and the json
--     payload of rungate_blocked (run_id, workspace_id, tenant_id,
--     reason_code)
--   * purge(finished_before) removes terminal runs with their audit rows and
--     notifications, never a queued or running run, and returns the count
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS rungate CASCADE;
CREATE EXTENSION rungate;
\set ECHO none
\i test/fixtures/seed.sql
\i test/fixtures/try.sql
\set ECHO all
-- pg_temp.try(stmt) (test/fixtures/try.sql): 'ok', or 'SQLSTATE: message'.

------------------------------------------------------------------------------
-- 1. claim returns rungate.claimed (docs/reference.md#claim): the columns,
--    and their values for a claimed run (the lease is the type's, 5 minutes
--    for inventory.sync).
------------------------------------------------------------------------------
SELECT attnum, attname, format_type(atttypid, atttypmod) AS type
  FROM pg_attribute
 WHERE attrelid = 'rungate.claimed'::regclass AND attnum > 0 AND NOT attisdropped
 ORDER BY attnum;
SELECT id AS r1 FROM rungate.enqueue('inventory.sync', 1, 10, 100, '{"scope": "full"}') \gset
SELECT run_id = :r1 AS same_run, lease_token IS NOT NULL AS has_token, attempt,
       operation, workspace_id, tenant_id, initiator_id, payload,
       lease_expires_at = now() + interval '5 minutes' AS lease_is_5_minutes
  FROM rungate.claim('worker-a');
-- The run holds the lease the worker got.
SELECT status, worker, lease_expires_at > now() AS leased, started_at IS NOT NULL AS started
  FROM rungate.runs WHERE id = :r1;
-- Nothing else is due.
SELECT count(*) AS claimed FROM rungate.claim('worker-a');

------------------------------------------------------------------------------
-- 2. max_runs takes several (oldest first at equal priority); the
--    operations filter limits the types a worker takes.
------------------------------------------------------------------------------
SELECT id AS m1 FROM rungate.enqueue('inventory.sync', 1, 10, 100, '{"n": 1}') \gset
SELECT id AS m2 FROM rungate.enqueue('provider.connection.verify', 1, 10, 100, '{"n": 2}') \gset
SELECT id AS m3 FROM rungate.enqueue('inventory.sync', 1, 11, 100, '{"n": 3}') \gset
SELECT id AS m4 FROM rungate.enqueue('reports.export', 1, NULL, 100, '{"n": 4}') \gset
-- A provider-only worker takes only the verification.
SELECT payload->>'n' AS n, operation
  FROM rungate.claim('worker-p', ARRAY['provider.connection.verify'], 10) ORDER BY run_id;
-- max_runs = 2 takes two of the three left, the oldest.
SELECT payload->>'n' AS n, operation, tenant_id
  FROM rungate.claim('worker-b', NULL, 2) ORDER BY run_id;
SELECT payload->>'n' AS n, operation
  FROM rungate.claim('worker-b', NULL, 2) ORDER BY run_id;
SELECT count(*) AS claimed FROM rungate.claim('worker-b', NULL, 2);
SELECT payload->>'n' AS n, status, worker FROM rungate.runs
 WHERE id IN (:m1, :m2, :m3, :m4) ORDER BY id;

------------------------------------------------------------------------------
-- 3. heartbeat extends the lease and returns the new expiry; a stale or
--    wrong token is RG409 and changes nothing; a missing run is RG404.
------------------------------------------------------------------------------
SELECT id AS h FROM rungate.enqueue('inventory.sync', 1, 10, 100) \gset
SELECT lease_token AS htok FROM rungate.claim('worker-h') \gset
-- Let the lease run down to a minute (an owner's edit, not a status change).
UPDATE rungate.runs SET lease_expires_at = now() + interval '1 minute' WHERE id = :h;
SELECT rungate.heartbeat(:h, :'htok') = now() + interval '5 minutes' AS returns_now_plus_lease;
SELECT lease_expires_at > now() + interval '4 minutes' AS lease_extended, status
  FROM rungate.runs WHERE id = :h;
-- Wrong tokens are refused and leave the lease as it was.
UPDATE rungate.runs SET lease_expires_at = now() + interval '1 minute' WHERE id = :h;
SELECT pg_temp.try(format('SELECT rungate.heartbeat(%s, %L)', :h, gen_random_uuid())) AS random_token,
       pg_temp.try(format('SELECT rungate.heartbeat(%s, %L)', :h, '00000000-0000-0000-0000-000000000000')) AS zero_token,
       pg_temp.try(format('SELECT rungate.heartbeat(%s, %L)', 424242, :'htok')) AS missing_run;
SELECT lease_expires_at < now() + interval '2 minutes' AS lease_unchanged, status
  FROM rungate.runs WHERE id = :h;
-- A heartbeat does not write an audit row.
SELECT string_agg(event, ', ' ORDER BY id) AS events FROM rungate.audit_log WHERE run_id = :h;

-- An expired lease is no longer held, even before reap_expired requeues the
-- run: heartbeat, recheck, complete and fail are RG409 and change nothing.
SELECT id AS x FROM rungate.enqueue('inventory.sync', 1, 10, 100) \gset
SELECT lease_token AS xtok FROM rungate.claim('worker-x') \gset
UPDATE rungate.runs SET lease_expires_at = now() - interval '1 second' WHERE id = :x;
SELECT pg_temp.try(format('SELECT rungate.heartbeat(%s, %L)', :x, :'xtok')) AS heartbeat_expired,
       pg_temp.try(format('SELECT rungate.recheck(%s, %L)', :x, :'xtok')) AS recheck_expired,
       pg_temp.try(format('SELECT rungate.complete(%s, %L)', :x, :'xtok')) AS complete_expired,
       pg_temp.try(format('SELECT rungate.fail(%s, %L, %L, true)', :x, :'xtok', 'late')) AS fail_expired;
SELECT status, lease_token = :'xtok' AS same_lease, lease_expires_at < now() AS still_expired
  FROM rungate.runs WHERE id = :x;
SELECT string_agg(event, ', ' ORDER BY id) AS events FROM rungate.audit_log WHERE run_id = :x;
SELECT rungate.reap_expired() >= 1 AS reaped;
SELECT status, attempt FROM rungate.runs WHERE id = :x;
SELECT status AS after_cancel FROM rungate.cancel(:x, NULL);

------------------------------------------------------------------------------
-- 4. complete stores the result; afterwards the token is dead.
------------------------------------------------------------------------------
SELECT pg_temp.try(format('SELECT rungate.complete(%s, %L)', :h, gen_random_uuid())) AS complete_wrong_token,
       pg_temp.try(format('SELECT rungate.complete(%s, %L)', 424242, :'htok')) AS complete_missing_run;
SELECT status FROM rungate.runs WHERE id = :h;
SELECT status, result, finished_at IS NOT NULL AS finished, lease_expires_at IS NULL AS lease_void
  FROM rungate.complete(:h, :'htok', '{"items": 42, "warnings": []}');
SELECT result->'items' AS stored_items FROM rungate.runs WHERE id = :h;
SELECT pg_temp.try(format('SELECT rungate.complete(%s, %L)', :h, :'htok')) AS complete_again,
       pg_temp.try(format('SELECT rungate.heartbeat(%s, %L)', :h, :'htok')) AS heartbeat_after_end;
-- complete without a result leaves result null.
SELECT id AS c2 FROM rungate.enqueue('inventory.sync', 1, 10, 100) \gset
SELECT lease_token AS ctok FROM rungate.claim('worker-c') \gset
SELECT status, result IS NULL AS no_result FROM rungate.complete(:c2, :'ctok');

------------------------------------------------------------------------------
-- 5. idempotency_key (#idempotency): a live run of the same workspace and key
--    is returned instead of a new one; once it finished, a new run.
------------------------------------------------------------------------------
SELECT count(*) AS audit_rows FROM rungate.audit_log \gset
SELECT id AS k1, status FROM rungate.enqueue('inventory.sync', 1, 10, 100, '{}', NULL, 0, 'sync-eu-nightly') \gset
SELECT id = :k1 AS same_run, status
  FROM rungate.enqueue('inventory.sync', 1, 10, 100, '{"other": 1}', NULL, 0, 'sync-eu-nightly');
-- Only the first call wrote an audit row.
SELECT count(*) - :audit_rows AS audit_rows_written FROM rungate.audit_log;
-- Another workspace has its own keys.
SELECT id <> :k1 AS other_run FROM rungate.enqueue('inventory.sync', 2, 20, 103, '{}', NULL, 0, 'sync-eu-nightly');
-- While it runs, the key still names it. (Workspace 2 has had no turn yet:
-- fair turns start its run first, so the claim takes two.)
SELECT lease_token AS ktok FROM rungate.claim('worker-k', ARRAY['inventory.sync'], 2)
 WHERE run_id = :k1 \gset
SELECT id = :k1 AS same_run, status
  FROM rungate.enqueue('inventory.sync', 1, 10, 100, '{}', NULL, 0, 'sync-eu-nightly');
SELECT status FROM rungate.complete(:k1, :'ktok');
-- Finished: the key is free again.
SELECT id <> :k1 AS new_run, status
  FROM rungate.enqueue('inventory.sync', 1, 10, 100, '{}', NULL, 0, 'sync-eu-nightly');
SELECT count(*) AS runs_with_key, count(*) FILTER (WHERE status IN ('queued', 'running')) AS live
  FROM rungate.runs WHERE workspace_id = 1 AND idempotency_key = 'sync-eu-nightly';
-- A run blocked at dispatch is terminal: it does not hold its key.
SELECT id AS kb, status FROM rungate.enqueue('inventory.sync', 1, 10, 102, '{}', NULL, 0, 'rita-sync') \gset
SELECT :'status' AS first_status;
SELECT id <> :kb AS new_run, status
  FROM rungate.enqueue('inventory.sync', 1, 10, 102, '{}', NULL, 0, 'rita-sync');

------------------------------------------------------------------------------
-- 6. cancel: a queued run becomes cancelled, with its audit row and the
--    initiator's notification; a running one too (its worker loses the
--    lease, RG409); finished runs cannot be cancelled.
------------------------------------------------------------------------------
SELECT id AS q FROM rungate.enqueue('provider.connection.verify', 1, 10, 100) \gset
SELECT status, finished_at IS NOT NULL AS finished FROM rungate.cancel(:q, 101);
SELECT event, actor_id, attempt FROM rungate.audit_log WHERE run_id = :q ORDER BY id;
SELECT actor_id, kind FROM rungate.notifications WHERE run_id = :q ORDER BY id;
-- A cancelled run is never claimed.
SELECT count(*) AS claimed FROM rungate.claim('worker-x', ARRAY['provider.connection.verify']);
SELECT id AS run_r FROM rungate.enqueue('provider.connection.verify', 1, 10, 100) \gset
SELECT lease_token AS rtok FROM rungate.claim('worker-x', ARRAY['provider.connection.verify']) \gset
SELECT status AS before_cancel FROM rungate.runs WHERE id = :run_r;
SELECT pg_temp.try(format('SELECT rungate.cancel(%s, 100)', :run_r)) AS cancel_running,
       pg_temp.try(format('SELECT rungate.cancel(%s, 100)', :q)) AS cancel_cancelled,
       pg_temp.try(format('SELECT rungate.cancel(%s, 100)', :h)) AS cancel_succeeded,
       pg_temp.try('SELECT rungate.cancel(424242, 100)') AS cancel_missing;
SELECT status FROM rungate.runs WHERE id = :run_r;
SELECT pg_temp.try(format('SELECT rungate.complete(%s, %L)', :run_r, :'rtok')) AS complete_cancelled;

------------------------------------------------------------------------------
-- 7. Bad arguments are RG400 (#errors) and change nothing.
------------------------------------------------------------------------------
SELECT id AS bq FROM rungate.enqueue('inventory.sync', 1, 10, 100) \gset
SELECT label, pg_temp.try(stmt) AS result
  FROM (VALUES
    (1, 'claim: null worker',          $$SELECT rungate.claim(NULL)$$),
    (2, 'claim: empty worker',         $$SELECT rungate.claim('')$$),
    (3, 'claim: max_runs 0',           $$SELECT rungate.claim('w', NULL, 0)$$),
    (4, 'claim: max_runs -1',          $$SELECT rungate.claim('w', NULL, -1)$$),
    (5, 'claim: max_runs 100000',      $$SELECT rungate.claim('w', NULL, 100000)$$),
    (6, 'claim: max_runs null',        $$SELECT rungate.claim('w', NULL, NULL)$$),
    (7, 'claim: empty operations',     $$SELECT rungate.claim('w', '{}')$$),
    (8, 'claim: null in operations',   $$SELECT rungate.claim('w', ARRAY['inventory.sync', NULL])$$),
    (9, 'heartbeat: null run id',      $$SELECT rungate.heartbeat(NULL, gen_random_uuid())$$),
    (10, 'heartbeat: null token',      $$SELECT rungate.heartbeat(1, NULL)$$),
    (11, 'complete: null run id',      $$SELECT rungate.complete(NULL, gen_random_uuid())$$),
    (12, 'complete: null token',       $$SELECT rungate.complete(1, NULL)$$),
    (13, 'fail: null run id',          $$SELECT rungate.fail(NULL, gen_random_uuid(), 'x')$$),
    (14, 'cancel: null run id',        $$SELECT rungate.cancel(NULL, 100)$$),
    (15, 'cancel: unknown actor',      $$SELECT rungate.cancel(1, 4242)$$),
    (16, 'purge: null time',           $$SELECT rungate.purge(NULL)$$),
    (17, 'purge_batch: null time',     $$SELECT rungate.purge_batch(NULL, 10)$$),
    (18, 'purge_batch: max_runs null', $$SELECT rungate.purge_batch(now(), NULL)$$),
    (19, 'purge_batch: max_runs 0',    $$SELECT rungate.purge_batch(now(), 0)$$),
    (20, 'purge_in_batches: null time', $$CALL rungate.purge_in_batches(NULL)$$),
    (21, 'purge_in_batches: size 0',   $$CALL rungate.purge_in_batches(now(), 0)$$),
    (22, 'purge_in_batches: size null', $$CALL rungate.purge_in_batches(now(), NULL)$$)
  ) AS t(k, label, stmt)
 ORDER BY k;
SELECT status, attempt FROM rungate.runs WHERE id = :bq;
SELECT status FROM rungate.cancel(:bq);

------------------------------------------------------------------------------
-- 8. LISTEN (#notifications): rungate_queued when a run becomes due,
--    rungate_blocked with a json payload when one is blocked. A separate psql
--    session listens (its notifications are printed with the PID masked).
------------------------------------------------------------------------------
SELECT max(id) AS last_run FROM rungate.runs \gset
\setenv PGDATABASE :DBNAME
\setenv PGHOST :HOST
\setenv PGPORT :PORT
\setenv PGUSER :USER
-- Run ids below are counted from :last_run.
SELECT :last_run AS last_run_before_listening;
\! psql -X -q -v ON_ERROR_STOP=1 -c 'LISTEN rungate_queued' -c 'LISTEN rungate_blocked' -c "SELECT 'queued, due' AS step, status FROM rungate.enqueue('inventory.sync', 1, 10, 100)" -c "SELECT 'blocked at dispatch' AS step, status FROM rungate.enqueue('inventory.sync', 1, 10, 102)" -c "SELECT 'workspace run blocked at dispatch' AS step, status FROM rungate.enqueue('reports.export', 1, NULL, 102)" -c "SELECT 'queued, due in an hour' AS step, status FROM rungate.enqueue('inventory.sync', 1, 11, 100, '{}', now() + interval '1 hour')" -c "SELECT 'queued, to be revoked' AS step, status FROM rungate.enqueue('provider.connection.verify', 1, 11, 100)" -c "UPDATE rungate.tenant_prerequisites SET satisfied = false WHERE tenant_id = 11 AND name = 'provider_connection'" -c "SELECT 'claim blocks it' AS step, count(*) AS claimed FROM rungate.claim('listener', ARRAY['provider.connection.verify'])" -c "UPDATE rungate.tenant_prerequisites SET satisfied = true WHERE tenant_id = 11 AND name = 'provider_connection'" -c "BEGIN; SELECT 'rolled back' AS step, status FROM rungate.enqueue('inventory.sync', 1, 10, 102); ROLLBACK;" -c "SELECT 'after rollback' AS step" 2>&1 | sed -E 's/PID [0-9]+/PID N/'
-- The runs the listening session created, for the payloads above.
SELECT r.id - :last_run AS run_offset, r.operation, r.tenant_id, r.status, r.reason_code
  FROM rungate.runs r WHERE r.id > :last_run ORDER BY r.id;

------------------------------------------------------------------------------
-- 9. purge(finished_before) (#retention): terminal runs that finished before
--    the time go, with their audit rows and notifications; queued and running
--    runs stay, whatever their age; the count is returned.
------------------------------------------------------------------------------
-- A bulk parent whose items both end: it and its items are terminal runs.
SELECT id AS bulk FROM rungate.enqueue_bulk('bulk.inventory.sync', 1, '{10,11}', 100) \gset
SELECT count(*) AS handed_out FROM rungate.claim('worker-bulk', ARRAY['bulk.inventory.sync']);
CREATE TEMP TABLE item_leases AS
SELECT run_id, lease_token FROM rungate.claim('worker-bulk', ARRAY['inventory.sync'], 10)
 WHERE run_id IN (SELECT id FROM rungate.runs WHERE parent_id = :bulk);
SELECT count(*) AS items_completed
  FROM item_leases i, LATERAL rungate.complete(i.run_id, i.lease_token) c;
SELECT status FROM rungate.runs WHERE id = :bulk;
-- A running run: ensure one is held right now.
SELECT id AS keep_running FROM rungate.enqueue('inventory.sync', 1, 10, 100) \gset
SELECT count(*) AS claimed FROM rungate.claim('worker-keep', ARRAY['inventory.sync'], 1000);
SELECT status, count(*) FROM rungate.runs GROUP BY status ORDER BY status;
SELECT count(*) AS terminal_runs FROM rungate.runs WHERE status NOT IN ('queued', 'running') \gset
-- Nothing finished before yesterday.
SELECT rungate.purge(now() - interval '1 day') AS purged_old;
SELECT rungate.purge_batch(now() - interval '1 day', 10) AS batch_purged_old;
-- purge_batch removes at most max_runs top-level runs (each with its items),
-- the earliest finished first.
CREATE TEMP TABLE top_level_before AS
SELECT id, finished_at FROM rungate.runs
 WHERE parent_id IS NULL AND status NOT IN ('queued', 'running');
SELECT count(*) AS terminal_top_level FROM top_level_before \gset
SELECT rungate.purge_batch(now() + interval '1 day', 1) AS first_batch \gset
SELECT count(*) AS top_level_runs_removed_by_batch_of_1,
       bool_and(b.finished_at = (SELECT min(finished_at) FROM top_level_before))
         AS earliest_finished_went_first,
       :first_batch >= 1 AS batch_removed_runs
  FROM top_level_before b WHERE NOT EXISTS (SELECT 1 FROM rungate.runs r WHERE r.id = b.id);
-- purge_in_batches commits after each batch: inside a transaction block its
-- COMMIT fails, and the rollback keeps everything.
BEGIN;
CALL rungate.purge_in_batches(now() + interval '1 day', 2);
ROLLBACK;
SELECT count(*) + :first_batch = :terminal_runs AS nothing_removed_by_the_failed_call
  FROM rungate.runs WHERE status NOT IN ('queued', 'running');
-- Everything terminal finished before tomorrow: the rest, two top-level runs
-- per transaction, each batch its own (at least one new transaction id per
-- batch after this one's).
SELECT :terminal_top_level - 1 AS left_top_level, txid_current() AS x0 \gset
SELECT :left_top_level >= 3 AS at_least_two_batches_left;
CALL rungate.purge_in_batches(now() + interval '1 day', 2) \gset
SELECT txid_current() - :x0 - 1 >= ceil(:left_top_level / 2.0)
       AS one_transaction_per_batch;
SELECT :removed + :first_batch = :terminal_runs AS purged_every_terminal_run;
SELECT status, count(*) FROM rungate.runs GROUP BY status ORDER BY status;
SELECT count(*) AS orphan_audit_rows FROM rungate.audit_log a
 WHERE NOT EXISTS (SELECT 1 FROM rungate.runs r WHERE r.id = a.run_id);
SELECT count(*) AS orphan_notifications FROM rungate.notifications n
 WHERE NOT EXISTS (SELECT 1 FROM rungate.runs r WHERE r.id = n.run_id);
SELECT count(*) AS audit_rows_of_live_runs FROM rungate.audit_log a
  JOIN rungate.runs r ON r.id = a.run_id;
-- Purging again removes nothing; the live runs carry on.
SELECT rungate.purge(now() + interval '1 day') AS purged_again;
CALL rungate.purge_in_batches(now() + interval '1 day');
SELECT status FROM rungate.runs WHERE id = :keep_running;
