-- test/bench/setup.sql: the authority model and the bare baseline queue.
--
-- psql variables (defaults: make bench's model):
--   tenants (200), actors (2000, 10 per tenant), memberships (2 per actor)
-- BENCH_SCALE=1 loads it with 10,000 / 100,000 / 10 (1,000,000 memberships).
--   extversion (default: the control file's default_version): the version
--   of rungate created; BENCH_MODE=monitoring loads 1.6 beside it
--
-- One workspace. Every actor is a member of the workspace and of
-- :memberships tenants: operator of its own tenant, analyst of the others.
-- Every tenant has its prerequisites; four tenant-scoped operation types with
-- different capabilities and prerequisites. Every queued run is legitimate
-- (the benchmark measures runs that start; denials are the tests' business),
-- but each claim still walks the whole decision: actor, workspace and tenant
-- status, both memberships, the role's capability, the prerequisites.
\if :{?tenants} \else \set tenants 200 \endif
\if :{?actors} \else \set actors 2000 \endif
\if :{?memberships} \else \set memberships 2 \endif
SET client_min_messages = warning;
\if :{?extversion}
CREATE EXTENSION rungate VERSION :'extversion';
\else
CREATE EXTENSION rungate;
\endif

INSERT INTO rungate.workspaces (id, name) VALUES (1, 'bench');
INSERT INTO rungate.tenants (id, workspace_id, name)
  SELECT t, 1, 'tenant-' || t FROM generate_series(1, :tenants) t;
INSERT INTO rungate.actors (id, name)
  SELECT a, 'actor-' || a FROM generate_series(1, :actors) a;

INSERT INTO rungate.role_capabilities VALUES
  ('owner', 'provider.manage'), ('owner', 'inventory.sync'),
  ('owner', 'restore.execute'), ('owner', 'reports.export'),
  ('owner', 'operations.view'),
  ('operator', 'provider.manage'), ('operator', 'inventory.sync'),
  ('operator', 'restore.execute'), ('operator', 'reports.export'),
  ('operator', 'operations.view'),
  ('analyst', 'operations.view'), ('analyst', 'reports.export');
INSERT INTO rungate.workspace_members
  SELECT 1, a, CASE WHEN a % 10 = 0 THEN 'owner' ELSE 'analyst' END
    FROM generate_series(1, :actors) a;
-- actor a: operator of its own tenant, analyst of memberships - 1 others
INSERT INTO rungate.tenant_members
  SELECT ((a - 1) * :tenants / :actors + k * 37) % :tenants + 1, a,
         CASE WHEN k = 0 THEN 'operator' ELSE 'analyst' END
    FROM generate_series(1, :actors) a, generate_series(0, :memberships - 1) k;
INSERT INTO rungate.tenant_prerequisites
  SELECT t, p, true
    FROM generate_series(1, :tenants) t,
         unnest('{provider_connection,admin_consent,inventory_baseline}'::text[]) p;

INSERT INTO rungate.operation_types (name, capability, prerequisites, allow_system, writes) VALUES
  ('provider.connection.verify', 'provider.manage', '{provider_connection}', true, false),
  ('inventory.sync', 'inventory.sync', '{provider_connection}', true, false),
  ('restore.execute', 'restore.execute', '{provider_connection,admin_consent,inventory_baseline}', false, true),
  ('reports.export', 'reports.export', '{}', false, false);

-- The baseline: the same columns, defaults, check constraints, indexes and
-- storage options as rungate.runs; no triggers, no foreign keys, no audit;
-- claimed by one bare UPDATE.
CREATE SCHEMA bench;
CREATE TABLE bench.bare (LIKE rungate.runs INCLUDING DEFAULTS INCLUDING INDEXES
                         INCLUDING IDENTITY INCLUDING CONSTRAINTS);
-- LIKE copies no storage options: bench.bare_audit below needs them too
CREATE FUNCTION bench.copy_reloptions(src regclass, dst regclass) RETURNS void
  LANGUAGE plpgsql AS $$
DECLARE opts text;
BEGIN
  SELECT array_to_string(reloptions, ', ') INTO opts FROM pg_class WHERE oid = src;
  IF opts IS NOT NULL THEN
    EXECUTE format('ALTER TABLE %s SET (%s)', dst, opts);
  END IF;
END $$;
SELECT bench.copy_reloptions('rungate.runs', 'bench.bare');
ALTER TABLE bench.bare ALTER COLUMN max_attempts SET DEFAULT 3;
ALTER TABLE bench.bare ALTER COLUMN status SET DEFAULT 'queued';

-- A second reference (not a baseline): the bare claim that also writes an
-- audit row like rungate's 'started' one, into a table of the audit log's
-- shape (columns, identity, indexes, storage options; no trigger). The gap
-- between it and rungate is what the decision and the function call cost.
CREATE TABLE bench.bare_audit (LIKE rungate.audit_log INCLUDING DEFAULTS
                               INCLUDING INDEXES INCLUDING IDENTITY
                               INCLUDING CONSTRAINTS);
SELECT bench.copy_reloptions('rungate.audit_log', 'bench.bare_audit');

-- Top-up helpers: n more queued runs, the same mix in both queues (operation
-- round robin; initiators spread over all actors, each on its own tenant).
CREATE TABLE bench.model AS
  SELECT :tenants::bigint AS tenants, :actors::bigint AS actors;
CREATE FUNCTION bench.mix(n int)
  RETURNS TABLE (operation text, tenant_id bigint, initiator_id bigint)
  LANGUAGE sql STABLE AS $$
  SELECT (ARRAY['provider.connection.verify','inventory.sync',
                'restore.execute','reports.export'])[g % 4 + 1],
         (a - 1) * m.tenants / m.actors + 1, a
    FROM bench.model m, generate_series(1, n) g,
         LATERAL (SELECT (g::bigint * 7919) % m.actors + 1 AS a) x
$$;
CREATE FUNCTION bench.fill_rungate(n int) RETURNS bigint LANGUAGE sql AS $$
  SELECT count(rungate.enqueue(x.operation, 1, x.tenant_id, x.initiator_id))
    FROM bench.mix(n) x
$$;
CREATE FUNCTION bench.fill_bare(n int) RETURNS bigint LANGUAGE sql AS $$
  WITH i AS (
    INSERT INTO bench.bare (workspace_id, tenant_id, operation, initiator_id)
    SELECT 1, x.tenant_id, x.operation, x.initiator_id FROM bench.mix(n) x
    RETURNING 1)
  SELECT count(*) FROM i
$$;

-- the model is what the benchmark says it is: the whole mix is allowed
DO $$
DECLARE denied bigint;
BEGIN
  SELECT count(*) INTO denied FROM bench.mix(4000) x
   WHERE NOT (rungate.decide(x.operation, 1, x.tenant_id, x.initiator_id)).allowed;
  IF denied > 0 THEN
    RAISE EXCEPTION 'bench model: % of 4000 decisions denied', denied;
  END IF;
END $$;
ANALYZE;
