-- rungate 1.6 -> 1.7: monitoring at scale. rungate.operations reads only
-- the runs its viewer may see: an index scan per visible tenant (and the
-- workspace's runs without a tenant), merged newest first (src/monitoring.c).
--
-- The C module of 1.7 serves 1.0 to 1.6 schemas too: without
-- runs_tenant_status_idx, operations reads its page with the plans of 1.6.

\echo Use "ALTER EXTENSION rungate UPDATE TO '1.7'" to load this file. \quit

-- A tenant's runs by status, newest first, in its workspace; a NULL
-- tenant_id is kept too, so the workspace's runs without a tenant have
-- their ranges (tenant_id IS NULL, status, workspace_id). It also serves
-- what runs_tenant_idx served: a tenant's runs (the foreign key of
-- rungate.tenants, the running runs of a tenant under a tenant limit).
CREATE INDEX runs_tenant_status_idx
    ON rungate.runs (tenant_id, status, workspace_id, id);
COMMENT ON INDEX rungate.runs_tenant_status_idx IS
    'rungate.operations: a tenant''s runs of a status in a workspace, newest first (NULL tenant: the workspace''s own runs)';

-- Made redundant: every write of a run paid for them.
--   runs_tenant_idx (tenant_id, id): runs_tenant_status_idx starts with tenant_id.
--   runs_workspace_idx (workspace_id, id): runs_workspace_status_idx starts
--     with workspace_id (the foreign key of rungate.workspaces, the idempotency
--     probe has its own); operations walks it status by status.
DROP INDEX rungate.runs_tenant_idx;
DROP INDEX rungate.runs_workspace_idx;
COMMENT ON INDEX rungate.runs_workspace_status_idx IS
    'rungate.operations: a workspace''s runs of a status, newest first';
