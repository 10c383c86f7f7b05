-- rungate_shard 1.6: the shard side of a rungate scale-out (docs/scale-out.md).
--
-- Installed with rungate on every shard of a front that runs rungate_proxy.
-- It owns three things and nothing else:
--   1. the shard's id space: rungate.runs and rungate.holds (and the audit
--      log and notifications, so that ids are unique across shards) number
--      their rows shard + 1, shard + 1 + shards, ... so that the front routes
--      a call that names only a run or a hold by the id itself
--      ((id - 1) mod shards is the shard), without a lookup;
--   2. the authority writes the front sends: global authority (actors, role
--      capabilities, operation types) to every shard, shard-local authority
--      (workspaces, tenants, memberships, prerequisites) to the workspace's;
--   3. the twins of a hold without a workspace (one hold on every shard).
-- It never writes a run: runs change only inside rungate's own functions,
-- which the front calls on the shard directly.

\echo Use "CREATE EXTENSION rungate_shard" to load this file. \quit

-- The shard's place in the layout: one row, written by configure().
CREATE TABLE rungate_shard.layout (
    singleton     boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    shard         integer NOT NULL CHECK (shard >= 0),
    nshards       integer NOT NULL CHECK (nshards > 0 AND shard < nshards),
    configured_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
SELECT pg_catalog.pg_extension_config_dump('rungate_shard.layout', '');
REVOKE ALL ON rungate_shard.layout FROM PUBLIC;
COMMENT ON TABLE rungate_shard.layout IS
    'this shard''s index and the shard count (written by rungate_shard.configure)';

-- Holds made by the front for no workspace: one per shard, same key.
CREATE TABLE rungate_shard.global_holds (
    hold_id    bigint PRIMARY KEY,
    global_key uuid NOT NULL
);
CREATE INDEX global_holds_key_idx ON rungate_shard.global_holds (global_key);
SELECT pg_catalog.pg_extension_config_dump('rungate_shard.global_holds', '');
REVOKE ALL ON rungate_shard.global_holds FROM PUBLIC;
COMMENT ON TABLE rungate_shard.global_holds IS
    'holds that are one shard''s part of a hold without a workspace made through the front; resumed together';

CREATE TYPE rungate_shard.shard_state AS (
    shard            integer,
    nshards          integer,
    sequences_ok     boolean,
    authority_digest text,
    detail           text
);
COMMENT ON TYPE rungate_shard.shard_state IS
    'what a shard says about itself: its index, the shard count, whether its id sequences follow the layout, a digest of its global authority';

-- The tables whose ids the layout spaces out, and whether the front routes
-- by that id (then every row must already be in the shard's id space).
CREATE FUNCTION rungate_shard.spaced_tables(OUT tab text, OUT routed boolean)
    RETURNS SETOF record
    LANGUAGE sql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
    AS $$ VALUES ('runs', true), ('holds', true), ('audit_log', false), ('notifications', false) $$;
REVOKE ALL ON FUNCTION rungate_shard.spaced_tables() FROM PUBLIC;
COMMENT ON FUNCTION rungate_shard.spaced_tables() IS
    'the rungate tables numbered per shard; routed: the front finds a row''s shard by its id';

CREATE FUNCTION rungate_shard.identity()
    RETURNS rungate_shard.shard_state
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    l      rungate_shard.layout;
    t      record;
    seq    text;
    inc    bigint;
    nextv  bigint;
    bad    text[] := '{}';
    st     rungate_shard.shard_state;
BEGIN
    SELECT pg_catalog.md5(pg_catalog.string_agg(x, '|' ORDER BY x)) INTO st.authority_digest
      FROM (SELECT 'a' OPERATOR(pg_catalog.||) pg_catalog.to_jsonb(a)::text AS x FROM rungate.actors a
            UNION ALL
            SELECT 'c' OPERATOR(pg_catalog.||) pg_catalog.to_jsonb(c)::text FROM rungate.role_capabilities c
            UNION ALL
            SELECT 'o' OPERATOR(pg_catalog.||) pg_catalog.to_jsonb(o)::text FROM rungate.operation_types o) s;
    SELECT * INTO l FROM rungate_shard.layout;
    IF NOT FOUND OR l.shard IS NULL THEN
        st.sequences_ok := false;
        st.detail := 'not configured as a shard: rungate_proxy.configure_shards() on the front';
        RETURN st;
    END IF;
    st.shard := l.shard;
    st.nshards := l.nshards;
    FOR t IN SELECT * FROM rungate_shard.spaced_tables() LOOP
        seq := pg_catalog.pg_get_serial_sequence('rungate.' OPERATOR(pg_catalog.||) t.tab, 'id');
        CONTINUE WHEN seq IS NULL;
        SELECT s.seqincrement INTO inc FROM pg_catalog.pg_sequence s
         WHERE s.seqrelid OPERATOR(pg_catalog.=) seq::regclass;
        EXECUTE pg_catalog.format('SELECT last_value FROM %s', seq) INTO nextv;
        IF inc IS DISTINCT FROM l.nshards::bigint
           OR (nextv - 1) % l.nshards OPERATOR(pg_catalog.<>) l.shard THEN
            bad := bad OPERATOR(pg_catalog.||)
                   pg_catalog.format('%s counts by %s from %s', seq, inc, nextv);
        END IF;
    END LOOP;
    st.sequences_ok := pg_catalog.cardinality(bad) OPERATOR(pg_catalog.=) 0;
    st.detail := CASE WHEN st.sequences_ok THEN 'ok'
                      ELSE 'id sequences out of the layout (a restore or an update reset them?): '
                           OPERATOR(pg_catalog.||) pg_catalog.array_to_string(bad, '; ')
                           OPERATOR(pg_catalog.||) '; run rungate_proxy.configure_shards() again' END;
    RETURN st;
END $$;
REVOKE ALL ON FUNCTION rungate_shard.identity() FROM PUBLIC;
COMMENT ON FUNCTION rungate_shard.identity() IS
    'this shard''s index and count, whether its id sequences follow the layout, and a digest of its global authority';

CREATE FUNCTION rungate_shard.configure(shard_index integer, shard_count integer)
    RETURNS rungate_shard.shard_state
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    t      record;
    seq    text;
    inc    bigint;
    nextv  bigint;
    top    bigint;
    stray  bigint;
    start  bigint;
BEGIN
    IF shard_count IS NULL OR shard_count < 1
       OR shard_index IS NULL OR shard_index < 0 OR shard_index >= shard_count THEN
        RAISE EXCEPTION 'shard % of % is not a shard: 0 <= shard < shards', shard_index, shard_count
              USING ERRCODE = 'RG400';
    END IF;
    FOR t IN SELECT * FROM rungate_shard.spaced_tables() LOOP
        seq := pg_catalog.pg_get_serial_sequence('rungate.' OPERATOR(pg_catalog.||) t.tab, 'id');
        CONTINUE WHEN seq IS NULL;
        SELECT s.seqincrement INTO inc FROM pg_catalog.pg_sequence s
         WHERE s.seqrelid OPERATOR(pg_catalog.=) seq::regclass;
        EXECUTE pg_catalog.format('SELECT last_value FROM %s', seq) INTO nextv;
        CONTINUE WHEN inc OPERATOR(pg_catalog.=) shard_count
                  AND (nextv - 1) % shard_count OPERATOR(pg_catalog.=) shard_index;
        -- rows being inserted now are committed or gone once we hold this
        EXECUTE pg_catalog.format('LOCK TABLE rungate.%I IN SHARE MODE', t.tab);
        IF t.routed THEN
            EXECUTE pg_catalog.format(
                'SELECT id FROM rungate.%I WHERE (id - 1) %% $1 <> $2 LIMIT 1', t.tab)
                INTO stray USING shard_count, shard_index;
            IF stray IS NOT NULL THEN
                RAISE EXCEPTION 'rungate.% has id %, outside the id space of shard % of %',
                      t.tab, stray, shard_index, shard_count
                      USING ERRCODE = 'RG409',
                            DETAIL = 'The front would route calls naming that id to another shard.',
                            HINT = 'Configure a shard before it holds runs or holds; the layout cannot change under existing rows.';
            END IF;
        END IF;
        EXECUTE pg_catalog.format('SELECT coalesce(max(id), 0) FROM rungate.%I', t.tab) INTO top;
        -- the first id above every row that is this shard's: shard + 1 + k * shards
        start := shard_index + 1;
        IF top >= start THEN
            start := start + ((top - start) / shard_count + 1) * shard_count;
        END IF;
        EXECUTE pg_catalog.format('ALTER SEQUENCE %s INCREMENT BY %s START WITH %s RESTART WITH %s',
                                  seq, shard_count, shard_index + 1, start);
    END LOOP;
    INSERT INTO rungate_shard.layout AS l (shard, nshards) VALUES (shard_index, shard_count)
        ON CONFLICT (singleton) DO UPDATE
           SET shard = EXCLUDED.shard, nshards = EXCLUDED.nshards, configured_at = pg_catalog.now()
         WHERE (l.shard, l.nshards) IS DISTINCT FROM (EXCLUDED.shard, EXCLUDED.nshards);
    RETURN rungate_shard.identity();
END $$;
REVOKE ALL ON FUNCTION rungate_shard.configure(integer, integer) FROM PUBLIC;
COMMENT ON FUNCTION rungate_shard.configure(integer, integer) IS
    'make this database shard shard_index of shard_count: id sequences count by shard_count from shard_index + 1 (idempotent; RG409 when routed rows are outside that space)';

CREATE FUNCTION rungate_shard.current_shard()
    RETURNS integer
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    s integer;
BEGIN
    SELECT l.shard INTO s FROM rungate_shard.layout l;
    IF s IS NULL THEN
        RAISE EXCEPTION 'this database is not configured as a rungate shard'
              USING ERRCODE = 'RG409',
                    HINT = 'run rungate_proxy.configure_shards() on the front';
    END IF;
    RETURN s;
END $$;
REVOKE ALL ON FUNCTION rungate_shard.current_shard() FROM PUBLIC;
COMMENT ON FUNCTION rungate_shard.current_shard() IS
    'this shard''s index; RG409 when the database is not configured as a shard';

-- the worker's name for a claim the front sent to shard `shard`: RG400
-- unless that is this shard (PL/Proxy maps any number to some partition)
CREATE FUNCTION rungate_shard.claimant(shard integer, worker text)
    RETURNS text
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    l rungate_shard.layout;
BEGIN
    SELECT * INTO l FROM rungate_shard.layout;
    IF l.shard IS DISTINCT FROM $1 THEN
        RAISE EXCEPTION 'shard % is not a shard of this layout (this database is shard % of %)',
              $1, coalesce(l.shard::text, '-'), coalesce(l.nshards::text, '-')
              USING ERRCODE = 'RG400';
    END IF;
    RETURN $2;
END $$;

------------------------------------------------------------------------------
-- Global authority: the front sends these to every shard (RUN ON ALL).
-- Each writes the row as given and returns the shard's index; a write that
-- changes nothing does not touch the row (no authority cache is emptied).
------------------------------------------------------------------------------

CREATE FUNCTION rungate_shard.put_actor(actor_id bigint, name text, status text)
    RETURNS integer
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
#variable_conflict use_column
DECLARE
    s integer := rungate_shard.current_shard();
BEGIN
    INSERT INTO rungate.actors AS a (id, name, status)
         VALUES ($1, $2, coalesce($3, 'active'))
    ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, status = EXCLUDED.status
         WHERE (a.name, a.status) IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.status);
    RETURN s;
END $$;

CREATE FUNCTION rungate_shard.put_role_capability(role text, capability text)
    RETURNS integer
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
#variable_conflict use_column
DECLARE
    s integer := rungate_shard.current_shard();
BEGIN
    INSERT INTO rungate.role_capabilities (role, capability) VALUES ($1, $2)
    ON CONFLICT DO NOTHING;
    RETURN s;
END $$;

CREATE FUNCTION rungate_shard.drop_role_capability(role text, capability text)
    RETURNS integer
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
#variable_conflict use_column
DECLARE
    s integer := rungate_shard.current_shard();
BEGIN
    DELETE FROM rungate.role_capabilities c
     WHERE c.role OPERATOR(pg_catalog.=) $1 AND c.capability OPERATOR(pg_catalog.=) $2;
    RETURN s;
END $$;

-- definition: a json object with the columns of rungate.operation_types to
-- set ("name" required); a new type gets the defaults for the others, an
-- existing one keeps them.
CREATE FUNCTION rungate_shard.put_operation_type(definition jsonb)
    RETURNS integer
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    s       integer := rungate_shard.current_shard();
    unknown text;
    cols    text[];
    collist text;
    setlist text;
BEGIN
    IF definition IS NULL OR pg_catalog.jsonb_typeof(definition) OPERATOR(pg_catalog.<>) 'object'
       OR NOT definition OPERATOR(pg_catalog.?) 'name' THEN
        RAISE EXCEPTION 'an operation type definition is a json object with a "name"'
              USING ERRCODE = 'RG400';
    END IF;
    SELECT k INTO unknown
      FROM pg_catalog.jsonb_object_keys(definition) k
     WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_attribute a
                        WHERE a.attrelid OPERATOR(pg_catalog.=) 'rungate.operation_types'::regclass
                          AND a.attname OPERATOR(pg_catalog.=) k
                          AND a.attnum > 0 AND NOT a.attisdropped)
     LIMIT 1;
    IF unknown IS NOT NULL THEN
        RAISE EXCEPTION 'rungate.operation_types has no column "%"', unknown
              USING ERRCODE = 'RG400';
    END IF;
    SELECT pg_catalog.array_agg(a.attname::text ORDER BY a.attnum) INTO cols
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid OPERATOR(pg_catalog.=) 'rungate.operation_types'::regclass
       AND a.attnum > 0 AND NOT a.attisdropped
       AND definition OPERATOR(pg_catalog.?) a.attname::text;
    SELECT pg_catalog.string_agg(pg_catalog.quote_ident(c), ', ') INTO collist
      FROM pg_catalog.unnest(cols) c;
    SELECT pg_catalog.string_agg(pg_catalog.quote_ident(c), ', ') INTO setlist
      FROM pg_catalog.unnest(cols) c WHERE c OPERATOR(pg_catalog.<>) 'name';
    IF setlist IS NULL THEN
        EXECUTE pg_catalog.format(
            'INSERT INTO rungate.operation_types AS o (%s) SELECT %s
               FROM pg_catalog.jsonb_populate_record(NULL::rungate.operation_types, $1)
             ON CONFLICT (name) DO NOTHING', collist, collist) USING definition;
    ELSE
        EXECUTE pg_catalog.format(
            'INSERT INTO rungate.operation_types AS o (%1$s) SELECT %1$s
               FROM pg_catalog.jsonb_populate_record(NULL::rungate.operation_types, $1)
             ON CONFLICT (name) DO UPDATE SET (%2$s) = ROW(%3$s)
             WHERE ROW(%4$s) IS DISTINCT FROM ROW(%3$s)',
            collist, setlist,
            (SELECT pg_catalog.string_agg('EXCLUDED.' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c), ', ')
               FROM pg_catalog.unnest(cols) c WHERE c OPERATOR(pg_catalog.<>) 'name'),
            (SELECT pg_catalog.string_agg('o.' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c), ', ')
               FROM pg_catalog.unnest(cols) c WHERE c OPERATOR(pg_catalog.<>) 'name'))
            USING definition;
    END IF;
    RETURN s;
