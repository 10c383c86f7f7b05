-- claim_reauthorization_matrix: every operation type of the fixture x
-- authority mode x kind of revocation (docs/guarantees.md#authority-data,
-- #decision, #transitions, #claim-reauthorization).
--   Part 1: rungate.decide under each revocation: one table, one row per
--           (operation, authority, scenario), with its reason code.
--   Part 2: the same revocations made after dispatch: the queued run is
--           blocked by claim with the same reason, never started
--           (#blocked, #claim-reauthorization).
-- Operation types (test/fixtures/seed.sql):
--   provider.connection.verify  tenant     allow_system  {provider_connection}
--   inventory.sync              tenant     allow_system  {provider_connection}
--   restore.execute             tenant     actor only    {provider_connection,admin_consent}
--   reports.export              workspace  allow_system
--   bulk.inventory.sync         workspace  actor only    (bulk orchestrator)
-- The capable actor is olivia (100): owner of workspace 1 and of tenant 10,
-- whose role grants every capability of the fixture. Tenant runs use tenant
-- 10 (active, every prerequisite satisfied); workspace runs no tenant.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS rungate CASCADE;
CREATE EXTENSION rungate;
\set ECHO none
\i test/fixtures/seed.sql
\i test/fixtures/try.sql
\set ECHO all

-- The revocations: ordinary DML on the authority tables (#authority-data),
-- each with the
-- DML that restores the fixture. :cap stands for the capability of the
-- operation at hand.
CREATE TEMP TABLE scenario (k int PRIMARY KEY, scenario text, revoke text, restore text);
INSERT INTO scenario VALUES
 (0, 'none', NULL, NULL),
 (1, 'capability removed from role',
     'DELETE FROM rungate.role_capabilities WHERE role = ''owner'' AND capability = :cap',
     'INSERT INTO rungate.role_capabilities VALUES (''owner'', :cap)'),
 (2, 'tenant membership deleted',
     'DELETE FROM rungate.tenant_members WHERE tenant_id = 10 AND actor_id = 100',
     'INSERT INTO rungate.tenant_members VALUES (10, 100, ''owner'')'),
 (3, 'workspace membership deleted',
     'DELETE FROM rungate.workspace_members WHERE workspace_id = 1 AND actor_id = 100',
     'INSERT INTO rungate.workspace_members VALUES (1, 100, ''owner'')'),
 (4, 'actor disabled',
     'UPDATE rungate.actors SET status = ''disabled'' WHERE id = 100',
     'UPDATE rungate.actors SET status = ''active'' WHERE id = 100'),
 (5, 'tenant moved to workspace 2',
     'UPDATE rungate.tenants SET workspace_id = 2 WHERE id = 10',
     'UPDATE rungate.tenants SET workspace_id = 1 WHERE id = 10'),
 (6, 'tenant suspended',
     'UPDATE rungate.tenants SET status = ''suspended'' WHERE id = 10',
     'UPDATE rungate.tenants SET status = ''active'' WHERE id = 10'),
 (7, 'workspace suspended',
     'UPDATE rungate.workspaces SET status = ''suspended'' WHERE id = 1',
     'UPDATE rungate.workspaces SET status = ''active'' WHERE id = 1'),
 (8, 'prerequisite lost',
     'UPDATE rungate.tenant_prerequisites SET satisfied = false WHERE tenant_id = 10 AND name = ''provider_connection''',
     'UPDATE rungate.tenant_prerequisites SET satisfied = true WHERE tenant_id = 10 AND name = ''provider_connection''');

-- The cases: every operation type, actor-bound (olivia) and system authority.
CREATE TEMP VIEW cases AS
SELECT ot.name AS operation,
       CASE WHEN ot.scope = 'tenant' THEN 10 END::bigint AS tenant_id,
       m.authority,
       CASE WHEN m.authority = 'actor' THEN 100 END::bigint AS actor_id,
       ot.capability
  FROM rungate.operation_types ot,
       (VALUES ('actor'), ('system')) m(authority);

-- A scenario's DML for one operation.
CREATE FUNCTION pg_temp.dml(stmt text, cap text) RETURNS text
LANGUAGE sql AS $$ SELECT replace(stmt, ':cap', quote_literal(cap)) $$;

-- decide_under(revoke, ...): the decision with the revocation applied, in a
-- subtransaction that is then rolled back (decide has no side effects, and
-- the revocation is undone).
CREATE FUNCTION pg_temp.decide_under(revoke text, op text, t bigint, a bigint)
RETURNS rungate.decision LANGUAGE plpgsql AS $$
DECLARE
    d rungate.decision;
BEGIN
    BEGIN
        IF revoke IS NOT NULL THEN
            EXECUTE revoke;
        END IF;
        d := rungate.decide(op, 1, t, a);
        RAISE EXCEPTION USING ERRCODE = 'RGUND', MESSAGE = 'undo';
    EXCEPTION WHEN SQLSTATE 'RGUND' THEN
        NULL;
    END;
    RETURN d;
END $$;

-- The authority data, to show that the matrix leaves it as it found it.
CREATE FUNCTION pg_temp.fixture_digest() RETURNS text LANGUAGE sql AS $$
    SELECT md5(concat_ws('|',
        (SELECT string_agg(format('%s', w), ',' ORDER BY w.id) FROM rungate.workspaces w),
        (SELECT string_agg(format('%s', t), ',' ORDER BY t.id) FROM rungate.tenants t),
        (SELECT string_agg(format('%s', a), ',' ORDER BY a.id) FROM rungate.actors a),
        (SELECT string_agg(format('%s', r), ',' ORDER BY r.role, r.capability) FROM rungate.role_capabilities r),
        (SELECT string_agg(format('%s', m), ',' ORDER BY m.workspace_id, m.actor_id) FROM rungate.workspace_members m),
        (SELECT string_agg(format('%s', m), ',' ORDER BY m.tenant_id, m.actor_id) FROM rungate.tenant_members m),
        (SELECT string_agg(format('%s', p), ',' ORDER BY p.tenant_id, p.name) FROM rungate.tenant_prerequisites p),
        (SELECT string_agg(format('%s', o), ',' ORDER BY o.name) FROM rungate.operation_types o)))
$$;
SELECT pg_temp.fixture_digest() AS fixture_before \gset

-- ---------------------------------------------------------------------
-- Part 1: the decision matrix. #decision: actor authority evaluates checks 1-9
-- (1, 2, 3, 6, 7 for workspace types); system authority 1, 4, 7, 8, 9
-- (1, 7): revocations of actors, memberships and roles do not concern it,
-- and types without allow_system deny it whatever else holds. Workspace
-- types have no tenant checks: tenant revocations do not concern them.
-- ---------------------------------------------------------------------
SELECT c.operation, c.authority, s.scenario, d.allowed, d.reason_code
  FROM cases c
 CROSS JOIN scenario s
 CROSS JOIN LATERAL pg_temp.decide_under(pg_temp.dml(s.revoke, c.capability),
                                         c.operation, c.tenant_id, c.actor_id) d
 ORDER BY c.operation, c.authority, s.k;

-- The reason categories of the matrix, and the authority each decision
-- reports, per reason code.
SELECT coalesce(d.reason_code, '(allowed)') AS reason_code, d.reason_category,
       string_agg(DISTINCT d.authority, ',') AS authorities, count(*) AS decisions
  FROM cases c
 CROSS JOIN scenario s
 CROSS JOIN LATERAL pg_temp.decide_under(pg_temp.dml(s.revoke, c.capability),
                                         c.operation, c.tenant_id, c.actor_id) d
 GROUP BY 1, 2
 ORDER BY 1, 2;

-- decide wrote nothing, and every revocation was undone.
SELECT (SELECT count(*) FROM rungate.runs) AS runs,
       (SELECT count(*) FROM rungate.audit_log) AS audit_rows,
       pg_temp.fixture_digest() = :'fixture_before' AS fixture_unchanged;

-- ---------------------------------------------------------------------
-- Part 2: dispatched while legitimate, revoked, then claimed
-- (#claim-reauthorization).
-- The claim decides against the state as it is now: the run becomes
-- blocked with the decision's reason, is not handed to the worker, never
-- gets started_at, a lease or a 'started' audit row, and its
-- execution_blocked audit row carries the same checks as decide. Without
-- a revocation the run starts (and is completed here, to leave no work).
-- ---------------------------------------------------------------------
CREATE FUNCTION pg_temp.enqueue_revoke_claim(op text, t bigint, a bigint, k int)
RETURNS TABLE (dispatched text, claimed int, status text, reason_code text,
               reason_category text, same_reason_as_decide boolean,
               audit_events text, audit_checks_as_decide boolean,
               never_started boolean, items int)
LANGUAGE plpgsql AS $$
DECLARE
    s scenario;
    cap text := (SELECT capability FROM rungate.operation_types WHERE name = op);
    r rungate.runs;
    d rungate.decision;
    c rungate.claimed;
    n int := 0;
BEGIN
    SELECT * INTO STRICT s FROM scenario WHERE scenario.k = enqueue_revoke_claim.k;
    IF (SELECT item_operation FROM rungate.operation_types WHERE name = op) IS NOT NULL THEN
        r := rungate.enqueue_bulk(op, 1, ARRAY[10, 11]::bigint[], a);
    ELSE
        r := rungate.enqueue(op, 1, t, a);
    END IF;
    dispatched := r.status;
    IF s.revoke IS NOT NULL THEN
        EXECUTE pg_temp.dml(s.revoke, cap);
    END IF;
    d := rungate.decide(op, 1, t, a);
    FOR c IN SELECT * FROM rungate.claim('matrix-worker', ARRAY[op]) LOOP
        n := n + 1;
        IF c.run_id = r.id THEN
            PERFORM rungate.complete(c.run_id, c.lease_token);
        END IF;
    END LOOP;
    IF s.restore IS NOT NULL THEN
        EXECUTE pg_temp.dml(s.restore, cap);
    END IF;
    claimed := n;
    SELECT x.status, x.reason_code, x.reason_category,
           x.reason_code IS NOT DISTINCT FROM d.reason_code
             AND x.reason_category IS NOT DISTINCT FROM d.reason_category
             AND x.reason_message IS NOT DISTINCT FROM d.reason_message,
           x.started_at IS NULL AND x.lease_expires_at IS NULL AND x.attempt = 0
      INTO status, reason_code, reason_category, same_reason_as_decide, never_started
      FROM rungate.runs x WHERE x.id = r.id;
    SELECT string_agg(l.event, ',' ORDER BY l.id),
           bool_and(l.checks = d.checks AND l.decision = 'deny'
                    AND l.reason_code = d.reason_code)
             FILTER (WHERE l.event = 'execution_blocked')
      INTO audit_events, audit_checks_as_decide
      FROM rungate.audit_log l WHERE l.run_id = r.id;
    SELECT count(*) INTO items FROM rungate.runs x WHERE x.parent_id = r.id;
    RETURN NEXT;
END $$;

-- A representative subset: each revocation against a tenant type with an
-- actor, the kept checks for system authority, workspace-scoped and bulk
-- types, and the controls without revocation.
SELECT v.operation, CASE WHEN v.a IS NULL THEN 'system' ELSE 'actor' END AS authority,
       s.scenario, e.*
  FROM (VALUES
        (1, 'inventory.sync',             10,   100, 0),
        (2, 'provider.connection.verify', 10,   100, 1),
        (3, 'inventory.sync',             10,   100, 2),
        (4, 'restore.execute',            10,   100, 3),
        (5, 'provider.connection.verify', 10,   100, 4),
        (6, 'restore.execute',            10,   100, 5),
        (7, 'inventory.sync',             10,   100, 6),
        (8, 'restore.execute',            10,   100, 7),
        (9, 'restore.execute',            10,   100, 8),
        (10, 'inventory.sync',            10,   NULL, 0),
        (11, 'inventory.sync',            10,   NULL, 4),
        (12, 'provider.connection.verify', 10,  NULL, 5),
        (13, 'inventory.sync',            10,   NULL, 6),
        (14, 'provider.connection.verify', 10,  NULL, 7),
        (15, 'inventory.sync',            10,   NULL, 8),
        (16, 'reports.export',            NULL, 100, 0),
        (17, 'reports.export',            NULL, 100, 1),
        (18, 'reports.export',            NULL, 100, 3),
        (19, 'reports.export',            NULL, 100, 6),
        (20, 'reports.export',            NULL, NULL, 7),
        (21, 'bulk.inventory.sync',       NULL, 100, 4),
        (22, 'bulk.inventory.sync',       NULL, 100, 7)
       ) v(n, operation, t, a, k)
  JOIN scenario s ON s.k = v.k
 CROSS JOIN LATERAL pg_temp.enqueue_revoke_claim(v.operation, v.t, v.a, v.k) e
 ORDER BY v.n;

-- The blocked runs as a worker-free observer sees them: blocked, with the
-- reason code of its decision, never failed.
SELECT status, reason_code, reason_category, count(*) AS runs
  FROM rungate.runs
 GROUP BY 1, 2, 3
 ORDER BY 1, 2, 3;

-- Every revocation of part 2 was restored; nothing is left queued or running.
SELECT pg_temp.fixture_digest() = :'fixture_before' AS fixture_unchanged,
       (SELECT count(*) FROM rungate.runs WHERE status IN ('queued', 'running')) AS live_runs;
