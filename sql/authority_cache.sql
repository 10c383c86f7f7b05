-- authority_cache: decisions reuse the facts they read for as long as no
-- change to an authority table has committed since (src/authcache.c), and
-- never decide on a stale one (docs/guarantees.md#revocation-seen).
--   * a repeated decision is served from the cache (hits grow, misses don't)
--   * a committed change of any authority table (UPDATE, DELETE, INSERT,
--     TRUNCATE, a prepared transaction's COMMIT PREPARED) is seen by the
--     next decision of this backend; an uncommitted one of another
--     transaction is not, and this transaction's own is
--   * every authority table has the two triggers, enabled ALWAYS; with one
--     disabled, or rungate.authority_cache off, nothing is cached
-- The cluster of make test preloads rungate (test/lib.sh); other sessions'
-- commits are in test/specs/authority-cache.spec.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS rungate CASCADE;
CREATE EXTENSION rungate;
\set ECHO none
\i test/fixtures/seed.sql
\set ECHO all

SELECT available, enabled FROM rungate.authority_cache();

-- pg_temp.d(): actor 101 (operator of tenant 10) syncing tenant 10, as
-- allowed/reason; pg_temp.counts(): what the cache did since the last call
CREATE FUNCTION pg_temp.d() RETURNS text LANGUAGE sql AS $$
    SELECT CASE WHEN allowed THEN 'allowed' ELSE reason_code END
      FROM rungate.decide('inventory.sync', 1, 10, 101) $$;
CREATE TABLE pg_temp.seen (hits bigint, misses bigint);
INSERT INTO pg_temp.seen VALUES (0, 0);
CREATE FUNCTION pg_temp.counts() RETURNS text LANGUAGE plpgsql AS $$
DECLARE h bigint; m bigint; r text;
BEGIN
    SELECT c.hits, c.misses INTO h, m FROM rungate.authority_cache() c;
    SELECT format('hits +%s, misses +%s', h - s.hits, m - s.misses) INTO r
      FROM pg_temp.seen s;
    UPDATE pg_temp.seen SET hits = h, misses = m;
    RETURN r;
END $$;

-- the first decision reads every fact, the second none
SELECT pg_temp.d(), pg_temp.counts();
SELECT pg_temp.d(), pg_temp.counts();
SELECT pg_temp.d(), pg_temp.counts();

-- a committed revocation of each kind is seen by the very next decision
UPDATE rungate.actors SET status = 'disabled' WHERE id = 101;
SELECT pg_temp.d();
UPDATE rungate.actors SET status = 'active' WHERE id = 101;
SELECT pg_temp.d();
DELETE FROM rungate.role_capabilities WHERE role = 'operator' AND capability = 'inventory.sync';
SELECT pg_temp.d();
INSERT INTO rungate.role_capabilities VALUES ('operator', 'inventory.sync');
SELECT pg_temp.d();
UPDATE rungate.tenant_prerequisites SET satisfied = false
 WHERE tenant_id = 10 AND name = 'provider_connection';
SELECT pg_temp.d();
UPDATE rungate.tenant_prerequisites SET satisfied = true
 WHERE tenant_id = 10 AND name = 'provider_connection';
SELECT pg_temp.d();
UPDATE rungate.operation_types SET capability = 'restore.execute' WHERE name = 'inventory.sync';
SELECT pg_temp.d();
UPDATE rungate.operation_types SET capability = 'inventory.sync' WHERE name = 'inventory.sync';
SELECT pg_temp.d();

-- TRUNCATE fires no row trigger: the statement trigger marks it
BEGIN;
TRUNCATE rungate.tenant_prerequisites;
COMMIT;
SELECT pg_temp.d();
INSERT INTO rungate.tenant_prerequisites VALUES (10, 'provider_connection', true);
SELECT pg_temp.d();
SELECT pg_temp.counts() IS NOT NULL AS reset;

-- this transaction's own change, before it commits, and after rollback
BEGIN;
UPDATE rungate.tenants SET status = 'suspended' WHERE id = 10;
SELECT pg_temp.d(), pg_temp.counts();
ROLLBACK;
SELECT pg_temp.d();
SELECT pg_temp.d(), pg_temp.counts();

-- a prepared revocation is not seen until COMMIT PREPARED makes it so
BEGIN;
DELETE FROM rungate.tenant_members WHERE tenant_id = 10 AND actor_id = 101;
PREPARE TRANSACTION 'rungate_authority_cache';
SELECT pg_temp.d();
COMMIT PREPARED 'rungate_authority_cache';
SELECT pg_temp.d();
INSERT INTO rungate.tenant_members VALUES (10, 101, 'operator');
SELECT pg_temp.d();

-- the claim decides through the same cache: revoked after the run was
-- queued (and its facts cached), the run is blocked
SELECT status FROM rungate.enqueue('inventory.sync', 1, 10, 101);
UPDATE rungate.workspace_members SET role = 'readonly' WHERE workspace_id = 1 AND actor_id = 101;
UPDATE rungate.tenant_members SET role = 'readonly' WHERE tenant_id = 10 AND actor_id = 101;
SELECT count(*) AS started FROM rungate.claim('w1');
SELECT status, reason_code FROM rungate.runs ORDER BY id DESC LIMIT 1;

-- the triggers that keep the cache exact: rows and TRUNCATE, ALWAYS
SELECT c.relname, string_agg(t.tgname || ':' || t.tgenabled::text, ', ' ORDER BY t.tgname) AS triggers
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
 WHERE t.tgfoid = 'rungate.note_authority_change()'::regprocedure
 GROUP BY c.relname ORDER BY c.relname;

-- one of them disabled: nothing is cached (every decision reads its facts)
ALTER TABLE rungate.actors DISABLE TRIGGER note_authority_change;
SELECT pg_temp.counts() IS NOT NULL AS reset;
SELECT pg_temp.d(), pg_temp.counts();
SELECT pg_temp.d(), pg_temp.counts();
ALTER TABLE rungate.actors ENABLE ALWAYS TRIGGER note_authority_change;
SELECT pg_temp.d(), pg_temp.counts();
SELECT pg_temp.d(), pg_temp.counts();

-- rungate.authority_cache off: the same decisions, none cached
SET rungate.authority_cache = off;
SELECT enabled FROM rungate.authority_cache();
SELECT pg_temp.d(), pg_temp.counts();
SELECT pg_temp.d(), pg_temp.counts();
UPDATE rungate.actors SET status = 'disabled' WHERE id = 101;
SELECT pg_temp.d(), pg_temp.counts();
RESET rungate.authority_cache;
SELECT pg_temp.d();
UPDATE rungate.actors SET status = 'active' WHERE id = 101;
SELECT pg_temp.d();

-- the trigger function is for triggers only, and PUBLIC may not call either
SELECT rungate.note_authority_change();
SELECT has_function_privilege('public', 'rungate.authority_cache()', 'EXECUTE') AS public_may_see;