END $$;

CREATE FUNCTION rungate_shard.drop_operation_type(name text)
    RETURNS integer
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
#variable_conflict use_column
DECLARE
    s integer := rungate_shard.current_shard();
BEGIN
    DELETE FROM rungate.operation_types o WHERE o.name OPERATOR(pg_catalog.=) $1;
    RETURN s;
END $$;

------------------------------------------------------------------------------
-- Shard-local authority: the front sends these to the workspace's shard.
------------------------------------------------------------------------------

CREATE FUNCTION rungate_shard.put_workspace(workspace_id bigint, name text, status text,
                                            max_running integer)
    RETURNS integer
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
#variable_conflict use_column
DECLARE
    s integer := rungate_shard.current_shard();
BEGIN
    INSERT INTO rungate.workspaces AS w (id, name, status, max_running)
         VALUES ($1, $2, coalesce($3, 'active'), $4)
    ON CONFLICT (id) DO UPDATE
         SET name = EXCLUDED.name, status = EXCLUDED.status, max_running = EXCLUDED.max_running
       WHERE (w.name, w.status, w.max_running)
             IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.status, EXCLUDED.max_running);
    RETURN s;
END $$;

CREATE FUNCTION rungate_shard.put_tenant(tenant_id bigint, workspace_id bigint, name text,
                                         status text)
    RETURNS integer
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
#variable_conflict use_column
DECLARE
    s integer := rungate_shard.current_shard();
