-- upgrade: ALTER EXTENSION rungate UPDATE from 1.0, the first release, to
-- default_version (rungate.control), through every update script in turn
-- (rungate--1.0--1.1.sql, rungate--1.1--1.2.sql, ... : section 1 lists the
-- paths), keeps everything a running installation has
-- (docs/guarantees.md#upgrades):
--   * the data (authority rows, runs in every state, audit rows,
--     notifications) byte for byte, and ids continue after it
--   * the grants to a role, on the schema, functions and tables
--   * the triggers, still ENABLE ALWAYS (pg_trigger.tgenabled = 'A'), the
--     pg_dump configuration (pg_extension_config_dump) and a fence installed
--     on an application table
--   * the guards (RG409) and the behaviour: a lease taken under 1.0 is
--     completed after the update, and enqueue / claim / complete work
-- and brings what the versions add: 1.1's comments on the internal columns
-- and triggers, 1.2's audit checks in the guard trigger, 1.3's batched
-- retention, the later versions' triggers (section 8 lists them all),
-- 1.7's indexes for operations, 1.8's own check of a new run's workspace
-- and operation type, and 1.9's own lock of its tenant and initiator.
-- The C module is the current one throughout: it serves the 1.0 schema
-- before the update, as it does any earlier schema until it is updated.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS rungate CASCADE;
DROP TABLE IF EXISTS upgrade_app_effects;
DROP ROLE IF EXISTS upgrade_worker;
CREATE EXTENSION rungate VERSION '1.0';
\set ECHO none
\i test/fixtures/seed.sql
\i test/fixtures/try.sql
\set ECHO all

------------------------------------------------------------------------------
-- 1. Version 1.0 is installed, and every later version is reachable from
--    it, one update script per version.
------------------------------------------------------------------------------
SELECT extversion FROM pg_extension WHERE extname = 'rungate';
SELECT source, target, path FROM pg_extension_update_paths('rungate')
 WHERE path IS NOT NULL ORDER BY source, target;

------------------------------------------------------------------------------
-- 2. Fill 1.0: runs in every state (docs/guarantees.md#transitions).
------------------------------------------------------------------------------
-- 1: blocked at dispatch (admin_consent unmet on tenant 11)
SELECT id, status, reason_code FROM rungate.enqueue('restore.execute', 1, 11, 100);
-- 2: oscar's sync, blocked at claim once his tenant membership is gone
SELECT id, status FROM rungate.enqueue('inventory.sync', 1, 10, 101);
-- 3, 4, 5: olivia's syncs (to succeed, to fail, to stay running)
SELECT id, status FROM rungate.enqueue('inventory.sync', 1, 10, 100) ORDER BY id;
SELECT id, status FROM rungate.enqueue('inventory.sync', 1, 10, 100) ORDER BY id;
SELECT id, status FROM rungate.enqueue('inventory.sync', 1, 10, 100) ORDER BY id;
-- 6: a bulk parent over tenants 10, 11, 12
SELECT id, status FROM rungate.enqueue_bulk('bulk.inventory.sync', 1, '{10,11,12}', 100);
DELETE FROM rungate.tenant_members WHERE tenant_id = 10 AND actor_id = 101;
SELECT run_id, operation, tenant_id FROM rungate.claim('upgrade-w1', NULL, 4) ORDER BY run_id;
SELECT id, status, reason_code, parent_id FROM rungate.runs ORDER BY id;
SELECT status FROM rungate.complete(3, (SELECT lease_token FROM rungate.runs WHERE id = 3), '{"n": 3}');
SELECT status FROM rungate.fail(4, (SELECT lease_token FROM rungate.runs WHERE id = 4), 'boom');
-- a run queued for later, then cancelled; and one left queued and due
SELECT status FROM rungate.cancel((rungate.enqueue('inventory.sync', 1, 10, 100,
    run_at => now() + interval '1 day')).id, 100);
SELECT id, status FROM rungate.enqueue('reports.export', 1, NULL, 100);
SELECT status, count(*) FROM rungate.runs GROUP BY status ORDER BY status;
-- the leases of run 5 and of bulk item 7, held across the upgrade (not printed)
SELECT lease_token AS lease5 FROM rungate.runs WHERE id = 5 \gset
SELECT lease_token AS lease7 FROM rungate.runs WHERE id = 7 \gset

------------------------------------------------------------------------------
-- 3. An application table fenced by rungate.guard_writes (#fence), and a
--    worker role with the grants of docs/privileges.md plus the table's.
------------------------------------------------------------------------------
CREATE TABLE upgrade_app_effects (run_id bigint NOT NULL, note text NOT NULL);
SELECT rungate.guard_writes('upgrade_app_effects', 'run_id');
INSERT INTO upgrade_app_effects VALUES (5, 'written under 1.0 by running run 5');
CREATE ROLE upgrade_worker;
GRANT USAGE ON SCHEMA rungate TO upgrade_worker;
GRANT EXECUTE ON FUNCTION
    rungate.claim(text, text[], integer),
    rungate.heartbeat(bigint, uuid),
    rungate.complete(bigint, uuid, jsonb),
    rungate.fail(bigint, uuid, text, boolean, interval)
  TO upgrade_worker;
GRANT SELECT (id, status) ON rungate.runs TO upgrade_worker;
GRANT INSERT, SELECT ON upgrade_app_effects TO upgrade_worker;

------------------------------------------------------------------------------
-- 4. Snapshots taken under 1.0: every row of every rungate table, every
--    privilege on the schema and its objects, the dump configuration.
------------------------------------------------------------------------------
CREATE TEMP VIEW upgrade_data AS
SELECT md5(string_agg(x, '|' ORDER BY x)) AS fingerprint, count(*) AS n_rows FROM (
    -- (columns added by later versions are left out: they are new, not changed)
    SELECT 'w' || (to_jsonb(t) - 'max_running')::text AS x FROM rungate.workspaces t
    UNION ALL SELECT 't' || to_jsonb(t)::text FROM rungate.tenants t
    UNION ALL SELECT 'a' || to_jsonb(t)::text FROM rungate.actors t
    UNION ALL SELECT 'c' || to_jsonb(t)::text FROM rungate.role_capabilities t
    UNION ALL SELECT 'wm' || to_jsonb(t)::text FROM rungate.workspace_members t
    UNION ALL SELECT 'tm' || to_jsonb(t)::text FROM rungate.tenant_members t
    UNION ALL SELECT 'p' || to_jsonb(t)::text FROM rungate.tenant_prerequisites t
    UNION ALL SELECT 'o' || (to_jsonb(t) - ARRAY['max_running', 'limit_scope', 'rate_limit',
                                                  'rate_period'])::text
                FROM rungate.operation_types t
    UNION ALL SELECT 'r' || (to_jsonb(t) - 'rerun_of')::text FROM rungate.runs t
    UNION ALL SELECT 'l' || to_jsonb(t)::text FROM rungate.audit_log t
    UNION ALL SELECT 'n' || to_jsonb(t)::text FROM rungate.notifications t
    UNION ALL SELECT 'e' || to_jsonb(t)::text FROM upgrade_app_effects t) s;
CREATE TEMP VIEW upgrade_acls AS
SELECT 'schema rungate' AS object, nspacl::text AS acl
  FROM pg_namespace WHERE nspname = 'rungate'
UNION ALL
SELECT 'function ' || p.oid::regprocedure::text, p.proacl::text
  FROM pg_proc p WHERE p.pronamespace = 'rungate'::regnamespace
UNION ALL
-- (an owner's ALL on a table includes MAINTAIN, m, from 17 on)
SELECT 'relation ' || c.oid::regclass::text, replace(c.relacl::text, 'arwdDxtm/', 'arwdDxt/')
  FROM pg_class c WHERE c.relnamespace = 'rungate'::regnamespace
UNION ALL
SELECT 'column ' || a.attrelid::regclass::text || '.' || a.attname, a.attacl::text
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
 WHERE c.relnamespace = 'rungate'::regnamespace AND a.attacl IS NOT NULL
UNION ALL
SELECT 'relation upgrade_app_effects', relacl::text
  FROM pg_class WHERE oid = 'upgrade_app_effects'::regclass;
CREATE TEMP TABLE upgrade_acls_before AS SELECT * FROM upgrade_acls;
CREATE TEMP TABLE upgrade_config_before AS
SELECT unnest(extconfig)::regclass::text AS config, unnest(extcondition) AS cond
  FROM pg_extension WHERE extname = 'rungate';
SELECT fingerprint AS data_before, n_rows AS rows_before FROM upgrade_data \gset
SELECT max(id) AS max_run_before FROM rungate.runs \gset
SELECT :rows_before AS rows_before;

------------------------------------------------------------------------------
-- 5. The update: ALTER EXTENSION rungate UPDATE goes to default_version.
------------------------------------------------------------------------------
ALTER EXTENSION rungate UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'rungate';

------------------------------------------------------------------------------
-- 6. Data intact: the same rows, byte for byte (runs, audit rows,
--    notifications, authority data, the application's rows).
------------------------------------------------------------------------------
SELECT fingerprint = :'data_before' AS data_unchanged, n_rows FROM upgrade_data;
SELECT status, count(*) FROM rungate.runs GROUP BY status ORDER BY status;

------------------------------------------------------------------------------
-- 7. Grants intact: no privilege on the schema, a function or a table
--    changed (PUBLIC still has none, #privileges), and the worker role
--    still holds exactly its own. Listed: what 1.3 adds (purge_batch,
--    purge_in_batches), the owner's alone, no EXECUTE for PUBLIC.
------------------------------------------------------------------------------
SELECT coalesce(b.object, a.object) AS object, b.acl AS before, a.acl AS after
  FROM upgrade_acls_before b FULL JOIN upgrade_acls a ON a.object = b.object
 WHERE b.acl IS DISTINCT FROM a.acl OR a.object IS NULL OR b.object IS NULL
 ORDER BY 1;
SELECT count(*) AS objects_checked FROM upgrade_acls;
SELECT f AS function,
       has_function_privilege('upgrade_worker', f, 'EXECUTE') AS worker,
       has_function_privilege('public', f, 'EXECUTE') AS public
  FROM unnest(ARRAY['rungate.claim(text, text[], integer)',
                    'rungate.heartbeat(bigint, uuid)',
                    'rungate.complete(bigint, uuid, jsonb)',
                    'rungate.enqueue(text, bigint, bigint, bigint, jsonb, timestamptz, integer, text)',
                    'rungate.decide(text, bigint, bigint, bigint)',
                    'rungate.fence()']) AS f
 ORDER BY f;
SELECT has_schema_privilege('upgrade_worker', 'rungate', 'USAGE') AS worker_usage,
       has_column_privilege('upgrade_worker', 'rungate.runs', 'status', 'SELECT') AS worker_reads_status,
       has_column_privilege('upgrade_worker', 'rungate.runs', 'lease_token', 'SELECT') AS worker_reads_lease,
       has_table_privilege('upgrade_worker', 'rungate.audit_log', 'SELECT') AS worker_reads_audit;

------------------------------------------------------------------------------
-- 8. Triggers intact: the guards and the fence fire in every
--    session_replication_role (tgenabled = 'A', ENABLE ALWAYS); the dump
--    configuration is the same.
------------------------------------------------------------------------------
SELECT tgrelid::regclass AS on_table, tgname, tgenabled, tgfoid::regproc AS function
  FROM pg_trigger
 WHERE NOT tgisinternal
   AND (tgrelid::regclass::text LIKE 'rungate.%' OR tgrelid = 'upgrade_app_effects'::regclass)
 ORDER BY tgrelid::regclass::text, tgname;
SELECT count(*) AS config_tables,
       count(*) FILTER (WHERE (b.config, b.cond) IS DISTINCT FROM (a.config, a.cond)) AS changed
  FROM upgrade_config_before b
  FULL JOIN (SELECT unnest(extconfig)::regclass::text AS config, unnest(extcondition) AS cond
               FROM pg_extension WHERE extname = 'rungate') a ON a.config = b.config;

------------------------------------------------------------------------------
-- 9. What 1.1 adds: comments on the internal columns and on the triggers.
------------------------------------------------------------------------------
SELECT attname, col_description(attrelid, attnum)
  FROM pg_attribute
 WHERE attrelid = 'rungate.runs'::regclass AND attname IN ('lease_token', 'item_tenants')
 ORDER BY attname;
SELECT tgrelid::regclass AS on_table, tgname, obj_description(oid, 'pg_trigger')
  FROM pg_trigger WHERE tgrelid::regclass::text LIKE 'rungate.%' AND NOT tgisinternal
 ORDER BY tgrelid::regclass::text, tgname;

------------------------------------------------------------------------------
-- 9b. What 1.2 changes: the audit log's value checks are the guard
--     trigger's (no CHECK constraint left on it), and notifications carry no
--     foreign key of their own; bad values are still refused (23514), even
--     in restore_mode.
------------------------------------------------------------------------------
SELECT conrelid::regclass AS on_table, conname, contype
  FROM pg_constraint
 WHERE conrelid IN ('rungate.audit_log'::regclass, 'rungate.notifications'::regclass)
   AND contype <> 'n'    -- NOT NULL constraints: listed from 18 on
 ORDER BY 1, 2;
SET rungate.restore_mode = on;
SELECT pg_temp.try($$INSERT INTO rungate.audit_log (at, run_id, workspace_id, attempt, event, authority, txid)
                     VALUES (now(), 3, 1, 1, 'teleported', 'actor', 1)$$) AS bad_event,
       pg_temp.try($$INSERT INTO rungate.audit_log (at, run_id, workspace_id, attempt, event, authority, txid)
                     VALUES (now(), 3, 1, 1, 'started', 'root', 1)$$) AS bad_authority,
       pg_temp.try($$INSERT INTO rungate.audit_log (at, run_id, workspace_id, attempt, event, authority, decision, txid)
                     VALUES (now(), 3, 1, 1, 'started', 'actor', 'maybe', 1)$$) AS bad_decision,
       pg_temp.try($$INSERT INTO rungate.audit_log (at, run_id, workspace_id, attempt, event, authority, txid)
                     VALUES (now(), 3, 1, 1, NULL, 'actor', 1)$$) AS null_event;
RESET rungate.restore_mode;

------------------------------------------------------------------------------
-- 9c. What 1.3 adds: retention that commits per batch (purge_batch,
--     purge_in_batches; worker_protocol tests them), and the audit log and
--     notifications vacuumed at rungate.runs' dead-row threshold.
------------------------------------------------------------------------------
SELECT c.oid::regclass AS on_table, c.reloptions
  FROM pg_class c
 WHERE c.oid IN ('rungate.runs'::regclass, 'rungate.audit_log'::regclass,
                 'rungate.notifications'::regclass)
 ORDER BY 1;
SELECT rungate.purge_batch(now() - interval '1 year', 10) AS purged_nothing_old;

------------------------------------------------------------------------------
-- 9d. What 1.7 changes: the indexes of rungate.runs that operations reads
--     (runs_tenant_status_idx in; runs_tenant_idx and runs_workspace_idx
--     out), and operations reads the runs written under 1.0 through them,
--     newest first, as the plans did (sql/operations_paging.sql compares).
------------------------------------------------------------------------------
SELECT i.indexrelid::regclass AS index,
       regexp_replace(pg_get_indexdef(i.indexrelid), '.* USING ', '') AS definition
  FROM pg_index i WHERE i.indrelid = 'rungate.runs'::regclass
 ORDER BY i.indexrelid::regclass::text;
SELECT run_id, tenant_id, status FROM rungate.operations(100, 1);
SELECT run_id, tenant_id, status FROM rungate.operations(101, 1, max_rows => 1, before_id => 11);

------------------------------------------------------------------------------
-- 9e. What 1.8 and 1.9 change: the foreign keys from runs to workspaces,
--     operation_types (1.8), tenants and actors (1.9) keep their delete
--     side, and their insert triggers are off (src/references.c checks and
--     locks those rows); the parent's is unchanged.
------------------------------------------------------------------------------
SELECT c.conname, t.tgfoid::regproc::text AS check_function, t.tgenabled
  FROM pg_trigger t JOIN pg_constraint c ON c.oid = t.tgconstraint
 WHERE t.tgrelid = 'rungate.runs'::regclass AND c.conrelid = 'rungate.runs'::regclass
   AND c.contype = 'f'
 ORDER BY 1, 2;
SELECT pg_temp.try($$DELETE FROM rungate.operation_types WHERE name = 'reports.export'$$);
SELECT pg_temp.try($$WITH m AS (DELETE FROM rungate.tenant_members WHERE tenant_id = 10),
                          p AS (DELETE FROM rungate.tenant_prerequisites WHERE tenant_id = 10)
                     DELETE FROM rungate.tenants WHERE id = 10$$);
SELECT pg_temp.try($$WITH w AS (DELETE FROM rungate.workspace_members WHERE actor_id = 100),
                          t AS (DELETE FROM rungate.tenant_members WHERE actor_id = 100),
                          n AS (DELETE FROM rungate.notifications WHERE actor_id = 100)
                     DELETE FROM rungate.actors WHERE id = 100$$);
-- a run loaded in restore mode is checked too (1.9): no dangling reference
SET rungate.restore_mode = on;
SELECT pg_temp.try($$INSERT INTO rungate.runs (workspace_id, tenant_id, operation, status, max_attempts)
                     VALUES (1, 999, 'inventory.sync', 'queued', 1)$$) AS unknown_tenant;
SELECT pg_temp.try($$INSERT INTO rungate.runs (workspace_id, initiator_id, operation, status, max_attempts)
                     VALUES (1, 777, 'reports.export', 'queued', 1)$$) AS unknown_initiator;
SELECT pg_temp.try($$INSERT INTO rungate.runs (workspace_id, operation, status, max_attempts)
                     VALUES (99, 'reports.export', 'queued', 1)$$) AS unknown_workspace;
RESET rungate.restore_mode;

------------------------------------------------------------------------------
-- 10. The guards still refuse (RG409; #transitions, #audit, #fence), in
--     replica mode too: hand-written transitions and inserts, changes to
--     terminal runs, audit changes, and writes to the fenced table for a run
--     not running.
------------------------------------------------------------------------------
SET session_replication_role = replica;
SELECT pg_temp.try($$UPDATE rungate.runs SET status = 'running' WHERE id = 8$$);
SELECT pg_temp.try($$UPDATE rungate.runs SET status = 'succeeded' WHERE id = 5$$);
SELECT pg_temp.try($$UPDATE rungate.runs SET priority = 9 WHERE id = 3$$);
SELECT pg_temp.try($$INSERT INTO rungate.runs (workspace_id, operation, status, max_attempts)
                     VALUES (1, 'reports.export', 'queued', 1)$$);
SELECT pg_temp.try($$DELETE FROM rungate.runs WHERE id = 1$$);
SELECT pg_temp.try($$TRUNCATE rungate.runs CASCADE$$);
SELECT pg_temp.try($$UPDATE rungate.audit_log SET event = 'started'$$);
SELECT pg_temp.try($$DELETE FROM rungate.audit_log$$);
SELECT pg_temp.try($$INSERT INTO upgrade_app_effects VALUES (3, 'run 3 succeeded')$$);
SELECT pg_temp.try($$INSERT INTO upgrade_app_effects VALUES (1, 'run 1 is blocked')$$);
RESET session_replication_role;
SELECT fingerprint = :'data_before' AS data_still_unchanged FROM upgrade_data;

------------------------------------------------------------------------------
-- 11. Behaviour intact (#leases, #bulk): as the worker role, the lease taken
--     under 1.0 heartbeats, writes to the fenced table and completes after
--     the update; afterwards it is stale (RG409). The queued runs are claimed
--     (each decided again) and completed, the bulk run started under 1.0
--     rolls up; a new run gets the next id and goes dispatched -> started ->
--     succeeded.
------------------------------------------------------------------------------
SET ROLE upgrade_worker;
SELECT rungate.heartbeat(5, :'lease5') IS NOT NULL AS heartbeat_ok;
INSERT INTO upgrade_app_effects VALUES (5, 'written under the new version by running run 5');
SELECT id, status FROM rungate.complete(5, :'lease5', '{"after": "upgrade"}');
SELECT pg_temp.try(format('SELECT rungate.complete(5, %L)', :'lease5'));
SELECT pg_temp.try($$SELECT count(*) FROM rungate.audit_log$$);
RESET ROLE;
CREATE TEMP TABLE upgrade_claimed AS
SELECT * FROM rungate.claim('upgrade-w2', NULL, 10);
SELECT run_id, attempt, operation, tenant_id FROM upgrade_claimed ORDER BY run_id;
SELECT r.id, r.status FROM upgrade_claimed c,
       LATERAL rungate.complete(c.run_id, c.lease_token) r ORDER BY r.id;
-- the last item of the bulk run started under 1.0 (item 9 was blocked: tenant
-- 12 is onboarding): the parent rolls up to partially_succeeded (#bulk)
SELECT id, status FROM rungate.complete(7, :'lease7');
SELECT id, status, parent_id, reason_code FROM rungate.runs WHERE 6 IN (id, parent_id) ORDER BY id;
SELECT id > :max_run_before AS id_continues, status
  FROM rungate.enqueue('inventory.sync', 1, 10, 100, idempotency_key => 'upgrade-new');
SELECT count(*) AS claimed, bool_and(run_id > :max_run_before) AS is_new_run
  FROM rungate.claim('upgrade-w2', '{inventory.sync}', 5) c,
       LATERAL rungate.complete(c.run_id, c.lease_token) r;
SELECT a.event, a.decision, a.attempt, a.worker
  FROM rungate.audit_log a JOIN rungate.runs r ON r.id = a.run_id
 WHERE r.idempotency_key = 'upgrade-new' ORDER BY a.id;
SELECT status, count(*) FROM rungate.runs GROUP BY status ORDER BY status;
SELECT run_id, note FROM upgrade_app_effects ORDER BY note;

------------------------------------------------------------------------------
-- 12. Clean up: the fence, the table and the role.
------------------------------------------------------------------------------
SELECT rungate.unguard_writes('upgrade_app_effects');
DROP VIEW upgrade_data, upgrade_acls;
DROP TABLE upgrade_app_effects;
DROP OWNED BY upgrade_worker;
DROP ROLE upgrade_worker;
