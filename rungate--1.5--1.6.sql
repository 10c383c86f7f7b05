-- rungate 1.5 -> 1.6: flow control, run control, the scheduler, metrics and
-- logical replication.
--
-- The C module of 1.6 serves 1.0 to 1.5 schemas too.

\echo Use "ALTER EXTENSION rungate UPDATE TO '1.6'" to load this file. \quit

------------------------------------------------------------------------------
-- 1. Run control: release, rerun, cancel of running runs
------------------------------------------------------------------------------

-- A rerun names its original. No foreign key: purge removes an original
-- on its own schedule, and a key would make that a change to a terminal run.
ALTER TABLE rungate.runs ADD COLUMN rerun_of bigint;
COMMENT ON COLUMN rungate.runs.rerun_of IS
    'the failed, blocked or cancelled run that rungate.rerun ran again (null: not a rerun)';

CREATE FUNCTION rungate.release(run_id bigint, lease_token uuid,
                                run_at timestamptz DEFAULT NULL)
    RETURNS rungate.runs
    AS 'MODULE_PATHNAME', 'rg_release' LANGUAGE C VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION rungate.rerun(run_id bigint, actor_id bigint DEFAULT NULL)
    RETURNS rungate.runs
    AS 'MODULE_PATHNAME', 'rg_rerun' LANGUAGE C VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

REVOKE ALL ON FUNCTION rungate.release(bigint, uuid, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION rungate.rerun(bigint, bigint) FROM PUBLIC;

COMMENT ON FUNCTION rungate.release(bigint, uuid, timestamptz) IS 'hand a running run back without spending an attempt: queued again, due at run_at (default now)';
COMMENT ON FUNCTION rungate.rerun(bigint, bigint) IS 'run a failed, blocked or cancelled run again as a new run, decided at dispatch on the authority of actor_id';
COMMENT ON FUNCTION rungate.cancel(bigint, bigint) IS 'cancel a queued or running run (the lease is void at once), or a bulk run with its queued and running items';
COMMENT ON FUNCTION rungate.heartbeat(bigint, uuid) IS 'extend the lease of a running run and decide again; denied, the run is blocked and null is returned';

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
