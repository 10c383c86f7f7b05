-- rungate 1.8 -> 1.9: enqueue at scale, continued. The foreign keys from
-- rungate.runs to rungate.tenants (tenant_id) and rungate.actors
-- (initiator_id) stay declared, and their delete side stays PostgreSQL's
-- own; their insert check is made by rungate (src/references.c) instead of
-- their insert triggers. It is the same check: the row is locked FOR KEY
-- SHARE, so a delete of the tenant or the actor waits for the run's
-- transaction and then finds the run (23503), and a run never names a row a
-- committed transaction deleted. rungate takes the lock with one index probe
-- instead of a query through SPI, which was about a sixth of an enqueue.
--
-- The C module of 1.9 serves 1.0 to 1.8 schemas too: there the insert
-- triggers still fire, besides its own check (the row is locked twice).

\echo Use "ALTER EXTENSION rungate UPDATE TO '1.9'" to load this file. \quit

-- The insert triggers of the two foreign keys (RI_FKey_check_ins): rungate's
-- guard_runs locks the rows instead. Their update triggers stay: a run's
-- tenant and initiator never change, so they never queue a check.
DO $$
DECLARE
    t name;
BEGIN
    FOR t IN
        SELECT tg.tgname
          FROM pg_catalog.pg_trigger tg
          JOIN pg_catalog.pg_constraint c ON c.oid OPERATOR(pg_catalog.=) tg.tgconstraint
         WHERE tg.tgrelid OPERATOR(pg_catalog.=) 'rungate.runs'::pg_catalog.regclass
           AND c.conname IN ('runs_tenant_id_fkey', 'runs_initiator_id_fkey')
           AND tg.tgfoid OPERATOR(pg_catalog.=) 'pg_catalog."RI_FKey_check_ins"'::pg_catalog.regproc
    LOOP
        EXECUTE pg_catalog.format('ALTER TABLE rungate.runs DISABLE TRIGGER %I', t);
    END LOOP;
END
$$;
