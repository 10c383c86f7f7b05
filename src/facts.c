/*
 * facts.c
 *     Gathering the facts a decision judges: direct primary-key probes of
 *     the authority tables (no executor, no plan) on a snapshot taken when
 *     the decision starts, so every revocation committed before it is seen,
 *     or the authority cache (authcache.c) when no authority change has
 *     committed since the facts were read (docs/guarantees.md#revocation-seen,
 *     #authority-data). Also the flow-control limits of a type and a
 *     workspace, read the same way (rg_flow_limits, for flow.c).
 *
 * Must never read on a snapshot older than the decision, or trust the cache
 * of a table whose change would not reach it.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/skey.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "catalog/pg_trigger.h"
#include "commands/trigger.h"
#include "executor/tuptable.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "rungate.h"
#include "facts.h"

/* ------------------------------------------------------------------------
 * Facts: primary-key probes of the authority tables
 * ------------------------------------------------------------------------ */

#define PROBE_MAX_COLS 13

/* What a probe reads from one authority table, through its primary key. */
typedef struct ProbeRel
{
	const char *name;
	const char *keys[2];		/* primary-key columns, in index order */
	const char *cols[PROBE_MAX_COLS];	/* columns read, NULL-terminated; a
										 * leading '?' marks a column older
										 * schemas lack (read as null) */
	/* filled from the catalogs; reset when one of these tables changes */
	Oid			relid;
	Oid			pkey;
	AttrNumber	keyatt[2];
	Oid			keyproc[2];
	Oid			keycoll[2];
	AttrNumber	colatt[PROBE_MAX_COLS];
} ProbeRel;

enum
{
	P_OPTYPE, P_WORKSPACE, P_ACTOR, P_WS_MEMBER, P_TENANT, P_TENANT_MEMBER,
	P_ROLE_CAP, P_PREREQ, P_COUNT,
	/* cache keys besides the tables' */
	P_PREREQ_MET = P_COUNT,		/* a tenant's satisfied prerequisites */
	P_FACTS						/* every fact of one request (RgFacts) */
};

/* operation_types columns, in cols order */
enum
{
	OT_CAPABILITY, OT_SCOPE, OT_REQ_OPERABLE, OT_ALLOW_SYSTEM, OT_WRITES,
	OT_ITEM_OP, OT_MAX_ATTEMPTS, OT_LEASE, OT_PREREQS,
	/* flow control (1.6) */
	OT_MAX_RUNNING, OT_LIMIT_SCOPE, OT_RATE_LIMIT, OT_RATE_PERIOD, OT_NCOLS
};

static ProbeRel probe_rels[P_COUNT] = {
	[P_OPTYPE] = {.name = "operation_types", .keys = {"name"},
		.cols = {"capability", "scope", "requires_operable_tenant", "allow_system",
	"writes", "item_operation", "max_attempts", "lease", "prerequisites",
	"?max_running", "?limit_scope", "?rate_limit", "?rate_period"}},
	[P_WORKSPACE] = {.name = "workspaces", .keys = {"id"},
	.cols = {"status", "?max_running"}},
	[P_ACTOR] = {.name = "actors", .keys = {"id"}, .cols = {"status"}},
	[P_WS_MEMBER] = {.name = "workspace_members",
	.keys = {"workspace_id", "actor_id"}, .cols = {"role"}},
	[P_TENANT] = {.name = "tenants", .keys = {"id"},
	.cols = {"workspace_id", "status"}},
	[P_TENANT_MEMBER] = {.name = "tenant_members",
	.keys = {"tenant_id", "actor_id"}, .cols = {"role"}},
	[P_ROLE_CAP] = {.name = "role_capabilities", .keys = {"role", "capability"}},
	[P_PREREQ] = {.name = "tenant_prerequisites", .keys = {"tenant_id", "name"},
	.cols = {"satisfied"}},
};

static bool probes_valid = false;

