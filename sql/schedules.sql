-- Recurring runs: rungate.schedules, its validation (RG400 naming the
-- field), the cron parser (through rungate.cron_latest_tick and the
-- table), and rungate.run_schedules(at) with explicit times: one run per
-- schedule for its latest due tick (missed ticks coalesced), run_at = tick,
-- idempotency keys schedule:<name>:<tick>, last_tick moved forward, decided
-- at dispatch (a denied tick is inserted blocked), disabled schedules left
-- alone, concurrent and repeated calls enqueue a tick once.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS rungate CASCADE;
RESET client_min_messages;
CREATE EXTENSION rungate;
\i test/fixtures/seed.sql
\i test/fixtures/try.sql
SET timezone = 'UTC';

-- The table, as the reference documents it.
SELECT column_name, data_type, is_nullable, column_default
  FROM information_schema.columns
 WHERE table_schema = 'rungate' AND table_name = 'schedules'
 ORDER BY ordinal_position;

-- Up to n ticks of an expression in (after, upto], latest first, each
-- found by cron_latest_tick: what run_schedules computes.
CREATE FUNCTION pg_temp.ticks(expr text, after timestamptz, upto timestamptz,
                              n int DEFAULT 12) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    t timestamptz := upto;
    out text[] := '{}';
BEGIN
    FOR i IN 1..n LOOP
        t := rungate.cron_latest_tick(expr, after, t);
        EXIT WHEN t IS NULL;
        out := out || to_char(t, 'Dy DD Mon YYYY HH24:MI');
        t := t - interval '1 microsecond';
    END LOOP;
    RETURN array_to_string(out, ', ');
END $$;

------------------------------------------------------------------------------
-- The parser: good expressions
------------------------------------------------------------------------------

-- minutes: every 15, a list, a stepped range; seconds of upto are ignored
SELECT pg_temp.ticks('*/15 * * * *', '2030-01-01 09:00', '2030-01-01 10:07:59');
SELECT pg_temp.ticks('5,10,55 * * * *', '2030-01-01 09:00', '2030-01-01 10:30');
SELECT pg_temp.ticks('10-20/5 9 * * *', '2030-01-01 00:00', '2030-01-02 23:59');
-- hours with a step, weekdays by name (2030-01-07 is a Monday)
SELECT pg_temp.ticks('0 9-17/4 * * mon-fri', '2030-01-04 12:00', '2030-01-08 23:59', 20);
-- day-of-week 0, 7 and sun are Sunday; names in any case
SELECT pg_temp.ticks('0 0 * * 0', '2030-01-01', '2030-01-31', 5) AS zero,
       pg_temp.ticks('0 0 * * 7', '2030-01-01', '2030-01-31', 5) AS seven,
       pg_temp.ticks('0 0 * * SUN', '2030-01-01', '2030-01-31', 5) AS sun;
SELECT pg_temp.ticks('30 6 1 Jan,jul *', '2028-01-01', '2030-12-31');
SELECT pg_temp.ticks('0 12 * * 5-7', '2030-01-01', '2030-01-14');
-- Vixie's day rule: both day fields restricted, a day matches if either
-- does (the 1st and 15th, and every Monday)
SELECT pg_temp.ticks('0 0 1,15 * mon', '2030-01-01', '2030-01-31 23:59', 10);
-- one of them begins with '*': both must match (odd days that are Mondays)
SELECT pg_temp.ticks('0 0 */2 * mon', '2030-01-01', '2030-03-31 23:59', 10);
SELECT pg_temp.ticks('0 0 13 * *', '2030-01-01', '2030-12-31', 3) AS dom_only,
       pg_temp.ticks('0 0 * * fri', '2030-01-01', '2030-01-31', 3) AS dow_only;
-- the macros, and whitespace around and between fields
SELECT m, pg_temp.ticks(m, '2029-12-01', '2031-01-01 00:00', 3)
  FROM unnest(ARRAY['@hourly', '@daily', '@midnight', '@weekly', '@monthly',
                    '@yearly', '@annually', '@DAILY', E' \t0  0 * *\tsat ']) m;
-- bounds: after is excluded, upto included
SELECT rungate.cron_latest_tick('0 * * * *', '2030-01-01 10:00', '2030-01-01 10:59') AS none,
       rungate.cron_latest_tick('0 * * * *', '2030-01-01 09:59:59', '2030-01-01 10:00') AS at_upto,
       rungate.cron_latest_tick('0 * * * *', '2030-01-01 10:00', '2030-01-01 10:00') AS empty_window;
