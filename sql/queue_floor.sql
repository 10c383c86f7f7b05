-- queue_floor: claim scans the queue index from a shared floor, past the
-- entries of runs already claimed (src/queue.c), and never past a run it
-- could still take (docs/guarantees.md#no-run-lost; docs/reference.md#claim:
-- every due queued run, by priority then age).
--   * claims move the floor to the first run not yet taken
--   * a run written before the floor lowers it (higher priority, a retry,
--     an owner's edit of priority or run_at) and is claimed in order
--   * a run not yet due is passed and held; when due it is claimed
--   * a run locked by another transaction that rolls back is claimed later
--     (test/specs/queue-floor.spec), and so is one enqueued while a claim
--     scans
--   * with note_queued disabled the floor is not used; enabled again it
--     starts over; any change to rungate.runs forgets it; with the setting
--     rungate.queue_floor off a session's claims do not use it
-- The cluster of make test preloads rungate (test/lib.sh); the pg_cron
-- cluster does not, and its claims scan from the start.
-- Since 1.6 claims take runs in the fair order of runs_fair_idx (src/queue.c,
-- "the fair scan"); the floor serves the priority-and-age scan of schemas
-- before 1.6, which the same module still claims for: this test installs 1.5.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS rungate CASCADE;
CREATE EXTENSION rungate VERSION '1.5';
\set ECHO none
\i test/fixtures/seed.sql
\set ECHO all

SELECT available, enabled, priority, run_id, held_until FROM rungate.queue_floor();

-- ten runs of tenant 10 (oscar, operator), ids in :first .. :first + 9
SELECT (rungate.enqueue('inventory.sync', 1, 10, 101)).id AS first \gset
SELECT count(*) FROM (SELECT rungate.enqueue('inventory.sync', 1, 10, 101)
                        FROM generate_series(1, 9)) e;

-- pg_temp.f(first, expect): the floor relative to :first ('from the start'
-- when none). A claim moves the floor only past entries that no snapshot
-- can see any more, so another backend's snapshot (autovacuum's ANALYZE)
-- can hold it back for a moment: probe (a claim of an operation that
-- matches nothing still moves the floor) until it shows what is expected,
-- for up to two seconds, then say where it is.
CREATE FUNCTION pg_temp.where_floor(first bigint) RETURNS text LANGUAGE sql AS $$
    SELECT CASE WHEN NOT available THEN 'not available'
                WHEN run_id IS NULL THEN 'from the start'
                ELSE format('priority %s, first + %s', priority, run_id - first) END
           || CASE WHEN held_until IS NULL THEN '' ELSE ', holding' END
      FROM rungate.queue_floor() $$;
