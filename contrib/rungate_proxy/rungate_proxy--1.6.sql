-- rungate_proxy 1.6: the front of a rungate scale-out (docs/scale-out.md).
--
-- Installed on a front node that has no rungate of its own, next to PL/Proxy
-- and a PL/Proxy cluster named rungate_shards (a foreign server with the
-- shards' connection strings p0, p1, ...). Every shard is a complete
-- PostgreSQL database with rungate and rungate_shard.
--
-- The schema offers rungate's API under the same names and signatures:
--   - calls that name a workspace go to the workspace's shard:
--     RUN ON hashint8(coalesce(workspace_id, 0)) (a null workspace goes to
--     the shard of 0, whose rungate answers RG400);
--   - calls that name only a run (or a hold) go to the shard whose id space
--     holds it: shard s numbers its runs s + 1, s + 1 + n, ... (rungate_shard),
--     so RUN ON int8mi(coalesce(run_id, 1), 1), i.e. run_id - 1, names it,
--     without a lookup. Both are built-in C functions: PL/Proxy evaluates the
--     RUN ON expression with a query of its own on every call, and an SQL
--     function there is planned anew each time (measured: it halved the rate);
--   - claim is served per shard: claim_on(shard, ...), or claim(...) in a
--     session that SET rungate_proxy.shard (a worker pool per shard); the
--     front never asks every shard for work;
--   - global authority (actors, role capabilities, operation types) is
--     written to every shard (RUN ON ALL), shard-local authority to the
--     workspace's shard.
-- Every proxied call is one autocommitted transaction on its shard (PL/Proxy):
-- it has committed there when it returns, whatever the front's transaction
-- does next. Nothing here stores runs or authority; the shards do.

\echo Use "CREATE EXTENSION rungate_proxy" to load this file. \quit

------------------------------------------------------------------------------
-- The shards' result types, mirrored (PL/Proxy reads result columns by name)
------------------------------------------------------------------------------

CREATE TYPE rungate_proxy.runs AS (
    id bigint, workspace_id bigint, tenant_id bigint, operation text,
    initiator_id bigint, parent_id bigint, status text, reason_code text,
    reason_category text, reason_message text, error text, attempt integer,
    max_attempts integer, priority integer, run_at timestamptz, payload jsonb,
    result jsonb, worker text, lease_expires_at timestamptz,
    idempotency_key text, created_at timestamptz, started_at timestamptz,
    finished_at timestamptz, lease_token uuid, item_tenants bigint[],
    rerun_of bigint
);
COMMENT ON TYPE rungate_proxy.runs IS 'a row of rungate.runs, as a shard returned it';

CREATE TYPE rungate_proxy.decision AS (
    allowed boolean, authority text, reason_code text, reason_category text,
    reason_message text, checks jsonb
);
COMMENT ON TYPE rungate_proxy.decision IS 'rungate.decision, as a shard returned it';

CREATE TYPE rungate_proxy.claimed AS (
    run_id bigint, lease_token uuid, attempt integer, operation text,
    workspace_id bigint, tenant_id bigint, initiator_id bigint, payload jsonb,
    lease_expires_at timestamptz
);
COMMENT ON TYPE rungate_proxy.claimed IS 'rungate.claimed, as a shard returned it';

CREATE TYPE rungate_proxy.run_summary AS (
    run_id bigint, workspace_id bigint, tenant_id bigint, operation text,
    authority text, initiator_id bigint, status text, reason_code text,
    reason_category text, reason_message text, error text, attempt integer,
    parent_id bigint, created_at timestamptz, started_at timestamptz,
    finished_at timestamptz
);
COMMENT ON TYPE rungate_proxy.run_summary IS 'rungate.run_summary, as a shard returned it';

CREATE TYPE rungate_proxy.run_detail AS (
    run_id bigint, workspace_id bigint, tenant_id bigint, operation text,
    authority text, initiator_id bigint, status text, reason_code text,
    reason_category text, reason_message text, error text, attempt integer,
    parent_id bigint, created_at timestamptz, started_at timestamptz,
    finished_at timestamptz, payload jsonb, result jsonb, items jsonb,
    audit jsonb, waiting text
);
COMMENT ON TYPE rungate_proxy.run_detail IS 'rungate.run_detail, as a shard returned it';

CREATE TYPE rungate_proxy.holds AS (
    id bigint, workspace_id bigint, tenant_id bigint, operation text,
    reason text, held_by bigint, created_at timestamptz,
    released_at timestamptz, released_by bigint
);
COMMENT ON TYPE rungate_proxy.holds IS 'a row of rungate.holds, as a shard returned it';

CREATE TYPE rungate_proxy.shard_state AS (
    shard integer, nshards integer, sequences_ok boolean,
    authority_digest text, detail text
);
COMMENT ON TYPE rungate_proxy.shard_state IS
    'what a shard says about itself (rungate_shard.identity)';

------------------------------------------------------------------------------
-- The layout. PL/Proxy evaluates RUN ON as the caller, so these stay
-- executable by PUBLIC (they read only the foreign server's option names).
-- workspace_hash and run_hash are the routing expressions of the proxied
-- functions, as functions, for workspace_shard and run_shard.
------------------------------------------------------------------------------

CREATE FUNCTION rungate_proxy.shard_count()
    RETURNS integer
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    n integer;
BEGIN
    -- plpgsql keeps this plan across calls (claim_on checks its shard with it)
    SELECT pg_catalog.count(*)::integer INTO n
      FROM pg_catalog.pg_foreign_server s, pg_catalog.unnest(s.srvoptions) o
     WHERE s.srvname OPERATOR(pg_catalog.=) 'rungate_shards'
       AND o OPERATOR(pg_catalog.~) '^(p|partition_)[0-9]+=';
    RETURN n;
END $$;
COMMENT ON FUNCTION rungate_proxy.shard_count() IS
    'the number of shards: partitions p0, p1, ... of the foreign server rungate_shards';

CREATE FUNCTION rungate_proxy.shard_of_hash(hash bigint)
    RETURNS integer
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
    SELECT CASE WHEN c.modular THEN pg_catalog.abs(hash % c.n)::integer
                ELSE (hash OPERATOR(pg_catalog.&) (c.n - 1))::integer END
      FROM (SELECT rungate_proxy.shard_count()::bigint AS n,
                   EXISTS (SELECT FROM pg_catalog.pg_foreign_server s, pg_catalog.unnest(s.srvoptions) o
                            WHERE s.srvname OPERATOR(pg_catalog.=) 'rungate_shards'
                              AND pg_catalog.lower(o) OPERATOR(pg_catalog.~) '^modular_mapping=0*[1-9]') AS modular) c
     WHERE c.n > 0
$$;
COMMENT ON FUNCTION rungate_proxy.shard_of_hash(bigint) IS
    'the shard PL/Proxy maps a hash value to (hash & (n - 1), or abs(hash % n) with modular_mapping)';

CREATE FUNCTION rungate_proxy.workspace_hash(workspace_id bigint)
    RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    AS $$ SELECT pg_catalog.hashint8(coalesce(workspace_id, 0)) $$;
COMMENT ON FUNCTION rungate_proxy.workspace_hash(bigint) IS
    'hashint8(workspace_id), the routing hash of a workspace (null: 0''s, whose shard answers RG400)';

CREATE FUNCTION rungate_proxy.run_hash(run_id bigint)
    RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    AS $$ SELECT coalesce(run_id, 1) - 1 $$;
COMMENT ON FUNCTION rungate_proxy.run_hash(bigint) IS
    'run_id - 1, the routing hash of a run or hold id: shard s numbers them s + 1 + k * shards (null: shard 0''s, which answers RG400)';

CREATE FUNCTION rungate_proxy.workspace_shard(workspace_id bigint)
    RETURNS integer
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
    AS $$ SELECT rungate_proxy.shard_of_hash(rungate_proxy.workspace_hash(workspace_id)) $$;
COMMENT ON FUNCTION rungate_proxy.workspace_shard(bigint) IS 'the shard that holds a workspace';

CREATE FUNCTION rungate_proxy.run_shard(run_id bigint)
    RETURNS integer
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
    AS $$ SELECT rungate_proxy.shard_of_hash(rungate_proxy.run_hash(run_id)) $$;
COMMENT ON FUNCTION rungate_proxy.run_shard(bigint) IS 'the shard that holds a run (or a hold) by its id';

CREATE FUNCTION rungate_proxy.shard_hash(shard integer)
    RETURNS integer
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    n integer := rungate_proxy.shard_count();
BEGIN
    IF shard IS NULL OR shard < 0 OR shard >= n THEN
        RAISE EXCEPTION 'shard % is not a shard of rungate_shards (0 to %)', shard, n - 1
              USING ERRCODE = 'RG400';
    END IF;
    RETURN shard;
END $$;
COMMENT ON FUNCTION rungate_proxy.shard_hash(integer) IS
    'a shard index checked against the layout (RG400 outside 0 .. shards - 1), as a routing hash';

CREATE FUNCTION rungate_proxy.session_shard()
    RETURNS integer
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    s text := pg_catalog.current_setting('rungate_proxy.shard', true);
BEGIN
    IF s IS NULL OR s OPERATOR(pg_catalog.!~) '^[0-9]{1,9}$' THEN
        RAISE EXCEPTION 'claim through the front serves one shard: this session has no valid rungate_proxy.shard (%)',
              coalesce(s, 'unset')
              USING ERRCODE = 'RG400',
                    HINT = 'SET rungate_proxy.shard = <n> (or options=-crungate_proxy.shard=<n>) for a worker pool per shard, or call rungate_proxy.claim_on(shard, ...)';
    END IF;
    RETURN rungate_proxy.shard_hash(s::integer);
END $$;
COMMENT ON FUNCTION rungate_proxy.session_shard() IS
    'the shard this session''s claims serve: the setting rungate_proxy.shard (RG400 when unset)';

------------------------------------------------------------------------------
-- Dispatch: by workspace, or by the run's id
------------------------------------------------------------------------------

CREATE FUNCTION rungate_proxy.enqueue(operation text, workspace_id bigint,
                                      tenant_id bigint DEFAULT NULL,
                                      initiator_id bigint DEFAULT NULL,
                                      payload jsonb DEFAULT '{}',
                                      run_at timestamptz DEFAULT NULL,
                                      priority integer DEFAULT 0,
                                      idempotency_key text DEFAULT NULL)
    RETURNS rungate_proxy.runs
    LANGUAGE plproxy
    AS $$
    CLUSTER 'rungate_shards';
    RUN ON hashint8(coalesce(workspace_id, 0));
    TARGET rungate.enqueue;
$$;
COMMENT ON FUNCTION rungate_proxy.enqueue(text, bigint, bigint, bigint, jsonb, timestamptz, integer, text) IS
    'rungate.enqueue on the workspace''s shard';

CREATE FUNCTION rungate_proxy.enqueue_bulk(operation text, workspace_id bigint,
                                           tenant_ids bigint[],
                                           initiator_id bigint DEFAULT NULL,
                                           payload jsonb DEFAULT '{}')
    RETURNS rungate_proxy.runs
    LANGUAGE plproxy
    AS $$
    CLUSTER 'rungate_shards';
    RUN ON hashint8(coalesce(workspace_id, 0));
    TARGET rungate.enqueue_bulk;
$$;
COMMENT ON FUNCTION rungate_proxy.enqueue_bulk(text, bigint, bigint[], bigint, jsonb) IS
    'rungate.enqueue_bulk on the workspace''s shard (its items are created there)';

CREATE FUNCTION rungate_proxy.decide(operation text, workspace_id bigint,
                                     tenant_id bigint, actor_id bigint)
    RETURNS rungate_proxy.decision
    LANGUAGE plproxy
    AS $$
    CLUSTER 'rungate_shards';
    RUN ON hashint8(coalesce(workspace_id, 0));
    TARGET rungate.decide;
$$;
COMMENT ON FUNCTION rungate_proxy.decide(text, bigint, bigint, bigint) IS
    'rungate.decide on the workspace''s shard';

CREATE FUNCTION rungate_proxy.cancel(run_id bigint, actor_id bigint DEFAULT NULL)
    RETURNS rungate_proxy.runs
    LANGUAGE plproxy
    AS $$
    CLUSTER 'rungate_shards';
    RUN ON int8mi(coalesce(run_id, 1), 1);
    TARGET rungate.cancel;
$$;
COMMENT ON FUNCTION rungate_proxy.cancel(bigint, bigint) IS
    'rungate.cancel on the run''s shard (rungate_cancelled is notified there)';

CREATE FUNCTION rungate_proxy.rerun(run_id bigint, actor_id bigint DEFAULT NULL)
    RETURNS rungate_proxy.runs
    LANGUAGE plproxy
    AS $$
    CLUSTER 'rungate_shards';
    RUN ON int8mi(coalesce(run_id, 1), 1);
    TARGET rungate.rerun;
$$;
COMMENT ON FUNCTION rungate_proxy.rerun(bigint, bigint) IS
    'rungate.rerun on the run''s shard (the new run is the same workspace''s, on the same shard)';

------------------------------------------------------------------------------
-- Workers: claim per shard; the rest by the run's id
------------------------------------------------------------------------------

CREATE FUNCTION rungate_proxy.claim(worker text, operations text[] DEFAULT NULL,
                                    max_runs integer DEFAULT 1)
    RETURNS SETOF rungate_proxy.claimed
    LANGUAGE plproxy
    AS $$
    CLUSTER 'rungate_shards';
    RUN ON rungate_proxy.session_shard();
    TARGET rungate.claim;
$$;
COMMENT ON FUNCTION rungate_proxy.claim(text, text[], integer) IS
    'rungate.claim on the shard this session serves (SET rungate_proxy.shard; RG400 when unset)';

CREATE FUNCTION rungate_proxy.claim_on(shard integer, worker text,
                                       operations text[] DEFAULT NULL,
                                       max_runs integer DEFAULT 1)
    RETURNS SETOF rungate_proxy.claimed
    LANGUAGE plproxy
    AS $$
    CLUSTER 'rungate_shards';
    RUN ON shard;
    SELECT c.run_id, c.lease_token, c.attempt, c.operation, c.workspace_id, c.tenant_id,
           c.initiator_id, c.payload, c.lease_expires_at
      FROM rungate.claim(rungate_shard.claimant(shard, worker), operations, max_runs) c;
$$;
COMMENT ON FUNCTION rungate_proxy.claim_on(integer, text, text[], integer) IS
    'rungate.claim on one shard; the shard itself refuses (RG400) a number that is not its own (outside the layout, or partitions out of order)';

CREATE FUNCTION rungate_proxy.heartbeat(run_id bigint, lease_token uuid)
    RETURNS timestamptz
    LANGUAGE plproxy
    AS $$
    CLUSTER 'rungate_shards';
    RUN ON int8mi(coalesce(run_id, 1), 1);
    TARGET rungate.heartbeat;
$$;
COMMENT ON FUNCTION rungate_proxy.heartbeat(bigint, uuid) IS 'rungate.heartbeat on the run''s shard';

CREATE FUNCTION rungate_proxy.recheck(run_id bigint, lease_token uuid)
    RETURNS rungate_proxy.decision
    LANGUAGE plproxy
    AS $$
    CLUSTER 'rungate_shards';
    RUN ON int8mi(coalesce(run_id, 1), 1);
    TARGET rungate.recheck;
$$;
COMMENT ON FUNCTION rungate_proxy.recheck(bigint, uuid) IS
    'rungate.recheck on the run''s shard (commits there at once: a write family''s side effects belong on the shard, with the recheck, in one transaction)';

CREATE FUNCTION rungate_proxy.complete(run_id bigint, lease_token uuid,
                                       result jsonb DEFAULT NULL)
    RETURNS rungate_proxy.runs
    LANGUAGE plproxy
    AS $$
    CLUSTER 'rungate_shards';
    RUN ON int8mi(coalesce(run_id, 1), 1);
    TARGET rungate.complete;
$$;
COMMENT ON FUNCTION rungate_proxy.complete(bigint, uuid, jsonb) IS 'rungate.complete on the run''s shard';

CREATE FUNCTION rungate_proxy.fail(run_id bigint, lease_token uuid, error text,
                                   retryable boolean DEFAULT false,
                                   retry_in interval DEFAULT NULL)
    RETURNS rungate_proxy.runs
    LANGUAGE plproxy
    AS $$
    CLUSTER 'rungate_shards';
    RUN ON int8mi(coalesce(run_id, 1), 1);
    TARGET rungate.fail;
$$;
COMMENT ON FUNCTION rungate_proxy.fail(bigint, uuid, text, boolean, interval) IS 'rungate.fail on the run''s shard';

CREATE FUNCTION rungate_proxy.release(run_id bigint, lease_token uuid,
                                      run_at timestamptz DEFAULT NULL)
    RETURNS rungate_proxy.runs
    LANGUAGE plproxy
    AS $$
    CLUSTER 'rungate_shards';
    RUN ON int8mi(coalesce(run_id, 1), 1);
    TARGET rungate.release;
$$;
COMMENT ON FUNCTION rungate_proxy.release(bigint, uuid, timestamptz) IS 'rungate.release on the run''s shard';

------------------------------------------------------------------------------
-- Monitoring
------------------------------------------------------------------------------

CREATE FUNCTION rungate_proxy.operations(viewer_id bigint, workspace_id bigint,
                                         status text DEFAULT NULL,
                                         tenant_id bigint DEFAULT NULL,
                                         max_rows integer DEFAULT 100,
                                         before_id bigint DEFAULT NULL)
    RETURNS SETOF rungate_proxy.run_summary
    LANGUAGE plproxy
    AS $$
    CLUSTER 'rungate_shards';
    RUN ON hashint8(coalesce(workspace_id, 0));
    TARGET rungate.operations;
$$;
COMMENT ON FUNCTION rungate_proxy.operations(bigint, bigint, text, bigint, integer, bigint) IS
    'rungate.operations on the workspace''s shard (RG404, RG403 as rungate answers them)';

CREATE FUNCTION rungate_proxy.operation(viewer_id bigint, run_id bigint)
    RETURNS rungate_proxy.run_detail
    LANGUAGE plproxy
    AS $$
    CLUSTER 'rungate_shards';
    RUN ON int8mi(coalesce(run_id, 1), 1);
    TARGET rungate.operation;
$$;
COMMENT ON FUNCTION rungate_proxy.operation(bigint, bigint) IS
    'rungate.operation on the run''s shard (a run no shard has: RG404, like one outside scope)';

------------------------------------------------------------------------------
-- Administration: holds, reaping, retention
------------------------------------------------------------------------------

CREATE FUNCTION rungate_proxy.hold_in_workspace(workspace_id bigint, tenant_id bigint,
                                                operation text, reason text, actor_id bigint)
    RETURNS rungate_proxy.holds
    LANGUAGE plproxy
    AS $$
    CLUSTER 'rungate_shards';
    RUN ON hashint8(coalesce(workspace_id, 0));
    TARGET rungate.hold;
$$;
COMMENT ON FUNCTION rungate_proxy.hold_in_workspace(bigint, bigint, text, text, bigint) IS
    'rungate.hold on the workspace''s shard';

CREATE FUNCTION rungate_proxy.hold_everywhere(global_key uuid, operation text, reason text,
                                              actor_id bigint)
    RETURNS SETOF rungate_proxy.holds
    LANGUAGE plproxy
    AS $$
    CLUSTER 'rungate_shards';
    RUN ON ALL;
    TARGET rungate_shard.hold_global;
$$;
COMMENT ON FUNCTION rungate_proxy.hold_everywhere(uuid, text, text, bigint) IS
    'a hold without a workspace: one twin on every shard, under one key';

CREATE FUNCTION rungate_proxy.tenant_workspaces(tenant_id bigint)
    RETURNS SETOF bigint
    LANGUAGE plproxy
    AS $$
    CLUSTER 'rungate_shards';
    RUN ON ALL;
    TARGET rungate_shard.tenant_workspace;
$$;
COMMENT ON FUNCTION rungate_proxy.tenant_workspaces(bigint) IS
    'the workspace of a tenant, from whichever shard has it (asks every shard: administration only)';

CREATE FUNCTION rungate_proxy.hold(workspace_id bigint DEFAULT NULL,
                                   tenant_id bigint DEFAULT NULL,
                                   operation text DEFAULT NULL,
                                   reason text DEFAULT NULL,
                                   actor_id bigint DEFAULT NULL)
    RETURNS rungate_proxy.holds
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    ws bigint := $1;
    h  rungate_proxy.holds;
BEGIN
    IF ws IS NULL AND $2 IS NOT NULL THEN
        -- a tenant given without its workspace implies it: find its shard
        SELECT pg_catalog.min(w) INTO ws FROM rungate_proxy.tenant_workspaces($2) w;
        IF ws IS NULL THEN
            RAISE EXCEPTION 'unknown tenant_id %', $2 USING ERRCODE = 'RG400';
        END IF;
    END IF;
    IF ws IS NOT NULL THEN
        RETURN rungate_proxy.hold_in_workspace(ws, $2, $3, $4, $5);
    END IF;
    SELECT * INTO h FROM rungate_proxy.hold_everywhere(pg_catalog.gen_random_uuid(), $3, $4, $5) x
     ORDER BY x.id LIMIT 1;
    RETURN h;
END $$;
COMMENT ON FUNCTION rungate_proxy.hold(bigint, bigint, text, text, bigint) IS
    'rungate.hold on the workspace''s shard; without a workspace, on every shard (one twin each; the first is returned, resume of any resumes all)';

CREATE FUNCTION rungate_proxy.global_key_of(hold_id bigint)
    RETURNS uuid
    LANGUAGE plproxy
    AS $$
    CLUSTER 'rungate_shards';
    RUN ON int8mi(coalesce(hold_id, 1), 1);
    TARGET rungate_shard.global_key;
$$;
COMMENT ON FUNCTION rungate_proxy.global_key_of(bigint) IS
    'the twins'' key of a hold without a workspace (null: a hold of one shard)';

CREATE FUNCTION rungate_proxy.resume_one(hold_id bigint, actor_id bigint)
    RETURNS rungate_proxy.holds
    LANGUAGE plproxy
    AS $$
    CLUSTER 'rungate_shards';
    RUN ON int8mi(coalesce(hold_id, 1), 1);
    TARGET rungate.resume;
$$;
COMMENT ON FUNCTION rungate_proxy.resume_one(bigint, bigint) IS 'rungate.resume on the hold''s shard';

CREATE FUNCTION rungate_proxy.resume_everywhere(global_key uuid, actor_id bigint)
    RETURNS SETOF rungate_proxy.holds
    LANGUAGE plproxy
    AS $$
    CLUSTER 'rungate_shards';
    RUN ON ALL;
    TARGET rungate_shard.resume_global;
$$;
COMMENT ON FUNCTION rungate_proxy.resume_everywhere(uuid, bigint) IS
    'resume every twin of a global hold still in force';

CREATE FUNCTION rungate_proxy.resume(hold_id bigint, actor_id bigint DEFAULT NULL)
    RETURNS rungate_proxy.holds
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    k uuid := rungate_proxy.global_key_of($1);
    h rungate_proxy.holds;
BEGIN
    IF k IS NULL THEN
        RETURN rungate_proxy.resume_one($1, $2);
    END IF;
    -- every twin still in force, the one named included; a twin a failed
    -- call left held is resumed by the next call
    SELECT * INTO h FROM rungate_proxy.resume_everywhere(k, $2) x
     WHERE x.id OPERATOR(pg_catalog.=) $1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'hold % is already resumed', $1 USING ERRCODE = 'RG409';
    END IF;
    RETURN h;
END $$;
COMMENT ON FUNCTION rungate_proxy.resume(bigint, bigint) IS
    'rungate.resume on the hold''s shard; a hold without a workspace is resumed on every shard';

CREATE FUNCTION rungate_proxy.reap_expired_each()
    RETURNS SETOF integer
    LANGUAGE plproxy
    AS $$
    CLUSTER 'rungate_shards';
    RUN ON ALL;
    TARGET rungate.reap_expired;
$$;
COMMENT ON FUNCTION rungate_proxy.reap_expired_each() IS 'rungate.reap_expired on every shard';

CREATE FUNCTION rungate_proxy.reap_expired()
    RETURNS integer
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
    AS $$ SELECT coalesce(pg_catalog.sum(n), 0)::integer FROM rungate_proxy.reap_expired_each() n $$;
COMMENT ON FUNCTION rungate_proxy.reap_expired() IS
    'rungate.reap_expired on every shard; the runs requeued or failed, in total';

CREATE FUNCTION rungate_proxy.purge_each(finished_before timestamptz)
    RETURNS SETOF bigint
    LANGUAGE plproxy
    AS $$
    CLUSTER 'rungate_shards';
    RUN ON ALL;
    TARGET rungate.purge;
$$;
COMMENT ON FUNCTION rungate_proxy.purge_each(timestamptz) IS 'rungate.purge on every shard';

CREATE FUNCTION rungate_proxy.purge(finished_before timestamptz)
    RETURNS bigint
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
    AS $$ SELECT coalesce(pg_catalog.sum(n), 0)::bigint FROM rungate_proxy.purge_each(finished_before) n $$;
COMMENT ON FUNCTION rungate_proxy.purge(timestamptz) IS
    'rungate.purge on every shard; the runs removed, in total';

CREATE FUNCTION rungate_proxy.purge_batch_each(finished_before timestamptz, max_runs integer)
    RETURNS SETOF bigint
    LANGUAGE plproxy
    AS $$
    CLUSTER 'rungate_shards';
    RUN ON ALL;
    TARGET rungate.purge_batch;
$$;
COMMENT ON FUNCTION rungate_proxy.purge_batch_each(timestamptz, integer) IS 'rungate.purge_batch on every shard';

CREATE FUNCTION rungate_proxy.purge_batch(finished_before timestamptz, max_runs integer DEFAULT 1000)
    RETURNS bigint
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
    AS $$ SELECT coalesce(pg_catalog.sum(n), 0)::bigint FROM rungate_proxy.purge_batch_each(finished_before, max_runs) n $$;
COMMENT ON FUNCTION rungate_proxy.purge_batch(timestamptz, integer) IS
    'rungate.purge_batch on every shard (up to max_runs each); the runs removed, in total';

------------------------------------------------------------------------------
-- Authority. Global: written on every shard, one row per shard written.
-- A call that fails on one shard may have committed on others: repeat it
-- (every write is idempotent); check_shards() compares the shards.
------------------------------------------------------------------------------

CREATE FUNCTION rungate_proxy.put_actor(actor_id bigint, name text, status text DEFAULT 'active')
    RETURNS SETOF integer
    LANGUAGE plproxy
    AS $$
    CLUSTER 'rungate_shards';
    RUN ON ALL;
    TARGET rungate_shard.put_actor;
$$;
COMMENT ON FUNCTION rungate_proxy.put_actor(bigint, text, text) IS
    'write an actor (upsert) on every shard; the shards written';

CREATE FUNCTION rungate_proxy.put_role_capability(role text, capability text)
    RETURNS SETOF integer
    LANGUAGE plproxy
    AS $$
    CLUSTER 'rungate_shards';
    RUN ON ALL;
    TARGET rungate_shard.put_role_capability;
$$;
COMMENT ON FUNCTION rungate_proxy.put_role_capability(text, text) IS
    'a role grants a capability, on every shard';

CREATE FUNCTION rungate_proxy.drop_role_capability(role text, capability text)
    RETURNS SETOF integer
    LANGUAGE plproxy
    AS $$
    CLUSTER 'rungate_shards';
    RUN ON ALL;
    TARGET rungate_shard.drop_role_capability;
$$;
COMMENT ON FUNCTION rungate_proxy.drop_role_capability(text, text) IS
    'a role no longer grants a capability, on every shard (exact on each, not atomic across them)';

CREATE FUNCTION rungate_proxy.put_operation_type(definition jsonb)
    RETURNS SETOF integer
    LANGUAGE plproxy
    AS $$
    CLUSTER 'rungate_shards';
    RUN ON ALL;
    TARGET rungate_shard.put_operation_type;
$$;
COMMENT ON FUNCTION rungate_proxy.put_operation_type(jsonb) IS
    'write an operation type on every shard: the columns the json object names (upsert)';

CREATE FUNCTION rungate_proxy.drop_operation_type(name text)
    RETURNS SETOF integer
    LANGUAGE plproxy
    AS $$
    CLUSTER 'rungate_shards';
    RUN ON ALL;
    TARGET rungate_shard.drop_operation_type;
$$;
COMMENT ON FUNCTION rungate_proxy.drop_operation_type(text) IS 'remove an operation type on every shard';

-- Shard-local: the workspace's shard; the shard written.

CREATE FUNCTION rungate_proxy.put_workspace(workspace_id bigint, name text,
                                            status text DEFAULT 'active',
                                            max_running integer DEFAULT NULL)
    RETURNS integer
    LANGUAGE plproxy
    AS $$
    CLUSTER 'rungate_shards';
    RUN ON hashint8(coalesce(workspace_id, 0));
    TARGET rungate_shard.put_workspace;
$$;
COMMENT ON FUNCTION rungate_proxy.put_workspace(bigint, text, text, integer) IS
    'write a workspace (upsert) on its shard';

CREATE FUNCTION rungate_proxy.put_tenant_in_workspace(tenant_id bigint, workspace_id bigint,
                                                      name text, status text)
    RETURNS integer
    LANGUAGE plproxy
    AS $$
    CLUSTER 'rungate_shards';
    RUN ON hashint8(coalesce(workspace_id, 0));
    TARGET rungate_shard.put_tenant;
$$;
COMMENT ON FUNCTION rungate_proxy.put_tenant_in_workspace(bigint, bigint, text, text) IS
    'write a tenant (upsert) on its workspace''s shard, unchecked';

CREATE FUNCTION rungate_proxy.put_tenant(tenant_id bigint, workspace_id bigint, name text,
                                         status text DEFAULT 'active')
    RETURNS integer
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    w bigint;
BEGIN
    -- a tenant id names one tenant across shards, and a tenant never moves
    -- to another shard: the old shard would still see it in its old
    -- workspace and start its runs there
    FOR w IN SELECT x FROM rungate_proxy.tenant_workspaces($1) x LOOP
        IF rungate_proxy.workspace_shard(w) OPERATOR(pg_catalog.<>) rungate_proxy.workspace_shard($2) THEN
            RAISE EXCEPTION 'tenant % is in workspace % on shard %; it cannot move to workspace % on shard %',
                  $1, w, rungate_proxy.workspace_shard(w), $2, rungate_proxy.workspace_shard($2)
                  USING ERRCODE = 'RG409',
                        HINT = 'A tenant moves only between workspaces of one shard (docs/scale-out.md).';
        END IF;
    END LOOP;
    RETURN rungate_proxy.put_tenant_in_workspace($1, $2, $3, $4);
END $$;
COMMENT ON FUNCTION rungate_proxy.put_tenant(bigint, bigint, text, text) IS
    'write a tenant (upsert) on its workspace''s shard; RG409 for a tenant id another shard has';

CREATE FUNCTION rungate_proxy.put_workspace_member(workspace_id bigint, actor_id bigint, role text)
    RETURNS integer
    LANGUAGE plproxy
    AS $$
    CLUSTER 'rungate_shards';
    RUN ON hashint8(coalesce(workspace_id, 0));
    TARGET rungate_shard.put_workspace_member;
$$;
COMMENT ON FUNCTION rungate_proxy.put_workspace_member(bigint, bigint, text) IS
    'write a workspace membership (upsert) on the workspace''s shard';

CREATE FUNCTION rungate_proxy.drop_workspace_member(workspace_id bigint, actor_id bigint)
    RETURNS integer
    LANGUAGE plproxy
    AS $$
    CLUSTER 'rungate_shards';
    RUN ON hashint8(coalesce(workspace_id, 0));
    TARGET rungate_shard.drop_workspace_member;
$$;
COMMENT ON FUNCTION rungate_proxy.drop_workspace_member(bigint, bigint) IS
    'remove a workspace membership on the workspace''s shard';

CREATE FUNCTION rungate_proxy.put_tenant_member(workspace_id bigint, tenant_id bigint,
                                                actor_id bigint, role text)
    RETURNS integer
    LANGUAGE plproxy
    AS $$
    CLUSTER 'rungate_shards';
    RUN ON hashint8(coalesce(workspace_id, 0));
    TARGET rungate_shard.put_tenant_member;
$$;
COMMENT ON FUNCTION rungate_proxy.put_tenant_member(bigint, bigint, bigint, text) IS
    'write a tenant membership (upsert) on the workspace''s shard (RG400: not a tenant of the workspace)';

CREATE FUNCTION rungate_proxy.drop_tenant_member(workspace_id bigint, tenant_id bigint,
                                                 actor_id bigint)
    RETURNS integer
    LANGUAGE plproxy
    AS $$
    CLUSTER 'rungate_shards';
    RUN ON hashint8(coalesce(workspace_id, 0));
    TARGET rungate_shard.drop_tenant_member;
$$;
COMMENT ON FUNCTION rungate_proxy.drop_tenant_member(bigint, bigint, bigint) IS
    'remove a tenant membership on the workspace''s shard';

CREATE FUNCTION rungate_proxy.put_tenant_prerequisite(workspace_id bigint, tenant_id bigint,
                                                      name text, satisfied boolean)
    RETURNS integer
    LANGUAGE plproxy
    AS $$
    CLUSTER 'rungate_shards';
    RUN ON hashint8(coalesce(workspace_id, 0));
    TARGET rungate_shard.put_tenant_prerequisite;
$$;
COMMENT ON FUNCTION rungate_proxy.put_tenant_prerequisite(bigint, bigint, text, boolean) IS
    'write a tenant prerequisite (upsert) on the workspace''s shard';

CREATE FUNCTION rungate_proxy.drop_tenant_prerequisite(workspace_id bigint, tenant_id bigint,
                                                       name text)
    RETURNS integer
    LANGUAGE plproxy
    AS $$
    CLUSTER 'rungate_shards';
    RUN ON hashint8(coalesce(workspace_id, 0));
    TARGET rungate_shard.drop_tenant_prerequisite;
$$;
COMMENT ON FUNCTION rungate_proxy.drop_tenant_prerequisite(bigint, bigint, text) IS
    'remove a tenant prerequisite on the workspace''s shard';

------------------------------------------------------------------------------
-- Setting up and checking the shards
------------------------------------------------------------------------------

CREATE FUNCTION rungate_proxy.configure_on(shard_index integer, shard_count integer)
    RETURNS rungate_proxy.shard_state
    LANGUAGE plproxy
    AS $$
    CLUSTER 'rungate_shards';
    RUN ON rungate_proxy.shard_hash(shard_index);
    TARGET rungate_shard.configure;
$$;
COMMENT ON FUNCTION rungate_proxy.configure_on(integer, integer) IS
    'rungate_shard.configure on partition shard_index';

CREATE FUNCTION rungate_proxy.identity_on(target_shard integer)
    RETURNS rungate_proxy.shard_state
    LANGUAGE plproxy
    AS $$
    CLUSTER 'rungate_shards';
    RUN ON rungate_proxy.shard_hash(target_shard);
    SELECT s.shard, s.nshards, s.sequences_ok, s.authority_digest, s.detail
      FROM rungate_shard.identity() s;
$$;
COMMENT ON FUNCTION rungate_proxy.identity_on(integer) IS 'rungate_shard.identity of one partition';

CREATE FUNCTION rungate_proxy.check_shards()
    RETURNS SETOF rungate_proxy.shard_state
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    n      integer := rungate_proxy.shard_count();
    st     rungate_proxy.shard_state;
    first  text;
    bad    text[] := '{}';
BEGIN
    IF n OPERATOR(pg_catalog.=) 0 THEN
        RAISE EXCEPTION 'no shards: the foreign server rungate_shards has no partitions p0, p1, ...'
              USING ERRCODE = 'RG400';
    END IF;
    FOR i IN 0 .. n - 1 LOOP
        st := rungate_proxy.identity_on(i);
        RETURN NEXT st;
        IF st.shard IS DISTINCT FROM i OR st.nshards IS DISTINCT FROM n THEN
            bad := bad OPERATOR(pg_catalog.||) pg_catalog.format(
                'partition p%s is configured as shard %s of %s, not %s of %s',
                i, coalesce(st.shard::text, '-'), coalesce(st.nshards::text, '-'), i, n);
        ELSIF NOT st.sequences_ok THEN
            bad := bad OPERATOR(pg_catalog.||) pg_catalog.format('shard %s: %s', i, st.detail);
        END IF;
        IF i OPERATOR(pg_catalog.=) 0 THEN
            first := st.authority_digest;
        ELSIF st.authority_digest IS DISTINCT FROM first THEN
            bad := bad OPERATOR(pg_catalog.||) pg_catalog.format(
                'shard %s''s global authority (actors, role capabilities, operation types) differs from shard 0''s: repeat the last global write',
                i);
        END IF;
    END LOOP;
    IF pg_catalog.cardinality(bad) > 0 THEN
        RAISE EXCEPTION 'rungate_shards is not consistent: %', pg_catalog.array_to_string(bad, '; ')
              USING ERRCODE = 'RG409';
    END IF;
END $$;
COMMENT ON FUNCTION rungate_proxy.check_shards() IS
    'every shard''s state; RG409 when a partition is not the shard its position says, its id sequences left the layout, or its global authority differs from shard 0''s';

CREATE FUNCTION rungate_proxy.configure_shards()
    RETURNS SETOF rungate_proxy.shard_state
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    n integer := rungate_proxy.shard_count();
BEGIN
    IF n OPERATOR(pg_catalog.=) 0 THEN
        RAISE EXCEPTION 'no shards: the foreign server rungate_shards has no partitions p0, p1, ...'
              USING ERRCODE = 'RG400';
    END IF;
    FOR i IN 0 .. n - 1 LOOP
        RETURN NEXT rungate_proxy.configure_on(i, n);
    END LOOP;
END $$;
COMMENT ON FUNCTION rungate_proxy.configure_shards() IS
    'make partition i shard i of n (its id spaces), on every partition; idempotent, run again after a shard is restored';

------------------------------------------------------------------------------
-- Privileges: nothing for PUBLIC but the routing helpers PL/Proxy
-- evaluates as the caller. docs/scale-out.md gives the grants per persona.
------------------------------------------------------------------------------

DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid FROM pg_catalog.pg_proc p
              WHERE p.pronamespace OPERATOR(pg_catalog.=) 'rungate_proxy'::regnamespace
                AND p.proname OPERATOR(pg_catalog.<>) ALL (ARRAY['shard_count', 'shard_of_hash',
                    'workspace_hash', 'run_hash', 'workspace_shard', 'run_shard', 'shard_hash',
                    'session_shard']) LOOP
        EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END $$;