/*
 * Every authority table has rungate.note_authority_change() enabled ALWAYS
 * for rows and for TRUNCATE: without that, the cache could miss a change.
 */
static bool probes_watched = false;

/* DROP/CREATE EXTENSION, ALTER TABLE ...: look everything up again. */
static void
probes_inval(Datum arg, Oid relid)
{
	int			i;

	if (!OidIsValid(relid))
	{
		probes_valid = false;
		return;
	}
	for (i = 0; i < P_COUNT; i++)
		if (probe_rels[i].relid == relid || probe_rels[i].pkey == relid)
			probes_valid = false;
}

/* Does rel fire note_authority_change on every row change and on TRUNCATE? */
static bool
watched(Relation rel)
{
	const int16 rows = TRIGGER_TYPE_ROW | TRIGGER_TYPE_INSERT |
		TRIGGER_TYPE_UPDATE | TRIGGER_TYPE_DELETE;

	return rg_fires_always(rel, "note_authority_change", rows, rows) &&
		rg_fires_always(rel, "note_authority_change",
						TRIGGER_TYPE_ROW | TRIGGER_TYPE_TRUNCATE, TRIGGER_TYPE_TRUNCATE);
}

static void
probes_init(void)
{
	static bool callback_registered = false;
	int			i,
				j;

	if (probes_valid)
		return;
	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(probes_inval, (Datum) 0);
		callback_registered = true;
	}
	/* whatever changed in these tables' definitions, start over */
	rg_authcache_flush();
	probes_watched = true;
	for (i = 0; i < P_COUNT; i++)
	{
		ProbeRel   *p = &probe_rels[i];
		Relation	rel;
		TupleDesc	desc;

		p->relid = rg_relid(p->name, false);
		rel = table_open(p->relid, AccessShareLock);
		desc = RelationGetDescr(rel);
		p->pkey = rg_primary_key_index(rel);
		if (!watched(rel))
			probes_watched = false;
		if (!OidIsValid(p->pkey))
			elog(ERROR, "rungate: table rungate.%s has no primary key", p->name);
		for (j = 0; j < 2 && p->keys[j]; j++)
		{
			Form_pg_attribute att;

			p->keyatt[j] = rg_attnum(p->relid, p->keys[j], false);
			att = TupleDescAttr(desc, p->keyatt[j] - 1);
			if (att->atttypid == INT8OID)
				p->keyproc[j] = F_INT8EQ;
			else if (att->atttypid == TEXTOID)
				p->keyproc[j] = F_TEXTEQ;
			else
				elog(ERROR, "rungate: unexpected type of rungate.%s.%s",
					 p->name, p->keys[j]);
			p->keycoll[j] = att->attcollation;
		}
		for (j = 0; j < PROBE_MAX_COLS && p->cols[j]; j++)
		{
			bool		optional = p->cols[j][0] == '?';

			p->colatt[j] = rg_attnum(p->relid, p->cols[j] + (optional ? 1 : 0),
									 optional);
		}
		table_close(rel, NoLock);
	}
	probes_valid = true;
}

/*
 * Where one decision reads its facts: the authority cache when it may
 * (use_cache), else a snapshot taken at the first fact not cached.
 */
typedef struct Reader
{
	bool		use_cache;
	Snapshot	snap;
} Reader;

static Snapshot
reader_snapshot(Reader *rd)
{
	/*
	 * The latest snapshot, not the transaction's: whatever committed before
	 * this decision started is seen, at any isolation level.
	 */
	if (rd->snap == NULL)
		rd->snap = RegisterSnapshot(GetLatestSnapshot());
	return rd->snap;
}

static void
reader_done(Reader *rd)
{
	if (rd->snap != NULL)
		UnregisterSnapshot(rd->snap);
}

static RgFactKey
fact_key(int which, int64 n0, int64 n1, const char *s0, const char *s1)
{
	RgFactKey	k;

	memset(&k, 0, sizeof(k));
	k.which = which;
	k.n[0] = n0;
	k.n[1] = n1;
	k.s[0] = s0;
	k.s[1] = s1;
	return k;
}

