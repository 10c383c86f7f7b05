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

-- Concurrency and rate limits (null: no limit). Validated in C: positive
-- limits, a known limit_scope (tenant only for tenant-scoped types), both or
-- neither of rate_limit and rate_period (RG400).
ALTER TABLE rungate.workspaces ADD COLUMN max_running integer;
ALTER TABLE rungate.operation_types
    ADD COLUMN max_running integer,
    ADD COLUMN limit_scope text NOT NULL DEFAULT 'workspace',
    ADD COLUMN rate_limit integer,
    ADD COLUMN rate_period interval;
COMMENT ON COLUMN rungate.workspaces.max_running IS
    'at most this many runs of the workspace running at once, all operations (null: no limit)';
COMMENT ON COLUMN rungate.operation_types.max_running IS
    'at most this many runs of the type running at once per limit key (null: no limit)';
COMMENT ON COLUMN rungate.operation_types.limit_scope IS
    'the limit key of max_running and rate_limit: tenant, workspace or global';
COMMENT ON COLUMN rungate.operation_types.rate_limit IS
    'at most this many starts in any window of rate_period, per limit key (null: no limit)';
COMMENT ON COLUMN rungate.operation_types.rate_period IS
    'the window of rate_limit';

CREATE FUNCTION rungate.validate_workspace() RETURNS trigger
    AS 'MODULE_PATHNAME', 'rg_validate_workspace' LANGUAGE C;
REVOKE ALL ON FUNCTION rungate.validate_workspace() FROM PUBLIC;
COMMENT ON FUNCTION rungate.validate_workspace() IS 'trigger: a workspace''s max_running is positive or null (RG400)';
CREATE TRIGGER validate_workspace
    BEFORE INSERT OR UPDATE ON rungate.workspaces
    FOR EACH ROW EXECUTE FUNCTION rungate.validate_workspace();
ALTER TABLE rungate.workspaces ENABLE ALWAYS TRIGGER validate_workspace;
COMMENT ON TRIGGER validate_workspace ON rungate.workspaces IS
    'ENABLE ALWAYS: max_running is positive or null (RG400)';

-- Claim's fair order: each workspace's runs of a priority together, by
-- operation, so a workspace's backlog, or a group flow control holds back as
-- a whole, is passed over with one descent of the index.
CREATE INDEX runs_fair_idx ON rungate.runs (priority DESC, workspace_id, operation, id)
    WHERE status = 'queued';

-- The starts of rate-limited types inside their windows (internal: written
-- by claim under the limit key's lock, forgotten once out of the window).
CREATE TABLE rungate.flow_starts (
    operation   text NOT NULL,
    limit_key   bigint NOT NULL,
    started_at  timestamptz NOT NULL
);
CREATE INDEX flow_starts_key_idx ON rungate.flow_starts (operation, limit_key, started_at);
REVOKE ALL ON rungate.flow_starts FROM PUBLIC;
COMMENT ON TABLE rungate.flow_starts IS
    'internal: recent starts of rate-limited operation types, by limit key (0: global; else the workspace or tenant)';

-- Holds: every hold, ended ones too (written by hold and resume, or by the
-- owner). A change moves the authority generation, so claims see it at once.
CREATE TABLE rungate.holds (
    id            bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    workspace_id  bigint REFERENCES rungate.workspaces (id),
    tenant_id     bigint REFERENCES rungate.tenants (id),
    operation     text REFERENCES rungate.operation_types (name),
    reason        text,
    held_by       bigint REFERENCES rungate.actors (id),
    created_at    timestamptz NOT NULL DEFAULT now(),
    released_at   timestamptz,
    released_by   bigint REFERENCES rungate.actors (id)
);
CREATE INDEX holds_active_idx ON rungate.holds (id) WHERE released_at IS NULL;
REVOKE ALL ON rungate.holds FROM PUBLIC;
REVOKE ALL ON SEQUENCE rungate.holds_id_seq FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('rungate.holds', '');
SELECT pg_catalog.pg_extension_config_dump('rungate.holds_id_seq', '');
COMMENT ON TABLE rungate.holds IS
    'holds on starts (null matches everything); active while released_at is null';

CREATE TRIGGER note_authority_change
    BEFORE INSERT OR UPDATE OR DELETE ON rungate.holds
    FOR EACH ROW EXECUTE FUNCTION rungate.note_authority_change();
CREATE TRIGGER note_authority_truncate
    BEFORE TRUNCATE ON rungate.holds
    FOR EACH STATEMENT EXECUTE FUNCTION rungate.note_authority_change();
ALTER TABLE rungate.holds ENABLE ALWAYS TRIGGER note_authority_change;
ALTER TABLE rungate.holds ENABLE ALWAYS TRIGGER note_authority_truncate;
COMMENT ON TRIGGER note_authority_change ON rungate.holds IS
    'ENABLE ALWAYS: a changed hold marks the transaction; its commit empties every backend''s authority cache, holds included';
COMMENT ON TRIGGER note_authority_truncate ON rungate.holds IS
    'ENABLE ALWAYS: TRUNCATE marks the transaction; its commit empties every backend''s authority cache, holds included';

CREATE FUNCTION rungate.hold(workspace_id bigint DEFAULT NULL,
                             tenant_id bigint DEFAULT NULL,
                             operation text DEFAULT NULL,
                             reason text DEFAULT NULL,
                             actor_id bigint DEFAULT NULL)
    RETURNS rungate.holds
    AS 'MODULE_PATHNAME', 'rg_hold' LANGUAGE C VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
CREATE FUNCTION rungate.resume(hold_id bigint, actor_id bigint DEFAULT NULL)
    RETURNS rungate.holds
    AS 'MODULE_PATHNAME', 'rg_resume' LANGUAGE C VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION rungate.hold(bigint, bigint, text, text, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION rungate.resume(bigint, bigint) FROM PUBLIC;
COMMENT ON FUNCTION rungate.hold(bigint, bigint, text, text, bigint) IS 'hold starts of matching runs (null matches everything) until resumed; they stay queued';
COMMENT ON FUNCTION rungate.resume(bigint, bigint) IS 'end a hold and wake the workers (rungate_queued)';

-- run_detail.waiting: why a queued run does not start now
ALTER TYPE rungate.run_detail ADD ATTRIBUTE waiting text;

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

-- Gauges (runs queued and running, queue lag, per operation type) read on
-- demand through the partial indexes of queued and running runs; counters
-- (audit events, blocks, claim durations) live in shared memory when
-- rungate is preloaded and count committed transactions only (src/metrics.c).
-- For the administrator and a monitoring role, never for tenant viewers.

CREATE FUNCTION rungate.metrics()
    RETURNS TABLE (metric text, labels jsonb, value double precision)
    AS 'MODULE_PATHNAME', 'rg_metrics' LANGUAGE C VOLATILE ROWS 200
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION rungate.metrics() FROM PUBLIC;
COMMENT ON FUNCTION rungate.metrics() IS 'rungate''s metrics, one row per sample: gauges of queued and running runs and queue lag per operation type; counters of audit events, blocks and claim durations since the server started (preloaded)';

CREATE FUNCTION rungate.metrics_text()
    RETURNS text
    AS 'MODULE_PATHNAME', 'rg_metrics_text' LANGUAGE C VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION rungate.metrics_text() FROM PUBLIC;
COMMENT ON FUNCTION rungate.metrics_text() IS 'rungate.metrics() in the Prometheus text exposition format, with # HELP and # TYPE lines';

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
