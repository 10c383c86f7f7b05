-- row_triggers: rungate's own writes of runs, audit rows and notifications
-- (src/rowwrite.c, the executor's single-row routines) fire the row
-- triggers an application adds to those tables, and meet its CHECK
-- constraints (kept parsed between writes, and parsed again when they
-- change), as SQL statements would:
--   * a CHECK constraint added to runs refuses claim's update (23514), a
--     NOT VALID one too, and one added to the audit log its insert
--   * AFTER INSERT on the audit log and notifications sees every row written
--   * BEFORE UPDATE OF status on runs sees claim's start and complete's end
--   * a BEFORE trigger that skips one of these rows is an error (09000),
--     and the status change rolls back with it: no run starts or ends
--     without its audit row
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS rungate CASCADE;
CREATE EXTENSION rungate;
\set ECHO none
\i test/fixtures/seed.sql
\i test/fixtures/try.sql
\set ECHO all

CREATE TABLE seen (tbl text, what text);
CREATE FUNCTION note_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'audit_log' THEN
        INSERT INTO public.seen VALUES ('audit_log', NEW.event || ' run ' || NEW.run_id);
    ELSIF TG_TABLE_NAME = 'notifications' THEN
        INSERT INTO public.seen VALUES ('notifications', NEW.kind || ' to ' || NEW.actor_id);
    ELSE
        INSERT INTO public.seen VALUES ('runs', OLD.status || ' -> ' || NEW.status);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER app_audit AFTER INSERT ON rungate.audit_log
    FOR EACH ROW EXECUTE FUNCTION note_row();
CREATE TRIGGER app_notifications AFTER INSERT ON rungate.notifications
    FOR EACH ROW EXECUTE FUNCTION note_row();
CREATE TRIGGER app_status BEFORE UPDATE OF status ON rungate.runs
    FOR EACH ROW EXECUTE FUNCTION note_row();

SELECT id AS run_id FROM rungate.enqueue('inventory.sync', 1, 10, 101) \gset
SELECT run_id = :run_id AS claimed, lease_token AS token FROM rungate.claim('w1') \gset
SELECT :'claimed';
SELECT status FROM rungate.complete(:run_id, :'token');
SELECT tbl, regexp_replace(what, 'run [0-9]+', 'run N') AS what FROM seen;

-- the audit rows the triggers saw are the ones the log has
SELECT count(*) AS audit_rows FROM rungate.audit_log WHERE run_id = :run_id;

-- a BEFORE trigger that skips the audit row: the claim fails, nothing starts
CREATE FUNCTION skip_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RETURN NULL; END $$;
SELECT id AS run2 FROM rungate.enqueue('inventory.sync', 1, 10, 101) \gset
CREATE TRIGGER app_skip BEFORE INSERT ON rungate.audit_log
    FOR EACH ROW WHEN (NEW.event = 'started') EXECUTE FUNCTION skip_row();
SELECT pg_temp.try($$SELECT * FROM rungate.claim('w1')$$);
SELECT status, attempt FROM rungate.runs WHERE id = :run2;
DROP TRIGGER app_skip ON rungate.audit_log;

-- a BEFORE trigger that skips the run's update: the same
CREATE TRIGGER app_skip BEFORE UPDATE ON rungate.runs
    FOR EACH ROW WHEN (NEW.status = 'running') EXECUTE FUNCTION skip_row();
SELECT pg_temp.try($$SELECT * FROM rungate.claim('w1')$$);
SELECT status, attempt FROM rungate.runs WHERE id = :run2;
DROP TRIGGER app_skip ON rungate.runs;

-- a CHECK constraint the application adds: claim's update meets it, in
-- the same session that wrote the table before (the kept constraints are
-- replaced when the table changes)
ALTER TABLE rungate.runs ADD CONSTRAINT app_worker CHECK (worker IS DISTINCT FROM 'w-forbidden');
SELECT pg_temp.try($$SELECT * FROM rungate.claim('w-forbidden')$$);
SELECT status, attempt FROM rungate.runs WHERE id = :run2;
ALTER TABLE rungate.runs DROP CONSTRAINT app_worker;
-- NOT VALID skips the check of existing rows only: PostgreSQL checks every
-- new row version against it, and so do rungate's own writes (claim's start,
-- complete's writer, the audit log's and notifications' inserts)
ALTER TABLE rungate.runs ADD CONSTRAINT app_worker_nv CHECK (worker IS DISTINCT FROM 'w-forbidden') NOT VALID;
SELECT pg_temp.try($$SELECT * FROM rungate.claim('w-forbidden')$$);
SELECT status, attempt FROM rungate.runs WHERE id = :run2;
ALTER TABLE rungate.audit_log ADD CONSTRAINT app_audit_nv CHECK (worker IS DISTINCT FROM 'w-audit') NOT VALID;
SELECT pg_temp.try($$SELECT * FROM rungate.claim('w-audit')$$);
SELECT status, attempt FROM rungate.runs WHERE id = :run2;
ALTER TABLE rungate.audit_log DROP CONSTRAINT app_audit_nv;
ALTER TABLE rungate.runs DROP CONSTRAINT app_worker_nv;

-- without them, the run starts
SELECT count(*) AS started FROM rungate.claim('w-forbidden');
SELECT status, attempt FROM rungate.runs WHERE id = :run2;

DROP TRIGGER app_audit ON rungate.audit_log;
DROP TRIGGER app_notifications ON rungate.notifications;
DROP TRIGGER app_status ON rungate.runs;
DROP TABLE seen;
DROP FUNCTION note_row();
DROP FUNCTION skip_row();
