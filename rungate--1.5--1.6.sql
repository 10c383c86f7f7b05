-- rungate 1.5 -> 1.6: flow control, run control, the scheduler, metrics and
-- logical replication.
--
-- The C module of 1.6 serves 1.0 to 1.5 schemas too.

\echo Use "ALTER EXTENSION rungate UPDATE TO '1.6'" to load this file. \quit

------------------------------------------------------------------------------
-- 1. Run control: release, rerun, cancel of running runs
------------------------------------------------------------------------------

-- (end of run control)

------------------------------------------------------------------------------
-- 2. Flow control: fair turns, concurrency and rate limits, holds
------------------------------------------------------------------------------

-- (end of flow control)

------------------------------------------------------------------------------
-- 3. The scheduler: recurring runs (rungate.schedules, run_schedules)
------------------------------------------------------------------------------

-- (end of the scheduler)

------------------------------------------------------------------------------
-- 4. Metrics: rungate.metrics(), rungate.metrics_text()
------------------------------------------------------------------------------

-- (end of metrics)

------------------------------------------------------------------------------
-- 5. Logical replication: rungate.sync_sequences()
------------------------------------------------------------------------------
--
-- The guards need no new object: rows and changes a subscription's apply or
-- table-sync worker applies pass them as they are (the C module tells such a
-- worker by what the backend is). sync_sequences() is for the switchover.

CREATE FUNCTION rungate.sync_sequences()
    RETURNS void
    AS 'MODULE_PATHNAME', 'rg_sync_sequences' LANGUAGE C VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION rungate.sync_sequences() FROM PUBLIC;
COMMENT ON FUNCTION rungate.sync_sequences() IS 'administrator, at a switchover: every sequence of rungate''s tables continues after the largest id present (logical replication copies rows, not sequence values)';

-- (end of logical replication)
