-- rungate 1.3 -> 1.4: the authority cache.
--
--   * rungate.note_authority_change() fires on every change of the eight
--     authority tables (rows and TRUNCATE, ENABLE ALWAYS) and marks the
--     transaction; when it commits, every backend's cached facts are
--     dropped (see src/authcache.c for why the cache is exact).
--   * rungate.authority_cache() shows whether this server can cache
--     (rungate in shared_preload_libraries), whether this session lets it
--     (rungate.authority_cache), and this backend's counts.
--
-- The C module of 1.4 serves 1.0 to 1.3 schemas too; without these
-- triggers it never caches.

\echo Use "ALTER EXTENSION rungate UPDATE TO '1.4'" to load this file. \quit

CREATE FUNCTION rungate.note_authority_change() RETURNS trigger
    AS 'MODULE_PATHNAME', 'rg_note_authority_change' LANGUAGE C;
REVOKE ALL ON FUNCTION rungate.note_authority_change() FROM PUBLIC;
COMMENT ON FUNCTION rungate.note_authority_change() IS 'trigger: an authority table changed, so its commit drops the cached facts of every backend';

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['operation_types', 'workspaces', 'actors',
                             'workspace_members', 'tenants', 'tenant_members',
                             'role_capabilities', 'tenant_prerequisites']
    LOOP
        EXECUTE format('CREATE TRIGGER note_authority_change
                            BEFORE INSERT OR UPDATE OR DELETE ON rungate.%I
                            FOR EACH ROW EXECUTE FUNCTION rungate.note_authority_change()', t);
        EXECUTE format('CREATE TRIGGER note_authority_truncate
                            BEFORE TRUNCATE ON rungate.%I
                            FOR EACH STATEMENT EXECUTE FUNCTION rungate.note_authority_change()', t);
        EXECUTE format('ALTER TABLE rungate.%I ENABLE ALWAYS TRIGGER note_authority_change', t);
        EXECUTE format('ALTER TABLE rungate.%I ENABLE ALWAYS TRIGGER note_authority_truncate', t);
        EXECUTE format('COMMENT ON TRIGGER note_authority_change ON rungate.%I IS %L', t,
                       'ENABLE ALWAYS: a changed row marks the transaction; its commit empties every backend''s authority cache');
        EXECUTE format('COMMENT ON TRIGGER note_authority_truncate ON rungate.%I IS %L', t,
                       'ENABLE ALWAYS: TRUNCATE marks the transaction; its commit empties every backend''s authority cache');
    END LOOP;
END $$;

CREATE FUNCTION rungate.authority_cache(OUT available boolean, OUT enabled boolean,
                                        OUT facts integer, OUT hits bigint,
                                        OUT misses bigint)
    RETURNS record
    AS 'MODULE_PATHNAME', 'rg_authority_cache' LANGUAGE C VOLATILE;
REVOKE ALL ON FUNCTION rungate.authority_cache() FROM PUBLIC;
COMMENT ON FUNCTION rungate.authority_cache() IS 'the authority cache of this backend: available (rungate preloaded), enabled (rungate.authority_cache), facts held, hits, misses';