BEGIN
    INSERT INTO rungate.tenants AS t (id, workspace_id, name, status)
         VALUES ($1, $2, $3, coalesce($4, 'active'))
    ON CONFLICT (id) DO UPDATE
         SET workspace_id = EXCLUDED.workspace_id, name = EXCLUDED.name, status = EXCLUDED.status
       WHERE (t.workspace_id, t.name, t.status)
             IS DISTINCT FROM (EXCLUDED.workspace_id, EXCLUDED.name, EXCLUDED.status);
    RETURN s;
END $$;

-- the workspace of a tenant, if this shard has the tenant
CREATE FUNCTION rungate_shard.tenant_workspace(tenant_id bigint)
    RETURNS SETOF bigint
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
    AS $$ SELECT t.workspace_id FROM rungate.tenants t WHERE t.id OPERATOR(pg_catalog.=) $1 $$;

CREATE FUNCTION rungate_shard.put_workspace_member(workspace_id bigint, actor_id bigint, role text)
    RETURNS integer
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
#variable_conflict use_column
DECLARE
    s integer := rungate_shard.current_shard();
BEGIN
    INSERT INTO rungate.workspace_members AS m (workspace_id, actor_id, role) VALUES ($1, $2, $3)
    ON CONFLICT (workspace_id, actor_id) DO UPDATE SET role = EXCLUDED.role
       WHERE m.role IS DISTINCT FROM EXCLUDED.role;
    RETURN s;
