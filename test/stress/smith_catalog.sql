-- test/stress/smith_catalog.sql: aim sqlsmith at rungate (run.sh, after
-- smith_setup.sql). sqlsmith learns the types and routines it may use from
-- unqualified pg_type and pg_proc; with search_path = smith_catalog,
-- pg_catalog these resolve to the two views below, which offer:
--   routines  every function of rungate (except the trigger functions and
--             set-returning ones, which sqlsmith skips), the wrappers below,
--             and a few dozen built-in functions over common scalar types
--             (with all 3,000 built-ins, a rungate function is rarely the
--             one picked, and the administrative ones would fuzz the server
--             rather than rungate);
--   types     those common types, their arrays, and the composite types of
--             rungate and of the fuzz table.
-- Without them, nearly every generated query fails on a polymorphic pseudo
-- type first, and the rungate calls inside it never run. Operators come
-- from pg_catalog.pg_operator (qualified by sqlsmith) whatever we do.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;

CREATE SCHEMA smith_catalog;
CREATE SCHEMA smith_fuzz;

CREATE VIEW smith_catalog.basic_types AS
SELECT t.oid FROM pg_catalog.pg_type t
 WHERE t.oid IN ('bool'::regtype, 'int2'::regtype, 'int4'::regtype, 'int8'::regtype,
                 'numeric'::regtype, 'float8'::regtype, 'text'::regtype, 'varchar'::regtype,
                 'name'::regtype, 'date'::regtype, 'timestamptz'::regtype,
                 'interval'::regtype, 'uuid'::regtype, 'jsonb'::regtype,
                 'regclass'::regtype, 'oid'::regtype)
UNION
SELECT a.oid FROM pg_catalog.pg_type a
 WHERE a.typelem IN ('bool'::regtype, 'int4'::regtype, 'int8'::regtype, 'text'::regtype,
                     'timestamptz'::regtype, 'uuid'::regtype, 'jsonb'::regtype, 'oid'::regtype)
   AND a.typcategory = 'A'
UNION
SELECT t.oid FROM pg_catalog.pg_type t
 WHERE t.typtype = 'c'
   AND t.typnamespace IN ('rungate'::regnamespace, 'public'::regnamespace,
                          'smith_catalog'::regnamespace);

-- The generic range, multirange and enum operators take pseudo types that
-- sqlsmith would write as cast(null as anyrange), which no query survives:
-- sqlsmith sees them as int8range, int8multirange and an enum of ours.
CREATE TYPE smith_catalog.mood AS ENUM ('calm', 'busy', 'stressed');

CREATE VIEW smith_catalog.pg_type AS
SELECT CASE t.oid WHEN 'anyrange'::regtype THEN 'int8range'
                  WHEN 'anymultirange'::regtype THEN 'int8multirange'
                  WHEN 'anyenum'::regtype THEN 'mood'
                  ELSE t.typname END::name AS typname,
       CASE t.oid WHEN 'anyenum'::regtype THEN 'smith_catalog'::regnamespace
                  ELSE t.typnamespace END::oid AS typnamespace,
       t.oid, t.typdelim::text AS typdelim,
       t.typrelid::oid AS typrelid, t.typelem::oid AS typelem, t.typarray::oid AS typarray,
       CASE t.oid WHEN 'anyrange'::regtype THEN 'r' WHEN 'anymultirange'::regtype THEN 'b'
                  WHEN 'anyenum'::regtype THEN 'e' ELSE t.typtype::text END AS typtype
  FROM pg_catalog.pg_type t
 WHERE t.oid IN (SELECT oid FROM smith_catalog.basic_types)
    -- sqlsmith looks these up by name at start-up
    OR t.oid IN ('internal'::regtype, 'anyarray'::regtype, 'void'::regtype)
    -- and needs every type an operator takes or gives
    OR t.oid IN (SELECT o.oprleft FROM pg_catalog.pg_operator o
                 UNION SELECT o.oprright FROM pg_catalog.pg_operator o
                 UNION SELECT o.oprresult FROM pg_catalog.pg_operator o)
OFFSET 0;   -- not an updatable view: the owner's fuzzing must not write the catalog

