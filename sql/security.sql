-- security: rungate cannot be subverted through names, search_path or its
-- own definer rights (issue 6, "Hostile and bad input";
-- docs/guarantees.md#privileges).
--   a. installing into a database where another role pre-created rungate's
--      schema or an object with one of rungate's names fails, and adopts
--      nothing
--   b. golden list: every function of the extension, which ones are
--      SECURITY DEFINER and their pinned search_path, and that PUBLIC may
--      execute none; every object of the extension lives in its schema
--   c. operators in SQL bodies are schema-qualified: the extension has no
--      SQL or PL/pgSQL function (its SQL lives in C, with OPERATOR(pg_catalog.x))
--   d. a hostile caller with only EXECUTE and its own now() and text = first
--      on its search_path gets the same answers as a normal caller
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS rungate CASCADE;
-- start with no schema rungate at all (DROP EXTENSION keeps the schema)
DROP SCHEMA IF EXISTS rungate CASCADE;
DROP SCHEMA IF EXISTS security_evil CASCADE;
DROP ROLE IF EXISTS security_attacker;
DROP ROLE IF EXISTS security_caller;
\set ECHO none
\i test/fixtures/try.sql
\set ECHO all

------------------------------------------------------------------------------
-- a1. The schema rungate pre-created by a role that is not a superuser:
--     PostgreSQL would adopt it (the control file names the schema), and its
--     owner could later rename it and put its own rungate.runs where the
--     SECURITY DEFINER functions look. CREATE EXTENSION refuses it (42501)
--     and leaves nothing behind.
------------------------------------------------------------------------------
CREATE ROLE security_attacker;
CREATE SCHEMA rungate AUTHORIZATION security_attacker;
SELECT pg_temp.try('CREATE EXTENSION rungate');
SELECT (SELECT count(*) FROM pg_extension WHERE extname = 'rungate') AS extensions,
       (SELECT count(*) FROM pg_class WHERE relnamespace = 'rungate'::regnamespace) AS relations,
       (SELECT count(*) FROM pg_proc WHERE pronamespace = 'rungate'::regnamespace) AS functions;
DROP SCHEMA rungate;

------------------------------------------------------------------------------
-- a2. A schema rungate that a superuser pre-created (accepted), in which a
--     role allowed to create has planted an object with one of rungate's
--     names: a table rungate.runs (42P07), a function rungate.decide with
--     rungate's signature (42723), a type rungate.decision (42710). The
--     install script never uses CREATE OR REPLACE or IF NOT EXISTS, so it
--     fails instead of adopting, and the planted object stays the
--     attacker's.
------------------------------------------------------------------------------
CREATE SCHEMA rungate;
GRANT USAGE, CREATE ON SCHEMA rungate TO security_attacker;
SET ROLE security_attacker;
CREATE TABLE rungate.runs (id bigint, status text);
RESET ROLE;
SELECT pg_temp.try('CREATE EXTENSION rungate');
SET ROLE security_attacker;
DROP TABLE rungate.runs;
CREATE FUNCTION rungate.decide(operation text, workspace_id bigint,
                               tenant_id bigint, actor_id bigint)
    RETURNS boolean LANGUAGE sql AS 'SELECT true';
RESET ROLE;
SELECT pg_temp.try('CREATE EXTENSION rungate');
SET ROLE security_attacker;
DROP FUNCTION rungate.decide(text, bigint, bigint, bigint);
CREATE TYPE rungate.decision AS (allowed boolean);
RESET ROLE;
SELECT pg_temp.try('CREATE EXTENSION rungate');
SELECT (SELECT count(*) FROM pg_extension WHERE extname = 'rungate') AS extensions,
       (SELECT string_agg(typname || ' owned by ' || typowner::regrole::text, ', ')
          FROM pg_type WHERE typnamespace = 'rungate'::regnamespace
           AND typname = 'decision') AS planted;
SET ROLE security_attacker;
DROP TYPE rungate.decision;
RESET ROLE;
REVOKE ALL ON SCHEMA rungate FROM security_attacker;
DROP ROLE security_attacker;
-- the superuser's empty schema is accepted: a clean install from here on
CREATE EXTENSION rungate;
SELECT extversion, extnamespace::regnamespace AS schema,
       (SELECT nspowner::regrole FROM pg_namespace WHERE nspname = 'rungate') AS schema_owner
  FROM pg_extension WHERE extname = 'rungate';
\set ECHO none
\i test/fixtures/seed.sql
\set ECHO all

------------------------------------------------------------------------------
-- b. Golden list of the extension's functions (pg_depend on the
--    extension): SECURITY DEFINER or not, the pinned search_path
--    (proconfig), the owner a superuser; any change shows in this diff.
------------------------------------------------------------------------------
CREATE TEMP VIEW security_functions AS
SELECT p.oid, p.oid::regprocedure::text AS function, p.prosecdef,
       p.proconfig, l.lanname, p.proacl, r.rolsuper AS owner_is_superuser
  FROM pg_depend d
  JOIN pg_proc p ON p.oid = d.objid
  JOIN pg_language l ON l.oid = p.prolang
  JOIN pg_roles r ON r.oid = p.proowner
 WHERE d.classid = 'pg_proc'::regclass
   AND d.refclassid = 'pg_extension'::regclass
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'rungate')
   AND d.deptype = 'e';