/*
 * Look up the row of table key->which whose primary key is the key's, as
 * the decision sees it. When found, sets out/nulls to its columns (cols
 * order; out may be NULL) and returns true. Values are copies in the current
 * memory context, or the cache's own (read only).
 */
static bool
probe(Reader *rd, const RgFactKey *key, Datum *out, bool *nulls)
{
	ProbeRel   *p = &probe_rels[key->which];
	Relation	rel;
	ScanKeyData sk[2];
	SysScanDesc scan;
	HeapTuple	tup;
	RgFact	   *cached;
	int			nkeys = p->keys[1] ? 2 : 1;
	int			ncols = 0;
	int			j;

	if (rd->use_cache && (cached = rg_authcache_get(key)) != NULL)
	{
		if (cached->found && out != NULL)
		{
			memcpy(out, cached->vals, sizeof(Datum) * cached->ncols);
			memcpy(nulls, cached->nulls, sizeof(bool) * cached->ncols);
		}
		return cached->found;
	}

	while (ncols < PROBE_MAX_COLS && p->cols[ncols])
		ncols++;
	rel = table_open(p->relid, AccessShareLock);
	for (j = 0; j < nkeys; j++)
		ScanKeyEntryInitialize(&sk[j], 0, p->keyatt[j], BTEqualStrategyNumber,
							   InvalidOid, p->keycoll[j], p->keyproc[j],
							   p->keyproc[j] == F_INT8EQ ?
							   Int64GetDatum(key->n[j]) :
							   CStringGetTextDatum(key->s[j]));
	scan = systable_beginscan(rel, p->pkey, true, reader_snapshot(rd), nkeys, sk);
	tup = systable_getnext(scan);
	if (tup != NULL || rd->use_cache)
	{
		TupleDesc	desc = RelationGetDescr(rel);
		RgFact	   *f = rd->use_cache ?
			rg_authcache_put(key, tup != NULL, tup != NULL ? ncols : 0) : NULL;

		for (j = 0; tup != NULL && j < ncols; j++)
		{
			Form_pg_attribute att;
			bool		isnull = true;
			Datum		d = (Datum) 0;

			if (p->colatt[j] == InvalidAttrNumber)
			{
				/* an optional column this schema lacks: null */
				if (out != NULL)
				{
					nulls[j] = true;
					out[j] = (Datum) 0;
				}
				if (f != NULL)
					f->nulls[j] = true;
				continue;
			}
			att = TupleDescAttr(desc, p->colatt[j] - 1);
			d = heap_getattr(tup, p->colatt[j], desc, &isnull);

			if (out != NULL)
			{
				nulls[j] = isnull;
				out[j] = isnull ? (Datum) 0 :
					datumCopy(d, att->attbyval, att->attlen);
			}
			if (f != NULL && !isnull)
				f->vals[j] = rg_authcache_datum(d, att->attbyval, att->attlen);
			if (f != NULL)
				f->nulls[j] = isnull;
		}
	}
	systable_endscan(scan);
	table_close(rel, NoLock);
	return tup != NULL;
}

/*
 * The names of the satisfied prerequisites of a tenant, as the decision sees
 * them: one scan of the tenant's range of the primary key, however many
 * prerequisites the type asks for (cached as one fact).
 */
