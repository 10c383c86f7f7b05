-- test/bench/mode_setup.sql: helpers of test/bench/modes.sh (pileup,
-- sustained, memory), loaded after setup.sql into the mode's own database.
-- Everything lives in the schema bench; nothing here touches rungate's
-- tables except through rungate's functions.

-- bench.mix(n) from an offset: the same mix (operation round robin, each
-- initiator on its own tenant), starting anywhere in it
CREATE FUNCTION bench.mode_mix(n int, off bigint)
  RETURNS TABLE (operation text, tenant_id bigint, initiator_id bigint)
  LANGUAGE sql STABLE AS $$
  SELECT (ARRAY['provider.connection.verify','inventory.sync',
                'restore.execute','reports.export'])[g % 4 + 1],
         (a - 1) * m.tenants / m.actors + 1, a
    FROM bench.model m, generate_series(off + 1, off + n) g,
         LATERAL (SELECT (g * 7919) % m.actors + 1 AS a) x
$$;

-- pileup: n queued runs of one tenant, initiated by its operators (the
-- actors whose own tenant it is), the four operations round robin
CREATE FUNCTION bench.mode_pile(tenant bigint, n int) RETURNS bigint
  LANGUAGE sql AS $$
  SELECT count(rungate.enqueue(
           (ARRAY['provider.connection.verify','inventory.sync',
                  'restore.execute','reports.export'])[g % 4 + 1],
           1, tenant, a.ids[g % cardinality(a.ids) + 1]))
    FROM generate_series(1, n) g,
         (SELECT array_agg(x.id ORDER BY x.id) AS ids
            FROM generate_series(1, (SELECT actors FROM bench.model)) x(id)
           WHERE (x.id - 1) * (SELECT tenants FROM bench.model)
                 / (SELECT actors FROM bench.model) + 1 = tenant) a
$$;

-- pileup: n queued runs of the other tenants (the usual mix without `tenant`)
CREATE FUNCTION bench.mode_healthy(tenant bigint, n int) RETURNS bigint
  LANGUAGE sql AS $$
  SELECT count(rungate.enqueue(x.operation, 1, x.tenant_id, x.initiator_id))
    FROM (SELECT * FROM bench.mode_mix(2 * n + 100, 0) y
           WHERE y.tenant_id <> tenant LIMIT n) x
$$;