SELECT function, prosecdef AS security_definer, proconfig, lanname, owner_is_superuser
  FROM security_functions ORDER BY function;
-- every SECURITY DEFINER function pins exactly this search_path
SELECT proconfig, count(*) AS security_definer_functions
  FROM security_functions WHERE prosecdef GROUP BY proconfig ORDER BY 1;
-- PUBLIC may execute none of them (docs/guarantees.md#privileges)
SELECT function FROM security_functions
 WHERE has_function_privilege('public', oid, 'EXECUTE') ORDER BY 1;
-- every object of the extension lives in the schema rungate (nothing in
-- public or elsewhere where it could meet another role's objects)
SELECT (pg_identify_object(d.classid, d.objid, 0)).schema AS schema, count(*) AS objects
  FROM pg_depend d
 WHERE d.refclassid = 'pg_extension'::regclass
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'rungate')
   AND d.deptype = 'e'
   -- not the row and array types that come with a table or type (members
   -- on 17 and later, not on 15)
   AND NOT EXISTS (SELECT FROM pg_type t
                    WHERE d.classid = 'pg_type'::regclass AND t.oid = d.objid
                      AND (t.typcategory = 'A'
                           OR t.typrelid IN (SELECT oid FROM pg_class WHERE relkind <> 'c')))
 GROUP BY 1 ORDER BY 1;

------------------------------------------------------------------------------
-- c. Operators in SQL bodies are schema-qualified. The extension has no SQL
--    or PL/pgSQL function: the list is empty (its queries live in C, where
--    every operator is written OPERATOR(pg_catalog.x)). Should one appear,
--    the second query lists it when its body uses a bare operator.
------------------------------------------------------------------------------
SELECT function, lanname FROM security_functions
 WHERE lanname NOT IN ('c', 'internal') ORDER BY 1;
SELECT function FROM security_functions f JOIN pg_proc p ON p.oid = f.oid
 WHERE f.lanname IN ('sql', 'plpgsql')
   AND regexp_replace(regexp_replace(p.prosrc, 'OPERATOR\(pg_catalog\.[^)]+\)', '', 'g'),
                      '''[^'']*''', '', 'g') ~ '[=<>!~+*/%|&^#@-]'
 ORDER BY 1;

------------------------------------------------------------------------------
-- d. A hostile caller: a role with only USAGE on the schema and EXECUTE on
--    decide, enqueue and claim, whose search_path puts its own schema first,
--    holding its own now() (the year 2100) and its own text = (always true).
--    The trap works in its own queries; rungate's answers are the same as
--    a normal caller's (the functions pin search_path = pg_catalog, pg_temp).
------------------------------------------------------------------------------
CREATE ROLE security_caller;
GRANT USAGE ON SCHEMA rungate TO security_caller;
GRANT EXECUTE ON FUNCTION
    rungate.decide(text, bigint, bigint, bigint),
    rungate.enqueue(text, bigint, bigint, bigint, jsonb, timestamptz, integer, text),
    rungate.claim(text, text[], integer)
  TO security_caller;
CREATE SCHEMA security_evil AUTHORIZATION security_caller;
-- the questions, and a normal caller's answers
CREATE TEMP TABLE security_cases (n int, operation text, workspace_id bigint,
                                  tenant_id bigint, actor_id bigint);
INSERT INTO security_cases VALUES
    (1, 'inventory.sync', 1, 10, 100),       -- allowed
    (2, 'inventory.sync', 1, 10, 102),       -- capability_missing
    (3, 'inventory.sync', 1, 10, 103),       -- actor_not_in_workspace
    (4, 'restore.execute', 1, 11, 100),      -- prerequisite_unmet
    (5, 'inventory.sync', 1, 12, 100),       -- tenant_not_operable
    (6, 'inventory.sync', 1, 10, 104),       -- actor_disabled
    (7, 'restore.execute', 1, 10, NULL),     -- system_authority_not_allowed
    (8, 'reports.export', 1, NULL, 101);     -- capability_missing (workspace role)
CREATE TEMP TABLE security_normal AS
SELECT c.n, (rungate.decide(c.operation, c.workspace_id, c.tenant_id, c.actor_id)).*
  FROM security_cases c;
CREATE TEMP TABLE security_hostile (LIKE security_normal);
CREATE TEMP TABLE security_hostile_runs (n int, run_id bigint, status text, reason_code text);
CREATE TEMP TABLE security_hostile_claims (run_id bigint, attempt int);
GRANT SELECT ON security_cases TO security_caller;
GRANT INSERT ON security_hostile, security_hostile_runs, security_hostile_claims TO security_caller;
-- claim bait: a run due only in a day, at the highest priority; and a run
-- of oscar's whose capability is revoked before the claim (the operator role
-- loses inventory.sync; no decide case above depends on it): with the
-- caller's text = it would still match
SELECT id, status FROM rungate.enqueue('inventory.sync', 1, 10, 100,
    run_at => now() + interval '1 day', priority => 100);