CREATE VIEW smith_catalog.pg_proc AS
SELECT p.proname, p.pronamespace::oid AS pronamespace, p.oid, p.prorettype::oid AS prorettype,
       p.proretset, p.prokind::text AS prokind, p.proargtypes::oid[] AS proargtypes
  FROM pg_catalog.pg_proc p
 WHERE NOT EXISTS (SELECT 1 FROM unnest(p.proargtypes::oid[] || p.prorettype::oid) u(t)
                    WHERE u.t NOT IN (SELECT oid FROM smith_catalog.basic_types)
)
   AND (p.pronamespace IN ('rungate'::regnamespace, 'smith_fuzz'::regnamespace)
        OR (p.pronamespace = 'pg_catalog'::regnamespace
            AND p.proname IN ('abs', 'length', 'lower', 'upper', 'substr', 'repeat', 'left',
                              'right', 'md5', 'concat', 'replace', 'btrim', 'now',
                              'clock_timestamp', 'date_trunc', 'age', 'gen_random_uuid',
                              'jsonb_build_object', 'jsonb_set', 'jsonb_typeof',
                              'jsonb_array_length', 'jsonb_extract_path_text', 'jsonb_strip_nulls',
                              'int8', 'int4', 'text', 'uuid', 'numeric', 'timestamptz',
                              'interval', 'justify_interval', 'make_interval', 'greatest',
                              'least', 'mod', 'div', 'power', 'random', 'floor', 'ceil',
                              'array_to_string', 'string_to_array', 'regexp_replace',
                              'to_char', 'to_timestamp', 'isfinite', 'txid_current',
                              'current_setting', 'quote_literal', 'format', 'chr', 'ascii')))
OFFSET 0;   -- not an updatable view

-- sqlsmith types a composite result as a record and almost only uses it
-- where a record does not fit, so the functions returning rungate.runs or
-- rungate.decision, used as they are, nearly never run. These wrappers
-- (SECURITY INVOKER: the caller's privileges reach rungate as they would)
-- give each a scalar face, and count the rows of the set-returning ones,
-- which sqlsmith would skip; the NULLs sqlsmith passes go through to rungate.
CREATE FUNCTION smith_fuzz.enqueue(text, bigint, bigint, bigint, jsonb, timestamptz, integer, text)
    RETURNS bigint LANGUAGE sql AS $$ SELECT (rungate.enqueue($1, $2, $3, $4, $5, $6, $7, $8)).id $$;
CREATE FUNCTION smith_fuzz.enqueue_bulk(text, bigint, bigint[], bigint, jsonb)
    RETURNS bigint LANGUAGE sql AS $$ SELECT (rungate.enqueue_bulk($1, $2, $3, $4, $5)).id $$;
CREATE FUNCTION smith_fuzz.cancel(bigint, bigint)
    RETURNS text LANGUAGE sql AS $$ SELECT (rungate.cancel($1, $2)).status $$;
CREATE FUNCTION smith_fuzz.claim(text, text[], integer)
    RETURNS bigint LANGUAGE sql AS $$ SELECT count(*) FROM rungate.claim($1, $2, $3) $$;
CREATE FUNCTION smith_fuzz.recheck(bigint, uuid)
    RETURNS text LANGUAGE sql AS $$ SELECT (rungate.recheck($1, $2)).reason_code $$;
CREATE FUNCTION smith_fuzz.complete(bigint, uuid, jsonb)
    RETURNS text LANGUAGE sql AS $$ SELECT (rungate.complete($1, $2, $3)).status $$;
CREATE FUNCTION smith_fuzz.fail(bigint, uuid, text, boolean, interval)
    RETURNS text LANGUAGE sql AS $$ SELECT (rungate.fail($1, $2, $3, $4, $5)).status $$;
CREATE FUNCTION smith_fuzz.decide(text, bigint, bigint, bigint)
    RETURNS jsonb LANGUAGE sql AS $$ SELECT (rungate.decide($1, $2, $3, $4)).checks $$;
CREATE FUNCTION smith_fuzz.operations(bigint, bigint, text, bigint, integer, bigint)
    RETURNS bigint LANGUAGE sql AS $$ SELECT count(*) FROM rungate.operations($1, $2, $3, $4, $5, $6) $$;
CREATE FUNCTION smith_fuzz.operation(bigint, bigint)
    RETURNS jsonb LANGUAGE sql AS $$ SELECT (rungate.operation($1, $2)).audit $$;
GRANT USAGE ON SCHEMA smith_fuzz TO rungate_smith;

GRANT USAGE ON SCHEMA smith_catalog TO rungate_smith;
GRANT SELECT ON ALL TABLES IN SCHEMA smith_catalog TO rungate_smith;

DO $$ BEGIN
    EXECUTE format('ALTER ROLE rungate_smith IN DATABASE %I SET search_path = smith_catalog, pg_catalog, public',
                   current_database());
    EXECUTE format('ALTER ROLE %I IN DATABASE %I SET search_path = smith_catalog, pg_catalog, public',
                   current_user, current_database());
END $$;
RESET client_min_messages;