static char **
satisfied_prerequisites(Reader *rd, int64 tenant_id, int *count)
{
	ProbeRel   *p = &probe_rels[P_PREREQ];
	RgFactKey	key = fact_key(P_PREREQ_MET, tenant_id, 0, NULL, NULL);
	RgFact	   *cached;
	Relation	rel;
	TupleDesc	desc;
	ScanKeyData sk;
	SysScanDesc scan;
	HeapTuple	tup;
	int			n = 0,
				size = 8;
	char	  **names;

	if (rd->use_cache && (cached = rg_authcache_get(&key)) != NULL)
	{
		names = palloc(sizeof(char *) * Max(cached->ncols, 1));
		for (n = 0; n < cached->ncols; n++)
			names[n] = DatumGetPointer(cached->vals[n]);
		*count = n;
		return names;
	}

	names = palloc(sizeof(char *) * size);
	rel = table_open(p->relid, AccessShareLock);
	desc = RelationGetDescr(rel);
	ScanKeyEntryInitialize(&sk, 0, p->keyatt[0], BTEqualStrategyNumber,
						   InvalidOid, p->keycoll[0], p->keyproc[0],
						   Int64GetDatum(tenant_id));
	scan = systable_beginscan(rel, p->pkey, true, reader_snapshot(rd), 1, &sk);
	while ((tup = systable_getnext(scan)) != NULL)
	{
		bool		isnull;
		Datum		satisfied = heap_getattr(tup, p->colatt[0], desc, &isnull);
		Datum		name;

		if (isnull || !DatumGetBool(satisfied))
			continue;
		name = heap_getattr(tup, p->keyatt[1], desc, &isnull);
		if (isnull)
			continue;
		if (n == size)
		{
			size *= 2;
			names = repalloc(names, sizeof(char *) * size);
		}
		names[n++] = TextDatumGetCString(name);
	}
	systable_endscan(scan);
	table_close(rel, NoLock);

	if (rd->use_cache)
	{
		/* the names, as pointers in a Datum array of the cache */
		RgFact	   *f = rg_authcache_put(&key, true, n);
		int			i;

		for (i = 0; f != NULL && i < n; i++)
			f->vals[i] = PointerGetDatum(rg_authcache_strdup(names[i]));
	}
	*count = n;
	return names;
}

/* A text column of a probed row, or NULL. */
static char *
probed_text(Datum *out, bool *nulls, int col)
{
	return nulls[col] ? NULL : TextDatumGetCString(out[col]);
}


/*
 * *dst = *src, with copies of its strings in the current memory context or,
 * to_cache, the authority cache's
 */
static void
facts_copy(RgFacts *dst, const RgFacts *src, bool to_cache)
{
	char	  **d[] = {&dst->capability, &dst->item_operation, &dst->ws_status,
		&dst->actor_status, &dst->ws_role, &dst->tenant_status, &dst->tenant_role,
	&dst->unmet};
	int			i;

	*dst = *src;
	for (i = 0; i < (int) lengthof(d); i++)
		if (*d[i] != NULL)
			*d[i] = to_cache ? rg_authcache_strdup(*d[i]) : pstrdup(*d[i]);
}