-- far windows cost the gap between ticks, not the window: the last Feb 29
-- (2028) seen from 2030 across a century, and a yearly tick from 1990
SELECT rungate.cron_latest_tick('0 0 29 2 *', '1930-01-01', '2030-06-01') AS leap_day,
       rungate.cron_latest_tick('0 0 1 1 *', '1990-01-01', '2030-06-01') AS new_year,
       rungate.cron_latest_tick('59 23 31 12 *', '2000-01-01', '2030-06-01') AS last_minute;
SELECT count(rungate.cron_latest_tick('0 0 29 2 *', '1900-01-01', '2030-01-01'::timestamptz + g * interval '1 hour'))
  FROM generate_series(1, 2000) g;

------------------------------------------------------------------------------
-- The parser: bad expressions, refused when a schedule is written (RG400,
-- naming cron) and by cron_latest_tick
------------------------------------------------------------------------------
SELECT c AS cron,
       pg_temp.try(format($$INSERT INTO rungate.schedules (name, cron, operation, workspace_id, tenant_id)
                          VALUES ('bad', %L, 'inventory.sync', 1, 10)$$, c)) AS outcome
  FROM unnest(ARRAY[
    '* * * *', '* * * * * *', '0 0 * * * 2030', '', '   ',
    '60 * * * *', '0 24 * * *', '0 0 0 * *', '0 0 32 * *', '0 0 * 0 *', '0 0 * 13 *', '0 0 * * 8',
    '*/0 * * * *', '0 */0 * * *', '*/60 * * * *', '0 0 1-31/40 * *',
    '0 0 * foo *', '0 0 * * monday', '0 0 * * funday', 'mon * * * *', '0 0 jan * *',
    '5-1 * * * *', '5/15 * * * *', '1,,2 * * * *', '1, * * * *', ',1 * * * *', '1- * * * *',
    '*/ * * * *', '*/x * * * *', '-1 * * * *', '1.5 * * * *', '99999 * * * *', '*-5 * * * *',
    '@reboot', '@every 5m', '@daily 0', '@',
    '0 0 30 2 *', '0 0 31 4,6,9,11 *', '0 0 30,31 feb *']) c;
SELECT pg_temp.try($$INSERT INTO rungate.schedules (name, cron, operation, workspace_id, tenant_id)
                    VALUES ('bad', NULL, 'inventory.sync', 1, 10)$$) AS null_cron;
SELECT pg_temp.try($$SELECT rungate.cron_latest_tick('0 0 31 2 *', '2030-01-01', '2031-01-01')$$) AS never,
       pg_temp.try($$SELECT rungate.cron_latest_tick('* * * * *', '-infinity', '2031-01-01')$$) AS infinite;
SELECT count(*) AS written FROM rungate.schedules;

------------------------------------------------------------------------------
-- Targets that enqueue would refuse, or a run that could never start:
-- RG400 naming the field
------------------------------------------------------------------------------
SELECT t.label,
       pg_temp.try(format($$INSERT INTO rungate.schedules
                              (name, cron, operation, workspace_id, tenant_id, initiator_id, last_tick)
                            VALUES (%L, '0 2 * * *', %L, %s, %s, %s, %L)$$,
                          t.label, t.op, t.ws, t.tenant, t.initiator, t.last_tick)) AS outcome
  FROM (VALUES
    ('unknown operation', 'no.such.op', '1', '10', 'NULL', NULL),
    ('bulk type', 'bulk.inventory.sync', '1', 'NULL', '100', NULL),
    ('unknown workspace', 'inventory.sync', '99', '10', 'NULL', NULL),
    ('tenant missing', 'inventory.sync', '1', 'NULL', 'NULL', NULL),
    ('tenant superfluous', 'reports.export', '1', '10', 'NULL', NULL),
    ('unknown tenant', 'inventory.sync', '1', '999', 'NULL', NULL),
    ('tenant of another workspace', 'inventory.sync', '1', '20', 'NULL', NULL),
    ('unknown initiator', 'inventory.sync', '1', '10', '999', NULL),
    ('no initiator, no system authority', 'restore.execute', '1', '10', 'NULL', NULL),
    ('infinite last_tick', 'inventory.sync', '1', '10', 'NULL', 'infinity'),
    ('null workspace', 'inventory.sync', 'NULL', '10', 'NULL', NULL),
    ('null operation', NULL, '1', '10', 'NULL', NULL),
    ('', 'inventory.sync', '1', '10', 'NULL', NULL)
  ) AS t(label, op, ws, tenant, initiator, last_tick);