-- sustained: top the queue up to `depth` queued runs, at most max_batch at a
-- time (the enqueuer's one statement, called by pgbench -R)
CREATE FUNCTION bench.mode_top_up(depth int, max_batch int, off bigint)
  RETURNS bigint LANGUAGE sql AS $$
  SELECT count(rungate.enqueue(x.operation, 1, x.tenant_id, x.initiator_id))
    FROM bench.mode_mix(
           least(max_batch, greatest(0, depth - (
             SELECT count(*)::int FROM (SELECT 1 FROM rungate.runs
                                         WHERE status = 'queued' LIMIT depth) q))),
           off) x
$$;

-- sustained: one sample of the state (a row per minute)
CREATE TABLE bench.mode_samples (
  minute int PRIMARY KEY, at timestamptz, enqueued bigint, queued bigint,
  running bigint, other bigint, runs_rows bigint, runs_heap bigint,
  queue_idx bigint, runs_idx bigint, audit_rows bigint, audit_heap bigint,
  audit_idx bigint, runs_dead bigint, runs_autovacuums bigint,
  audit_autovacuums bigint, idx_sizes text);
CREATE FUNCTION bench.mode_sample(minute int) RETURNS void LANGUAGE sql AS $$
  INSERT INTO bench.mode_samples
  SELECT minute, clock_timestamp(),
         (SELECT last_value FROM rungate.runs_id_seq),
         c.queued, c.running, c.other, c.total,
         pg_relation_size('rungate.runs'),
         pg_relation_size('rungate.runs_queue_idx'),
         (SELECT sum(pg_relation_size(indexrelid)) FROM pg_index
           WHERE indrelid = 'rungate.runs'::regclass),
         (SELECT count(*) FROM rungate.audit_log),
         pg_relation_size('rungate.audit_log'),
         (SELECT sum(pg_relation_size(indexrelid)) FROM pg_index
           WHERE indrelid = 'rungate.audit_log'::regclass),
         (SELECT n_dead_tup FROM pg_stat_user_tables
           WHERE relid = 'rungate.runs'::regclass),
         (SELECT autovacuum_count FROM pg_stat_user_tables
           WHERE relid = 'rungate.runs'::regclass),
         (SELECT autovacuum_count FROM pg_stat_user_tables
           WHERE relid = 'rungate.audit_log'::regclass),
         (SELECT string_agg(i.indexrelid::regclass::text || '=' ||
                            pg_relation_size(i.indexrelid) / 1024 || 'kB', ' '
                            ORDER BY i.indexrelid::regclass::text)
            FROM pg_index i WHERE i.indrelid = 'rungate.runs'::regclass)
    FROM (SELECT count(*) FILTER (WHERE status = 'queued') AS queued,
                 count(*) FILTER (WHERE status = 'running') AS running,
                 count(*) FILTER (WHERE status NOT IN ('queued', 'running',
                                                       'succeeded')) AS other,
                 count(*) AS total
            FROM rungate.runs) c
$$;

-- sustained: watch the workers for lock waits, every `every` seconds for
-- `seconds` seconds, committing each sample; a row per sample that found a
-- worker waiting, and who blocked it
CREATE TABLE bench.mode_waits (
  at timestamptz, waiting int, on_purge int, on_enqueuer int, events text,
  blockers text);
CREATE TABLE bench.mode_watch_runs (samples bigint);
CREATE PROCEDURE bench.mode_watch(seconds float8, every float8)
  LANGUAGE plpgsql AS $$
DECLARE
  stop timestamptz := clock_timestamp() + make_interval(secs => seconds);
  n bigint := 0;
BEGIN
  WHILE clock_timestamp() < stop LOOP
    INSERT INTO bench.mode_waits
    SELECT clock_timestamp(), count(*),
           count(*) FILTER (WHERE EXISTS (
             SELECT 1 FROM pg_stat_activity b
              WHERE b.pid = ANY (pg_blocking_pids(w.pid))
                AND b.application_name = 'rg_purge')),
           count(*) FILTER (WHERE EXISTS (
             SELECT 1 FROM pg_stat_activity b
              WHERE b.pid = ANY (pg_blocking_pids(w.pid))
                AND b.application_name = 'rg_enqueuer')),
           string_agg(DISTINCT w.wait_event, ','),
           (SELECT string_agg(DISTINCT b.application_name || ': ' || left(b.query, 60), ' | ')
              FROM pg_stat_activity b, pg_stat_activity w2
             WHERE w2.application_name = 'rg_worker' AND w2.wait_event_type = 'Lock'
               AND b.pid = ANY (pg_blocking_pids(w2.pid)))
      FROM pg_stat_activity w
     WHERE w.application_name = 'rg_worker' AND w.wait_event_type = 'Lock'
    HAVING count(*) > 0;
    n := n + 1;
    COMMIT;
    PERFORM pg_sleep(every);
  END LOOP;
  INSERT INTO bench.mode_watch_runs VALUES (n);
END $$;

-- memory: this backend's memory, as the backend itself sees it
CREATE TABLE bench.mode_mem (
  stage text, claims bigint, at timestamptz, contexts bigint,
  vmrss_kb bigint, rss_anon_kb bigint, rss_file_kb bigint, rss_shmem_kb bigint);
CREATE TABLE bench.mode_mem_ctx (
  stage text, name text, contexts int, total_bytes bigint);
CREATE FUNCTION bench.mode_mem_sample(stage text, claims bigint) RETURNS void
  LANGUAGE plpgsql AS $$
DECLARE
  st text := pg_read_file('/proc/self/status');
BEGIN
  INSERT INTO bench.mode_mem VALUES (
    stage, claims, clock_timestamp(),
    (SELECT sum(total_bytes) FROM pg_backend_memory_contexts),
    (regexp_match(st, 'VmRSS:\s+(\d+)'))[1]::bigint,
    (regexp_match(st, 'RssAnon:\s+(\d+)'))[1]::bigint,
    (regexp_match(st, 'RssFile:\s+(\d+)'))[1]::bigint,
    (regexp_match(st, 'RssShmem:\s+(\d+)'))[1]::bigint);
  IF stage IN ('warm', 'end') THEN
    INSERT INTO bench.mode_mem_ctx
    SELECT stage, c.name, count(*), sum(c.total_bytes)
      FROM pg_backend_memory_contexts c GROUP BY c.name;
  END IF;
END $$;

-- memory: n claims, each completed, in one backend; COMMIT every `batch`;
-- samples when cold, after `warmup` claims, every `every` claims, at the end
CREATE PROCEDURE bench.mode_memory(n bigint, batch int, warmup int, every bigint)
  LANGUAGE plpgsql AS $$
DECLARE
  c record;
  i bigint := 0;
BEGIN
  PERFORM bench.mode_mem_sample('cold', 0);
  COMMIT;
  WHILE i < n LOOP
    SELECT * INTO c FROM rungate.claim('m');
    IF c.run_id IS NULL THEN
      RAISE EXCEPTION 'the queue ran dry after % claims', i;
    END IF;
    PERFORM rungate.complete(c.run_id, c.lease_token);
    i := i + 1;
    IF i % batch = 0 OR i = n THEN
      COMMIT;
    END IF;
    IF i = warmup THEN
      PERFORM bench.mode_mem_sample('warm', i);
      COMMIT;
    ELSIF i % every = 0 AND i < n THEN
      PERFORM bench.mode_mem_sample('progress', i);
      COMMIT;
    END IF;
  END LOOP;
  PERFORM bench.mode_mem_sample('end', i);
  COMMIT;
END $$;