END $$;

CREATE FUNCTION rungate_shard.drop_workspace_member(workspace_id bigint, actor_id bigint)
    RETURNS integer
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
#variable_conflict use_column
DECLARE
    s integer := rungate_shard.current_shard();
BEGIN
    DELETE FROM rungate.workspace_members m
     WHERE m.workspace_id OPERATOR(pg_catalog.=) $1 AND m.actor_id OPERATOR(pg_catalog.=) $2;
    RETURN s;
END $$;

-- tenant rows carry no workspace: the one given must be the tenant's, so
-- that the front's routing argument is never a lie
CREATE FUNCTION rungate_shard.check_tenant(workspace_id bigint, tenant_id bigint)
    RETURNS void
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    w bigint;
BEGIN
    SELECT t.workspace_id INTO w FROM rungate.tenants t WHERE t.id OPERATOR(pg_catalog.=) $2;
    IF w IS DISTINCT FROM $1 THEN
        RAISE EXCEPTION 'tenant % is not a tenant of workspace %', $2, $1
              USING ERRCODE = 'RG400';
    END IF;
END $$;

CREATE FUNCTION rungate_shard.put_tenant_member(workspace_id bigint, tenant_id bigint,
                                                actor_id bigint, role text)
    RETURNS integer
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
#variable_conflict use_column
DECLARE
    s integer := rungate_shard.current_shard();
