-- metrics: rungate.metrics() and rungate.metrics_text() (docs/monitoring.md).
--   * the families, their names and labels; a gauge row per operation type
--     and status, zeros included; a counter row per event and operation
--     type, per reason code; the claim histogram's buckets, _sum, _count
--   * counters move after committed transitions only: not after a rolled
--     back transaction, a rolled back savepoint, or an exception block
--   * the gauges: queued and running runs, the queue lag of due runs,
--     running runs past their lease
--   * metrics_text: # HELP and # TYPE per family, label escaping, every
--     line a well-formed sample
--   * privileges: revoked from PUBLIC; a role with EXECUTE reads them
-- The cluster of make test preloads rungate (test/lib.sh), so the counters
-- exist. They live in shared memory per database and count since the
-- server started, so earlier tests of this database have moved them: the
-- checks compare before and after.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS rungate CASCADE;
CREATE EXTENSION rungate;
\set ECHO none
\i test/fixtures/seed.sql
\set ECHO all

-- the counters of this database now; moved() lists what changed since
CREATE TEMP TABLE snap (metric text, labels jsonb, value double precision);
CREATE FUNCTION pg_temp.mark() RETURNS void LANGUAGE sql AS $$
    DELETE FROM snap;
    INSERT INTO snap SELECT * FROM rungate.metrics() $$;
CREATE FUNCTION pg_temp.moved()
    RETURNS TABLE (metric text, labels text, delta double precision)
    LANGUAGE sql AS $$
    SELECT m.metric, m.labels::text, m.value - COALESCE(s.value, 0)
      FROM rungate.metrics() m LEFT JOIN snap s USING (metric, labels)
     WHERE m.metric IN ('rungate_transitions_total', 'rungate_blocked_total',
                        'rungate_claim_duration_seconds_count')
       AND m.value <> COALESCE(s.value, 0)
     ORDER BY 1, 2 $$;

------------------------------------------------------------------------------
-- 1. Families, names, labels, zeros for every operation type
------------------------------------------------------------------------------

-- one row per sample; counters of operation types of earlier tests (since
-- dropped) may remain, so the shape is checked over today's types
SELECT metric, count(*) AS samples,
       array_agg(DISTINCT (SELECT coalesce(string_agg(k, ',' ORDER BY k), '')
                             FROM jsonb_object_keys(m.labels) k)) AS label_keys
  FROM rungate.metrics() m
 WHERE m.labels->>'operation' IS NULL
    OR m.labels->>'operation' IN (SELECT name FROM rungate.operation_types)
 GROUP BY metric ORDER BY metric;

-- the gauges: every operation type in both statuses, zeros included
SELECT labels->>'operation' AS operation, labels->>'status' AS status, value
  FROM rungate.metrics() WHERE metric = 'rungate_runs' ORDER BY 1, 2;
SELECT labels->>'operation' AS operation, value
  FROM rungate.metrics() WHERE metric = 'rungate_queue_lag_seconds' ORDER BY 1;

-- every event of the audit log for every type, and every reason code
SELECT labels->>'event' AS event, count(*) AS operation_types
  FROM rungate.metrics()
 WHERE metric = 'rungate_transitions_total'
   AND labels->>'operation' IN (SELECT name FROM rungate.operation_types)
 GROUP BY 1 ORDER BY 1;
SELECT labels->>'reason_code' AS reason_code
  FROM rungate.metrics() WHERE metric = 'rungate_blocked_total' ORDER BY 1;

-- the histogram: cumulative buckets ending in +Inf, which is the count
SELECT labels->>'le' AS le FROM rungate.metrics()
 WHERE metric = 'rungate_claim_duration_seconds_bucket';
SELECT bool_and(value >= prev) AS cumulative,
       (SELECT value FROM rungate.metrics()
         WHERE metric = 'rungate_claim_duration_seconds_count')
         = max(value) AS inf_is_count
  FROM (SELECT value, lag(value, 1, 0::float8) OVER () AS prev
          FROM rungate.metrics()
         WHERE metric = 'rungate_claim_duration_seconds_bucket') b;

------------------------------------------------------------------------------
-- 2. Counters move after committed transitions
------------------------------------------------------------------------------

SELECT pg_temp.mark();
-- three syncs dispatched (olivia, tenant 10); one denied at dispatch (rita
-- is readonly: capability_missing)
SELECT count(*) FROM (SELECT rungate.enqueue('inventory.sync', 1, 10, 100)
                        FROM generate_series(1, 3)) e;
SELECT status, reason_code FROM rungate.enqueue('inventory.sync', 1, 10, 102);
SELECT * FROM pg_temp.moved();

-- the gauges see the three queued runs, and their lag is positive
SELECT labels->>'operation' AS operation, labels->>'status' AS status, value
  FROM rungate.metrics()
 WHERE metric = 'rungate_runs' AND labels->>'operation' = 'inventory.sync' ORDER BY 2;
