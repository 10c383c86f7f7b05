-- bounded_memory: a call that moves many runs keeps its memory flat
-- (src/maintenance.c reap_expired, src/control.c the items of a bulk
-- cancel, src/worker.c the runs a claim blocks; src/transition.c
-- rg_transition_discard; docs/reference.md reap_expired).
--   * reap_expired of 3,000 expired leases: the backend's memory, sampled
--     while it runs by a BEFORE INSERT trigger on audit_log (every 250th
--     row), grows by less than 1 MB from the 500th audit row to the last
--     (what each moved run left until the call ended, its returned row and
--     notification text, was 13 kB a run: 32 MB here, 2 GB for 150,000)
--   * cancel of a running bulk parent with 2,000 live items: the same
--   * a claim behind 3,000 runs of a suspended tenant, which blocks 1,000
--     of them (rungate.claim_block_limit) and starts none: the same (it was
--     4 kB a run)
\i test/fixtures/fresh.sql

CREATE TABLE public.memory_samples (audit_id bigint, bytes bigint);
CREATE FUNCTION public.sample_memory() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id % 250 = 0 THEN
        INSERT INTO public.memory_samples
        SELECT NEW.id, sum(total_bytes) FROM pg_backend_memory_contexts;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER sample_memory BEFORE INSERT ON rungate.audit_log
    FOR EACH ROW EXECUTE FUNCTION public.sample_memory();

-- growth from the sample after the first 500 audit rows of the call to the
-- last sample, in MB; how many samples were taken
CREATE FUNCTION pg_temp.growth(first_audit bigint) RETURNS TABLE (samples bigint, growth_mb numeric)
LANGUAGE sql AS $$
    SELECT count(*),
           round(((array_agg(bytes ORDER BY audit_id DESC))[1]
                  - (array_agg(bytes ORDER BY audit_id)
                       FILTER (WHERE audit_id >= first_audit + 500))[1]) / 1048576.0, 1)
      FROM public.memory_samples WHERE audit_id > first_audit
$$;

-- 3,000 running runs whose leases expired
SELECT count(*) AS enqueued FROM (SELECT rungate.enqueue('inventory.sync', 1, 10, 100)
                                    FROM generate_series(1, 3000)) e;
SELECT count(*) AS claimed FROM (SELECT rungate.claim('w', NULL, 1000)
                                   FROM generate_series(1, 3)) c;
UPDATE rungate.runs SET lease_expires_at = now() - interval '1 second'
 WHERE status = 'running';
SELECT max(id) AS a0 FROM rungate.audit_log \gset
TRUNCATE public.memory_samples;
SELECT rungate.reap_expired() AS reaped;
SELECT samples >= 10 AS sampled, growth_mb < 1 AS flat FROM pg_temp.growth(:a0);
SELECT status, count(*) FROM rungate.runs GROUP BY status ORDER BY status;
SELECT count(*) = 3000 AS one_audit_row_each FROM rungate.audit_log
 WHERE id > :a0 AND event = 'lease_expired';

-- a running bulk parent with 2,000 queued items, cancelled
INSERT INTO rungate.tenants (id, workspace_id, name)
    SELECT 1000 + g, 1, 'bulk-' || g FROM generate_series(1, 2000) g;
SELECT id AS parent FROM rungate.enqueue_bulk('bulk.inventory.sync', 1,
    ARRAY(SELECT 1000 + g FROM generate_series(1, 2000) g)::bigint[], 100) \gset
-- the claim starts the parent and fans its items out; no row is returned for it
SELECT count(*) AS returned FROM rungate.claim('w', '{bulk.inventory.sync}');
SELECT status FROM rungate.runs WHERE id = :parent;
SELECT count(*) AS items FROM rungate.runs WHERE parent_id = :parent AND status = 'queued';
SELECT max(id) AS a1 FROM rungate.audit_log \gset
TRUNCATE public.memory_samples;
SELECT status AS parent_status FROM rungate.cancel(:parent, 100);
SELECT samples >= 6 AS sampled, growth_mb < 1 AS flat FROM pg_temp.growth(:a1);
SELECT status, count(*) FROM rungate.runs WHERE parent_id = :parent GROUP BY status;

-- the 3,000 runs reaped above, of a tenant now suspended
UPDATE rungate.tenants SET status = 'suspended' WHERE id = 10;
SELECT max(id) AS a2 FROM rungate.audit_log \gset
TRUNCATE public.memory_samples;
SELECT count(*) AS started FROM rungate.claim('w');
SELECT samples >= 3 AS sampled, growth_mb < 1 AS flat FROM pg_temp.growth(:a2);
SELECT status, count(*) FROM rungate.runs WHERE tenant_id = 10 GROUP BY status ORDER BY status;

DROP TRIGGER sample_memory ON rungate.audit_log;
DROP FUNCTION public.sample_memory();
DROP TABLE public.memory_samples;