BEGIN
    PERFORM rungate_shard.check_tenant($1, $2);
    INSERT INTO rungate.tenant_members AS m (tenant_id, actor_id, role) VALUES ($2, $3, $4)
    ON CONFLICT (tenant_id, actor_id) DO UPDATE SET role = EXCLUDED.role
       WHERE m.role IS DISTINCT FROM EXCLUDED.role;
    RETURN s;
END $$;

CREATE FUNCTION rungate_shard.drop_tenant_member(workspace_id bigint, tenant_id bigint,
                                                 actor_id bigint)
    RETURNS integer
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
#variable_conflict use_column
DECLARE
    s integer := rungate_shard.current_shard();
BEGIN
    PERFORM rungate_shard.check_tenant($1, $2);
    DELETE FROM rungate.tenant_members m
     WHERE m.tenant_id OPERATOR(pg_catalog.=) $2 AND m.actor_id OPERATOR(pg_catalog.=) $3;
    RETURN s;
END $$;

CREATE FUNCTION rungate_shard.put_tenant_prerequisite(workspace_id bigint, tenant_id bigint,
                                                      name text, satisfied boolean)
    RETURNS integer
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
#variable_conflict use_column
DECLARE
    s integer := rungate_shard.current_shard();
BEGIN
    PERFORM rungate_shard.check_tenant($1, $2);
    INSERT INTO rungate.tenant_prerequisites AS p (tenant_id, name, satisfied)
         VALUES ($2, $3, coalesce($4, false))
    ON CONFLICT (tenant_id, name) DO UPDATE SET satisfied = EXCLUDED.satisfied
       WHERE p.satisfied IS DISTINCT FROM EXCLUDED.satisfied;
    RETURN s;
END $$;

CREATE FUNCTION rungate_shard.drop_tenant_prerequisite(workspace_id bigint, tenant_id bigint,
                                                       name text)
    RETURNS integer
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
#variable_conflict use_column
DECLARE
    s integer := rungate_shard.current_shard();
BEGIN
    PERFORM rungate_shard.check_tenant($1, $2);
    DELETE FROM rungate.tenant_prerequisites p
     WHERE p.tenant_id OPERATOR(pg_catalog.=) $2 AND p.name OPERATOR(pg_catalog.=) $3;
    RETURN s;
END $$;

