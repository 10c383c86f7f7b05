-- operations_paging: rungate.operations reads only the runs its viewer may
-- see (issue 25): since 1.7 an index scan per visible tenant and status
-- (and the workspace's runs without a tenant), merged newest first, or the
-- workspace's own ranges when the viewer sees all of it (src/monitoring.c).
-- What it returns is the definition's (docs/reference.md#operations,
-- docs/guarantees.md#monitoring):
--   * pages across tenants with before_id give the same rows in the same
--     order as a plain SQL query over rungate.runs for the same viewer, and
--     together the whole list, for viewers of every shape, with the status
--     and tenant filters, with runs whose updates left several index
--     entries, and with a tenant that moved to another workspace;
--   * the same with a 1.6 schema (the plans of 1.6), and after ALTER
--     EXTENSION UPDATE to 1.7;
--   * RG404 / RG403 / RG400 exactly as before;
--   * a tenant viewer's page reads the entries of its own tenants only: the
--     index entries read stay within the page and a few per source.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS rungate CASCADE;
CREATE EXTENSION rungate;
\set ECHO none
\i test/fixtures/seed.sql
\i test/fixtures/try.sql
\i test/fixtures/paging.sql
\set ECHO all
SELECT extversion FROM pg_extension WHERE extname = 'rungate';
SELECT workspace_id, tenant_id, count(*) AS runs FROM rungate.runs
 GROUP BY 1, 2 ORDER BY 1, 2;

------------------------------------------------------------------------------
-- 1. A first page across tenants, and the next one from its last run_id.
------------------------------------------------------------------------------
-- paula: tenants 10, 13 and 15 (moved away; its runs stay in workspace 1),
-- no runs without a tenant, none of 12's (the big neighbour) or 14's.
SELECT run_id, tenant_id, status, authority
  FROM rungate.operations(106, 1, max_rows => 6);
SELECT run_id, tenant_id, status, authority
  FROM rungate.operations(106, 1, max_rows => 6, before_id => 2978);
-- across the block of 1,000 runs of tenant 12 (ids 1201 to 2200)
SELECT run_id, tenant_id, status
  FROM rungate.operations(106, 1, max_rows => 4, before_id => 2205);
SELECT run_id, tenant_id, status
  FROM rungate.operations(106, 1, status => 'blocked', max_rows => 4, before_id => 2205);
-- oscar: tenant 10 and the workspace's own runs
SELECT run_id, tenant_id, status
  FROM rungate.operations(101, 1, max_rows => 5, before_id => 2205);

------------------------------------------------------------------------------
-- 2. Every page equals the unmerged definition's, and all pages the whole
--    list, for every case, with pages of 7 and of 100.
------------------------------------------------------------------------------
SELECT c.viewer, c.ws, c.st AS status, c.tn AS tenant, p.page,
       w.pages, w.total, w.pages_equal, w.all_equal
  FROM paging_cases c, (VALUES (7), (100)) p(page),
       LATERAL pg_temp.walk(c.viewer, c.ws, c.st, c.tn, p.page) w
 ORDER BY c.viewer, c.ws, c.st NULLS FIRST, c.tn NULLS FIRST, p.page;

------------------------------------------------------------------------------
-- 3. Scope and visibility answer as before (RG404, RG403, RG400).
------------------------------------------------------------------------------
SELECT v AS viewer, pg_temp.try(format('SELECT * FROM rungate.operations(%s, 1)', v))
  FROM unnest(ARRAY[999, 104, 103, 102]) v ORDER BY v;
SELECT t AS tenant,
       pg_temp.try(format('SELECT * FROM rungate.operations(106, 1, tenant_id => %s)', t))
  FROM unnest(ARRAY[10, 12, 14, 15, 20, 999]) t ORDER BY t;
SELECT pg_temp.try('SELECT * FROM rungate.operations(106, 2)') AS paula_ws2,
       pg_temp.try('SELECT * FROM rungate.operations(106, 3)') AS paula_ws3,
       pg_temp.try('SELECT * FROM rungate.operations(107, 2)') AS walt_ws2;
SELECT pg_temp.try('SELECT * FROM rungate.operations(106, 1, status => ''done'')') AS bad_status,
       pg_temp.try('SELECT * FROM rungate.operations(106, 1, before_id => 0)') AS bad_before,
       pg_temp.try('SELECT * FROM rungate.operations(106, 1, max_rows => 0)') AS bad_rows;
-- the tenant filter on a moved tenant, and on 14 (readonly) with a status
SELECT pg_temp.try('SELECT * FROM rungate.operations(106, 2, tenant_id => 15)') AS paula_t15_ws2,
       pg_temp.try('SELECT * FROM rungate.operations(106, 1, ''blocked'', 14)') AS paula_t14_blocked;

------------------------------------------------------------------------------
-- 4. What a page reads: index entries counted by the statistics of this
--    transaction (pg_stat_get_xact_tuples_returned). paula's pages of 20
--    read entries of her tenants only: well under the 1,000 runs of tenant
--    12 between them, and never the workspace's ranges; wanda (who sees the
--    whole workspace) reads the workspace's ranges.
------------------------------------------------------------------------------
CREATE FUNCTION pg_temp.reads(viewer bigint, st text, before bigint,
                              OUT tenant_entries bigint, OUT workspace_entries bigint,
                              OUT got bigint)
  LANGUAGE plpgsql AS $$
