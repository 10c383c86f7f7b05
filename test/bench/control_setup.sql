-- test/bench/control_setup.sql: helpers of test/bench/control.sh (noisy,
-- heldback, heartbeat, blocklimit), loaded after setup.sql into the mode's
-- own database. Everything lives in the schema bench; rungate's tables are
-- written only through rungate's functions, except the authority data (a
-- second workspace, an operation type), which the application owns.
--
-- Works on 1.5 too (the heartbeat mode loads it into a 1.5 cluster): nothing
-- here names a 1.6 object; the modes set limits and holds themselves.

-- A second workspace (2) with one tenant and one actor, its owner and the
-- tenant's operator: workspace B of the noisy mode, the workspace of the
-- held-back runs in the heldback mode. Ids far above any model's.
INSERT INTO rungate.workspaces (id, name) VALUES (2, 'second');
INSERT INTO rungate.tenants (id, workspace_id, name) VALUES (1000001, 2, 'second-tenant');
INSERT INTO rungate.actors (id, name) VALUES (1000001, 'second-actor');
INSERT INTO rungate.workspace_members VALUES (2, 1000001, 'owner');
INSERT INTO rungate.tenant_members VALUES (1000001, 1000001, 'operator');
INSERT INTO rungate.tenant_prerequisites
  SELECT 1000001, p, true
    FROM unnest('{provider_connection,admin_consent,inventory_baseline}'::text[]) p;

-- The type of the held-back runs (heldback): used by no run of the default
-- mix, so a limit on it holds back nothing else.
INSERT INTO rungate.operation_types (name, capability, prerequisites, allow_system, writes)
  VALUES ('bench.throttled', 'inventory.sync', '{provider_connection}', false, false);

-- n queued runs of `op` in workspace 2, at `prio`
CREATE FUNCTION bench.enqueue_second(op text, n int, prio int DEFAULT 0) RETURNS bigint
  LANGUAGE sql AS $$
  SELECT count(rungate.enqueue(op, 2, 1000001, 1000001, '{}', NULL, prio))
    FROM generate_series(1, n)
$$;

-- heartbeat: the running runs the workers heartbeat, with their tokens
CREATE TABLE bench.hb (i int PRIMARY KEY, run_id bigint NOT NULL, lease_token uuid NOT NULL);

-- heartbeat: claim n runs (queued before) and keep their leases in bench.hb
CREATE FUNCTION bench.hb_claim(n int) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  have bigint;
BEGIN
  LOOP
    SELECT count(*) INTO have FROM bench.hb;
    EXIT WHEN have >= n;
    INSERT INTO bench.hb
    SELECT have + row_number() OVER (), c.run_id, c.lease_token
      FROM rungate.claim('hb', NULL, least(1000, n - have)::int) c;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'heartbeat setup: the queue ran dry after % claims', have;
    END IF;
  END LOOP;
  RETURN have;
END $$;

-- blocklimit: one claim call, timed inside the server; a row per call with
-- the transaction's id (to count its execution_blocked audit rows) and the
-- runs it changed (started or blocked: the rows of rungate.runs the call
-- updated, from this backend's own statistics, which accumulate across
-- transactions until sent, hence the difference), which it returns: 0 when
-- it found nothing it could take
CREATE TABLE bench.claim_calls (
  txid bigint, pid int, t0 timestamptz, t1 timestamptz, started int, changed int);
CREATE FUNCTION bench.timed_claim(worker text) RETURNS int LANGUAGE plpgsql AS $$
DECLARE
  u0 bigint := pg_stat_get_xact_tuples_updated('rungate.runs'::regclass);
  t0 timestamptz := clock_timestamp();
  n int;
  t1 timestamptz;
  changed int;
BEGIN
  SELECT count(*) INTO n FROM rungate.claim(worker);
  t1 := clock_timestamp();
  changed := pg_stat_get_xact_tuples_updated('rungate.runs'::regclass) - u0;
  INSERT INTO bench.claim_calls VALUES (txid_current(), pg_backend_pid(), t0, t1, n, changed);
  RETURN changed;
END $$;
ANALYZE;
