-- owner_schema_changes: rungate's own writes (enqueue, claim, complete,
-- fail and their audit rows) honour the indexes and triggers an owner adds
-- to rungate.runs, replaces or drops in the middle of a session, as a
-- statement's writes would, though a backend keeps what it builds for them
-- from one write to the next (docs/guarantees.md#atomic). Indexes: partial,
-- on an expression, of another access method, taken out of and back into
-- use; amcheck checks each B-tree index against the table (heapallindexed:
-- every row the index should hold). Triggers: a WHEN condition added,
-- replaced by another, dropped. CHECK constraints: one replaced by another
-- between two claims.
\i test/fixtures/fresh.sql
\set ECHO none
\i test/fixtures/try.sql
\set ECHO all
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS amcheck;
RESET client_min_messages;

-- first, before any other write of the session: a CHECK constraint
-- replaced by another (the same count) between two claims: the second
-- claim meets the new one (23514), and its run stays queued, untouched
SELECT count(rungate.enqueue('inventory.sync', 1, 10, 101, NULL, NULL, p)) AS queued
  FROM unnest(ARRAY[30, 20]) p;
ALTER TABLE rungate.runs ADD CONSTRAINT owner_a CHECK (priority <> 40) NOT VALID;
SELECT priority AS claimed_priority FROM rungate.claim('w') c JOIN rungate.runs r ON r.id = c.run_id;
ALTER TABLE rungate.runs DROP CONSTRAINT owner_a;
ALTER TABLE rungate.runs ADD CONSTRAINT owner_b CHECK (priority <> 20) NOT VALID;
SELECT pg_temp.try($$SELECT * FROM rungate.claim('w')$$) AS claim_under_owner_b;
SELECT status, attempt FROM rungate.runs WHERE priority = 20;
ALTER TABLE rungate.runs DROP CONSTRAINT owner_b;
SELECT count(*) AS claimed FROM rungate.claim('w');

-- 'whole', or what amcheck found wrong, per B-tree index of the two tables
CREATE FUNCTION pg_temp.indexes_whole() RETURNS TABLE (index_name text, state text)
LANGUAGE plpgsql AS $$
DECLARE i regclass;
BEGIN
  FOR i IN SELECT x.indexrelid::regclass FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid
            WHERE x.indrelid IN ('rungate.runs'::regclass, 'rungate.audit_log'::regclass)
              AND c.relam = (SELECT oid FROM pg_am WHERE amname = 'btree')
            ORDER BY x.indexrelid::regclass::text LOOP
    index_name := i::text;
    BEGIN
      PERFORM bt_index_check(i, true);
      state := 'whole';
    EXCEPTION WHEN others THEN
      state := SQLERRM;
    END;
    RETURN NEXT;
  END LOOP;
END $$;

-- a claim and a completion, so that this backend's writers have opened both
-- tables and kept what they keep
SELECT count(rungate.enqueue('inventory.sync', 1, 10, 101)) AS queued
  FROM generate_series(1, 2);
SELECT run_id AS r1, lease_token AS t1 FROM rungate.claim('w') \gset
SELECT status FROM rungate.complete(:r1, :'t1');

-- indexes added after that: partial, on an expression, GIN on the payload
CREATE INDEX runs_high_idx ON rungate.runs (priority, id) WHERE priority > 5;
CREATE INDEX runs_lower_op_idx ON rungate.runs (lower(operation));
CREATE INDEX runs_payload_idx ON rungate.runs USING gin (payload);
SELECT count(rungate.enqueue('inventory.sync', 1, 10, 101, v.payload, NULL, v.priority)) AS queued
  FROM (VALUES ('{"k": 1}'::jsonb, 7), ('{"k": 2}', 3)) v (payload, priority);
SELECT count(*) AS claimed FROM rungate.claim('w', NULL, 2);
SELECT count(*) AS completed
  FROM rungate.runs r, LATERAL rungate.complete(r.id, r.lease_token)
 WHERE r.status = 'running' AND r.priority = 7;
SELECT * FROM pg_temp.indexes_whole();
-- the GIN index found the run through the payload, as the table does
SET enable_seqscan = off;
SELECT count(*) AS through_gin FROM rungate.runs WHERE payload @> '{"k": 1}';
RESET enable_seqscan;
SELECT count(*) AS through_table FROM rungate.runs WHERE payload::text = '{"k": 1}';

-- an index taken out of use (not ready for inserts, as during CREATE INDEX
-- CONCURRENTLY) is not written; back in use, it is written again at once
CREATE INDEX runs_running_idx ON rungate.runs (id) WHERE status = 'running';
UPDATE pg_index SET indisready = false WHERE indexrelid = 'rungate.runs_running_idx'::regclass;
SELECT count(rungate.enqueue('inventory.sync', 1, 10, 101)) AS queued
  FROM generate_series(1, 2);
SELECT run_id AS r2, lease_token AS t2 FROM rungate.claim('w') \gset
SELECT status FROM rungate.fail(:r2, :'t2', 'no retry', false);
UPDATE pg_index SET indisready = true WHERE indexrelid = 'rungate.runs_running_idx'::regclass;
SELECT count(*) AS claimed FROM rungate.claim('w');
SELECT index_name, state FROM pg_temp.indexes_whole() WHERE index_name = 'rungate.runs_running_idx';

-- indexes dropped: the next writes do without them
DROP INDEX rungate.runs_high_idx, rungate.runs_lower_op_idx, rungate.runs_payload_idx,
           rungate.runs_running_idx;
SELECT count(*) AS queued FROM rungate.enqueue('inventory.sync', 1, 10, 101);
SELECT count(*) AS claimed FROM rungate.claim('w');
SELECT * FROM pg_temp.indexes_whole();

-- an owner's trigger with a WHEN condition, added, replaced with another
-- condition, dropped: each claim fires it by the condition it has then
CREATE TABLE public.fired (run_id bigint, priority int);
CREATE FUNCTION public.note_fired() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO public.fired VALUES (NEW.id, NEW.priority);
  RETURN NULL;
END $$;
CREATE TRIGGER owner_fired AFTER UPDATE ON rungate.runs FOR EACH ROW
  WHEN (NEW.status = 'running' AND NEW.priority > 5) EXECUTE FUNCTION public.note_fired();
SELECT count(rungate.enqueue('inventory.sync', 1, 10, 101, NULL, NULL, p)) AS queued
  FROM unnest(ARRAY[7, 3]) p;
SELECT count(*) AS claimed FROM rungate.claim('w', NULL, 5);
CREATE OR REPLACE TRIGGER owner_fired AFTER UPDATE ON rungate.runs FOR EACH ROW
  WHEN (NEW.status = 'running' AND NEW.priority < 5) EXECUTE FUNCTION public.note_fired();
SELECT count(rungate.enqueue('inventory.sync', 1, 10, 101, NULL, NULL, p)) AS queued
  FROM unnest(ARRAY[8, 2]) p;
SELECT count(*) AS claimed FROM rungate.claim('w', NULL, 5);
DROP TRIGGER owner_fired ON rungate.runs;
SELECT count(rungate.enqueue('inventory.sync', 1, 10, 101, NULL, NULL, 1)) AS queued;
SELECT count(*) AS claimed FROM rungate.claim('w', NULL, 5);
-- fired for 7 (the first condition), then 2 (the second), then nothing
SELECT priority FROM public.fired ORDER BY run_id;
DROP TABLE public.fired;
DROP FUNCTION public.note_fired();

