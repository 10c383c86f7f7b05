-- rungate 1.2 -> 1.3: retention that commits as it goes.
--
--   * rungate.purge_batch(finished_before, max_runs) is purge's bounded
--     step: at most max_runs top-level runs (with their items, audit rows
--     and notifications) in the caller's transaction.
--   * CALL rungate.purge_in_batches(finished_before, batch_size) repeats it,
--     committing after each batch, until nothing is left to remove. purge()
--     does the same work in one transaction, which holds back vacuum's
--     horizon for as long as it runs: on a busy queue, the dead entries of
--     every run claimed meanwhile stay in the queue index.
--   * The audit log and notifications are vacuumed once 2% of their rows
--     are dead (rungate.runs' threshold), so the space purge frees is
--     reused soon.
--
-- The C module of 1.3 serves 1.0 to 1.2 schemas too.

\echo Use "ALTER EXTENSION rungate UPDATE TO '1.3'" to load this file. \quit

CREATE FUNCTION rungate.purge_batch(finished_before timestamptz,
                                    max_runs integer DEFAULT 1000)
    RETURNS bigint
    AS 'MODULE_PATHNAME', 'rg_purge_batch' LANGUAGE C VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

-- Transaction control needs a SECURITY INVOKER procedure without SET
-- clauses: it goes through purge_batch (SECURITY DEFINER), so what it may
-- remove is what purge_batch does. Its one query is schema-qualified.
CREATE PROCEDURE rungate.purge_in_batches(finished_before timestamptz,
                                          batch_size integer DEFAULT 1000,
                                          INOUT removed bigint DEFAULT NULL)
    AS 'MODULE_PATHNAME', 'rg_purge_in_batches' LANGUAGE C;

REVOKE ALL ON FUNCTION rungate.purge_batch(timestamptz, integer) FROM PUBLIC;
REVOKE ALL ON PROCEDURE rungate.purge_in_batches(timestamptz, integer, bigint) FROM PUBLIC;

COMMENT ON FUNCTION rungate.purge_batch(timestamptz, integer) IS 'retention, bounded: at most max_runs top-level terminal runs finished before a time, with their items, audit rows and notifications';
COMMENT ON PROCEDURE rungate.purge_in_batches(timestamptz, integer, bigint) IS 'retention that commits after each purge_batch, until nothing older is left (CALL it outside a transaction block)';

-- Only the dead-row threshold: the audit log is append-only until purge
-- deletes, and the insert-triggered vacuums and frequent analyzes of a 2%
-- insert threshold would cost the claims CPU for nothing.
ALTER TABLE rungate.audit_log SET (autovacuum_vacuum_scale_factor = 0.02);
ALTER TABLE rungate.notifications SET (autovacuum_vacuum_scale_factor = 0.02);
