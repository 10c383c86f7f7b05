-- schema: the public surface of rungate as docs/reference.md names it.
--   * authority tables and operation_types: columns, types, keys
--     (docs/reference.md#tables, docs/guarantees.md#authority-data)
--   * runs: columns and foreign keys; audit_log and notifications: columns
--   * composite types decision, claimed, run_summary, run_detail
--     (docs/reference.md#types)
--   * every public function with its exact signature (argument names,
--     types, defaults) and return type (docs/reference.md#functions)
--   * the run and audit guards fire in every session_replication_role
--     (docs/guarantees.md#transitions, #audit)
--   * nothing granted to PUBLIC; worker, dispatch and monitoring functions
--     are SECURITY DEFINER with a pinned search_path
--     (docs/guarantees.md#privileges)
--   extension rungate in schema rungate, not relocatable; every table,
--   type and function is documented with a COMMENT
-- Runs in a fresh database that already has pgtap and rungate.
\set ON_ERROR_STOP 1
\pset format unaligned
\pset tuples_only true
\pset pager off
SET client_min_messages = warning;

BEGIN;
SELECT plan(278);

-- ---------------------------------------------------------------------
-- Extension and schema
-- ---------------------------------------------------------------------
SELECT has_schema('rungate', 'schema rungate exists');
SELECT has_extension('rungate', 'rungate', 'extension rungate is installed in schema rungate');
SELECT is((SELECT extrelocatable FROM pg_extension WHERE extname = 'rungate'), false,
          'extension rungate is not relocatable');

-- ---------------------------------------------------------------------
-- The twelve tables (docs/reference.md#tables)
-- ---------------------------------------------------------------------
SELECT has_table('rungate'::name, t::name, format('table rungate.%s exists', t))
  FROM unnest(ARRAY['workspaces', 'tenants', 'actors', 'role_capabilities',
                    'workspace_members', 'tenant_members', 'tenant_prerequisites',
                    'operation_types', 'runs', 'audit_log', 'notifications',
                    'holds', 'schedules']) WITH ORDINALITY u(t, n);

-- Every documented column, with its type.
SELECT col_type_is('rungate'::name, t::name, c::name, ty,
                   format('rungate.%s.%s is %s', t, c, ty))
  FROM (VALUES
    -- authority data
    ('workspaces', 'id', 'bigint'),
    ('workspaces', 'name', 'text'),
    ('workspaces', 'status', 'text'),
    ('tenants', 'id', 'bigint'),
    ('tenants', 'workspace_id', 'bigint'),
    ('tenants', 'name', 'text'),
    ('tenants', 'status', 'text'),
    ('actors', 'id', 'bigint'),
    ('actors', 'name', 'text'),
    ('actors', 'status', 'text'),
    ('role_capabilities', 'role', 'text'),
    ('role_capabilities', 'capability', 'text'),
    ('workspace_members', 'workspace_id', 'bigint'),
    ('workspace_members', 'actor_id', 'bigint'),
    ('workspace_members', 'role', 'text'),
    ('tenant_members', 'tenant_id', 'bigint'),
    ('tenant_members', 'actor_id', 'bigint'),
    ('tenant_members', 'role', 'text'),
    ('tenant_prerequisites', 'tenant_id', 'bigint'),
    ('tenant_prerequisites', 'name', 'text'),
    ('tenant_prerequisites', 'satisfied', 'boolean'),
    -- operation types
    ('operation_types', 'name', 'text'),
    ('operation_types', 'capability', 'text'),
    ('operation_types', 'scope', 'text'),
    ('operation_types', 'requires_operable_tenant', 'boolean'),
    ('operation_types', 'prerequisites', 'text[]'),
    ('operation_types', 'allow_system', 'boolean'),
    ('operation_types', 'writes', 'boolean'),
    ('operation_types', 'item_operation', 'text'),
    ('operation_types', 'max_attempts', 'integer'),
    ('operation_types', 'lease', 'interval'),
    -- flow-control limits
    ('workspaces', 'max_running', 'integer'),
    ('operation_types', 'max_running', 'integer'),
    ('operation_types', 'limit_scope', 'text'),
    ('operation_types', 'rate_limit', 'integer'),
    ('operation_types', 'rate_period', 'interval'),
    -- holds
    -- schedules
    ('schedules', 'name', 'text'),
    ('schedules', 'cron', 'text'),
    ('schedules', 'operation', 'text'),
    ('schedules', 'workspace_id', 'bigint'),
    ('schedules', 'tenant_id', 'bigint'),
    ('schedules', 'initiator_id', 'bigint'),
    ('schedules', 'payload', 'jsonb'),
    ('schedules', 'priority', 'integer'),
    ('schedules', 'enabled', 'boolean'),
    ('schedules', 'last_tick', 'timestamp with time zone'),
    ('schedules', 'created_at', 'timestamp with time zone'),
    ('holds', 'id', 'bigint'),
    ('holds', 'workspace_id', 'bigint'),
    ('holds', 'tenant_id', 'bigint'),
    ('holds', 'operation', 'text'),
    ('holds', 'reason', 'text'),
    ('holds', 'held_by', 'bigint'),
    ('holds', 'created_at', 'timestamp with time zone'),
    ('holds', 'released_at', 'timestamp with time zone'),
    ('holds', 'released_by', 'bigint'),
    -- runs
    ('runs', 'id', 'bigint'),
    ('runs', 'workspace_id', 'bigint'),
    ('runs', 'tenant_id', 'bigint'),
    ('runs', 'operation', 'text'),
    ('runs', 'initiator_id', 'bigint'),
    ('runs', 'parent_id', 'bigint'),
    ('runs', 'status', 'text'),
    ('runs', 'reason_code', 'text'),
    ('runs', 'reason_category', 'text'),
    ('runs', 'reason_message', 'text'),
    ('runs', 'error', 'text'),
    ('runs', 'attempt', 'integer'),
    ('runs', 'max_attempts', 'integer'),
    ('runs', 'priority', 'integer'),
    ('runs', 'run_at', 'timestamp with time zone'),
    ('runs', 'payload', 'jsonb'),
    ('runs', 'result', 'jsonb'),
    ('runs', 'worker', 'text'),
    ('runs', 'lease_expires_at', 'timestamp with time zone'),
    ('runs', 'idempotency_key', 'text'),
    ('runs', 'created_at', 'timestamp with time zone'),
    ('runs', 'started_at', 'timestamp with time zone'),
    ('runs', 'finished_at', 'timestamp with time zone'),
    ('runs', 'rerun_of', 'bigint'),
    -- audit trail
    ('audit_log', 'id', 'bigint'),
    ('audit_log', 'at', 'timestamp with time zone'),
    ('audit_log', 'run_id', 'bigint'),
    ('audit_log', 'workspace_id', 'bigint'),
    ('audit_log', 'tenant_id', 'bigint'),
    ('audit_log', 'attempt', 'integer'),
    ('audit_log', 'event', 'text'),
    ('audit_log', 'authority', 'text'),
    ('audit_log', 'actor_id', 'bigint'),
    ('audit_log', 'decision', 'text'),
    ('audit_log', 'reason_code', 'text'),
    ('audit_log', 'reason_category', 'text'),
    ('audit_log', 'checks', 'jsonb'),
    ('audit_log', 'worker', 'text'),
    ('audit_log', 'txid', 'bigint'),
    -- notifications
    ('notifications', 'id', 'bigint'),
    ('notifications', 'actor_id', 'bigint'),
    ('notifications', 'run_id', 'bigint'),
    ('notifications', 'kind', 'text'),
    ('notifications', 'created_at', 'timestamp with time zone'),
    ('notifications', 'read_at', 'timestamp with time zone')
  ) v(t, c, ty);

-- operation_types.capability is text, not null (docs/reference.md#tables).
SELECT col_not_null('rungate', 'operation_types', 'capability',
                    'rungate.operation_types.capability is NOT NULL');

-- Primary keys: ids, the pair of a membership, the name of a type.
SELECT col_is_pk('rungate'::name, t::name, cols::name[], format('rungate.%s has primary key (%s)', t, array_to_string(cols, ', ')))
  FROM (VALUES
    ('workspaces', ARRAY['id']),
    ('tenants', ARRAY['id']),
    ('actors', ARRAY['id']),
    ('role_capabilities', ARRAY['role', 'capability']),
    ('workspace_members', ARRAY['workspace_id', 'actor_id']),
    ('tenant_members', ARRAY['tenant_id', 'actor_id']),
    ('tenant_prerequisites', ARRAY['tenant_id', 'name']),
    ('operation_types', ARRAY['name']),
    ('runs', ARRAY['id']),
    ('audit_log', ARRAY['id']),
    ('notifications', ARRAY['id'])
  ) v(t, cols);

-- Foreign keys of the authority data and of runs.
SELECT fk_ok('rungate'::name, t::name, ARRAY[c]::name[], 'rungate'::name, rt::name, ARRAY[rc]::name[],
             format('rungate.%s(%s) references rungate.%s(%s)', t, c, rt, rc))
  FROM (VALUES
    ('tenants', 'workspace_id', 'workspaces', 'id'),
    ('workspace_members', 'workspace_id', 'workspaces', 'id'),
    ('workspace_members', 'actor_id', 'actors', 'id'),
    ('tenant_members', 'tenant_id', 'tenants', 'id'),
    ('tenant_members', 'actor_id', 'actors', 'id'),
    ('tenant_prerequisites', 'tenant_id', 'tenants', 'id'),
    ('operation_types', 'item_operation', 'operation_types', 'name'),
    ('runs', 'workspace_id', 'workspaces', 'id'),
    ('runs', 'tenant_id', 'tenants', 'id'),
    ('runs', 'initiator_id', 'actors', 'id'),
    ('runs', 'operation', 'operation_types', 'name'),
    ('runs', 'parent_id', 'runs', 'id')
  ) v(t, c, rt, rc);

-- Tenants and actors that runs reference are never deleted, the foreign
-- keys restrict (docs/guarantees.md#authority-data): no foreign key to them
-- cascades or nulls on delete.
SELECT is_empty($$
    SELECT conrelid::regclass, conname, confdeltype
      FROM pg_constraint
     WHERE contype = 'f' AND connamespace = 'rungate'::regnamespace
       AND confrelid IN ('rungate.tenants'::regclass, 'rungate.actors'::regclass,
                         'rungate.workspaces'::regclass, 'rungate.operation_types'::regclass)
       AND confdeltype NOT IN ('a', 'r')
$$, 'no foreign key to workspaces, tenants, actors or operation_types cascades or nulls on delete');

-- ---------------------------------------------------------------------
-- Composite types, with their fields in the documented order
-- ---------------------------------------------------------------------
SELECT has_type('rungate'::name, t::name, format('type rungate.%s exists', t))
  FROM unnest(ARRAY['decision', 'claimed', 'run_summary', 'run_detail']) WITH ORDINALITY u(t, n);
SELECT has_composite('rungate'::name, t::name, format('rungate.%s is a composite type', t))
  FROM unnest(ARRAY['decision', 'claimed', 'run_summary', 'run_detail']) WITH ORDINALITY u(t, n);

SELECT is(ARRAY(SELECT a.attname::text || ' ' || format_type(a.atttypid, a.atttypmod)
                  FROM pg_attribute a
                 WHERE a.attrelid = (SELECT typrelid FROM pg_type WHERE oid = ty::regtype)
                   AND a.attnum > 0 AND NOT a.attisdropped
                 ORDER BY a.attnum),
          fields,
          format('%s has the documented fields, in order', ty))
  FROM (VALUES
    ('rungate.decision', ARRAY[
        'allowed boolean', 'authority text', 'reason_code text',
        'reason_category text', 'reason_message text', 'checks jsonb']),
    ('rungate.claimed', ARRAY[
        'run_id bigint', 'lease_token uuid', 'attempt integer', 'operation text',
        'workspace_id bigint', 'tenant_id bigint', 'initiator_id bigint',
        'payload jsonb', 'lease_expires_at timestamp with time zone']),
    ('rungate.run_summary', ARRAY[
        'run_id bigint', 'workspace_id bigint', 'tenant_id bigint', 'operation text',
        'authority text', 'initiator_id bigint', 'status text', 'reason_code text',
        'reason_category text', 'reason_message text', 'error text', 'attempt integer',
        'parent_id bigint', 'created_at timestamp with time zone',
        'started_at timestamp with time zone', 'finished_at timestamp with time zone']),
    ('rungate.run_detail', ARRAY[
        'run_id bigint', 'workspace_id bigint', 'tenant_id bigint', 'operation text',
        'authority text', 'initiator_id bigint', 'status text', 'reason_code text',
        'reason_category text', 'reason_message text', 'error text', 'attempt integer',
        'parent_id bigint', 'created_at timestamp with time zone',
        'started_at timestamp with time zone', 'finished_at timestamp with time zone',
        'payload jsonb', 'result jsonb', 'items jsonb', 'audit jsonb', 'waiting text'])
  ) v(ty, fields);

-- The same fields through pgTAP's column assertions on the types' relations.
SELECT col_type_is('rungate'::name, t::name, c::name, ty, format('rungate.%s.%s is %s', t, c, ty))
  FROM (VALUES
    ('decision', 'allowed', 'boolean'),
    ('decision', 'authority', 'text'),
    ('decision', 'reason_code', 'text'),
    ('decision', 'reason_category', 'text'),
    ('decision', 'reason_message', 'text'),
    ('decision', 'checks', 'jsonb'),
    ('claimed', 'run_id', 'bigint'),
    ('claimed', 'lease_token', 'uuid'),
    ('claimed', 'attempt', 'integer'),
    ('claimed', 'operation', 'text'),
    ('claimed', 'workspace_id', 'bigint'),
    ('claimed', 'tenant_id', 'bigint'),
    ('claimed', 'initiator_id', 'bigint'),
    ('claimed', 'payload', 'jsonb'),
    ('claimed', 'lease_expires_at', 'timestamp with time zone'),
    ('run_detail', 'payload', 'jsonb'),
    ('run_detail', 'result', 'jsonb'),
    ('run_detail', 'items', 'jsonb'),
    ('run_detail', 'audit', 'jsonb'),
    ('run_detail', 'waiting', 'text')
  ) v(t, c, ty);

-- ---------------------------------------------------------------------
-- Every public function, its exact signature (argument names,
-- types and defaults as pg_get_function_arguments prints them) and its
-- return type.
-- ---------------------------------------------------------------------
CREATE TEMP TABLE public_functions (n int, name name, args name[], signature text, returns text);
INSERT INTO public_functions VALUES
 (1, 'decide', '{text,bigint,bigint,bigint}',
  'operation text, workspace_id bigint, tenant_id bigint, actor_id bigint',
  'rungate.decision'),
 (2, 'enqueue', '{text,bigint,bigint,bigint,jsonb,"timestamp with time zone",integer,text}',
  'operation text, workspace_id bigint, tenant_id bigint DEFAULT NULL::bigint, initiator_id bigint DEFAULT NULL::bigint, payload jsonb DEFAULT ''{}''::jsonb, run_at timestamp with time zone DEFAULT NULL::timestamp with time zone, priority integer DEFAULT 0, idempotency_key text DEFAULT NULL::text',
  'rungate.runs'),
 (3, 'enqueue_bulk', '{text,bigint,bigint[],bigint,jsonb}',
  'operation text, workspace_id bigint, tenant_ids bigint[], initiator_id bigint DEFAULT NULL::bigint, payload jsonb DEFAULT ''{}''::jsonb',
  'rungate.runs'),
 (4, 'cancel', '{bigint,bigint}',
  'run_id bigint, actor_id bigint DEFAULT NULL::bigint',
  'rungate.runs'),
 (5, 'claim', '{text,text[],integer}',
  'worker text, operations text[] DEFAULT NULL::text[], max_runs integer DEFAULT 1',
  'setof rungate.claimed'),
 (6, 'heartbeat', '{bigint,uuid}',
  'run_id bigint, lease_token uuid',
  'timestamp with time zone'),
 (7, 'recheck', '{bigint,uuid}',
  'run_id bigint, lease_token uuid',
  'rungate.decision'),
 (8, 'complete', '{bigint,uuid,jsonb}',
  'run_id bigint, lease_token uuid, result jsonb DEFAULT NULL::jsonb',
  'rungate.runs'),
 (9, 'fail', '{bigint,uuid,text,boolean,interval}',
  'run_id bigint, lease_token uuid, error text, retryable boolean DEFAULT false, retry_in interval DEFAULT NULL::interval',
  'rungate.runs'),
 (10, 'reap_expired', '{}',
  '',
  'integer'),
 (11, 'purge', '{"timestamp with time zone"}',
  'finished_before timestamp with time zone',
  'bigint'),
 (12, 'operations', '{bigint,bigint,text,bigint,integer,bigint}',
  'viewer_id bigint, workspace_id bigint, status text DEFAULT NULL::text, tenant_id bigint DEFAULT NULL::bigint, max_rows integer DEFAULT 100, before_id bigint DEFAULT NULL::bigint',
  'setof rungate.run_summary'),
 (13, 'operation', '{bigint,bigint}',
  'viewer_id bigint, run_id bigint',
  'rungate.run_detail'),
 (14, 'guard_writes', '{regclass,name}',
  'target regclass, run_column name',
  'void'),
 (15, 'unguard_writes', '{regclass}',
  'target regclass',
  'void'),
 (16, 'release', '{bigint,uuid,"timestamp with time zone"}',
  'run_id bigint, lease_token uuid, run_at timestamp with time zone DEFAULT NULL::timestamp with time zone',
  'rungate.runs'),
 (17, 'rerun', '{bigint,bigint}',
  'run_id bigint, actor_id bigint DEFAULT NULL::bigint',
  'rungate.runs'),
 (18, 'hold', '{bigint,bigint,text,text,bigint}',
  'workspace_id bigint DEFAULT NULL::bigint, tenant_id bigint DEFAULT NULL::bigint, operation text DEFAULT NULL::text, reason text DEFAULT NULL::text, actor_id bigint DEFAULT NULL::bigint',
  'rungate.holds'),
 (19, 'resume', '{bigint,bigint}',
  'hold_id bigint, actor_id bigint DEFAULT NULL::bigint',
  'rungate.holds'),
 (20, 'metrics', '{}',
  '',
  'setof record'),
 (21, 'metrics_text', '{}',
  '',
  'text'),
 (22, 'sync_sequences', '{}',
  '',
  'void'),
 (23, 'run_schedules', '{"timestamp with time zone"}',
  'at timestamp with time zone DEFAULT now()',
  'setof rungate.runs');

SELECT has_function('rungate', name, args,
                    format('function rungate.%s(%s) exists', name, array_to_string(args, ', ')))
  FROM public_functions ORDER BY n;

SELECT is(pg_get_function_arguments(
              to_regprocedure(format('rungate.%I(%s)', f.name, array_to_string(f.args, ',')))),
          f.signature,
          format('rungate.%s has the documented argument names and defaults', f.name))
  FROM public_functions f ORDER BY n;

SELECT function_returns('rungate', name, args, returns,
                        format('rungate.%s returns %s', name, returns))
  FROM public_functions ORDER BY n;

-- ---------------------------------------------------------------------
-- The run and audit guards fire in every session_replication_role
-- (ENABLE ALWAYS; docs/guarantees.md#transitions, #audit); so does the
-- validation of operation types (#operation-types).
-- ---------------------------------------------------------------------
SELECT is((SELECT tgenabled::text FROM pg_trigger
            WHERE tgrelid = tbl::regclass AND tgname = trg AND NOT tgisinternal),
          'A',
          format('trigger %s on %s is enabled ALWAYS', trg, tbl))
  FROM (VALUES
    (1, 'rungate.runs', 'guard_runs'),
    (2, 'rungate.runs', 'guard_runs_truncate'),
    (3, 'rungate.audit_log', 'guard_audit'),
    (4, 'rungate.audit_log', 'guard_audit_truncate'),
    (5, 'rungate.operation_types', 'validate_operation_type'),
    (6, 'rungate.workspaces', 'validate_workspace')
  ) v(n, tbl, trg)
 ORDER BY n;
-- The guards cover every way of changing the tables: INSERT, UPDATE,
-- DELETE (row level) and TRUNCATE.
SELECT is((SELECT string_agg(e, ',' ORDER BY e) FROM (
             SELECT unnest(ARRAY[
                      CASE WHEN tgtype::int & 4 <> 0 THEN 'insert' END,
                      CASE WHEN tgtype::int & 8 <> 0 THEN 'delete' END,
                      CASE WHEN tgtype::int & 16 <> 0 THEN 'update' END,
                      CASE WHEN tgtype::int & 32 <> 0 THEN 'truncate' END]) e
               FROM pg_trigger
              WHERE tgrelid = tbl::regclass AND tgenabled = 'A' AND NOT tgisinternal
                AND tgfoid = fn::regproc) x),
          'delete,insert,truncate,update',
          format('%s guards INSERT, UPDATE, DELETE and TRUNCATE on %s', fn, tbl))
  FROM (VALUES (1, 'rungate.runs', 'rungate.guard_runs'),
               (2, 'rungate.audit_log', 'rungate.guard_audit')) v(n, tbl, fn)
 ORDER BY n;

-- ---------------------------------------------------------------------
-- Nothing for PUBLIC (docs/guarantees.md#privileges). A NULL ACL means the default one, which for
-- functions grants EXECUTE to PUBLIC: acldefault() stands in for it.
-- ---------------------------------------------------------------------
SELECT is_empty($$
    SELECT c.oid::regclass AS relation, a.privilege_type
      FROM pg_class c,
           aclexplode(coalesce(c.relacl, acldefault(
               CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END::"char", c.relowner))) a
     WHERE c.relnamespace = 'rungate'::regnamespace
       AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
       AND a.grantee = 0
$$, 'no table or view of schema rungate grants anything to PUBLIC');

SELECT is_empty($$
    SELECT c.oid::regclass AS sequence, a.privilege_type
      FROM pg_class c,
           aclexplode(coalesce(c.relacl, acldefault('s', c.relowner))) a
     WHERE c.relnamespace = 'rungate'::regnamespace
       AND c.relkind = 'S'
       AND a.grantee = 0
$$, 'no sequence of schema rungate grants anything to PUBLIC');

SELECT is_empty($$
    SELECT p.oid::regprocedure AS function, a.privilege_type
      FROM pg_proc p,
           aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
     WHERE p.pronamespace = 'rungate'::regnamespace
       AND a.grantee = 0
$$, 'no function of schema rungate grants EXECUTE to PUBLIC');

-- Worker, dispatch and monitoring functions are SECURITY DEFINER.
SELECT is_definer('rungate', name, args, format('rungate.%s is SECURITY DEFINER', name))
  FROM public_functions
 WHERE name IN ('enqueue', 'enqueue_bulk', 'cancel',
                'claim', 'heartbeat', 'recheck', 'complete', 'fail', 'reap_expired',
                'operations', 'operation', 'release', 'rerun', 'hold', 'resume',
                'metrics', 'metrics_text', 'sync_sequences', 'run_schedules')
 ORDER BY n;

-- Every SECURITY DEFINER function of the schema pins its search_path.
SELECT is_empty($$
    SELECT p.oid::regprocedure AS function, p.proconfig
      FROM pg_proc p
     WHERE p.pronamespace = 'rungate'::regnamespace
       AND p.prosecdef
       AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false)
$$, 'every SECURITY DEFINER function of schema rungate has search_path=pg_catalog, pg_temp');
-- ... and there is at least one of them, so the check above checks something
SELECT cmp_ok((SELECT count(*)::int FROM pg_proc
                WHERE pronamespace = 'rungate'::regnamespace AND prosecdef),
              '>=', 11, 'schema rungate has SECURITY DEFINER functions');

-- ---------------------------------------------------------------------
-- Every table, composite type and function of the schema has a COMMENT.
-- ---------------------------------------------------------------------
SELECT is_empty($$
    SELECT c.oid::regclass
      FROM pg_class c
     WHERE c.relnamespace = 'rungate'::regnamespace AND c.relkind IN ('r', 'p')
       AND coalesce(obj_description(c.oid, 'pg_class'), '') = ''
$$, 'every table of schema rungate has a comment');

SELECT is_empty($$
    SELECT t.oid::regtype
      FROM pg_type t JOIN pg_class c ON c.oid = t.typrelid
     WHERE t.typnamespace = 'rungate'::regnamespace AND c.relkind = 'c'
       AND coalesce(obj_description(t.oid, 'pg_type'), '') = ''
$$, 'every composite type of schema rungate has a comment');

SELECT is_empty($$
    SELECT p.oid::regprocedure
      FROM pg_proc p
     WHERE p.pronamespace = 'rungate'::regnamespace
       AND coalesce(obj_description(p.oid, 'pg_proc'), '') = ''
$$, 'every function of schema rungate has a comment');

SELECT * FROM finish();
ROLLBACK;
