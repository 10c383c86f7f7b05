-- rungate 1.0 -> 1.1: no change of behaviour for a sound installation.
--
--   * The schema rungate must belong to a superuser. PostgreSQL adopts an
--     existing schema named by the control file's `schema`, whoever owns it;
--     a role that pre-created it could, after the install, rename it away and
--     put its own rungate.runs (with triggers) in its place, which rungate's
--     SECURITY DEFINER functions would then use. CREATE EXTENSION rungate
--     (which installs 1.0 and applies this script, in one transaction) and
--     ALTER EXTENSION rungate UPDATE now refuse such a schema.
--   * Comments on the internal columns of rungate.runs and on the triggers
--     that guard the runs, the audit log, the operation types and the
--     tenants.
--
-- Nothing is granted, no function changes, the C module is the same.

\echo Use "ALTER EXTENSION rungate UPDATE TO '1.1'" to load this file. \quit

------------------------------------------------------------------------------
-- 1. The extension's schema belongs to a superuser
------------------------------------------------------------------------------

DO $rungate_schema_owner$
DECLARE
    owner_name  pg_catalog.name;
    owner_super boolean;
BEGIN
    SELECT r.rolname, r.rolsuper INTO owner_name, owner_super
      FROM pg_catalog.pg_namespace n
      JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) n.nspowner
     WHERE n.nspname OPERATOR(pg_catalog.=) 'rungate';
    IF owner_super IS NOT TRUE THEN
        RAISE EXCEPTION USING
            ERRCODE = 'insufficient_privilege',
            MESSAGE = pg_catalog.format(
                'schema rungate is owned by %I, which is not a superuser',
                owner_name),
            DETAIL = 'The owner of the schema could replace the tables that '
                     'rungate''s SECURITY DEFINER functions use.',
            HINT = 'Drop the schema (or ALTER SCHEMA rungate OWNER TO a '
                   'superuser) and run the command again.';
    END IF;
END
$rungate_schema_owner$;

------------------------------------------------------------------------------
-- 2. Comments
------------------------------------------------------------------------------

COMMENT ON COLUMN rungate.runs.lease_token IS
    'internal: the current lease of a running run, returned once by claim; null otherwise';
COMMENT ON COLUMN rungate.runs.item_tenants IS
    'internal: the tenants of a bulk parent until it starts and its items are created';

COMMENT ON TRIGGER validate_operation_type ON rungate.operation_types IS
    'ENABLE ALWAYS: rejects incomplete or contradictory operation types (RG400)';
COMMENT ON TRIGGER guard_runs ON rungate.runs IS
    'ENABLE ALWAYS: runs are created and change status only through rungate functions (RG409)';
COMMENT ON TRIGGER guard_runs_truncate ON rungate.runs IS
    'ENABLE ALWAYS: rungate.runs cannot be truncated (RG409)';
COMMENT ON TRIGGER guard_audit ON rungate.audit_log IS
    'ENABLE ALWAYS: the audit log is append-only (RG409)';
COMMENT ON TRIGGER guard_audit_truncate ON rungate.audit_log IS
    'ENABLE ALWAYS: the audit log cannot be truncated (RG409)';
COMMENT ON TRIGGER guard_tenant_delete ON rungate.tenants IS
    'ENABLE ALWAYS: a tenant named by a queued bulk run cannot be deleted (23503)';