DECLARE t0 bigint; w0 bigint;
BEGIN
  t0 := pg_stat_get_xact_tuples_returned('rungate.runs_tenant_status_idx'::regclass);
  w0 := pg_stat_get_xact_tuples_returned('rungate.runs_workspace_status_idx'::regclass);
  SELECT count(*) INTO got FROM rungate.operations(viewer, 1, st, NULL, 20, before);
  tenant_entries := pg_stat_get_xact_tuples_returned('rungate.runs_tenant_status_idx'::regclass) - t0;
  workspace_entries := pg_stat_get_xact_tuples_returned('rungate.runs_workspace_status_idx'::regclass) - w0;
END $$;
SELECT x.viewer, x.st AS status, x.before, r.got,
       r.tenant_entries BETWEEN r.got AND 200 AS tenant_entries_few,
       r.workspace_entries AS workspace_entries
  FROM (VALUES (106, NULL, 2205), (106, NULL, NULL), (106, 'blocked', 2205),
               (101, 'succeeded', 2205)) x(viewer, st, before),
       LATERAL pg_temp.reads(x.viewer, x.st, x.before) r;
SELECT r.got, r.tenant_entries, r.workspace_entries BETWEEN r.got AND 200 AS workspace_entries_few
  FROM pg_temp.reads(108, NULL, 2205) r;

------------------------------------------------------------------------------
-- 5. The same world on a 1.6 schema (the plans of 1.6 read the page), and
--    after ALTER EXTENSION UPDATE to 1.7: the same answers.
------------------------------------------------------------------------------
CREATE TEMP TABLE paging_17 AS
SELECT c.viewer, c.ws, c.st, c.tn, pg_catalog.jsonb_agg(to_jsonb(o) ORDER BY o.run_id DESC) AS rows
  FROM paging_cases c, LATERAL rungate.operations(c.viewer, c.ws, c.st, c.tn, 10000) o
 GROUP BY 1, 2, 3, 4;
DROP TABLE paging_claimed;
SET client_min_messages = warning;
DROP EXTENSION rungate CASCADE;
RESET client_min_messages;
CREATE EXTENSION rungate VERSION '1.6';
\set ECHO none
\i test/fixtures/seed.sql
\i test/fixtures/paging.sql
\set ECHO all
SELECT extversion FROM pg_extension WHERE extname = 'rungate';
SELECT count(*) AS cases,
       count(*) FILTER (WHERE s.rows = (SELECT pg_catalog.jsonb_agg(to_jsonb(o) - ARRAY['created_at', 'started_at', 'finished_at'] ORDER BY o.run_id DESC)
                                          FROM rungate.operations(s.viewer, s.ws, s.st, s.tn, 10000) o)) AS same_as_17
  FROM (SELECT viewer, ws, st, tn,
               (SELECT pg_catalog.jsonb_agg(e - ARRAY['created_at', 'started_at', 'finished_at'])
                  FROM pg_catalog.jsonb_array_elements(rows) e) AS rows
          FROM paging_17) s;
SELECT c.viewer, c.ws, c.st AS status, c.tn AS tenant,
       w.pages, w.total, w.pages_equal, w.all_equal
  FROM paging_cases c, LATERAL pg_temp.walk(c.viewer, c.ws, c.st, c.tn, 100) w
 WHERE NOT (w.pages_equal AND w.all_equal);
ALTER EXTENSION rungate UPDATE TO '1.7';
SELECT extversion FROM pg_extension WHERE extname = 'rungate';
SELECT indexrelid::regclass AS index, pg_get_indexdef(indexrelid) LIKE '%(tenant_id, status, workspace_id, id)' AS tenant_status_order
  FROM pg_index WHERE indrelid = 'rungate.runs'::regclass
   AND indexrelid::regclass::text IN ('rungate.runs_tenant_status_idx', 'rungate.runs_tenant_idx',
                                      'rungate.runs_workspace_idx', 'rungate.runs_workspace_status_idx')
 ORDER BY 1;
SELECT count(*) AS cases,
       count(*) FILTER (WHERE s.rows = (SELECT pg_catalog.jsonb_agg(to_jsonb(o) - ARRAY['created_at', 'started_at', 'finished_at'] ORDER BY o.run_id DESC)
                                          FROM rungate.operations(s.viewer, s.ws, s.st, s.tn, 10000) o)) AS same_as_17
  FROM (SELECT viewer, ws, st, tn,
               (SELECT pg_catalog.jsonb_agg(e - ARRAY['created_at', 'started_at', 'finished_at'])
                  FROM pg_catalog.jsonb_array_elements(rows) e) AS rows
          FROM paging_17) s;
SELECT c.viewer, c.ws, c.st AS status, c.tn AS tenant,
       w.pages, w.total, w.pages_equal, w.all_equal
  FROM paging_cases c, LATERAL pg_temp.walk(c.viewer, c.ws, c.st, c.tn, 100) w
 WHERE NOT (w.pages_equal AND w.all_equal);
SELECT c.viewer, pg_temp.try(format('SELECT * FROM rungate.operations(%s, 1, tenant_id => 14)', c.viewer))
  FROM unnest(ARRAY[106, 108]) c(viewer) ORDER BY 1;

DROP TABLE paging_17, paging_claimed, paging_cases, paging_seen;
