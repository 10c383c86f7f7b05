-- test/stress/smith_setup.sql: the database sqlsmith fuzzes (run.sh).
-- Run by psql from the repository root into a fresh database, as a superuser.
--
-- rungate with the fixture (test/fixtures/seed.sql), runs in every status, a
-- bulk parent with its items, a table fenced by guard_writes, and
-- public.fuzz: one row per interesting value of each type rungate's
-- functions take (real and unknown ids, live lease tokens, operation names,
-- payloads, intervals, arrays), so that sqlsmith, which feeds functions
-- with columns it finds, calls rungate with values that reach past the
-- argument checks. The role rungate_smith has nothing but USAGE on the
-- schema, EXECUTE on rungate's functions and its rights on public.fuzz.

\set ON_ERROR_STOP 1
SET client_min_messages = warning;
CREATE EXTENSION rungate;
\i test/fixtures/seed.sql
SET client_min_messages = warning;

-- runs: blocked at dispatch, blocked at claim, running, succeeded, failed,
-- retried, cancelled, queued (due and later), a bulk parent with items,
-- and a run blocked by its recheck
SELECT count(*) FROM (
    SELECT rungate.enqueue('restore.execute', 1, 11, 100)            -- blocked: admin_consent
    UNION ALL SELECT rungate.enqueue('inventory.sync', 1, 10, 101)
    UNION ALL SELECT rungate.enqueue('inventory.sync', 1, 10, 100) FROM generate_series(1, 6)
    UNION ALL SELECT rungate.enqueue('provider.connection.verify', 1, 10, NULL)
    UNION ALL SELECT rungate.enqueue('reports.export', 1, NULL, 100)
    UNION ALL SELECT rungate.enqueue('restore.execute', 1, 10, 100)
    UNION ALL SELECT rungate.enqueue('inventory.sync', 2, 20, 103, '{"k": [1, 2, {"x": null}]}')
    UNION ALL SELECT rungate.enqueue_bulk('bulk.inventory.sync', 1, '{10,11,12}', 100)
) s;
DELETE FROM rungate.tenant_members WHERE tenant_id = 10 AND actor_id = 101;   -- run 2 blocks at claim
SELECT count(*) FROM rungate.claim('smith-setup', NULL, 20);
SELECT count(*) FROM (
    SELECT rungate.complete(id, lease_token, '{"done": true}') FROM rungate.runs
     WHERE status = 'running' AND operation = 'inventory.sync' AND tenant_id = 10 ORDER BY id LIMIT 2) s;
SELECT count(*) FROM (
    SELECT rungate.fail(id, lease_token, 'boom') FROM rungate.runs
     WHERE status = 'running' AND operation = 'inventory.sync' AND tenant_id = 10 ORDER BY id LIMIT 1) s;
SELECT count(*) FROM (
    SELECT rungate.fail(id, lease_token, 'again', true, '1 hour') FROM rungate.runs
     WHERE status = 'running' AND operation = 'inventory.sync' AND tenant_id = 10 ORDER BY id LIMIT 1) s;
UPDATE rungate.tenant_prerequisites SET satisfied = false WHERE tenant_id = 10 AND name = 'admin_consent';
SELECT count(*) FROM (
    SELECT rungate.recheck(id, lease_token) FROM rungate.runs
     WHERE status = 'running' AND operation = 'restore.execute') s;   -- blocked by recheck
UPDATE rungate.tenant_prerequisites SET satisfied = true WHERE tenant_id = 10 AND name = 'admin_consent';
SELECT rungate.enqueue('inventory.sync', 1, 10, 100, run_at => now() + interval '1 day');
SELECT rungate.cancel((SELECT max(id) FROM rungate.runs), 100);
SELECT rungate.enqueue('inventory.sync', 1, 10, 100, '{}', now() + interval '1 day', 5, 'smith-key');
SELECT count(*) FROM (SELECT rungate.enqueue('inventory.sync', 2, 20, 103) FROM generate_series(1, 3)) s;

-- an application table fenced by guard_writes
CREATE TABLE public.side_effects (run_id bigint, note text);
SELECT rungate.guard_writes('public.side_effects', 'run_id');
INSERT INTO public.side_effects
SELECT id, 'during run ' || id FROM rungate.runs WHERE status = 'running' LIMIT 1;

-- values for sqlsmith to feed rungate's functions with
CREATE TABLE public.fuzz (
    id         bigint,
    num        integer,
    word       text,
    token      uuid,
    doc        jsonb,
    span       interval,
    at         timestamptz,
    flag       boolean,
    words      text[],
    ids        bigint[],
    rel        regclass,
    col        name
);
INSERT INTO public.fuzz (id, num, word, token, doc, span, at, flag, words, ids, rel, col)
SELECT r.id, r.attempt, r.operation, r.lease_token, r.payload, '1 second', r.created_at,
       r.status = 'running', ARRAY[r.operation], ARRAY[r.workspace_id, r.tenant_id],
       'public.side_effects', 'run_id'
  FROM rungate.runs r;
INSERT INTO public.fuzz (id, num, word, token, doc, span, at, flag, words, ids, rel, col) VALUES
    (1, 1, 'provider.connection.verify', gen_random_uuid(), '{}', '0', now(), true,
     '{inventory.sync,reports.export}', '{10,11,12}', 'rungate.runs', 'id'),
    (2, 0, 'bulk.inventory.sync', NULL, 'null', '-1 day', '-infinity', false,
     '{}', '{}', 'pg_class', 'oid'),
    (10, -1, 'inventory.sync', '00000000-0000-0000-0000-000000000000', '[1, "a", null]',
     '1000000 years', 'infinity', NULL, '{NULL}', '{NULL,20}', 'rungate.audit_log', 'run_id'),
    (100, 2147483647, '', NULL, '{"a": {"b": [true, 1.5e300]}}', NULL, NULL, true,
     NULL, '{-1,0,9223372036854775807}', NULL, NULL),
    (-9223372036854775808, -2147483648, repeat('x', 10000), NULL,
     jsonb_build_object('big', repeat('y', 100000)), '1 microsecond', '2000-01-01', false,
     array_fill('w'::text, ARRAY[1000]), array_fill(1::bigint, ARRAY[100001]),
     'public.fuzz', 'no_such_column'),
    (9223372036854775807, 1000, 'operations.view', NULL, '"text"', '1 hour', now(), NULL,
     '{queued,running,blocked}', '{10,20}', NULL, ''),
    (103, 1001, 'blocked', NULL, '{}', '5 minutes', now(), true, '{queued}', '{20}', NULL, NULL),
    (105, 3, 'succeeded', NULL, '{}', '00:00:00.001', now(), false, '{running}', '{10}', NULL, NULL);

-- more than one page of each value, so that sqlsmith's TABLESAMPLE clauses
-- (page or row sampling) still find rows to call rungate with
INSERT INTO public.fuzz SELECT f.* FROM public.fuzz f, generate_series(1, 10)
 WHERE length(f.word) < 100;
ANALYZE public.fuzz;

DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rungate_smith') THEN
        CREATE ROLE rungate_smith LOGIN;
    END IF;
END $$;
GRANT USAGE ON SCHEMA rungate TO rungate_smith;
GRANT EXECUTE ON ALL ROUTINES IN SCHEMA rungate TO rungate_smith;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.fuzz TO rungate_smith;

RESET client_min_messages;