SELECT value > 0 AS lag_positive FROM rungate.metrics()
 WHERE metric = 'rungate_queue_lag_seconds' AND labels->>'operation' = 'inventory.sync';

-- one claim call starts two; one completes, one fails for good
SELECT pg_temp.mark();
CREATE TEMP TABLE got AS SELECT run_id, lease_token FROM rungate.claim('w1', NULL, 2);
SELECT count(*) FROM got;
SELECT status FROM rungate.complete((SELECT min(run_id) FROM got),
                                    (SELECT lease_token FROM got ORDER BY run_id LIMIT 1));
SELECT status FROM rungate.fail((SELECT max(run_id) FROM got),
                                (SELECT lease_token FROM got ORDER BY run_id DESC LIMIT 1),
                                'provider said no');
SELECT * FROM pg_temp.moved();

-- the third is blocked at claim: olivia lost her tenant membership
SELECT pg_temp.mark();
DELETE FROM rungate.tenant_members WHERE tenant_id = 10 AND actor_id = 100;
SELECT count(*) FROM rungate.claim('w1');
SELECT * FROM pg_temp.moved();
INSERT INTO rungate.tenant_members VALUES (10, 100, 'owner');

-- a bulk run: the parent starts, its two items are dispatched in one
-- statement (counted per item)
SELECT pg_temp.mark();
SELECT status FROM rungate.enqueue_bulk('bulk.inventory.sync', 1, '{10,11}', 100);
SELECT count(*) FROM rungate.claim('w1', '{bulk.inventory.sync}');
SELECT * FROM pg_temp.moved();
SELECT labels->>'operation' AS operation, labels->>'status' AS status, value
  FROM rungate.metrics()
 WHERE metric = 'rungate_runs' AND labels->>'operation' IN ('bulk.inventory.sync', 'inventory.sync')
 ORDER BY 1, 2;

------------------------------------------------------------------------------
-- 3. Nothing is counted for what rolls back
------------------------------------------------------------------------------

