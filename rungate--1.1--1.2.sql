-- rungate 1.1 -> 1.2: the same guarantees, cheaper writes on the hot path.
--
--   * The audit log's value checks (event, authority, decision) move from
--     CHECK constraints into its C guard trigger, which every insert already
--     meets: a CHECK constraint's expression is read back from the catalog
--     and prepared again by every statement that writes the table, a large
--     share of the cost of one claim. Rows with other values are still
--     refused (SQLSTATE 23514), in restore_mode too.
--   * rungate.notifications.actor_id no longer carries a foreign key to
--     rungate.actors. A notification's actor is its run's initiator, which
--     the run's own restricting foreign key already keeps
--     (docs/guarantees.md#authority-data), and purge removes a run with its
--     notifications. The key made every terminal transition run a
--     referential check and share-lock the actor's row, so concurrent
--     workers finishing one actor's runs contended on it.
--
-- No function changes its signature; the C module of 1.2 serves 1.0 and 1.1
-- schemas too (their constraints are simply checked twice).

\echo Use "ALTER EXTENSION rungate UPDATE TO '1.2'" to load this file. \quit

ALTER TABLE rungate.audit_log
    DROP CONSTRAINT audit_log_event_check,
    DROP CONSTRAINT audit_log_authority_check,
    DROP CONSTRAINT audit_log_decision_check;

ALTER TABLE rungate.notifications
    DROP CONSTRAINT notifications_actor_id_fkey;

COMMENT ON TRIGGER guard_audit ON rungate.audit_log IS
    'ENABLE ALWAYS: append-only (UPDATE, DELETE outside purge: RG409); inserts only from rungate''s functions (or restore_mode), with event, authority and decision checked (23514)';
COMMENT ON COLUMN rungate.notifications.actor_id IS
    'the run''s initiator (kept by the run''s own foreign key to rungate.actors)';
