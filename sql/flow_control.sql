-- flow_control: when a legitimate run may start.
--   * fair turns: at the highest priority, the oldest run of the workspace
--     whose last turn is the longest ago; a backlog of one workspace does not
--     delay another's run; priority stays strict
--   * concurrency limits: workspaces.max_running; operation_types.max_running
--     per tenant, workspace or globally; bulk parents are not counted
--   * rate limits: rate_limit starts per rate_period, retries included
--   * holds: hold, resume, rungate.holds; by workspace, tenant, operation, all
--   * a run held back stays queued: no audit row, no attempt, and other runs
--     still start; run_detail.waiting says why
--   * bad limits and hold targets are RG400 and write nothing
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS rungate CASCADE;
CREATE EXTENSION rungate;
\set ECHO none
\i test/fixtures/seed.sql
\i test/fixtures/try.sql
\set ECHO all
\setenv PGDATABASE :DBNAME
\setenv PGHOST :HOST
\setenv PGPORT :PORT
\setenv PGUSER :USER

-- a third workspace with one tenant, owned by olivia
INSERT INTO rungate.workspaces (id, name) VALUES (3, 'initech');
INSERT INTO rungate.tenants (id, workspace_id, name) VALUES (30, 3, 'initech-main');
INSERT INTO rungate.workspace_members VALUES (3, 100, 'owner'), (2, 100, 'owner');
INSERT INTO rungate.tenant_members VALUES (30, 100, 'owner'), (20, 100, 'owner');
INSERT INTO rungate.tenant_prerequisites VALUES (30, 'provider_connection', true);

-- finish every running run (a helper for the sections below)
CREATE FUNCTION pg_temp.finish_all() RETURNS bigint LANGUAGE sql AS $$
    SELECT count(rungate.complete(id, lease_token)) FROM rungate.runs
     WHERE status = 'running' AND lease_token IS NOT NULL
$$;
-- the workspaces of k single-run claims, in order
CREATE FUNCTION pg_temp.turns(k int) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    out text := '';
    w bigint;
BEGIN
    FOR i IN 1 .. k LOOP
        SELECT workspace_id INTO w FROM rungate.claim('w');
        out := out || coalesce(w::text, '-') || ' ';
    END LOOP;
    RETURN rtrim(out);
END $$;
CREATE FUNCTION pg_temp.waiting(run bigint) RETURNS text LANGUAGE sql AS $$
    SELECT waiting FROM rungate.operation(100, run)
$$;

------------------------------------------------------------------------------
-- 1. Fair turns
------------------------------------------------------------------------------
-- 200 runs of workspace 1, then one of workspace 2 and one of workspace 3
SELECT count(*) FROM (SELECT rungate.enqueue('inventory.sync', 1, 10, 100)
                        FROM generate_series(1, 200)) s;
SELECT id AS b FROM rungate.enqueue('inventory.sync', 2, 20, 100) \gset
SELECT id AS c FROM rungate.enqueue('inventory.sync', 3, 30, 100) \gset
-- no workspace has had a turn: ties go to the oldest run, then the others
SELECT workspace_id, run_id = :b AS is_b, run_id = :c AS is_c
  FROM rungate.claim('w', NULL, 3) ORDER BY run_id;
-- with only workspace 1 left, its runs go on in age order
SELECT run_id FROM rungate.claim('w', NULL, 2) ORDER BY run_id;
-- one new run each of workspaces 2 and 3: both are served before workspace 1
-- again, oldest turn first (workspace 2 had its turn before workspace 3)
SELECT id AS b2 FROM rungate.enqueue('inventory.sync', 2, 20, 100) \gset
SELECT id AS c2 FROM rungate.enqueue('inventory.sync', 3, 30, 100) \gset
SELECT workspace_id FROM rungate.claim('w');
SELECT workspace_id FROM rungate.claim('w');
SELECT workspace_id FROM rungate.claim('w');
-- single claims alternate between two workspaces with backlogs
SELECT count(*) FROM (SELECT rungate.enqueue('inventory.sync', 2, 20, 100)
                        FROM generate_series(1, 5)) s;