SELECT pg_temp.mark();
-- a rolled-back claim (and its transaction's enqueue)
BEGIN;
SELECT count(*) FROM rungate.enqueue('reports.export', 1);
SELECT count(*) FROM rungate.claim('w2', '{reports.export}');
ROLLBACK;
SELECT * FROM pg_temp.moved();

-- a rolled-back savepoint: its claim counts nothing; the claim after it
-- and the released savepoint's enqueue count once each
BEGIN;
SAVEPOINT a;
SELECT count(*) FROM rungate.enqueue('reports.export', 1);
RELEASE SAVEPOINT a;
SAVEPOINT b;
SELECT count(*) FROM rungate.claim('w2', '{reports.export}');
SAVEPOINT c;
SELECT count(*) FROM rungate.enqueue('reports.export', 1);
RELEASE SAVEPOINT c;
ROLLBACK TO SAVEPOINT b;
SELECT count(*) FROM rungate.claim('w2', '{reports.export}');
COMMIT;
SELECT * FROM pg_temp.moved();

-- an exception block that claims, then fails: nothing of it counts
SELECT pg_temp.mark();
SELECT count(*) FROM rungate.enqueue('reports.export', 1);
DO $$
BEGIN
    BEGIN
        PERFORM count(*) FROM rungate.claim('w3', '{reports.export}');
        RAISE EXCEPTION 'worker gave up';
    EXCEPTION WHEN raise_exception THEN
        NULL;
    END;
END $$;
SELECT * FROM pg_temp.moved();

-- a transaction that fails after a claim: nothing (the enqueue above is
-- still the only change since the mark)
BEGIN;
SELECT count(*) FROM rungate.claim('w3', '{reports.export}');
SELECT 1 / 0;
COMMIT;
SELECT * FROM pg_temp.moved();

------------------------------------------------------------------------------
-- 4. The gauges: lag counts due runs only; expired leases
------------------------------------------------------------------------------

-- the queued report (one, due now) gives a positive lag; a run due in an
-- hour is queued but not late
SELECT labels->>'status' AS status, value FROM rungate.metrics()
 WHERE metric = 'rungate_runs' AND labels->>'operation' = 'reports.export' ORDER BY 1;
SELECT value > 0 AS lag_positive FROM rungate.metrics()
 WHERE metric = 'rungate_queue_lag_seconds' AND labels->>'operation' = 'reports.export';
SELECT count(*) FROM rungate.claim('w4', '{reports.export}');
SELECT count(*) FROM rungate.enqueue('reports.export', 1, run_at => now() + interval '1 hour');
SELECT m.labels->>'status' AS status, m.value FROM rungate.metrics() m
 WHERE m.metric = 'rungate_runs' AND m.labels->>'operation' = 'reports.export' ORDER BY 1;
SELECT value FROM rungate.metrics()
 WHERE metric = 'rungate_queue_lag_seconds' AND labels->>'operation' = 'reports.export';

-- a run whose lease expired is counted until the reaper requeues it (the
-- gauges are as of the clock, not the transaction's start; the run stays
-- locked by this transaction, so no reaper takes it before the check)
INSERT INTO rungate.operation_types (name, capability, scope, requires_operable_tenant,
                                     allow_system, lease)
VALUES ('metrics.short', 'reports.run', 'workspace', false, true, '1 millisecond');
SELECT count(*) FROM rungate.enqueue('metrics.short', 1);
SELECT pg_temp.mark();
BEGIN;
SELECT count(*) FROM rungate.claim('w5', '{metrics.short}');
SELECT pg_sleep(0.01);
SELECT labels->>'operation' AS operation, value FROM rungate.metrics()
 WHERE metric = 'rungate_expired_leases' AND value > 0;
COMMIT;
SELECT rungate.reap_expired() >= 0 AS reaped;  -- or the scheduler was first
SELECT count(*) AS expired FROM rungate.metrics()
 WHERE metric = 'rungate_expired_leases' AND value > 0;
SELECT * FROM pg_temp.moved();

------------------------------------------------------------------------------
-- 5. metrics_text: the exposition format
------------------------------------------------------------------------------

-- an operation type whose name needs escaping in a label value
INSERT INTO rungate.operation_types (name, capability, scope, requires_operable_tenant, allow_system)
VALUES (E'odd"name\\x', 'reports.run', 'workspace', false, true);
SELECT count(*) FROM rungate.enqueue(E'odd"name\\x', 1);

CREATE TEMP TABLE lines AS
SELECT n, line FROM regexp_split_to_table(rungate.metrics_text(), E'\n')
       WITH ORDINALITY AS t(line, n);

-- the HELP and TYPE lines, once per family, in this order
SELECT line FROM lines WHERE line LIKE '# TYPE %' ORDER BY n;
SELECT count(*) AS help_lines FROM lines WHERE line LIKE '# HELP %';
-- every other line is a sample: name, optional {label="value",...}, number
SELECT line FROM lines
 WHERE line NOT LIKE '# HELP %' AND line NOT LIKE '# TYPE %' AND line <> ''
   AND line !~ '^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*"(,[a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*")*\})? (-?[0-9.]+(e[-+]?[0-9]+)?|[-+]Inf|NaN)$';
-- the text ends with a newline, and has as many samples as metrics() rows
SELECT right(rungate.metrics_text(), 1) = E'\n' AS ends_with_newline;
SELECT (SELECT count(*) FROM lines WHERE line NOT LIKE '#%' AND line <> '')
     = (SELECT count(*) FROM rungate.metrics()) AS same_samples;
-- label escaping: a quote and a backslash
SELECT line FROM lines WHERE line LIKE 'rungate_runs{%odd%' ORDER BY n;
SELECT labels FROM rungate.metrics()
 WHERE metric = 'rungate_runs' AND labels->>'operation' LIKE 'odd%' ORDER BY 1;
-- the histogram's lines
SELECT regexp_replace(line, ' [0-9.e+-]+$', ' N') AS line FROM lines
 WHERE line LIKE 'rungate_claim_duration_seconds%' ORDER BY n;

------------------------------------------------------------------------------
-- 6. Privileges: the administrator's and a monitoring role's, not PUBLIC's
------------------------------------------------------------------------------

SELECT p.oid::regprocedure AS function, p.prosecdef, p.proconfig,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public_may_execute
  FROM pg_proc p
 WHERE p.pronamespace = 'rungate'::regnamespace AND p.proname LIKE 'metrics%'
 ORDER BY 1;

SET client_min_messages = warning;
DROP ROLE IF EXISTS metrics_nobody;
DROP ROLE IF EXISTS metrics_monitor;
RESET client_min_messages;
CREATE ROLE metrics_nobody;
CREATE ROLE metrics_monitor;
GRANT USAGE ON SCHEMA rungate TO metrics_nobody, metrics_monitor;
GRANT EXECUTE ON FUNCTION rungate.metrics(), rungate.metrics_text() TO metrics_monitor;
\set VERBOSITY sqlstate
SET ROLE metrics_nobody;
SELECT count(*) FROM rungate.metrics();
SELECT rungate.metrics_text() IS NOT NULL;
RESET ROLE;
SET ROLE metrics_monitor;
SELECT count(*) > 0 AS reads_metrics FROM rungate.metrics();
SELECT rungate.metrics_text() LIKE '# HELP rungate_runs %' AS reads_text;
-- and nothing else: the runs behind the gauges stay closed
SELECT count(*) FROM rungate.runs;
RESET ROLE;
\set VERBOSITY default

DROP OWNED BY metrics_nobody, metrics_monitor;
DROP ROLE metrics_nobody;
DROP ROLE metrics_monitor;
