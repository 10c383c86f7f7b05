-- operation_type_validation: the legitimacy rules of an operation type are
-- validated when it is defined (docs/guarantees.md#operation-types,
-- #errors), and the authority data keeps its invariants (#authority-data).
--   * an incomplete or contradictory type is rejected with RG400 whose
--     message names the field at fault, on INSERT and on UPDATE, and
--     nothing is stored
--   * the scope (and item_operation) of a type with queued or running runs
--     cannot change (RG400)
--   * valid definitions succeed, with the documented defaults
--   * statuses outside the documented sets are rejected (CHECK, 23514)
--   * tenants and actors (and workspaces, types) that runs reference cannot
--     be deleted (foreign keys, 23503)
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS rungate CASCADE;
CREATE EXTENSION rungate;
\set ECHO none
\i test/fixtures/seed.sql
\i test/fixtures/try.sql
\set ECHO all
-- pg_temp.try(stmt) (test/fixtures/try.sql): 'ok', or 'SQLSTATE: message'.

SELECT count(*) AS fixture_types FROM rungate.operation_types;

-- ---------------------------------------------------------------------
-- Rejected at definition time (INSERT): RG400, naming the field.
-- ---------------------------------------------------------------------
SELECT k, label, pg_temp.try(stmt) AS result
  FROM (VALUES
    (1, 'tenant-scoped bulk type',
     $$INSERT INTO rungate.operation_types (name, capability, scope, item_operation)
       VALUES ('bad.bulk', 'bulk.sync', 'tenant', 'inventory.sync')$$),
    (2, 'workspace type with prerequisites',
     $$INSERT INTO rungate.operation_types (name, capability, scope, requires_operable_tenant, prerequisites)
       VALUES ('bad.ws', 'reports.run', 'workspace', false, '{provider_connection}')$$),
    (3, 'workspace type, requires_operable_tenant true',
     $$INSERT INTO rungate.operation_types (name, capability, scope, requires_operable_tenant)
       VALUES ('bad.ws', 'reports.run', 'workspace', true)$$),
    (4, 'workspace type, requires_operable_tenant default (true)',
     $$INSERT INTO rungate.operation_types (name, capability, scope)
       VALUES ('bad.ws', 'reports.run', 'workspace')$$),
    (5, 'unknown item_operation',
     $$INSERT INTO rungate.operation_types (name, capability, scope, requires_operable_tenant, item_operation)
       VALUES ('bad.bulk', 'bulk.sync', 'workspace', false, 'no.such.op')$$),
    (6, 'item_operation is a workspace type',
     $$INSERT INTO rungate.operation_types (name, capability, scope, requires_operable_tenant, item_operation)
       VALUES ('bad.bulk', 'bulk.sync', 'workspace', false, 'reports.export')$$),
    (7, 'item_operation is a bulk type',
     $$INSERT INTO rungate.operation_types (name, capability, scope, requires_operable_tenant, item_operation)
       VALUES ('bad.bulk', 'bulk.sync', 'workspace', false, 'bulk.inventory.sync')$$),
    (8, 'item_operation is the type itself',
     $$INSERT INTO rungate.operation_types (name, capability, scope, requires_operable_tenant, item_operation)
       VALUES ('bad.bulk', 'bulk.sync', 'workspace', false, 'bad.bulk')$$),
    (9, 'max_attempts 0',
     $$INSERT INTO rungate.operation_types (name, capability, max_attempts)
       VALUES ('bad.t', 'inventory.sync', 0)$$),
    (10, 'max_attempts -1',
     $$INSERT INTO rungate.operation_types (name, capability, max_attempts)
       VALUES ('bad.t', 'inventory.sync', -1)$$),
    (11, 'max_attempts null',
     $$INSERT INTO rungate.operation_types (name, capability, max_attempts)
       VALUES ('bad.t', 'inventory.sync', NULL)$$),
    (12, 'lease 0',
     $$INSERT INTO rungate.operation_types (name, capability, lease)
       VALUES ('bad.t', 'inventory.sync', '0')$$),
    (13, 'lease -1 minute',
     $$INSERT INTO rungate.operation_types (name, capability, lease)
       VALUES ('bad.t', 'inventory.sync', '-1 minute')$$),
    (14, 'lease 1 day -25 hours',
     $$INSERT INTO rungate.operation_types (name, capability, lease)
       VALUES ('bad.t', 'inventory.sync', '1 day -25 hours')$$),
    (15, 'lease null',
     $$INSERT INTO rungate.operation_types (name, capability, lease)
       VALUES ('bad.t', 'inventory.sync', NULL)$$),
    (16, 'null capability',
     $$INSERT INTO rungate.operation_types (name, capability)
       VALUES ('bad.t', NULL)$$),
    (17, 'empty capability',
     $$INSERT INTO rungate.operation_types (name, capability)
       VALUES ('bad.t', '')$$),
    (18, 'bad scope',
     $$INSERT INTO rungate.operation_types (name, capability, scope)
       VALUES ('bad.t', 'inventory.sync', 'global')$$),
    (19, 'null scope',
     $$INSERT INTO rungate.operation_types (name, capability, scope)
       VALUES ('bad.t', 'inventory.sync', NULL)$$),
    (20, 'null prerequisite element',
     $$INSERT INTO rungate.operation_types (name, capability, prerequisites)
       VALUES ('bad.t', 'inventory.sync', ARRAY['provider_connection', NULL])$$),
    (21, 'empty prerequisite name',
     $$INSERT INTO rungate.operation_types (name, capability, prerequisites)
       VALUES ('bad.t', 'inventory.sync', ARRAY['provider_connection', ''])$$),
    (22, 'null prerequisites',
     $$INSERT INTO rungate.operation_types (name, capability, prerequisites)
       VALUES ('bad.t', 'inventory.sync', NULL)$$),
    (23, 'empty name',
     $$INSERT INTO rungate.operation_types (name, capability)
       VALUES ('', 'inventory.sync')$$),
    (24, 'null allow_system',
     $$INSERT INTO rungate.operation_types (name, capability, allow_system)
       VALUES ('bad.t', 'inventory.sync', NULL)$$),
    (25, 'two-dimensional prerequisites',
     $$INSERT INTO rungate.operation_types (name, capability, prerequisites)
       VALUES ('bad.t', 'inventory.sync', '{{provider_connection},{admin_consent}}')$$),
    (26, 'null name',
     $$INSERT INTO rungate.operation_types (name, capability)
       VALUES (NULL, 'inventory.sync')$$)
  ) v(k, label, stmt)
 ORDER BY k;

-- Nothing of the above was stored.
SELECT count(*) AS types, count(*) FILTER (WHERE name LIKE 'bad.%') AS bad_types
  FROM rungate.operation_types;

-- ---------------------------------------------------------------------
-- Valid definitions succeed, with the defaults of docs/reference.md#tables.
-- ---------------------------------------------------------------------
-- A tenant type with only the required columns.
INSERT INTO rungate.operation_types (name, capability) VALUES ('provider.consent.refresh', 'provider.manage');
-- A workspace type: requires_operable_tenant must be set false.
INSERT INTO rungate.operation_types (name, capability, scope, requires_operable_tenant, allow_system)
VALUES ('workspace.audit.export', 'reports.run', 'workspace', false, true);
-- A bulk orchestrator over a tenant type.
INSERT INTO rungate.operation_types (name, capability, scope, requires_operable_tenant, item_operation, writes, max_attempts, lease)
VALUES ('bulk.provider.verify', 'bulk.sync', 'workspace', false, 'provider.connection.verify', false, 1, '30 seconds');
-- A tenant type that tolerates non-active tenants, with prerequisites.
INSERT INTO rungate.operation_types (name, capability, requires_operable_tenant, prerequisites, writes)
VALUES ('tenant.offboard', 'restore.execute', false, '{provider_connection}', true);
SELECT name, capability, scope, requires_operable_tenant, prerequisites, allow_system,
       writes, item_operation, max_attempts, lease
  FROM rungate.operation_types
 WHERE name IN ('provider.consent.refresh', 'workspace.audit.export',
                'bulk.provider.verify', 'tenant.offboard')
 ORDER BY name;
-- The new types are usable at once.
SELECT (rungate.decide('provider.consent.refresh', 1, 10, 100)).allowed AS tenant_type,
       (rungate.decide('workspace.audit.export', 1, NULL, NULL)).allowed AS workspace_type,
       (rungate.decide('bulk.provider.verify', 1, NULL, 100)).allowed AS bulk_type,
       (rungate.decide('tenant.offboard', 1, 12, 100)).allowed AS offboard_onboarding_tenant;

-- ---------------------------------------------------------------------
-- Updates that would make a type contradictory or incomplete: RG400, and
-- the type is unchanged.
-- ---------------------------------------------------------------------
CREATE FUNCTION pg_temp.types_digest() RETURNS text LANGUAGE sql AS $$
    SELECT md5(string_agg(format('%s', o), ',' ORDER BY o.name)) FROM rungate.operation_types o
$$;
SELECT pg_temp.types_digest() AS types_before \gset
SELECT k, label, pg_temp.try(stmt) AS result
  FROM (VALUES
    (1, 'workspace type gets prerequisites',
     $$UPDATE rungate.operation_types SET prerequisites = '{provider_connection}' WHERE name = 'reports.export'$$),
    (2, 'workspace type requires an operable tenant',
     $$UPDATE rungate.operation_types SET requires_operable_tenant = true WHERE name = 'reports.export'$$),
    (3, 'tenant type with prerequisites becomes workspace',
     $$UPDATE rungate.operation_types SET scope = 'workspace' WHERE name = 'restore.execute'$$),
    (4, 'bulk type becomes tenant-scoped',
     $$UPDATE rungate.operation_types SET scope = 'tenant', requires_operable_tenant = true WHERE name = 'bulk.inventory.sync'$$),
    (5, 'bulk item becomes a workspace type',
     $$UPDATE rungate.operation_types SET item_operation = 'reports.export' WHERE name = 'bulk.inventory.sync'$$),
    (6, 'bulk item becomes a bulk type',
     $$UPDATE rungate.operation_types SET item_operation = 'bulk.provider.verify' WHERE name = 'bulk.inventory.sync'$$),
    (7, 'bulk item becomes itself',
     $$UPDATE rungate.operation_types SET item_operation = 'bulk.inventory.sync' WHERE name = 'bulk.inventory.sync'$$),
    (8, 'bulk item becomes unknown',
     $$UPDATE rungate.operation_types SET item_operation = 'no.such.op' WHERE name = 'bulk.inventory.sync'$$),
    (9, 'tenant type gets an item_operation',
     $$UPDATE rungate.operation_types SET item_operation = 'inventory.sync' WHERE name = 'restore.execute'$$),
    (10, 'an item type becomes workspace-scoped',
     $$UPDATE rungate.operation_types SET scope = 'workspace', requires_operable_tenant = false, prerequisites = '{}' WHERE name = 'inventory.sync'$$),
    (11, 'max_attempts 0',
     $$UPDATE rungate.operation_types SET max_attempts = 0 WHERE name = 'restore.execute'$$),
    (12, 'lease 0',
     $$UPDATE rungate.operation_types SET lease = '0' WHERE name = 'restore.execute'$$),
    (13, 'capability emptied',
     $$UPDATE rungate.operation_types SET capability = '' WHERE name = 'restore.execute'$$),
    (14, 'scope unknown',
     $$UPDATE rungate.operation_types SET scope = 'tenants' WHERE name = 'restore.execute'$$),
    (15, 'prerequisite null element',
     $$UPDATE rungate.operation_types SET prerequisites = prerequisites || NULL::text WHERE name = 'restore.execute'$$)
  ) v(k, label, stmt)
 ORDER BY k;
SELECT pg_temp.types_digest() = :'types_before' AS types_unchanged;

-- Consistent updates succeed: a tenant type with no live runs and no bulk
-- user becomes workspace-scoped when it drops its tenant-only fields in the
-- same statement, and back; attempts, lease and capability change freely.
UPDATE rungate.operation_types
   SET scope = 'workspace', requires_operable_tenant = false, prerequisites = '{}'
 WHERE name = 'provider.consent.refresh';
UPDATE rungate.operation_types
   SET scope = 'tenant', requires_operable_tenant = true, prerequisites = '{provider_connection}'
 WHERE name = 'provider.consent.refresh';
UPDATE rungate.operation_types SET max_attempts = 5, lease = '1 minute', capability = 'inventory.sync'
 WHERE name = 'provider.consent.refresh';
UPDATE rungate.operation_types SET item_operation = 'inventory.sync' WHERE name = 'bulk.provider.verify';
SELECT name, capability, scope, requires_operable_tenant, prerequisites, item_operation, max_attempts, lease
  FROM rungate.operation_types
 WHERE name IN ('provider.consent.refresh', 'bulk.provider.verify')
 ORDER BY name;

-- ---------------------------------------------------------------------
-- The scope (or item_operation) of a type with queued or running runs
-- cannot change: RG400, naming the run. Other columns may.
-- ---------------------------------------------------------------------
SELECT id AS r_ws, status FROM rungate.enqueue('workspace.audit.export', 1) \gset
SELECT pg_temp.try($$UPDATE rungate.operation_types
                        SET scope = 'tenant', requires_operable_tenant = true
                      WHERE name = 'workspace.audit.export'$$) AS scope_change_queued;
-- a change of another column is fine
SELECT pg_temp.try($$UPDATE rungate.operation_types SET max_attempts = 4
                      WHERE name = 'workspace.audit.export'$$) AS attempts_change_queued;
-- running (it stays running to the end of this file)
SELECT run_id = :r_ws AS claimed_it FROM rungate.claim('w', ARRAY['workspace.audit.export']);
SELECT status FROM rungate.runs WHERE id = :r_ws;
SELECT pg_temp.try($$UPDATE rungate.operation_types
                        SET scope = 'tenant', requires_operable_tenant = true
                      WHERE name = 'workspace.audit.export'$$) AS scope_change_running;
SELECT scope FROM rungate.operation_types WHERE name = 'workspace.audit.export';

-- A queued bulk parent: its item_operation cannot change either.
SELECT id AS r_bulk, status FROM rungate.enqueue_bulk('bulk.provider.verify', 1, ARRAY[10]::bigint[], 100) \gset
SELECT pg_temp.try($$UPDATE rungate.operation_types SET item_operation = 'provider.connection.verify'
                      WHERE name = 'bulk.provider.verify'$$) AS item_change_queued;
-- nor can the type stop being a bulk type
SELECT pg_temp.try($$UPDATE rungate.operation_types SET item_operation = NULL
                      WHERE name = 'bulk.provider.verify'$$) AS item_removed_queued;
SELECT item_operation FROM rungate.operation_types WHERE name = 'bulk.provider.verify';

-- Once its runs are terminal, the item_operation may change.
SELECT status FROM rungate.cancel(:r_bulk, 100);
SELECT pg_temp.try($$UPDATE rungate.operation_types SET item_operation = 'provider.connection.verify'
                      WHERE name = 'bulk.provider.verify'$$) AS item_change_cancelled;
SELECT status FROM rungate.enqueue('inventory.sync', 1, 10, 100);
-- (the queued inventory.sync run makes no difference to other types)
SELECT pg_temp.try($$UPDATE rungate.operation_types
                        SET scope = 'workspace', requires_operable_tenant = false, prerequisites = '{}'
                      WHERE name = 'provider.consent.refresh'$$) AS other_type_scope_change;
-- and a tenant-scoped item type with a queued run keeps its scope
SELECT pg_temp.try($$UPDATE rungate.operation_types
                        SET scope = 'workspace', requires_operable_tenant = false, prerequisites = '{}'
                      WHERE name = 'inventory.sync'$$) AS item_type_scope_change_queued;

-- ---------------------------------------------------------------------
-- Statuses outside the documented sets are rejected: CHECK, 23514
-- (#authority-data).
-- ---------------------------------------------------------------------
SELECT k, label, pg_temp.try(stmt) AS result
  FROM (VALUES
    (1, 'workspace insert deleted', $$INSERT INTO rungate.workspaces (id, name, status) VALUES (3, 'x', 'deleted')$$),
    (2, 'workspace update paused',  $$UPDATE rungate.workspaces SET status = 'paused' WHERE id = 1$$),
    (3, 'workspace update Active',  $$UPDATE rungate.workspaces SET status = 'Active' WHERE id = 1$$),
    (4, 'tenant insert paused',     $$INSERT INTO rungate.tenants (id, workspace_id, name, status) VALUES (13, 1, 'x', 'paused')$$),
    (5, 'tenant update disabled',   $$UPDATE rungate.tenants SET status = 'disabled' WHERE id = 10$$),
    (6, 'actor insert banned',      $$INSERT INTO rungate.actors (id, name, status) VALUES (106, 'x', 'banned')$$),
    (7, 'actor update suspended',   $$UPDATE rungate.actors SET status = 'suspended' WHERE id = 100$$),
    (8, 'actor update archived',    $$UPDATE rungate.actors SET status = 'archived' WHERE id = 100$$)
  ) v(k, label, stmt)
 ORDER BY k;
-- every documented status is accepted
BEGIN;
SELECT s AS workspace_status, pg_temp.try(format('UPDATE rungate.workspaces SET status = %L WHERE id = 1', s))
  FROM unnest(ARRAY['active', 'suspended', 'archived']) s ORDER BY s;
SELECT s AS tenant_status, pg_temp.try(format('UPDATE rungate.tenants SET status = %L WHERE id = 10', s))
  FROM unnest(ARRAY['active', 'onboarding', 'suspended', 'disconnected', 'archived']) s ORDER BY s;
SELECT s AS actor_status, pg_temp.try(format('UPDATE rungate.actors SET status = %L WHERE id = 100', s))
  FROM unnest(ARRAY['active', 'disabled']) s ORDER BY s;
ROLLBACK;

-- ---------------------------------------------------------------------
-- Tenants and actors that runs reference are never deleted: the foreign
-- keys restrict (23503). They are archived or disabled instead. (The same
-- holds for the operation type of a run: workspace.audit.export has a
-- running run.)
-- ---------------------------------------------------------------------
-- A run of tenant 11 initiated by oscar (101), who is not a member of it:
-- blocked at dispatch, but referencing both. Then every other reference to
-- them goes, so only the run's foreign keys stand in the way.
SELECT id AS r_fk, status, reason_code FROM rungate.enqueue('inventory.sync', 1, 11, 101) \gset
SELECT status, reason_code FROM rungate.runs WHERE id = :r_fk;
DELETE FROM rungate.tenant_members WHERE tenant_id = 11;
DELETE FROM rungate.tenant_prerequisites WHERE tenant_id = 11;
DELETE FROM rungate.tenant_members WHERE actor_id = 101;
DELETE FROM rungate.workspace_members WHERE actor_id = 101;
SELECT k, label, pg_temp.try(stmt) AS result
  FROM (VALUES
    (1, 'delete tenant of a run',    $$DELETE FROM rungate.tenants WHERE id = 11$$),
    (2, 'delete initiator of a run', $$DELETE FROM rungate.actors WHERE id = 101$$),
    (3, 'delete type of a run',      $$DELETE FROM rungate.operation_types WHERE name = 'workspace.audit.export'$$)
  ) v(k, label, stmt)
 ORDER BY k;
SELECT (SELECT count(*) FROM rungate.tenants WHERE id = 11) AS tenant_11,
       (SELECT count(*) FROM rungate.actors WHERE id = 101) AS actor_101;
-- archiving and disabling them is the way, and the run stays as it was
UPDATE rungate.tenants SET status = 'archived' WHERE id = 11;
UPDATE rungate.actors SET status = 'disabled' WHERE id = 101;
SELECT status, tenant_id, initiator_id FROM rungate.runs WHERE id = :r_fk;
-- an actor no run references can be deleted
INSERT INTO rungate.actors (id, name) VALUES (106, 'temp');
SELECT pg_temp.try('DELETE FROM rungate.actors WHERE id = 106') AS delete_unreferenced_actor;
