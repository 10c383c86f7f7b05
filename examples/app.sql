-- examples/app.sql: the example application's side of the worker examples.
--
--   psql -d app -v worker_role=rungate_worker -f examples/app.sql
--
-- 1. A side-effect table of the application, fenced by rungate: a row may be
--    written only while the run it names is `running`
--    (docs/guarantees.md#fence), so a run blocked by recheck cannot leave a
--    restore behind, even by mistake.
-- 2. The worker's role: the worker grants (USAGE on the schema, EXECUTE on
--    the six worker functions: claim, heartbeat, recheck, complete, fail and
--    release; no table privilege on rungate) plus what its handlers write in
--    the application (INSERT on the fenced table). The role must exist
--    (CREATE ROLE ... LOGIN).

\set ON_ERROR_STOP on

CREATE TABLE IF NOT EXISTS public.restore_log (
    run_id       bigint PRIMARY KEY,
    tenant_id    bigint NOT NULL,
    snapshot     text NOT NULL,
    restored_at  timestamptz NOT NULL DEFAULT now()
);
SELECT rungate.guard_writes('public.restore_log', 'run_id');

GRANT USAGE ON SCHEMA rungate TO :"worker_role";
GRANT EXECUTE ON FUNCTION
    rungate.claim(text, text[], integer),
    rungate.heartbeat(bigint, uuid),
    rungate.recheck(bigint, uuid),
    rungate.complete(bigint, uuid, jsonb),
    rungate.fail(bigint, uuid, text, boolean, interval),
    rungate.release(bigint, uuid, timestamptz)
    TO :"worker_role";
GRANT INSERT ON public.restore_log TO :"worker_role";
