-- test/bench/scaleout_setup.sql: one shard's model for test/bench/scaleout.sh,
-- loaded on the shard directly (psql variable ws: this shard's workspace ids
-- in the layout, e.g. '{3,5}').
--
-- Global authority, the same on every shard: 500 actors, the roles, one
-- tenant-scoped operation type with a prerequisite. Per workspace: 20
-- tenants (ids workspace * 1000 + k) with their prerequisite; every actor is
-- an operator of the workspace and of one tenant ((actor - 1) mod 20). Every
-- queued run is legitimate and each claim walks the whole decision.
SET client_min_messages = warning;
INSERT INTO rungate.actors (id, name) SELECT a, 'actor-' || a FROM generate_series(1, 500) a;
INSERT INTO rungate.role_capabilities VALUES
  ('operator', 'inventory.sync'), ('operator', 'operations.view');
INSERT INTO rungate.operation_types (name, capability, prerequisites, allow_system)
  VALUES ('inventory.sync', 'inventory.sync', '{provider_connection}', true);

INSERT INTO rungate.workspaces (id, name) SELECT w, 'ws-' || w FROM unnest(:'ws'::bigint[]) w;
INSERT INTO rungate.tenants (id, workspace_id, name)
  SELECT w * 1000 + k, w, 'tenant-' || (w * 1000 + k) FROM unnest(:'ws'::bigint[]) w, generate_series(0, 19) k;
INSERT INTO rungate.tenant_prerequisites SELECT id, 'provider_connection', true FROM rungate.tenants;
INSERT INTO rungate.workspace_members
  SELECT w, a, 'operator' FROM unnest(:'ws'::bigint[]) w, generate_series(1, 500) a;
INSERT INTO rungate.tenant_members
  SELECT w * 1000 + (a - 1) % 20, a, 'operator' FROM unnest(:'ws'::bigint[]) w, generate_series(1, 500) a;

CREATE SCHEMA bench_so;
-- n more queued runs, spread over the shard's workspaces, tenants and actors
CREATE FUNCTION bench_so.fill(n integer) RETURNS bigint LANGUAGE sql AS $$
  SELECT count(rungate.enqueue('inventory.sync', w, w * 1000 + i % 20, 1 + i % 20 + 20 * ((i / 20) % 25)))
    FROM generate_series(1, n) i,
         LATERAL (SELECT ws[1 + i % cardinality(ws)] AS w
                    FROM (SELECT array_agg(id ORDER BY id) AS ws FROM rungate.workspaces) x) y
$$;
RESET client_min_messages;
