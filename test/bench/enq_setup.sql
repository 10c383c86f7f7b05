-- test/bench/enq_setup.sql: BENCH_MODE=enqueue's baseline, loaded after
-- setup.sql. bench.bare_enq is the row of rungate.runs with what a bare
-- queue table needs and no more: the primary key and one partial queue
-- index; no triggers, no foreign keys, no audit, no notification.
CREATE TABLE bench.bare_enq (LIKE rungate.runs INCLUDING DEFAULTS INCLUDING IDENTITY
                             INCLUDING CONSTRAINTS);
ALTER TABLE bench.bare_enq ADD PRIMARY KEY (id);
CREATE INDEX ON bench.bare_enq (priority DESC, id) WHERE status = 'queued';
SELECT bench.copy_reloptions('rungate.runs', 'bench.bare_enq');
ALTER TABLE bench.bare_enq ALTER COLUMN max_attempts SET DEFAULT 3;
ALTER TABLE bench.bare_enq ALTER COLUMN status SET DEFAULT 'queued';
-- wait events sampled while pgbench runs (bench.sample_waits)
CREATE TABLE bench.waits (label text, event text);
CREATE PROCEDURE bench.sample_waits(label text, app text, secs float8)
  LANGUAGE plpgsql AS $$
DECLARE stop timestamptz := clock_timestamp() + secs * interval '1 second';
BEGIN
  WHILE clock_timestamp() < stop LOOP
    PERFORM pg_stat_clear_snapshot();
    INSERT INTO bench.waits
      SELECT label, coalesce(wait_event_type || ':' || wait_event, 'on CPU')
        FROM pg_stat_activity WHERE application_name = app AND state = 'active';
    COMMIT;
    PERFORM pg_sleep(0.01);
  END LOOP;
END $$;