SELECT pg_temp.try($$INSERT INTO rungate.schedules (name, cron, operation, workspace_id, tenant_id, payload)
                    VALUES ('null payload', '@daily', 'inventory.sync', 1, 10, NULL)$$) AS null_payload;
SELECT count(*) AS written FROM rungate.schedules;

------------------------------------------------------------------------------
-- Good schedules
------------------------------------------------------------------------------
INSERT INTO rungate.schedules (name, cron, operation, workspace_id, tenant_id, initiator_id,
                               payload, priority, enabled, created_at) VALUES
    -- system authority, nightly at 02:00
    ('nightly-sync', '0 2 * * *', 'inventory.sync', 1, 10, NULL, '{"scheduled": true}', 5, true,
     '2030-01-01 00:00'),
    -- an actor's authority, every hour, a workspace-scoped type
    ('hourly-report', '@hourly', 'reports.export', 1, NULL, 100, '{}', 0, true,
     '2030-01-01 00:00'),
    -- tenant 12 is onboarding: every tick is denied at dispatch
    ('verify-acme-new', '*/30 * * * *', 'provider.connection.verify', 1, 12, NULL, '{}', 0, true,
     '2030-01-01 00:00'),
    -- an actor lacking the capability: denied, and the actor is notified
    ('oscar-restore', '15 3 * * *', 'restore.execute', 1, 10, 101, '{}', 0, true,
     '2030-01-01 00:00'),
    -- disabled
    ('paused', '* * * * *', 'inventory.sync', 1, 10, NULL, '{}', 0, false,
     '2030-01-01 00:00');
SELECT name, cron, last_tick, created_at FROM rungate.schedules ORDER BY name;

------------------------------------------------------------------------------
-- run_schedules with explicit times
------------------------------------------------------------------------------
CREATE TEMP VIEW made AS
SELECT r.id, r.operation, r.tenant_id, r.initiator_id, r.status, r.reason_code,
       r.run_at, r.priority, r.payload, r.idempotency_key
  FROM rungate.runs r;

-- 00:40: only verify-acme-new has had a tick (00:30, and 00:00 is not after
-- created_at): inserted blocked, decided as system authority
SELECT operation, tenant_id, status, reason_code, run_at, idempotency_key
  FROM rungate.run_schedules('2030-01-01 00:40');

-- three days later: one run per schedule for its latest tick only
SELECT operation, tenant_id, initiator_id, status, reason_code, run_at, priority, payload, idempotency_key
  FROM rungate.run_schedules('2030-01-03 05:10');
SELECT name, enabled, last_tick FROM rungate.schedules ORDER BY name;

-- the same time again, or an earlier one: nothing (each tick once)
SELECT count(*) AS again FROM rungate.run_schedules('2030-01-03 05:10');
SELECT count(*) AS earlier FROM rungate.run_schedules('2030-01-02 00:00');
SELECT count(*) AS before_next FROM rungate.run_schedules('2030-01-03 05:29:59');