SELECT pg_temp.turns(6) AS turns;
-- priority is strict: a higher-priority run of workspace 1 goes first
SELECT id AS hi FROM rungate.enqueue('inventory.sync', 1, 10, 100, priority => 5) \gset
SELECT run_id = :hi AS high_first FROM rungate.claim('w');
SELECT pg_temp.finish_all() >= 0 AS finished;
SELECT count(*) AS drained FROM (SELECT rungate.claim('w', NULL, 1000)) s;
SELECT pg_temp.finish_all() >= 0 AS finished;
-- one workspace, two operations, runs alternating: single claims take them in
-- age order across the operations, also once each operation's group has a
-- floor (a claim walks only the groups whose floor comes before the oldest
-- run it found); twice round, the second from the floors the first left
CREATE FUNCTION pg_temp.enqueue_alternating() RETURNS bigint LANGUAGE sql AS $$
    SELECT min((rungate.enqueue(CASE WHEN g % 2 = 0 THEN 'inventory.sync'
                                     ELSE 'provider.connection.verify' END,
                                1, 10, 100)).id) - 1
      FROM generate_series(1, 6) g
$$;
SELECT pg_temp.enqueue_alternating() AS base \gset
SELECT run_id - :base AS nth, operation FROM rungate.claim('w');
SELECT run_id - :base AS nth, operation FROM rungate.claim('w');
SELECT run_id - :base AS nth, operation FROM rungate.claim('w');
SELECT run_id - :base AS nth, operation FROM rungate.claim('w');
SELECT run_id - :base AS nth, operation FROM rungate.claim('w');
SELECT run_id - :base AS nth, operation FROM rungate.claim('w');
SELECT pg_temp.enqueue_alternating() AS base \gset
SELECT run_id - :base AS nth FROM rungate.claim('w');
SELECT run_id - :base AS nth FROM rungate.claim('w');
SELECT run_id - :base AS nth FROM rungate.claim('w');
SELECT run_id - :base AS nth FROM rungate.claim('w');
SELECT run_id - :base AS nth FROM rungate.claim('w');
SELECT run_id - :base AS nth FROM rungate.claim('w');
SELECT pg_temp.finish_all() >= 0 AS finished;
-- a claim's run given back by a rollback is the next one claimed, before the
-- other operation's younger run (the hint the claim left of where its group
-- goes on is forgotten with it)
SELECT pg_temp.enqueue_alternating() AS base \gset
BEGIN;
SELECT run_id - :base AS nth, operation FROM rungate.claim('w', '{provider.connection.verify}');
ROLLBACK;
SELECT run_id - :base AS nth, operation FROM rungate.claim('w');
SELECT run_id - :base AS nth, operation FROM rungate.claim('w');
SELECT pg_temp.finish_all() >= 0 AS finished;
-- and so is one rolled back to a savepoint (a worker's EXCEPTION block)
SELECT count(*) AS drained FROM (SELECT rungate.claim('w', NULL, 1000)) s;
SELECT pg_temp.finish_all() >= 0 AS finished;
SELECT pg_temp.enqueue_alternating() AS base \gset
BEGIN;
SAVEPOINT s;
SELECT run_id - :base AS nth, operation FROM rungate.claim('w', '{provider.connection.verify}');
ROLLBACK TO SAVEPOINT s;
COMMIT;
SELECT run_id - :base AS nth, operation FROM rungate.claim('w');
SELECT pg_temp.finish_all() >= 0 AS finished;
SELECT count(*) AS drained FROM (SELECT rungate.claim('w', NULL, 1000)) s;
SELECT pg_temp.finish_all() >= 0 AS finished;
-- so is a run the claim locked and flow control then held back: with room
-- for one running run, a claim of two of one operation starts the 1st run
-- and leaves the 3rd queued; once the 1st is done, the claims go on in age
-- order across the operations, the 3rd before the other operation's 4th
UPDATE rungate.workspaces SET max_running = 1 WHERE id = 1;
SELECT pg_temp.enqueue_alternating() AS base \gset
SELECT run_id - :base AS nth, operation FROM rungate.claim('w', '{provider.connection.verify}', 2);
SELECT pg_temp.finish_all() >= 0 AS finished;
SELECT run_id - :base AS nth, operation FROM rungate.claim('w');
SELECT pg_temp.finish_all() >= 0 AS finished;
SELECT run_id - :base AS nth, operation FROM rungate.claim('w');
SELECT pg_temp.finish_all() >= 0 AS finished;
UPDATE rungate.workspaces SET max_running = NULL WHERE id = 1;
SELECT count(*) AS drained FROM (SELECT rungate.claim('w', NULL, 1000)) s;
SELECT pg_temp.finish_all() >= 0 AS finished;

------------------------------------------------------------------------------
-- 2. Concurrency limits
------------------------------------------------------------------------------
-- workspace 1 runs at most 2 at once, all operations
UPDATE rungate.workspaces SET max_running = 2 WHERE id = 1;
SELECT count(*) FROM (SELECT rungate.enqueue('inventory.sync', 1, 10, 100)
                        FROM generate_series(1, 4)) s;
SELECT id AS w2run FROM rungate.enqueue('inventory.sync', 2, 20, 100) \gset
SELECT count(*) FILTER (WHERE workspace_id = 1) AS ws1, count(*) FILTER (WHERE workspace_id = 2) AS ws2
  FROM rungate.claim('w', NULL, 10);
-- the capped runs stay queued, with no audit row beyond dispatched and no attempt
SELECT status, attempt, count(*) FROM rungate.runs
 WHERE workspace_id = 1 AND status IN ('queued', 'running') GROUP BY status, attempt ORDER BY status;
SELECT count(*) AS extra_audit FROM rungate.audit_log a JOIN rungate.runs r ON r.id = a.run_id
 WHERE r.status = 'queued' AND a.event <> 'dispatched';
SELECT pg_temp.waiting(min(id)) AS waiting FROM rungate.runs WHERE workspace_id = 1 AND status = 'queued';
SELECT count(*) AS at_limit FROM rungate.claim('w');
-- a place frees: the waiting workers hear of it, and one more starts
SELECT id AS r1, lease_token AS t1 FROM rungate.runs WHERE workspace_id = 1 AND status = 'running' ORDER BY id LIMIT 1 \gset
\setenv R1 :r1
\setenv T1 :t1
\! psql -X -q -c 'LISTEN rungate_queued' -c "SELECT status FROM rungate.complete($R1, '$T1')" 2>&1 | sed -E 's/PID [0-9]+/PID N/'
SELECT count(*) AS started FROM rungate.claim('w', NULL, 10);
UPDATE rungate.workspaces SET max_running = NULL WHERE id = 1;
SELECT count(*) AS started FROM rungate.claim('w', NULL, 10);
SELECT pg_temp.finish_all() >= 0 AS finished;

-- inventory.sync: at most 1 running per tenant
UPDATE rungate.operation_types SET max_running = 1, limit_scope = 'tenant' WHERE name = 'inventory.sync';
SELECT count(*) FROM (SELECT rungate.enqueue('inventory.sync', 1, t, 100)
                        FROM generate_series(1, 2), unnest(ARRAY[10, 10, 11]) t) s;
SELECT tenant_id, count(*) FROM rungate.claim('w', NULL, 10) GROUP BY tenant_id ORDER BY tenant_id;
SELECT pg_temp.finish_all() >= 0 AS finished;
SELECT tenant_id, count(*) FROM rungate.claim('w', NULL, 10) GROUP BY tenant_id ORDER BY tenant_id;
SELECT pg_temp.finish_all() >= 0 AS finished;
-- per workspace: 1 running in workspace 1 (tenants 10 and 11 together), 1 in workspace 2
UPDATE rungate.operation_types SET limit_scope = 'workspace' WHERE name = 'inventory.sync';
SELECT count(*) AS drained FROM (SELECT rungate.claim('w', NULL, 1000)) s;
SELECT pg_temp.finish_all() >= 0 AS finished;
SELECT count(*) FROM (SELECT rungate.enqueue('inventory.sync', w, t, 100)
                        FROM (VALUES (1, 10), (1, 11), (2, 20), (2, 20)) v(w, t)) s;
SELECT workspace_id, count(*) FROM rungate.claim('w', NULL, 10) GROUP BY workspace_id ORDER BY workspace_id;
SELECT pg_temp.finish_all() >= 0 AS finished;
-- globally: 1 running of the type in all workspaces together
UPDATE rungate.operation_types SET limit_scope = 'global' WHERE name = 'inventory.sync';
SELECT count(*) AS started FROM rungate.claim('w', NULL, 10);
SELECT pg_temp.finish_all() >= 0 AS finished;
SELECT count(*) AS started FROM rungate.claim('w', NULL, 10);
-- other types still start while inventory.sync is at its limit
SELECT id AS rep FROM rungate.enqueue('reports.export', 1, NULL, 100) \gset
SELECT id AS inv FROM rungate.enqueue('inventory.sync', 1, 10, 100) \gset
SELECT operation FROM rungate.claim('w', NULL, 10);
SELECT pg_temp.waiting(:inv) AS inv_waiting, pg_temp.waiting(:rep) AS rep_status;
SELECT pg_temp.finish_all() >= 0 AS finished;
SELECT count(*) AS drained FROM (SELECT rungate.claim('w', NULL, 1000)) s;
SELECT pg_temp.finish_all() >= 0 AS finished;
UPDATE rungate.operation_types SET max_running = NULL, limit_scope = 'workspace' WHERE name = 'inventory.sync';
-- bulk parents are never counted: a workspace limit of 1 still starts the
-- parent (which is not handed out) and one item
UPDATE rungate.workspaces SET max_running = 1 WHERE id = 1;
SELECT id AS bulk FROM rungate.enqueue_bulk('bulk.inventory.sync', 1, '{10,11}', 100) \gset
SELECT count(*) AS handed_out FROM rungate.claim('w', NULL, 10);
SELECT status, count(*) FROM rungate.runs WHERE id = :bulk OR parent_id = :bulk GROUP BY status ORDER BY status;
UPDATE rungate.workspaces SET max_running = NULL WHERE id = 1;
SELECT count(*) AS started FROM rungate.claim('w', NULL, 10);
SELECT pg_temp.finish_all() >= 0 AS finished;
SELECT status FROM rungate.runs WHERE id = :bulk;

------------------------------------------------------------------------------
-- 3. Rate limits
------------------------------------------------------------------------------
UPDATE rungate.operation_types SET rate_limit = 2, rate_period = '1 hour' WHERE name = 'provider.connection.verify';
SELECT count(*) FROM (SELECT rungate.enqueue('provider.connection.verify', 1, 10, 100)
                        FROM generate_series(1, 3)) s;
SELECT count(*) AS started FROM rungate.claim('w', NULL, 10);
SELECT pg_temp.waiting(max(id)) AS waiting FROM rungate.runs
 WHERE operation = 'provider.connection.verify' AND status = 'queued';
-- a retry's start counts too: fail one retryably, it is not started again
SELECT r.id AS f1, r.lease_token AS ft1 FROM rungate.runs r
 WHERE r.operation = 'provider.connection.verify' AND r.status = 'running' ORDER BY r.id LIMIT 1 \gset
SELECT status FROM rungate.fail(:f1, :'ft1', 'flaky', true);
SELECT count(*) AS started FROM rungate.claim('w', NULL, 10);
-- per workspace: workspace 2 has its own window
SELECT id AS pv2 FROM rungate.enqueue('provider.connection.verify', 2, 20, 100) \gset
SELECT run_id = :pv2 AS other_key_started FROM rungate.claim('w', NULL, 10);
-- the window slides: starts older than rate_period no longer count
UPDATE rungate.operation_types SET rate_period = '1 millisecond' WHERE name = 'provider.connection.verify';
SELECT pg_sleep(0.01);
SELECT count(*) AS started FROM rungate.claim('w', NULL, 10);
SELECT pg_temp.finish_all() >= 0 AS finished;
UPDATE rungate.operation_types SET rate_limit = NULL, rate_period = NULL WHERE name = 'provider.connection.verify';

------------------------------------------------------------------------------
-- 4. Holds
------------------------------------------------------------------------------
SELECT count(*) AS drained FROM (SELECT rungate.claim('w', NULL, 1000)) s;
SELECT pg_temp.finish_all() >= 0 AS finished;
SELECT id AS h1, workspace_id, tenant_id, operation, reason, held_by, released_at
  FROM rungate.hold(1, reason => 'incident 42', actor_id => 100) \gset
SELECT :h1 > 0 AS held, :workspace_id AS workspace_id, :'reason' AS reason, :held_by AS held_by;
SELECT id AS q1 FROM rungate.enqueue('inventory.sync', 1, 10, 100) \gset
SELECT id AS q2 FROM rungate.enqueue('inventory.sync', 2, 20, 100) \gset
SELECT run_id = :q2 AS only_ws2 FROM rungate.claim('w', NULL, 10);
SELECT status, attempt FROM rungate.runs WHERE id = :q1;
SELECT pg_temp.waiting(:q1) AS waiting;
SELECT event FROM rungate.audit_log WHERE run_id = :q1 ORDER BY id;
-- a held workspace that is also suspended is not blocked while held
UPDATE rungate.workspaces SET status = 'suspended' WHERE id = 1;
SELECT count(*) AS started FROM rungate.claim('w', NULL, 10);
SELECT status FROM rungate.runs WHERE id = :q1;
UPDATE rungate.workspaces SET status = 'active' WHERE id = 1;
-- resume: the workers hear of it, and the run starts
\setenv H1 :h1
\! psql -X -q -c 'LISTEN rungate_queued' -c "SELECT id, released_at IS NOT NULL AS released, released_by FROM rungate.resume($H1, 101)" 2>&1 | sed -E 's/PID [0-9]+/PID N/'
SELECT run_id = :q1 AS resumed_run_started FROM rungate.claim('w', NULL, 10);
SELECT pg_temp.finish_all() >= 0 AS finished;
-- a hold by tenant (its workspace implied), by operation, and on everything
SELECT workspace_id, tenant_id FROM rungate.hold(tenant_id => 11);
SELECT id AS ht10 FROM rungate.enqueue('inventory.sync', 1, 10, 100) \gset
SELECT id AS ht11 FROM rungate.enqueue('inventory.sync', 1, 11, 100) \gset
SELECT run_id = :ht10 AS tenant10_only FROM rungate.claim('w', NULL, 10);
SELECT id AS hop FROM rungate.hold(operation => 'reports.export') \gset
SELECT id AS rp FROM rungate.enqueue('reports.export', 2, NULL, 103) \gset
SELECT id AS pv FROM rungate.enqueue('provider.connection.verify', 2, 20, 100) \gset
SELECT run_id = :pv AS not_the_report FROM rungate.claim('w', NULL, 10);
SELECT id AS hall FROM rungate.hold() \gset
SELECT id AS any1 FROM rungate.enqueue('provider.connection.verify', 2, 20, 100) \gset
SELECT count(*) AS started_under_hold_all FROM rungate.claim('w', NULL, 10);
SELECT pg_temp.waiting(:any1) AS waiting;
SELECT id, workspace_id, tenant_id, operation, released_at IS NULL AS active FROM rungate.holds ORDER BY id;
SELECT count(*) FROM (SELECT rungate.resume(id) FROM rungate.holds WHERE released_at IS NULL) s;
SELECT count(*) AS started_after_resume FROM rungate.claim('w', NULL, 10);
SELECT pg_temp.finish_all() >= 0 AS finished;
-- a hold on the bulk type holds the parent; a hold on a tenant holds that item only
SELECT id AS hb FROM rungate.hold(operation => 'bulk.inventory.sync') \gset
SELECT id AS bulk2 FROM rungate.enqueue_bulk('bulk.inventory.sync', 1, '{10,11}', 100) \gset
SELECT count(*) AS handed_out FROM rungate.claim('w', NULL, 10);
SELECT status FROM rungate.runs WHERE id = :bulk2;
SELECT status FROM rungate.resume(:hb) h, rungate.runs r WHERE r.id = :bulk2;
SELECT id AS ht FROM rungate.hold(tenant_id => 11) \gset
SELECT count(*) AS handed_out FROM rungate.claim('w', NULL, 10);
SELECT tenant_id, status FROM rungate.runs WHERE parent_id = :bulk2 ORDER BY tenant_id;
SELECT status FROM rungate.resume(:ht) h, rungate.runs r WHERE r.id = :bulk2;
SELECT count(*) AS started FROM rungate.claim('w', NULL, 10);
SELECT pg_temp.finish_all() >= 0 AS finished;
SELECT status FROM rungate.runs WHERE id = :bulk2;

------------------------------------------------------------------------------
-- 5. waiting: scheduled first; null for a run that may start, and for
--    other statuses
------------------------------------------------------------------------------
SELECT id AS later FROM rungate.enqueue('inventory.sync', 1, 10, 100, run_at => now() + interval '1 hour') \gset
SELECT id AS now1 FROM rungate.enqueue('inventory.sync', 1, 10, 100) \gset
SELECT pg_temp.waiting(:later) AS later, pg_temp.waiting(:now1) AS now1,
       pg_temp.waiting(:q1) AS succeeded_run;
SELECT id AS hl FROM rungate.hold(1) \gset
SELECT pg_temp.waiting(:later) AS later_and_held, pg_temp.waiting(:now1) AS held;
SELECT status FROM rungate.resume(:hl) h, rungate.runs r WHERE r.id = :now1;

------------------------------------------------------------------------------
-- 6. Bad input: RG400 naming the column or argument; nothing written
------------------------------------------------------------------------------
SELECT pg_temp.try($$UPDATE rungate.workspaces SET max_running = 0 WHERE id = 1$$) AS ws_zero;
SELECT pg_temp.try($$UPDATE rungate.operation_types SET max_running = -1 WHERE name = 'inventory.sync'$$) AS type_negative;
SELECT pg_temp.try($$UPDATE rungate.operation_types SET limit_scope = 'tenant' WHERE name = 'reports.export'$$) AS tenant_on_ws_type;
SELECT pg_temp.try($$UPDATE rungate.operation_types SET limit_scope = 'region' WHERE name = 'inventory.sync'$$) AS bad_scope;
SELECT pg_temp.try($$UPDATE rungate.operation_types SET limit_scope = NULL WHERE name = 'inventory.sync'$$) AS null_scope;
SELECT pg_temp.try($$UPDATE rungate.operation_types SET rate_limit = 5 WHERE name = 'inventory.sync'$$) AS half_rate;
SELECT pg_temp.try($$UPDATE rungate.operation_types SET rate_period = '1 minute' WHERE name = 'inventory.sync'$$) AS half_period;
SELECT pg_temp.try($$UPDATE rungate.operation_types SET rate_limit = 0, rate_period = '1 minute' WHERE name = 'inventory.sync'$$) AS rate_zero;
SELECT pg_temp.try($$UPDATE rungate.operation_types SET rate_limit = 1, rate_period = '0' WHERE name = 'inventory.sync'$$) AS period_zero;
SELECT pg_temp.try($$INSERT INTO rungate.operation_types (name, capability, scope, max_running) VALUES ('x', 'c', 'tenant', 0)$$) AS insert_zero;
SELECT max_running, limit_scope, rate_limit, rate_period FROM rungate.operation_types WHERE name IN ('inventory.sync', 'reports.export') ORDER BY name;
SELECT count(*) AS holds_before FROM rungate.holds \gset
SELECT pg_temp.try('SELECT rungate.hold(999)') AS unknown_ws,
       pg_temp.try('SELECT rungate.hold(tenant_id => 999)') AS unknown_tenant;
SELECT pg_temp.try('SELECT rungate.hold(2, 10)') AS tenant_of_other_ws,
       pg_temp.try($$SELECT rungate.hold(operation => 'nope')$$) AS unknown_op;
SELECT pg_temp.try('SELECT rungate.hold(1, actor_id => 999)') AS unknown_actor;
SELECT count(*) - :holds_before AS holds_written FROM rungate.holds;
SELECT pg_temp.try('SELECT rungate.resume(999)') AS unknown_hold,
       pg_temp.try(format('SELECT rungate.resume(%s)', :h1)) AS resumed_twice,
       pg_temp.try('SELECT rungate.resume(NULL)') AS null_hold;