CREATE FUNCTION pg_temp.f(first bigint, expect text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    got text;
BEGIN
    FOR i IN 1..200 LOOP
        got := pg_temp.where_floor(first);
        EXIT WHEN got = expect OR got IN ('not available', 'from the start');
        PERFORM count(*) FROM rungate.claim('probe', ARRAY['no.such.operation']);
        PERFORM pg_sleep(0.01);
    END LOOP;
    RETURN got;
END $$;

-- 1. claims take runs in order and move the floor to the next one
SELECT run_id - :first AS claimed FROM rungate.claim('w1', NULL, 3);
SELECT pg_temp.f(:first, 'priority 0, first + 3');
SELECT run_id - :first AS claimed FROM rungate.claim('w1');
SELECT pg_temp.f(:first, 'priority 0, first + 4');

-- 2. a run of higher priority lowers the floor, and is claimed first
SELECT (rungate.enqueue('inventory.sync', 1, 10, 101, priority => 5)).id - :first AS urgent;
SELECT pg_temp.f(:first, 'priority 5, first + 10');
SELECT run_id - :first AS claimed FROM rungate.claim('w1', NULL, 2);
SELECT pg_temp.f(:first, 'priority 0, first + 5');

-- 3. a retry goes back before the floor with its old id: claimed when due
SELECT run_id AS r, lease_token AS tok FROM rungate.claim('w1') \gset
SELECT status FROM rungate.fail(:r, :'tok', 'timeout', true);
SELECT pg_temp.f(:first, 'priority 0, first + 5');
SELECT run_id - :first AS claimed FROM rungate.claim('w1');
SELECT run_id AS r, lease_token AS tok FROM rungate.claim('w1') \gset
SELECT status FROM rungate.fail(:r, :'tok', 'rate limited', true, interval '1 hour');
-- not due: passed and held; the owner makes it due, which lowers the floor
SELECT run_id - :first AS claimed FROM rungate.claim('w1');
SELECT pg_temp.f(:first, 'priority 0, first + 8, holding');
UPDATE rungate.runs SET run_at = now() - interval '1 second' WHERE id = :r;
SELECT pg_temp.f(:first, 'priority 0, first + 6, holding');
SELECT run_id = :r AS retry_claimed, attempt FROM rungate.claim('w1');

-- 4. a run not yet due is held, and claimed once its run_at has passed
SELECT (rungate.enqueue('inventory.sync', 1, 10, 101,
                        run_at => clock_timestamp() + interval '1 second')).id AS later \gset
SELECT count(*) AS claimed FROM rungate.claim('w1', NULL, 10);
SELECT pg_temp.f(:first, 'priority 0, first + 10, holding');
SELECT pg_sleep(1.2);
SELECT run_id = :later AS later_claimed FROM rungate.claim('w1');

-- 5. an owner's change of priority is a write before the floor too
SELECT (rungate.enqueue('inventory.sync', 1, 10, 101)).id AS a \gset
SELECT (rungate.enqueue('inventory.sync', 1, 10, 101)).id AS b \gset
SELECT run_id = :a AS a_claimed FROM rungate.claim('w1');
UPDATE rungate.runs SET priority = 9 WHERE id = :b;
SELECT pg_temp.f(:first, format('priority 9, first + %s', :b - :first)) LIKE 'priority 9,%' AS lowered;
SELECT run_id = :b AS b_claimed FROM rungate.claim('w1');

-- 6. in one transaction: enqueue before the floor, then claim it
BEGIN;
SELECT (rungate.enqueue('inventory.sync', 1, 10, 101, priority => 7)).id AS c \gset
SELECT run_id = :c AS own_enqueue_claimed FROM rungate.claim('w1');
COMMIT;

-- 7. an operations filter: the other runs stay queued, the floor at them
SELECT (rungate.enqueue('reports.export', 1, NULL, 100)).id AS rep \gset
SELECT (rungate.enqueue('inventory.sync', 1, 10, 101)).id AS inv \gset
SELECT run_id = :inv AS filtered_claimed FROM rungate.claim('w1', ARRAY['inventory.sync']);
SELECT pg_temp.f(:first, format('priority 0, first + %s', :rep - :first))
       = format('priority 0, first + %s', :rep - :first) AS floor_at_report;
SELECT run_id = :rep AS report_claimed FROM rungate.claim('w1');

-- 8. note_queued disabled: no floor, claims still take every due run;
--    enabled again: the floor starts over
ALTER TABLE rungate.runs DISABLE TRIGGER note_queued;
SELECT pg_temp.f(:first, 'not available');
SELECT (rungate.enqueue('inventory.sync', 1, 10, 101, priority => 3)).id AS d \gset
SELECT run_id = :d AS claimed_without_floor FROM rungate.claim('w1');
ALTER TABLE rungate.runs ENABLE TRIGGER note_queued;   -- origin only: not ALWAYS
SELECT pg_temp.f(:first, 'not available');
ALTER TABLE rungate.runs ENABLE ALWAYS TRIGGER note_queued;
SELECT pg_temp.f(:first, 'from the start');
SELECT (rungate.enqueue('inventory.sync', 1, 10, 101)).id AS e \gset
SELECT run_id = :e AS claimed FROM rungate.claim('w1');
SELECT pg_temp.f(:first, format('priority 0, first + %s', :e - :first + 1))
       = format('priority 0, first + %s', :e - :first + 1) AS past_the_last;

-- 9. a change to rungate.runs (here its options, as they were) forgets it
ALTER TABLE rungate.runs SET (fillfactor = 80);
SELECT pg_temp.f(:first, 'from the start');

-- 10. rungate.queue_floor off: this session's claims neither read nor move
--     the floor, and take the same runs
SELECT (rungate.enqueue('inventory.sync', 1, 10, 101)).id AS g \gset
SELECT run_id = :g AS claimed FROM rungate.claim('w1');
SELECT pg_temp.f(:first, format('priority 0, first + %s', :g - :first + 1))
       = format('priority 0, first + %s', :g - :first + 1) AS past_the_last;
SET rungate.queue_floor = off;
SELECT enabled FROM rungate.queue_floor();
SELECT (rungate.enqueue('inventory.sync', 1, 10, 101)).id AS h \gset
SELECT (rungate.enqueue('inventory.sync', 1, 10, 101)).id AS i \gset
SELECT run_id = :h AS claimed_with_floor_off FROM rungate.claim('w1');
SELECT pg_temp.where_floor(:first) = format('priority 0, first + %s', :h - :first)
       AS not_moved;
RESET rungate.queue_floor;
SELECT run_id = :i AS claimed FROM rungate.claim('w1');

-- nothing queued is left behind, nothing was claimed twice
SELECT count(*) AS still_queued FROM rungate.runs WHERE status = 'queued';
SELECT count(*) AS started_twice FROM (
    SELECT run_id, attempt FROM rungate.audit_log WHERE event = 'started'
     GROUP BY run_id, attempt HAVING count(*) > 1) x;

-- the trigger's protocol
SELECT rungate.note_queued();