void
rg_gather_facts(const char *operation, int64 workspace_id,
			 bool has_tenant, int64 tenant_id,
			 bool has_actor, int64 actor_id, RgFacts *f)
{
	Reader		rd;
	RgFactKey	key;
	RgFactKey	memo_key;
	RgFact	   *memo;
	Datum		out[PROBE_MAX_COLS] = {0};
	bool		nulls[PROBE_MAX_COLS] = {0};
	Datum		prereqs = (Datum) 0;
	const char *role;

	memset(f, 0, sizeof(*f));
	probes_init();
	rd.use_cache = probes_watched && rg_authcache_begin();
	rd.snap = NULL;

	/* the same request as one decided since the last authority change */
	memo_key = fact_key(P_FACTS | (has_tenant ? 0x100 : 0) | (has_actor ? 0x200 : 0),
						workspace_id, tenant_id, operation, NULL);
	memo_key.n[2] = actor_id;
	if (rd.use_cache && (memo = rg_authcache_get(&memo_key)) != NULL)
	{
		facts_copy(f, (RgFacts *) DatumGetPointer(memo->vals[0]), false);
		return;
	}

	key = fact_key(P_OPTYPE, 0, 0, operation, NULL);
	f->op_exists = probe(&rd, &key, out, nulls);
	if (f->op_exists)
	{
		const char *scope = probed_text(out, nulls, OT_SCOPE);
		Interval   *lease;

		f->capability = probed_text(out, nulls, OT_CAPABILITY);
		f->tenant_scope = scope != NULL && strcmp(scope, "tenant") == 0;
		f->requires_operable_tenant = DatumGetBool(out[OT_REQ_OPERABLE]);
		f->allow_system = DatumGetBool(out[OT_ALLOW_SYSTEM]);
		f->writes = DatumGetBool(out[OT_WRITES]);
		f->item_operation = probed_text(out, nulls, OT_ITEM_OP);
		f->max_attempts = DatumGetInt32(out[OT_MAX_ATTEMPTS]);
		lease = nulls[OT_LEASE] ? NULL : DatumGetIntervalP(out[OT_LEASE]);
		if (lease != NULL)
			f->lease = *lease;
		prereqs = nulls[OT_PREREQS] ? (Datum) 0 : out[OT_PREREQS];
		f->op_max_running = nulls[OT_MAX_RUNNING] ? 0 : DatumGetInt32(out[OT_MAX_RUNNING]);
		f->rate_limit = nulls[OT_RATE_LIMIT] ? 0 : DatumGetInt32(out[OT_RATE_LIMIT]);
		if (f->rate_limit > 0 && !nulls[OT_RATE_PERIOD])
			f->rate_period = *DatumGetIntervalP(out[OT_RATE_PERIOD]);
		else
			f->rate_limit = 0;
		f->limit_scope = RG_LIMIT_WORKSPACE;
		if (!nulls[OT_LIMIT_SCOPE])
		{
			char	   *ls = TextDatumGetCString(out[OT_LIMIT_SCOPE]);

			if (strcmp(ls, "tenant") == 0)
				f->limit_scope = RG_LIMIT_TENANT;
			else if (strcmp(ls, "global") == 0)
				f->limit_scope = RG_LIMIT_GLOBAL;
		}
	}
	else
	{
		reader_done(&rd);
		return;
	}

	key = fact_key(P_WORKSPACE, workspace_id, 0, NULL, NULL);
	f->ws_exists = probe(&rd, &key, out, nulls);
	if (f->ws_exists)
	{
		f->ws_status = probed_text(out, nulls, 0);
		f->ws_max_running = nulls[1] ? 0 : DatumGetInt32(out[1]);
	}
	if (has_actor)
	{
		key = fact_key(P_ACTOR, actor_id, 0, NULL, NULL);
		f->actor_exists = probe(&rd, &key, out, nulls);
		if (f->actor_exists)
			f->actor_status = probed_text(out, nulls, 0);
		key = fact_key(P_WS_MEMBER, workspace_id, actor_id, NULL, NULL);
		if (probe(&rd, &key, out, nulls))
			f->ws_role = probed_text(out, nulls, 0);
	}
	if (has_tenant)
	{
		key = fact_key(P_TENANT, tenant_id, 0, NULL, NULL);
		f->tenant_exists = probe(&rd, &key, out, nulls);
		if (f->tenant_exists)
		{
			f->tenant_ws = DatumGetInt64(out[0]);
			f->tenant_status = probed_text(out, nulls, 1);
		}
		key = fact_key(P_TENANT_MEMBER, tenant_id, actor_id, NULL, NULL);
		if (has_actor && probe(&rd, &key, out, nulls))
			f->tenant_role = probed_text(out, nulls, 0);
	}

	/* the capability of the role the type's scope asks for */
	role = f->tenant_scope ? f->tenant_role : f->ws_role;
	if (role != NULL && f->capability != NULL)
	{
		key = fact_key(P_ROLE_CAP, 0, 0, role, f->capability);
		f->has_cap = probe(&rd, &key, NULL, NULL);
	}

	/*
	 * The first prerequisite of the type (in its order) not satisfied; with
	 * no tenant, none is.
	 */
	if (prereqs != (Datum) 0)
	{
		ArrayType  *arr = DatumGetArrayTypeP(prereqs);
		Datum	   *names;
		bool	   *namenulls;
		char	  **met = NULL;
		int			n,
					nmet = 0,
					i,
					j;

		deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT,
						  &names, &namenulls, &n);
		if (has_tenant && n > 0)
			met = satisfied_prerequisites(&rd, tenant_id, &nmet);
		for (i = 0; i < n && f->unmet == NULL; i++)
		{
			char	   *name;

			if (namenulls[i])
				continue;
			name = TextDatumGetCString(names[i]);
			for (j = 0; j < nmet; j++)
				if (strcmp(met[j], name) == 0)
					break;
			if (j == nmet)
				f->unmet = name;
		}
	}
	reader_done(&rd);
	if (rd.use_cache && (memo = rg_authcache_put(&memo_key, true, 1)) != NULL)
	{
		RgFacts	   *copy = rg_authcache_alloc(sizeof(RgFacts));

		facts_copy(copy, f, true);
		memo->vals[0] = PointerGetDatum(copy);
	}
}

