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

-- (end of logical replication)
