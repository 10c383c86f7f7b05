/*
 * catalog.c
 *     Finding rungate's own objects in the catalogs: the schema, a table or
 *     index of it by name, a column by name, and whether a table fires one
 *     of rungate's trigger functions on every change. Every module that
 *     caches relation or attribute numbers (rowwrite.c, queue.c, facts.c,
 *     flow.c, triggers.c) looks them up here; each keeps its own cache and
 *     drops it on a relcache invalidation.
 *
 * Must never trust a name without its schema: everything is looked up in
 * schema rungate, never on the search_path.
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "utils/builtins.h"
#include "commands/trigger.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "rungate.h"

Oid
rg_namespace(bool missing_ok)
{
	return get_namespace_oid("rungate", missing_ok);
}

Oid
rg_relid(const char *name, bool missing_ok)
{
	Oid			nsp = rg_namespace(missing_ok);
	Oid			relid = OidIsValid(nsp) ? get_relname_relid(name, nsp) : InvalidOid;

	if (!OidIsValid(relid) && !missing_ok)
		elog(ERROR, "rungate: relation rungate.%s is missing", name);
	return relid;
}

AttrNumber
rg_attnum(Oid relid, const char *column, bool missing_ok)
{
	AttrNumber	att = get_attnum(relid, column);

	if (att == InvalidAttrNumber && !missing_ok)
		elog(ERROR, "rungate: column %s of %s is missing", column,
			 get_rel_name(relid));
	return att;
}

/*
 * Does rel have a trigger, enabled ALWAYS, that calls rungate.<fn>() and
 * whose type, masked by mask, is value (TRIGGER_TYPE_* bits)? ALWAYS, so
 * that it fires under session_replication_role = replica too.
 */
bool
rg_fires_always(Relation rel, const char *fn, int16 mask, int16 value)
{
	TriggerDesc *td = rel->trigdesc;
	Oid			nsp = rg_namespace(true);
	int			i;

	for (i = 0; td != NULL && i < td->numtriggers; i++)
	{
		Trigger    *t = &td->triggers[i];
		char	   *name;

		if (t->tgenabled != TRIGGER_FIRES_ALWAYS || (t->tgtype & mask) != value ||
			get_func_namespace(t->tgfoid) != nsp)
			continue;
		name = get_func_name(t->tgfoid);
		if (name != NULL && strcmp(name, fn) == 0)
			return true;
	}
	return false;
}

/* The schema-qualified, quoted name of a relation, for messages and DDL. */
char *
rg_qualified_name(Oid relid)
{
	char	   *relname = get_rel_name(relid);
	char	   *nspname = get_namespace_name(get_rel_namespace(relid));

	if (relname == NULL || nspname == NULL)
		elog(ERROR, "rungate: cache lookup failed for relation %u", relid);
	return quote_qualified_identifier(nspname, relname);
}
