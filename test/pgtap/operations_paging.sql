-- Operations paging (docs/guarantees.md#monitoring), with pgTAP: since 1.7
-- rungate.operations reads a page by index scans per visible tenant and
-- status, merged newest first (src/monitoring.c). In the world of
-- test/fixtures/paging.sql (viewers scoped to some tenants, to every
-- tenant, to the workspace's own runs; a big neighbour tenant; rolled-back
-- row versions; a tenant moved to another workspace):
--   * each case's first page and the pages from two before_ids are the
--     rows of a plain query over rungate.runs for the same viewer, in order
--     (results_eq);
--   * paging through with before_id gives every page and, together, the
--     whole list;
--   * RG404, RG403 and RG400 with their messages, as before 1.7.
-- Runs in one transaction that is rolled back.
BEGIN;
SELECT plan(106);

\set QUIET on
SET client_min_messages = warning;
\o /dev/null
\i test/fixtures/seed.sql
\i test/fixtures/paging.sql
\o

-- same rows, same order: 24 cases x 3 pages (first, below 2205, below 1195)
SELECT results_eq(
         format('SELECT * FROM rungate.operations(%s, %s, %L, %s, 7, %s)',
                c.viewer, c.ws, c.st, quote_nullable(c.tn), quote_nullable(b.before)),
         format('SELECT * FROM pg_temp.unmerged(%s, %s, %L, %s, 7, %s)',
                c.viewer, c.ws, c.st, quote_nullable(c.tn), quote_nullable(b.before)),
         format('viewer %s, workspace %s, status %s, tenant %s: the page below %s',
                c.viewer, c.ws, coalesce(c.st, 'any'), coalesce(c.tn::text, 'any'),
                coalesce(b.before::text, 'the newest')))
  FROM paging_cases c, (VALUES (NULL::bigint), (2205), (1195)) b(before)
 ORDER BY c.viewer, c.ws, c.st NULLS FIRST, c.tn NULLS FIRST, b.before NULLS FIRST;

-- paged through with before_id, pages of 13
SELECT ok(w.pages_equal AND w.all_equal,
          format('viewer %s, workspace %s, status %s, tenant %s: %s pages of 13, %s runs, each page and all of them as defined',
                 c.viewer, c.ws, coalesce(c.st, 'any'), coalesce(c.tn::text, 'any'), w.pages, w.total))
  FROM paging_cases c, LATERAL pg_temp.walk(c.viewer, c.ws, c.st, c.tn, 13) w
 ORDER BY c.viewer, c.ws, c.st NULLS FIRST, c.tn NULLS FIRST;

-- not found, forbidden, bad requests
SELECT throws_ok('SELECT * FROM rungate.operations(999, 1)', 'RG404',
                 'workspace 1 not found', 'an unknown viewer: RG404');
SELECT throws_ok('SELECT * FROM rungate.operations(104, 1)', 'RG404',
                 'workspace 1 not found', 'a disabled viewer: the same RG404');
SELECT throws_ok('SELECT * FROM rungate.operations(103, 1)', 'RG404',
                 'workspace 1 not found', 'an outsider: the same RG404');
SELECT throws_ok('SELECT * FROM rungate.operations(106, 2)', 'RG404',
                 'workspace 2 not found', 'paula in workspace 2 (only her moved tenant is there): RG404');
SELECT throws_ok('SELECT * FROM rungate.operations(102, 1)', 'RG403',
                 'actor 102 may not view operations of workspace 1',
                 'no membership grants operations.view: RG403');
SELECT throws_ok('SELECT * FROM rungate.operations(106, 1, tenant_id => 12)', 'RG404',
                 'tenant 12 not found', 'a tenant without membership: RG404');
SELECT throws_ok('SELECT * FROM rungate.operations(106, 1, tenant_id => 15)', 'RG404',
                 'tenant 15 not found', 'a tenant moved to another workspace: RG404');
SELECT throws_ok('SELECT * FROM rungate.operations(106, 1, ''blocked'', 14)', 'RG403',
                 'actor 106 may not view operations of tenant 14',
                 'a tenant membership without operations.view: RG403, with a status filter too');
SELECT throws_ok('SELECT * FROM rungate.operations(106, 1, ''done'')', 'RG400',
                 'invalid status "done"', 'an unknown status: RG400');
SELECT throws_ok('SELECT * FROM rungate.operations(106, 1, before_id => 0)', 'RG400',
                 'before_id must be positive, not 0', 'before_id 0: RG400');

SELECT * FROM finish();
ROLLBACK;