/*
 * The flow-control limits of an operation type and a workspace, read as a
 * decision reads facts (the authority cache when it may). False when the
 * type is unknown.
 */
bool
rg_flow_limits(const char *operation, int64 workspace_id, RgOpType *op,
			   int32 *ws_max_running)
{
	Reader		rd;
	RgFactKey	key;
	Datum		out[PROBE_MAX_COLS] = {0};
	bool		nulls[PROBE_MAX_COLS] = {0};
	bool		found;

	memset(op, 0, sizeof(*op));
	*ws_max_running = 0;
	probes_init();
	rd.use_cache = probes_watched && rg_authcache_begin();
	rd.snap = NULL;
	key = fact_key(P_OPTYPE, 0, 0, operation, NULL);
	found = probe(&rd, &key, out, nulls);
	if (found)
	{
		op->item_operation = probed_text(out, nulls, OT_ITEM_OP);
		op->max_running = nulls[OT_MAX_RUNNING] ? 0 : DatumGetInt32(out[OT_MAX_RUNNING]);
		op->rate_limit = nulls[OT_RATE_LIMIT] || nulls[OT_RATE_PERIOD] ? 0 :
			DatumGetInt32(out[OT_RATE_LIMIT]);
		if (op->rate_limit > 0)
			op->rate_period = *DatumGetIntervalP(out[OT_RATE_PERIOD]);
		op->limit_scope = RG_LIMIT_WORKSPACE;
		if (!nulls[OT_LIMIT_SCOPE])
		{
			char	   *ls = TextDatumGetCString(out[OT_LIMIT_SCOPE]);

			op->limit_scope = strcmp(ls, "tenant") == 0 ? RG_LIMIT_TENANT :
				strcmp(ls, "global") == 0 ? RG_LIMIT_GLOBAL : RG_LIMIT_WORKSPACE;
		}
		key = fact_key(P_WORKSPACE, workspace_id, 0, NULL, NULL);
		if (probe(&rd, &key, out, nulls) && !nulls[1])
			*ws_max_running = DatumGetInt32(out[1]);
	}
	reader_done(&rd);
	return found;
}

/*
 * Does a new run's operation type, then its workspace, exist now, as a
 * decision would read them (the authority cache when it may, else the
 * latest snapshot)? Returns the name of the table that lacks its row, or
 * NULL when both are there. references.c asks, once the insert holds its
 * lock on rungate.runs.
 */
const char *
rg_missing_run_reference(const char *operation, int64 workspace_id)
{
	Reader		rd;
	RgFactKey	key;
	const char *missing = NULL;

	probes_init();
	rd.use_cache = probes_watched && rg_authcache_begin();
	rd.snap = NULL;
	key = fact_key(P_OPTYPE, 0, 0, operation, NULL);
	if (!probe(&rd, &key, NULL, NULL))
		missing = probe_rels[P_OPTYPE].name;
	else
	{
		key = fact_key(P_WORKSPACE, workspace_id, 0, NULL, NULL);
		if (!probe(&rd, &key, NULL, NULL))
			missing = probe_rels[P_WORKSPACE].name;
	}
	reader_done(&rd);
	return missing;
}

