-- test/bench/sched_setup.sql: the scheduler mode's database (BENCH_MODE=scheduler,
-- test/bench/scheduler.sh), loaded after setup.sql (the default model: one
-- workspace, 200 tenants, 2,000 actors, four tenant-scoped operation types).
--
-- psql variables: runs (1000000), schedules (10000), retention ('1d', as rungate.retention).
--
-- What a database a scheduler serves looks like after a day of work, so
-- that every step of a pass has some work and every index its size:
--   * runs (1,000,000): the terminal ones (all but 20,000) finished one
--     every 86400/(runs - 20000) s over the last `retention`, the oldest a
--     minute short of it, so once rungate.retention is set each pass purges
--     the few that just aged out (a steady state, no catch-up); 10,000
--     queued and due; 5,000 queued with run_at over the next day (a wake-up
--     every ~17 s; at priority -1, see below); 5,000 running, leases expiring over the next hour (a
--     reap every ~0.7 s). Loaded as a restore would load them
--     (rungate.restore_mode): no audit rows.
--   * schedules (10,000): hourly, schedule i at minute i % 60 (about 167
--     ticks at every minute boundary, none in between), half of them system
--     authority, half on an operator's authority; last_tick at their latest
--     tick, so nothing is owed when the scheduler starts.
--   * bench.delayed: the operation type of the wake-up latency's delayed runs
--     (system authority allowed, no prerequisite), and leases of an hour on
--     the model's types (the claim rounds leave their runs running: no
--     reaper work comes of them during the benchmark).
\if :{?runs} \else \set runs 1000000 \endif
\if :{?schedules} \else \set schedules 10000 \endif
\if :{?retention} \else \set retention '1d' \endif
SET client_min_messages = warning;

UPDATE rungate.operation_types SET lease = '1 hour';
INSERT INTO rungate.operation_types (name, capability, prerequisites, allow_system)
  VALUES ('bench.delayed', 'reports.export', '{}', true);

SET rungate.restore_mode = on;
-- terminal: one every (retention - 1 min) / n, the oldest a minute short of retention
INSERT INTO rungate.runs (workspace_id, tenant_id, operation, initiator_id, status,
                          reason_code, reason_category, reason_message, error,
                          attempt, max_attempts, run_at, created_at, started_at, finished_at)
SELECT 1, x.tenant_id, x.operation, x.initiator_id, s.status,
       CASE WHEN s.status = 'blocked' THEN 'tenant_not_operable' END,
       CASE WHEN s.status = 'blocked' THEN 'tenant' END,
       CASE WHEN s.status = 'blocked' THEN 'tenant is suspended' END,
       CASE WHEN s.status = 'failed' THEN 'provider timeout' END,
       1, 3, t.at - interval '2 seconds', t.at - interval '2 seconds',
       t.at - interval '1 second', t.at
  FROM (SELECT row_number() OVER () AS g, m.* FROM bench.mix(:runs - 20000) m) x,
       LATERAL (SELECT now() - :'retention'::interval + interval '1 minute'
                       + (x.g - 1) * ((:'retention'::interval - interval '2 minutes') / (:runs - 20000))
                       AS at) t,
       LATERAL (SELECT CASE x.g % 20 WHEN 0 THEN 'blocked' WHEN 1 THEN 'failed'
                                     WHEN 2 THEN 'cancelled' ELSE 'succeeded' END AS status) s;
-- queued and due
INSERT INTO rungate.runs (workspace_id, tenant_id, operation, initiator_id, status,
                          attempt, max_attempts, run_at, created_at)
SELECT 1, x.tenant_id, x.operation, x.initiator_id, 'queued', 0, 3, now(), now()
  FROM bench.mix(10000) x;
-- queued, delayed over the next day; priority -1, after every due run in
-- claim order: delayed runs ahead of the due ones cost every claim a walk
-- over them (2 to 5 ms a claim with 5,000 of them, against 0.3 ms), which
-- is the claim's business, not the scheduler's
INSERT INTO rungate.runs (workspace_id, tenant_id, operation, initiator_id, status,
                          attempt, max_attempts, priority, run_at, created_at)
SELECT 1, x.tenant_id, x.operation, x.initiator_id, 'queued', 0, 3, -1,
       now() + g * interval '17.28 seconds', now()
  FROM (SELECT row_number() OVER () AS g, m.* FROM bench.mix(5000) m) x;
-- running, leases expiring over the next hour
INSERT INTO rungate.runs (workspace_id, tenant_id, operation, initiator_id, status,
                          attempt, max_attempts, run_at, created_at, started_at, worker,
                          lease_token, lease_expires_at)
SELECT 1, x.tenant_id, x.operation, x.initiator_id, 'running', 1, 3, now(), now(), now(),
       'loaded', gen_random_uuid(), now() + g * interval '0.72 seconds'
  FROM (SELECT row_number() OVER () AS g, m.* FROM bench.mix(5000) m) x;
RESET rungate.restore_mode;

-- schedules: hourly at minute i % 60; even i system authority on a type
-- that allows it, odd i on the authority of the tenant's operator (actor
-- (t - 1) * actors / tenants + 1 in setup.sql's model)
INSERT INTO rungate.schedules (name, cron, operation, workspace_id, tenant_id, initiator_id,
                               created_at, last_tick)
SELECT 'bench-' || i, (i % 60) || ' * * * *',
       CASE i % 4 WHEN 0 THEN 'inventory.sync' WHEN 2 THEN 'provider.connection.verify'
                  WHEN 1 THEN 'reports.export' ELSE 'restore.execute' END,
       1, t, CASE WHEN i % 2 = 1 THEN (t - 1) * m.actors / m.tenants + 1 END,
       now() - interval '2 hours',
       rungate.cron_latest_tick((i % 60) || ' * * * *', now() - interval '2 hours', now())
  FROM generate_series(1, :schedules) i, bench.model m,
       LATERAL (SELECT i % m.tenants + 1 AS t) x;

-- every schedule's target is allowed: the ticks are runs that start
DO $$
DECLARE denied bigint;
BEGIN
  SELECT count(*) INTO denied FROM rungate.schedules s
   WHERE NOT (rungate.decide(s.operation, s.workspace_id, s.tenant_id, s.initiator_id)).allowed;
  IF denied > 0 THEN
    RAISE EXCEPTION 'bench schedules: % of them denied', denied;
  END IF;
END $$;

VACUUM ANALYZE;
