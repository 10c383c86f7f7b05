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

-- Recurring runs, written by the application. The C trigger refuses a
-- malformed cron expression and a target rungate.enqueue would refuse
-- (RG400, naming the field); run_schedules moves last_tick forward.
CREATE TABLE rungate.schedules (
    name          text PRIMARY KEY,
    cron          text NOT NULL,
    operation     text NOT NULL REFERENCES rungate.operation_types (name),
    workspace_id  bigint NOT NULL REFERENCES rungate.workspaces (id),
    tenant_id     bigint REFERENCES rungate.tenants (id),
    initiator_id  bigint REFERENCES rungate.actors (id),
    payload       jsonb NOT NULL DEFAULT '{}',
    priority      integer NOT NULL DEFAULT 0,
    enabled       boolean NOT NULL DEFAULT true,
    last_tick     timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON TABLE rungate.schedules FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('rungate.schedules', '');
COMMENT ON TABLE rungate.schedules IS 'recurring runs, written by the application: each tick of cron (UTC) enqueues one run, decided at dispatch';
COMMENT ON COLUMN rungate.schedules.name IS 'the key; part of each tick''s idempotency key schedule:<name>:<tick>';
COMMENT ON COLUMN rungate.schedules.cron IS 'five fields (minute hour day-of-month month day-of-week) or @hourly, @daily, @weekly, @monthly; UTC';
COMMENT ON COLUMN rungate.schedules.operation IS 'what each tick enqueues: an operation type that is not a bulk orchestrator';
COMMENT ON COLUMN rungate.schedules.workspace_id IS 'the workspace of each run';
COMMENT ON COLUMN rungate.schedules.tenant_id IS 'the tenant of each run: set exactly when the type is tenant-scoped';
COMMENT ON COLUMN rungate.schedules.initiator_id IS 'the actor on whose authority each run starts; null: system authority (the type must allow it)';
COMMENT ON COLUMN rungate.schedules.payload IS 'the payload of each run';
COMMENT ON COLUMN rungate.schedules.priority IS 'the priority of each run';
COMMENT ON COLUMN rungate.schedules.enabled IS 'false: no tick is enqueued';
COMMENT ON COLUMN rungate.schedules.last_tick IS 'the last tick enqueued (null: none yet); rungate only moves it forward';
COMMENT ON COLUMN rungate.schedules.created_at IS 'ticks after it count when last_tick is null';

CREATE FUNCTION rungate.validate_schedule() RETURNS trigger
    AS 'MODULE_PATHNAME', 'rg_validate_schedule' LANGUAGE C
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION rungate.validate_schedule() FROM PUBLIC;
COMMENT ON FUNCTION rungate.validate_schedule() IS 'trigger: refuses a malformed cron expression, or a schedule whose runs rungate.enqueue would refuse or that could never start (RG400)';

CREATE TRIGGER validate_schedule
    BEFORE INSERT OR UPDATE ON rungate.schedules
    FOR EACH ROW EXECUTE FUNCTION rungate.validate_schedule();
ALTER TABLE rungate.schedules ENABLE ALWAYS TRIGGER validate_schedule;
COMMENT ON TRIGGER validate_schedule ON rungate.schedules IS
    'ENABLE ALWAYS: a malformed schedule is refused (RG400) in every session_replication_role';

CREATE FUNCTION rungate.run_schedules(at timestamptz DEFAULT now())
    RETURNS SETOF rungate.runs
    AS 'MODULE_PATHNAME', 'rg_run_schedules' LANGUAGE C VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION rungate.run_schedules(timestamptz) FROM PUBLIC;
COMMENT ON FUNCTION rungate.run_schedules(timestamptz) IS 'enqueues, for each enabled schedule with a tick in (coalesce(last_tick, created_at), at], one run for the latest such tick (decided at dispatch), moves last_tick to it, and returns the runs created';

CREATE FUNCTION rungate.cron_latest_tick(cron text, after timestamptz, upto timestamptz)
    RETURNS timestamptz
    AS 'MODULE_PATHNAME', 'rg_cron_latest_tick' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
REVOKE ALL ON FUNCTION rungate.cron_latest_tick(text, timestamptz, timestamptz) FROM PUBLIC;
COMMENT ON FUNCTION rungate.cron_latest_tick(text, timestamptz, timestamptz) IS 'the latest tick t of a cron expression with after < t <= upto (UTC), or null: what run_schedules computes (RG400 for a malformed expression)';

-- The scheduler's wake-ups find the delayed runs that became due in a
-- window of run_at (src/scheduler.c); runs due when written are not in it.
CREATE INDEX runs_delayed_idx ON rungate.runs (run_at)
    WHERE status = 'queued' AND created_at < run_at;

-- (end of the scheduler)

------------------------------------------------------------------------------
-- 4. Metrics: rungate.metrics(), rungate.metrics_text()
------------------------------------------------------------------------------

-- (end of metrics)

------------------------------------------------------------------------------
-- 5. Logical replication: rungate.sync_sequences()
------------------------------------------------------------------------------

-- (end of logical replication)
