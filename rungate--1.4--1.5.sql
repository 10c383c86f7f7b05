-- rungate 1.4 -> 1.5: the queue floor.
--
--   * rungate.note_queued() fires after every INSERT or UPDATE that leaves
--     a queued run (ENABLE ALWAYS) and lowers the shared queue floor to it;
--     claim scans the queue index from the floor, past the entries of the
--     runs already claimed (see src/queue.c for why that is exact).
--   * rungate.queue_floor() shows whether claims here can use the floor
--     (rungate in shared_preload_libraries, the trigger in place), whether
--     this session's do (the setting rungate.queue_floor), and where it is.
--
-- The C module of 1.5 serves 1.0 to 1.4 schemas too; without the trigger it
-- scans the queue from its start.

\echo Use "ALTER EXTENSION rungate UPDATE TO '1.5'" to load this file. \quit

CREATE FUNCTION rungate.note_queued() RETURNS trigger
    AS 'MODULE_PATHNAME', 'rg_note_queued' LANGUAGE C;
REVOKE ALL ON FUNCTION rungate.note_queued() FROM PUBLIC;
COMMENT ON FUNCTION rungate.note_queued() IS 'trigger: a queued run was written, so the queue floor must not be past it';

CREATE TRIGGER note_queued
    AFTER INSERT OR UPDATE ON rungate.runs
    FOR EACH ROW WHEN (NEW.status = 'queued')
    EXECUTE FUNCTION rungate.note_queued();
ALTER TABLE rungate.runs ENABLE ALWAYS TRIGGER note_queued;
COMMENT ON TRIGGER note_queued ON rungate.runs IS 'ENABLE ALWAYS: a queued run lowers the queue floor that claims scan from';

CREATE FUNCTION rungate.queue_floor(OUT available boolean, OUT enabled boolean,
                                    OUT priority integer,
                                    OUT run_id bigint, OUT held_until timestamptz)
    RETURNS record
    AS 'MODULE_PATHNAME', 'rg_queue_floor' LANGUAGE C VOLATILE;
REVOKE ALL ON FUNCTION rungate.queue_floor() FROM PUBLIC;
COMMENT ON FUNCTION rungate.queue_floor() IS 'the queue floor claims scan from: available (rungate preloaded, note_queued in place), enabled (rungate.queue_floor), its priority and run id (null: from the start), the earliest run_at of the not yet due runs it passed';