/*
 * Lock the row of probe table `which` (tenants, actors) with this id FOR
 * KEY SHARE, as the foreign key's insert check did before 1.9 (a SELECT ...
 * FOR KEY SHARE through SPI): found on the transaction's snapshot (a new one
 * in READ COMMITTED), a concurrent change waited for; in READ COMMITTED the
 * row's latest version is locked, in REPEATABLE READ and SERIALIZABLE a row
 * deleted or given a new key since the snapshot is a serialization failure.
 * False when there is no such row (any more).
 */
static bool
lock_reference(int which, int64 id)
{
	ProbeRel   *p;
	Relation	rel;
	Snapshot	snap;
	ScanKeyData sk;
	SysScanDesc scan;
	HeapTuple	tup;
	ItemPointerData tid;
	bool		have;
	bool		found = false;

	p = &probe_rels[which];
	rel = table_open(p->relid, RowShareLock);
	probes_init();				/* the lock may have brought a new index */
	snap = RegisterSnapshot(GetTransactionSnapshot());
	ScanKeyInit(&sk, p->keyatt[0], BTEqualStrategyNumber, p->keyproc[0],
				Int64GetDatum(id));
	sk.sk_collation = p->keycoll[0];
	scan = systable_beginscan(rel, p->pkey, true, snap, 1, &sk);
	tup = systable_getnext(scan);
	have = HeapTupleIsValid(tup);
	if (have)
		tid = tup->t_self;
	systable_endscan(scan);

	if (have)
	{
		TupleTableSlot *slot = table_slot_create(rel, NULL);
		TM_FailureData tmfd;
		uint8		flags = TUPLE_LOCK_FLAG_LOCK_UPDATE_IN_PROGRESS;
		TM_Result	res;

		if (!IsolationUsesXactSnapshot())
			flags |= TUPLE_LOCK_FLAG_FIND_LAST_VERSION;
		res = table_tuple_lock(rel, &tid, snap, slot, GetCurrentCommandId(true),
							   LockTupleKeyShare, LockWaitBlock, flags, &tmfd);
		switch (res)
		{
			case TM_Ok:
				found = true;
				if (tmfd.traversed)
				{
					/* a later version: its key may have changed */
					bool		isnull;
					Datum		v = slot_getattr(slot, p->keyatt[0], &isnull);

					found = !isnull && DatumGetInt64(v) == id;
				}
				break;
			case TM_SelfModified:
				/* changed by this very command: as if it were gone */
				break;
			case TM_Updated:
			case TM_Deleted:
				if (IsolationUsesXactSnapshot())
					ereport(ERROR,
							(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
							 errmsg("could not serialize access due to concurrent update")));
				if (res == TM_Updated)
					elog(ERROR, "rungate: unexpected tuple lock result %d", (int) res);
				break;
			default:
				elog(ERROR, "rungate: unexpected tuple lock result %d", (int) res);
		}
		ExecDropSingleTupleTableSlot(slot);
	}
	UnregisterSnapshot(snap);
	table_close(rel, NoLock);
	return found;
}

const char *
rg_lock_run_references(bool has_tenant, int64 tenant, bool has_actor,
					   int64 actor)
{
	if (!has_tenant && !has_actor)
		return NULL;
	probes_init();
	/* what this transaction did so far is seen, as SPI would see it */
	CommandCounterIncrement();
	if (has_tenant && !lock_reference(P_TENANT, tenant))
		return probe_rels[P_TENANT].name;
	if (has_actor && !lock_reference(P_ACTOR, actor))
		return probe_rels[P_ACTOR].name;
	return NULL;
}
