-- claim_delayed_runs: a claim passes the runs of a group that are not yet
-- due once, not on every call, and takes each when it becomes due (src/queue.c,
-- the group floors; docs/guarantees.md#no-run-lost).
--   * the first claim walks past 300 runs due tomorrow and one due in a
--     second, and takes the first run due now
--   * the next claim reads a few index entries, not the 300 again
--   * once the run due in a second is due, the next claim takes it
--   * a claim for some operations reads no entry of another operation's
--     runs, however many are queued before the run it takes
-- Without rungate preloaded there are no floors: every claim walks the group
-- (the same rows come back; passed_once is then true by definition).
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS rungate CASCADE;
CREATE EXTENSION rungate;
\set ECHO none
\i test/fixtures/seed.sql
\set ECHO all

SELECT count(*) FROM (SELECT rungate.enqueue('inventory.sync', 1, 10, 101,
                                             run_at => now() + interval '1 day')
                        FROM generate_series(1, 300)) e;
SELECT (rungate.enqueue('inventory.sync', 1, 10, 101,
                        run_at => clock_timestamp() + interval '1 second')).id AS soon \gset
SELECT (rungate.enqueue('inventory.sync', 1, 10, 101)).id AS now1 \gset
SELECT (rungate.enqueue('inventory.sync', 1, 10, 101)).id AS now2 \gset

SELECT run_id = :now1 AS first_claimed FROM rungate.claim('w1');

-- the index entries the next claim reads (the statistics of runs_fair_idx)
SELECT pg_stat_force_next_flush();
SELECT idx_tup_read AS before FROM pg_stat_user_indexes
 WHERE indexrelid = 'rungate.runs_fair_idx'::regclass \gset
SELECT run_id = :now2 AS second_claimed FROM rungate.claim('w1');
SELECT pg_stat_force_next_flush();
SELECT idx_tup_read - :before < 50
       OR NOT (SELECT available FROM rungate.queue_floor()) AS passed_once
  FROM pg_stat_user_indexes WHERE indexrelid = 'rungate.runs_fair_idx'::regclass;

-- nothing else is due
SELECT count(*) AS claimed_early FROM rungate.claim('w1');
SELECT pg_sleep(1.2);
SELECT run_id = :soon AS soon_claimed FROM rungate.claim('w1');
SELECT count(*) AS still_queued, min(run_at) > now() + interval '23 hours' AS all_tomorrow
  FROM rungate.runs WHERE status = 'queued';

-- 200 runs of provider.connection.verify, due now, queued before one of
-- restore.execute: a claim of restore.execute reads a few entries (this
-- transaction's statistics of runs_fair_idx), with or without floors
SELECT count(*) FROM (SELECT rungate.enqueue('provider.connection.verify', 1, 10, 101)
                        FROM generate_series(1, 200)) e;
SELECT (rungate.enqueue('restore.execute', 1, 10, 100)).id AS restore \gset
BEGIN;
SELECT pg_stat_get_xact_tuples_returned('rungate.runs_fair_idx'::regclass) AS read0 \gset
SELECT run_id = :restore AS restore_claimed FROM rungate.claim('w1', '{restore.execute}');
SELECT pg_stat_get_xact_tuples_returned('rungate.runs_fair_idx'::regclass) - :read0 < 20
       AS others_not_read;
COMMIT;
SELECT count(*) AS verify_queued FROM rungate.runs
 WHERE status = 'queued' AND operation = 'provider.connection.verify';