SELECT id, status FROM rungate.enqueue('inventory.sync', 1, 10, 101, priority => 50);
DELETE FROM rungate.role_capabilities WHERE role = 'operator' AND capability = 'inventory.sync';

SET ROLE security_caller;
CREATE FUNCTION security_evil.now() RETURNS timestamptz
    LANGUAGE sql AS $$SELECT '2100-01-01 00:00:00+00'::pg_catalog.timestamptz$$;
CREATE FUNCTION security_evil.text_eq_always(text, text) RETURNS boolean
    LANGUAGE sql AS 'SELECT true';
CREATE OPERATOR security_evil.= (LEFTARG = text, RIGHTARG = text,
                                 FUNCTION = security_evil.text_eq_always);
SET search_path = security_evil, pg_catalog;
-- the trap is armed for the caller's own queries
SELECT now() > '2099-12-31'::timestamptz AS own_now_is_2100,
       'owner'::text = 'readonly'::text AS own_text_eq_always_true;
INSERT INTO security_hostile
SELECT c.n, (rungate.decide(c.operation, c.workspace_id, c.tenant_id, c.actor_id)).*
  FROM security_cases c;
INSERT INTO security_hostile_runs
SELECT c.n, r.id, r.status, r.reason_code
  FROM security_cases c,
       LATERAL rungate.enqueue(c.operation, c.workspace_id, c.tenant_id, c.actor_id) r
 WHERE c.n IN (1, 2, 3);
INSERT INTO security_hostile_claims
SELECT run_id, attempt FROM rungate.claim('security-hostile', NULL, 10);
RESET search_path;
RESET ROLE;

-- decide: the same eight answers, field by field
SELECT normal.n, normal.allowed, normal.reason_code,
       to_jsonb(normal) = to_jsonb(hostile) AS same_as_normal_caller
  FROM security_normal normal JOIN security_hostile hostile USING (n) ORDER BY n;
-- enqueue: decided with the real operators (2 and 3 recorded blocked), and
-- stamped with the real clock, not the caller's 2100
SELECT h.n, h.status, h.reason_code, r.run_at < now() + interval '1 hour' AS real_run_at,
       r.created_at < now() + interval '1 hour' AS real_created_at
  FROM security_hostile_runs h JOIN rungate.runs r ON r.id = h.run_id ORDER BY h.n;
-- claim: the bait (due tomorrow by the real clock, in the past by the
-- caller's) is still queued; oscar's run is blocked (capability_missing);
-- only the allowed run that is due was started
SELECT r.id, r.status, r.reason_code, r.priority, c.attempt AS claimed_attempt,
       r.started_at < now() + interval '1 hour' AS real_started_at,
       (SELECT string_agg(a.event, ', ' ORDER BY a.id) FROM rungate.audit_log a
         WHERE a.run_id = r.id) AS audit
  FROM rungate.runs r LEFT JOIN security_hostile_claims c ON c.run_id = r.id
 ORDER BY r.id;

------------------------------------------------------------------------------
-- Clean up: the hostile schema and both roles.
------------------------------------------------------------------------------
DROP SCHEMA security_evil CASCADE;
DROP TABLE security_cases, security_normal, security_hostile,
           security_hostile_runs, security_hostile_claims;
DROP VIEW security_functions;
DROP OWNED BY security_caller;
DROP ROLE security_caller;