-- every run is what its schedule says, keyed as the reference gives
SELECT count(*) AS runs,
       bool_and(idempotency_key = 'schedule:' || s.name || ':' ||
                to_char(run_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')) AS keys_match
  FROM rungate.runs r JOIN rungate.schedules s
    ON r.idempotency_key LIKE 'schedule:' || s.name || ':%';
SELECT idempotency_key, count(*) FROM rungate.runs GROUP BY 1 HAVING count(*) > 1;

-- decided at dispatch like enqueue: audit rows, a notification for the
-- actor whose tick was denied, none for system authority
SELECT r.idempotency_key, a.event, a.authority, a.actor_id, a.decision, a.reason_code
  FROM rungate.audit_log a JOIN rungate.runs r ON r.id = a.run_id ORDER BY a.id;
SELECT actor_id, kind FROM rungate.notifications ORDER BY id;

-- run_at is the tick: in 2030, so no claim takes these runs today
SELECT count(*) AS claimed FROM rungate.claim('w', NULL, 5);

-- a disabled schedule is left alone; enabled again, it coalesces from
-- created_at to its latest tick
SELECT count(*) FROM rungate.runs WHERE idempotency_key LIKE 'schedule:paused:%';
UPDATE rungate.schedules SET enabled = true WHERE name = 'paused';
SELECT idempotency_key, run_at FROM rungate.run_schedules('2030-01-03 05:10');
UPDATE rungate.schedules SET enabled = false WHERE name = 'paused';

------------------------------------------------------------------------------
-- last_tick: rungate only moves it forward; the application may set it
------------------------------------------------------------------------------
-- back, while the run of the latest tick is still queued: that tick is not
-- enqueued twice (its key names a live run); last_tick moves forward
UPDATE rungate.schedules SET last_tick = '2030-01-02 12:00' WHERE name = 'nightly-sync';
SELECT count(*) AS replayed FROM rungate.run_schedules('2030-01-03 05:10');
SELECT last_tick FROM rungate.schedules WHERE name = 'nightly-sync';
-- back, once that run is over: the tick runs again, with the same key
SELECT status FROM rungate.cancel((SELECT id FROM rungate.runs
                                    WHERE idempotency_key = 'schedule:nightly-sync:2030-01-03T02:00:00Z'));
UPDATE rungate.schedules SET last_tick = '2030-01-02 12:00' WHERE name = 'nightly-sync';
SELECT status, idempotency_key FROM rungate.run_schedules('2030-01-03 05:10');
-- forward: the ticks before it are skipped
UPDATE rungate.schedules SET last_tick = '2030-01-10 02:00' WHERE name = 'nightly-sync';
SELECT operation, run_at FROM rungate.run_schedules('2030-01-09 05:10') ORDER BY operation;
SELECT run_at FROM rungate.run_schedules('2030-01-11 03:00') WHERE operation = 'inventory.sync';

------------------------------------------------------------------------------
-- Updates are checked for what they change; authority data that changed
-- under a schedule skips its ticks with a WARNING and moves on
------------------------------------------------------------------------------
SELECT pg_temp.try($$UPDATE rungate.schedules SET cron = '0 25 * * *' WHERE name = 'nightly-sync'$$) AS bad_cron,
       pg_temp.try($$UPDATE rungate.schedules SET tenant_id = 20 WHERE name = 'nightly-sync'$$) AS other_workspace,
       pg_temp.try($$UPDATE rungate.schedules SET initiator_id = NULL WHERE name = 'oscar-restore'$$) AS no_initiator,
       pg_temp.try($$UPDATE rungate.schedules SET operation = 'bulk.inventory.sync', tenant_id = NULL WHERE name = 'nightly-sync'$$) AS bulk;
-- tenant 10 moves to workspace 2: the nightly schedule no longer fits
UPDATE rungate.tenants SET workspace_id = 2 WHERE id = 10;
-- its priority can still be changed
UPDATE rungate.schedules SET priority = 6 WHERE name = 'nightly-sync';
-- run_schedules skips its tick (WARNING), moves last_tick, goes on with the others
SELECT operation, status, run_at FROM rungate.run_schedules('2030-01-12 02:30') ORDER BY operation, run_at;
SELECT name, last_tick FROM rungate.schedules WHERE name = 'nightly-sync';
-- it can be disabled; enabled again, it is checked again
SELECT pg_temp.try($$UPDATE rungate.schedules SET enabled = false WHERE name = 'nightly-sync'$$) AS disable,
       pg_temp.try($$UPDATE rungate.schedules SET enabled = true WHERE name = 'nightly-sync'$$) AS enable;
UPDATE rungate.tenants SET workspace_id = 1 WHERE id = 10;
UPDATE rungate.schedules SET enabled = true WHERE name = 'nightly-sync';

------------------------------------------------------------------------------
-- Arguments, privileges
------------------------------------------------------------------------------
SELECT pg_temp.try($$SELECT rungate.run_schedules('infinity')$$) AS infinite_at;
-- NULL is now(): the schedules here are in 2030
SELECT count(*) AS now_default FROM rungate.run_schedules(NULL);
SELECT count(*) AS now_default FROM rungate.run_schedules();
SELECT p.oid::regprocedure, p.prosecdef, p.proconfig, p.provolatile,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public_execute
  FROM pg_proc p
 WHERE p.pronamespace = 'rungate'::regnamespace
   AND p.proname IN ('run_schedules', 'cron_latest_tick', 'validate_schedule')
 ORDER BY 1::text;
SELECT has_table_privilege('public', 'rungate.schedules', 'SELECT') AS public_select,
       (SELECT tgenabled FROM pg_trigger WHERE tgname = 'validate_schedule') AS trigger_enabled,
       (SELECT 'rungate.schedules'::regclass = ANY (extconfig) FROM pg_extension
         WHERE extname = 'rungate') AS dumped;
-- the trigger fires in every session_replication_role
SET session_replication_role = replica;
SELECT pg_temp.try($$INSERT INTO rungate.schedules (name, cron, operation, workspace_id, tenant_id)
                    VALUES ('replica', '0 0 0 * *', 'inventory.sync', 1, 10)$$) AS replica_role;
RESET session_replication_role;
