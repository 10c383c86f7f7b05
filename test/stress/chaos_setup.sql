-- test/stress/chaos_setup.sql: the database of the chaos suite (chaos.py).
-- Run by psql from the repository root into a fresh database.
--
-- The fixture (test/fixtures/seed.sql) brings the operation types and the
-- role capabilities; the chaos runs use an authority model of their own
-- (ids >= 1000) in which every run the dispatcher enqueues is legitimate at
-- baseline, so that every denial has to come from a change of the revoker.
-- The schema `stress` holds what the harness records, each row in the same
-- transaction as what it describes: the revoker's changes, and the snapshots
-- of every worker / dispatcher transaction that can make a decision.

\set ON_ERROR_STOP 1
SET client_min_messages = warning;
CREATE EXTENSION rungate;
\i test/fixtures/seed.sql
SET client_min_messages = warning;

-- ---------------------------------------------------------------------------
-- The model: 3 workspaces x 4 tenants; per workspace 2 owners and 2
-- operators, members of the workspace and of each of its tenants with the
-- same role; every tenant active with both prerequisites satisfied.
-- ---------------------------------------------------------------------------
INSERT INTO rungate.workspaces (id, name, status)
SELECT 1000 + w, 'stress-ws-' || w, 'active' FROM generate_series(1, 3) w;

INSERT INTO rungate.tenants (id, workspace_id, name, status)
SELECT 2000 + (w - 1) * 4 + t, 1000 + w, 'stress-t-' || w || '-' || t, 'active'
  FROM generate_series(1, 3) w, generate_series(1, 4) t;

INSERT INTO rungate.actors (id, name, status)
SELECT 3000 + (w - 1) * 4 + a, 'stress-a-' || w || '-' || a, 'active'
  FROM generate_series(1, 3) w, generate_series(1, 4) a;

INSERT INTO rungate.workspace_members (workspace_id, actor_id, role)
SELECT 1000 + w, 3000 + (w - 1) * 4 + a, CASE WHEN a <= 2 THEN 'owner' ELSE 'operator' END
  FROM generate_series(1, 3) w, generate_series(1, 4) a;

INSERT INTO rungate.tenant_members (tenant_id, actor_id, role)
SELECT t.id, m.actor_id, m.role
  FROM rungate.tenants t
  JOIN rungate.workspace_members m ON m.workspace_id = t.workspace_id
 WHERE t.id > 2000;

INSERT INTO rungate.tenant_prerequisites (tenant_id, name, satisfied)
SELECT t.id, p, true
  FROM rungate.tenants t, unnest('{provider_connection,admin_consent}'::text[]) p
 WHERE t.id > 2000;

CREATE SCHEMA stress;

-- The baseline, kept to undo every change and to know each actor's role.
CREATE TABLE stress.baseline_ws_members AS
    SELECT * FROM rungate.workspace_members WHERE workspace_id > 1000;
CREATE TABLE stress.baseline_tenant_members AS
    SELECT * FROM rungate.tenant_members WHERE tenant_id > 2000;
CREATE TABLE stress.baseline_tenants AS
    SELECT * FROM rungate.tenants WHERE id > 2000;

-- ---------------------------------------------------------------------------
-- The revoker's log. Each change of authority is a transaction of its own
-- that also inserts its row here: the row commits exactly when the change
-- does (txid is the changing transaction). Changes come in pairs: a revoke
-- and later the restore of the same pair, never two open pairs on the same
-- target (the same row of the same authority table).
-- ---------------------------------------------------------------------------
CREATE TABLE stress.revocations (
    id            bigserial PRIMARY KEY,
    at            timestamptz NOT NULL DEFAULT clock_timestamp(),
    txid          bigint NOT NULL DEFAULT txid_current(),
    pair          bigint NOT NULL,
    action        text NOT NULL CHECK (action IN ('revoke', 'restore')),
    kind          text NOT NULL CHECK (kind IN ('actor_status', 'ws_member', 'ws_role',
                      'tenant_move', 'tenant_member', 'tenant_role', 'role_cap',
                      'ws_status', 'tenant_status', 'prereq')),
    workspace_id  bigint,
    tenant_id     bigint,
    actor_id      bigint,
    role          text,
    capability    text,
    prerequisite  text,
    detail        text,
    UNIQUE (pair, action)
);

-- Every transaction of a worker or of the dispatcher that can decide
-- (claim, recheck, enqueue): snap_begin is the snapshot of the statement that
-- decides (or of one before it, in the same transaction), snap_end one taken
-- by a later statement of the same transaction. Whatever the decision saw
-- lies between the two: a transaction visible in snap_begin was visible to
-- it, one invisible in snap_end was invisible to it.
CREATE TABLE stress.tx (
    txid        bigint PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('claim', 'recheck', 'enqueue')),
    worker      text NOT NULL,
    began       timestamptz NOT NULL DEFAULT now(),
    snap_begin  txid_snapshot NOT NULL,
    snap_end    txid_snapshot
);

-- What a recheck answered (an allowed recheck writes no audit row).
CREATE TABLE stress.rechecks (
    run_id       bigint NOT NULL,
    attempt      integer NOT NULL,
    txid         bigint NOT NULL,
    allowed      boolean NOT NULL,
    reason_code  text
);

-- Enqueues refused with RG400 (a tenant moved to another workspace), each
-- recorded after a rollback to its savepoint, in the dispatcher's transaction.
CREATE TABLE stress.rejections (
    txid          bigint NOT NULL,
    workspace_id  bigint NOT NULL,
    tenant_id     bigint,
    operation     text NOT NULL,
    sqlstate      text NOT NULL,
    message       text NOT NULL
);

-- The workers connect as a role with nothing but EXECUTE on the worker
-- functions (and the harness's own tables), as docs/privileges.md says.
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rungate_stress_worker') THEN
        CREATE ROLE rungate_stress_worker LOGIN;
    END IF;
END $$;
GRANT USAGE ON SCHEMA rungate TO rungate_stress_worker;
GRANT EXECUTE ON FUNCTION rungate.claim(text, text[], integer),
    rungate.heartbeat(bigint, uuid), rungate.recheck(bigint, uuid),
    rungate.complete(bigint, uuid, jsonb),
    rungate.fail(bigint, uuid, text, boolean, interval) TO rungate_stress_worker;
GRANT USAGE ON SCHEMA stress TO rungate_stress_worker;
GRANT INSERT, UPDATE, SELECT ON stress.tx TO rungate_stress_worker;
GRANT INSERT ON stress.rechecks TO rungate_stress_worker;

RESET client_min_messages;