------------------------------------------------------------------------------
-- Holds without a workspace: one twin per shard under one key.
------------------------------------------------------------------------------

CREATE FUNCTION rungate_shard.hold_global(global_key uuid, operation text, reason text,
                                          actor_id bigint)
    RETURNS rungate.holds
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    h rungate.holds;
BEGIN
    PERFORM rungate_shard.current_shard();
    h := rungate.hold(NULL, NULL, $2, $3, $4);
    INSERT INTO rungate_shard.global_holds (hold_id, global_key) VALUES (h.id, $1);
    RETURN h;
END $$;

CREATE FUNCTION rungate_shard.global_key(hold_id bigint)
    RETURNS uuid
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
    AS $$ SELECT g.global_key FROM rungate_shard.global_holds g
           WHERE g.hold_id OPERATOR(pg_catalog.=) $1 $$;

-- resume this shard's twins of a global hold that are still in force; the
-- holds as resume left them
CREATE FUNCTION rungate_shard.resume_global(global_key uuid, actor_id bigint)
    RETURNS SETOF rungate.holds
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    h bigint;
BEGIN
    FOR h IN SELECT g.hold_id FROM rungate_shard.global_holds g
               JOIN rungate.holds x ON x.id OPERATOR(pg_catalog.=) g.hold_id
              WHERE g.global_key OPERATOR(pg_catalog.=) $1 AND x.released_at IS NULL
              ORDER BY g.hold_id LOOP
        RETURN NEXT rungate.resume(h, $2);
    END LOOP;
END $$;

DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid FROM pg_catalog.pg_proc p
              WHERE p.pronamespace OPERATOR(pg_catalog.=) 'rungate_shard'::regnamespace LOOP
        EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END $$;

COMMENT ON FUNCTION rungate_shard.claimant(integer, text) IS 'the worker of a claim sent to shard `shard`; RG400 unless this is that shard';
COMMENT ON FUNCTION rungate_shard.put_actor(bigint, text, text) IS 'front''s write of a global actor row (upsert)';
COMMENT ON FUNCTION rungate_shard.put_role_capability(text, text) IS 'front''s write: a role grants a capability';
COMMENT ON FUNCTION rungate_shard.drop_role_capability(text, text) IS 'front''s write: a role no longer grants a capability';
COMMENT ON FUNCTION rungate_shard.put_operation_type(jsonb) IS 'front''s write of an operation type: the json object''s columns (upsert)';
COMMENT ON FUNCTION rungate_shard.drop_operation_type(text) IS 'front''s write: remove an operation type';
COMMENT ON FUNCTION rungate_shard.put_workspace(bigint, text, text, integer) IS 'front''s write of a workspace (upsert)';
COMMENT ON FUNCTION rungate_shard.put_tenant(bigint, bigint, text, text) IS 'front''s write of a tenant (upsert)';
COMMENT ON FUNCTION rungate_shard.tenant_workspace(bigint) IS 'the workspace of a tenant this shard has (no row: none)';
COMMENT ON FUNCTION rungate_shard.put_workspace_member(bigint, bigint, text) IS 'front''s write of a workspace membership (upsert)';
COMMENT ON FUNCTION rungate_shard.drop_workspace_member(bigint, bigint) IS 'front''s write: remove a workspace membership';
COMMENT ON FUNCTION rungate_shard.check_tenant(bigint, bigint) IS 'RG400 unless the tenant belongs to the workspace';
COMMENT ON FUNCTION rungate_shard.put_tenant_member(bigint, bigint, bigint, text) IS 'front''s write of a tenant membership (upsert)';
COMMENT ON FUNCTION rungate_shard.drop_tenant_member(bigint, bigint, bigint) IS 'front''s write: remove a tenant membership';
COMMENT ON FUNCTION rungate_shard.put_tenant_prerequisite(bigint, bigint, text, boolean) IS 'front''s write of a tenant prerequisite (upsert)';
COMMENT ON FUNCTION rungate_shard.drop_tenant_prerequisite(bigint, bigint, text) IS 'front''s write: remove a tenant prerequisite';
COMMENT ON FUNCTION rungate_shard.hold_global(uuid, text, text, bigint) IS 'this shard''s twin of a hold without a workspace';
COMMENT ON FUNCTION rungate_shard.global_key(bigint) IS 'the key of a hold''s twins (null: not a global hold)';
COMMENT ON FUNCTION rungate_shard.resume_global(uuid, bigint) IS 'resume this shard''s twins of a global hold still in force';
