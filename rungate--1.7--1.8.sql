-- rungate 1.7 -> 1.8: enqueue at scale. The foreign keys from rungate.runs
-- to rungate.workspaces and rungate.operation_types stay declared, and their
-- delete side stays PostgreSQL's own; their insert check is made by rungate
-- (src/references.c) instead of their insert triggers, which locked the
-- referenced row FOR KEY SHARE on every enqueue. Every enqueue names one of
-- a few workspaces and operation types, so those locks piled up as
-- multixacts on the same two rows.
--
-- The C module of 1.8 serves 1.0 to 1.7 schemas too: there the insert
-- triggers still fire, besides its own check.

\echo Use "ALTER EXTENSION rungate UPDATE TO '1.8'" to load this file. \quit

-- A delete, or a change of the key, of a workspace or an operation type
-- waits for the transactions inserting runs and holds new inserts back until
-- it ends (SHARE lock on rungate.runs); the foreign key's own check then sees
-- every run that names the row, and an insert let through afterwards sees
-- the row gone (23503).
CREATE FUNCTION rungate.guard_run_references() RETURNS trigger
    AS 'MODULE_PATHNAME', 'rg_guard_run_references' LANGUAGE C
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION rungate.guard_run_references() FROM PUBLIC;
COMMENT ON FUNCTION rungate.guard_run_references() IS
    'trigger: a workspace or operation type is deleted only once no run being inserted can name it';

CREATE TRIGGER guard_run_references
    BEFORE DELETE OR UPDATE OF id ON rungate.workspaces
    FOR EACH ROW EXECUTE FUNCTION rungate.guard_run_references('id');
ALTER TABLE rungate.workspaces ENABLE ALWAYS TRIGGER guard_run_references;
COMMENT ON TRIGGER guard_run_references ON rungate.workspaces IS
    'ENABLE ALWAYS: a delete or a new id waits for the runs being inserted (runs_workspace_id_fkey then restricts)';

CREATE TRIGGER guard_run_references
    BEFORE DELETE OR UPDATE OF name ON rungate.operation_types
    FOR EACH ROW EXECUTE FUNCTION rungate.guard_run_references('name');
ALTER TABLE rungate.operation_types ENABLE ALWAYS TRIGGER guard_run_references;
COMMENT ON TRIGGER guard_run_references ON rungate.operation_types IS
    'ENABLE ALWAYS: a delete or a new name waits for the runs being inserted (runs_operation_fkey then restricts)';

-- The insert triggers of the two foreign keys (RI_FKey_check_ins): rungate's
-- guard_runs checks the rows instead. Their update triggers stay: a run's
-- workspace and operation never change, so they never queue a check.
DO $$
DECLARE
    t name;
BEGIN
    FOR t IN
        SELECT tg.tgname
          FROM pg_catalog.pg_trigger tg
          JOIN pg_catalog.pg_constraint c ON c.oid OPERATOR(pg_catalog.=) tg.tgconstraint
         WHERE tg.tgrelid OPERATOR(pg_catalog.=) 'rungate.runs'::pg_catalog.regclass
           AND c.conname IN ('runs_workspace_id_fkey', 'runs_operation_fkey')
           AND tg.tgfoid OPERATOR(pg_catalog.=) 'pg_catalog."RI_FKey_check_ins"'::pg_catalog.regproc
    LOOP
        EXECUTE pg_catalog.format('ALTER TABLE rungate.runs DISABLE TRIGGER %I', t);
    END LOOP;
END
$$;
